//! End-to-end tests: real WebSocket clients against a bound server.

mod common;

use anyhow::{Result, ensure};
use common::{Client, exchange, pair};
use rtc_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use rtc_signaling::{Config, Server};
use serde_json::{Value, json};

async fn start(config: Config) -> Result<Server> {
    Ok(Server::bind("127.0.0.1:0".parse()?, config).await?)
}

fn offer(sdp: &str, to: Option<&str>) -> ClientMessage {
    ClientMessage::Offer {
        sdp: sdp.into(),
        to: to.map(Into::into),
    }
}

#[tokio::test]
async fn ws_url_and_local_addr() -> Result<()> {
    let server = start(Config::default()).await?;
    let addr = server.local_addr();
    ensure!(addr.port() != 0);
    ensure!(server.ws_url() == format!("ws://127.0.0.1:{}/ws", addr.port()));
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn join_joined_ready_flow() -> Result<()> {
    let server = start(Config::default()).await?;
    let mut a = Client::connect(&server.ws_url()).await?;
    let mut b = Client::connect(&server.ws_url()).await?;
    let (a_id, peers) = a.join("r1").await?;
    ensure!(peers.is_empty());
    a.expect_quiet().await?; // no ready while the room is not full
    let (b_id, peers) = b.join("r1").await?;
    ensure!(peers == vec![a_id.clone()]);
    ensure!(a_id != b_id);
    ensure!(a_id.starts_with('p') && b_id.starts_with('p'));
    let all = vec![a_id, b_id];
    ensure!(a.expect_ready().await? == all);
    ensure!(b.expect_ready().await? == all);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn offer_answer_candidate_relayed_with_from() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;

    let cand = json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"});
    a.send(&ClientMessage::Candidate {
        candidate: Some(cand.clone()),
        to: None,
    })
    .await?;
    let raw: Value = serde_json::from_str(&b.recv_raw().await?)?;
    ensure!(
        raw == json!({"type": "candidate", "candidate": cand, "from": a_id}),
        "{raw}"
    );

    // End-of-candidates: `null` is relayed as `null`, and `to` is not echoed.
    b.send_text(format!(
        r#"{{"type":"candidate","candidate":null,"to":"{a_id}"}}"#
    ))
    .await?;
    let raw: Value = serde_json::from_str(&a.recv_raw().await?)?;
    ensure!(
        raw == json!({"type": "candidate", "candidate": null, "from": b_id}),
        "{raw}"
    );

    // The sender never gets its own messages back.
    a.expect_quiet().await?;
    b.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn to_targets_one_peer() -> Result<()> {
    let server = start(Config {
        room_capacity: 3,
        ..Config::default()
    })
    .await?;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await?;
    let mut b = Client::connect(&url).await?;
    let mut c = Client::connect(&url).await?;
    let (a_id, _) = a.join("three").await?;
    let (b_id, _) = b.join("three").await?;
    let (c_id, peers) = c.join("three").await?;
    ensure!(peers == vec![a_id.clone(), b_id.clone()]);
    for client in [&mut a, &mut b, &mut c] {
        ensure!(client.expect_ready().await? == vec![a_id.clone(), b_id.clone(), c_id.clone()]);
    }

    a.send(&offer("to-c", Some(&c_id))).await?;
    ensure!(
        c.recv().await?
            == ServerMessage::Offer {
                sdp: "to-c".into(),
                from: a_id.clone()
            }
    );
    b.expect_quiet().await?;

    // In a room of more than two, an untargeted relay is refused (whom it is for would be a
    // guess), and reaches nobody.
    a.send(&offer("to-all", None)).await?;
    a.expect_error(ErrorCode::TargetRequired).await?;
    b.expect_quiet().await?;
    c.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn third_joiner_gets_room_full() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((mut a, _), (mut b, _)) = pair(&url, "r").await?;
    let mut c = Client::connect(&url).await?;
    c.send(&ClientMessage::Join {
        room: "r".into(),
        capacity: None,
    })
    .await?;
    c.expect_error(ErrorCode::RoomFull).await?;
    // The refused client is not in the room and can still join elsewhere.
    c.send(&offer("x", None)).await?;
    c.expect_error(ErrorCode::NotInRoom).await?;
    let (_, peers) = c.join("elsewhere").await?;
    ensure!(peers.is_empty());
    a.expect_quiet().await?;
    b.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn peer_left_on_leave_and_room_reusable() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((mut a, a_id), (mut b, b_id)) = pair(&url, "r").await?;
    a.send(&ClientMessage::Leave).await?;
    ensure!(b.recv().await? == ServerMessage::PeerLeft { peer_id: a_id });
    a.expect_quiet().await?;
    // Out of the room now.
    a.send(&offer("x", None)).await?;
    a.expect_error(ErrorCode::NotInRoom).await?;
    a.send(&ClientMessage::Leave).await?;
    a.expect_error(ErrorCode::NotInRoom).await?;
    // The freed seat can be taken again.
    let (a_id, peers) = a.join("r").await?;
    ensure!(peers == vec![b_id.clone()]);
    ensure!(b.expect_ready().await? == vec![b_id.clone(), a_id.clone()]);
    ensure!(a.expect_ready().await? == vec![b_id.clone(), a_id.clone()]);
    // Once everyone left, the room is gone: a newcomer finds it empty.
    a.send(&ClientMessage::Leave).await?;
    b.recv().await?; // peer-left
    b.send(&ClientMessage::Leave).await?;
    let mut c = Client::connect(&url).await?;
    let (_, peers) = c.join("r").await?;
    ensure!(peers.is_empty(), "{peers:?}");
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn peer_left_on_socket_close() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((a, a_id), (mut b, b_id)) = pair(&url, "r").await?;
    a.close().await?;
    ensure!(b.recv().await? == ServerMessage::PeerLeft { peer_id: a_id });

    // An abrupt drop (no close frame) is noticed too.
    let mut c = Client::connect(&url).await?;
    let (c_id, peers) = c.join("r").await?;
    ensure!(peers == vec![b_id]);
    b.expect_ready().await?;
    c.expect_ready().await?;
    drop(c);
    ensure!(b.recv().await? == ServerMessage::PeerLeft { peer_id: c_id });
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn not_in_room_before_join() -> Result<()> {
    let server = start(Config::default()).await?;
    let mut a = Client::connect(&server.ws_url()).await?;
    let msgs = [
        offer("x", None),
        ClientMessage::Answer {
            sdp: "x".into(),
            to: Some("p1".into()),
        },
        ClientMessage::Candidate {
            candidate: None,
            to: None,
        },
        ClientMessage::Leave,
    ];
    for msg in &msgs {
        a.send(msg).await?;
        a.expect_error(ErrorCode::NotInRoom).await?;
    }
    a.join("r").await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn already_joined() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;
    for room in ["r", "other"] {
        a.send(&ClientMessage::Join {
            room: room.into(),
            capacity: None,
        })
        .await?;
        a.expect_error(ErrorCode::AlreadyJoined).await?;
    }
    b.expect_quiet().await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unknown_peer() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((mut a, a_id), (mut b, b_id)) = pair(&url, "r").await?;
    // A peer of another room is as unknown as a made-up id.
    let ((_c, c_id), (_d, _)) = pair(&url, "other").await?;
    for to in ["p999999", c_id.as_str(), a_id.as_str(), ""] {
        a.send(&offer("x", Some(to))).await?;
        a.expect_error(ErrorCode::UnknownPeer).await?;
    }
    b.expect_quiet().await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_message_keeps_socket_open() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;
    let garbage = [
        "",
        "hello",
        "{",
        "null",
        "42",
        r#"["offer"]"#,
        "{}",
        r#"{"type":"dance"}"#,
        r#"{"type":"OFFER","sdp":"x"}"#,
        r#"{"type":"offer"}"#,
        r#"{"type":"offer","sdp":42}"#,
        r#"{"type":"offer","sdp":"x","to":1}"#,
        r#"{"type":"join","room":null}"#,
        r#"{"type":"candidate"}"#,
        r#"{"type":"candidate","candidate":"candidate:1 1 udp"}"#,
        r#"{"type":"candidate","candidate":[]}"#,
        r#"{"type":"ready","peers":[]}"#,
    ];
    for text in garbage {
        a.send_text(text).await?;
        match a.recv().await? {
            ServerMessage::Error {
                code: ErrorCode::BadMessage,
                message,
            } => ensure!(!message.is_empty()),
            other => anyhow::bail!("{text:?}: got {other:?}"),
        }
    }
    a.send_binary(br#"{"type":"leave"}"#.to_vec()).await?;
    a.expect_error(ErrorCode::BadMessage).await?;
    a.send_binary(vec![0xff, 0x00, 0x13]).await?;
    a.expect_error(ErrorCode::BadMessage).await?;
    b.expect_quiet().await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn too_large_keeps_socket_open() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;

    // 70000 bytes of valid-looking JSON.
    let text = serde_json::to_string(&offer(&"a".repeat(70000 - 25), None))?;
    ensure!(text.len() == 70000, "{}", text.len());
    a.send_text(text).await?;
    a.expect_error(ErrorCode::TooLarge).await?;
    // Oversized garbage and binary frames too.
    a.send_text("x".repeat(70000)).await?;
    a.expect_error(ErrorCode::TooLarge).await?;
    a.send_binary(vec![7; 70000]).await?;
    a.expect_error(ErrorCode::TooLarge).await?;
    b.expect_quiet().await?;

    // Exactly at the limit is accepted and relayed.
    let sdp = "b".repeat(65536 - 25);
    let text = serde_json::to_string(&offer(&sdp, None))?;
    ensure!(text.len() == 65536, "{}", text.len());
    a.send_text(text).await?;
    ensure!(
        b.recv().await?
            == ServerMessage::Offer {
                sdp,
                from: a_id.clone()
            }
    );
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn custom_max_message_bytes() -> Result<()> {
    let server = start(Config {
        max_message_bytes: 100,
        ..Config::default()
    })
    .await?;
    let mut a = Client::connect(&server.ws_url()).await?;
    a.send(&ClientMessage::Join {
        room: "r".repeat(100),
        capacity: None,
    })
    .await?;
    a.expect_error(ErrorCode::TooLarge).await?;
    a.join("short").await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rooms_are_isolated() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((mut a1, a1_id), (mut a2, a2_id)) = pair(&url, "A").await?;
    let ((mut b1, b1_id), (mut b2, b2_id)) = pair(&url, "B").await?;

    exchange(&mut a1, &a1_id, &mut a2, &a2_id).await?;
    a1.send(&ClientMessage::Candidate {
        candidate: Some(json!({"candidate": "c"})),
        to: None,
    })
    .await?;
    a2.recv().await?;
    a2.send(&ClientMessage::Leave).await?;
    a1.recv().await?; // peer-left
    // Errors in A stay in A.
    a1.send_text("garbage").await?;
    a1.expect_error(ErrorCode::BadMessage).await?;

    b1.expect_quiet().await?;
    b2.expect_quiet().await?;
    exchange(&mut b1, &b1_id, &mut b2, &b2_id).await?;
    a1.expect_quiet().await?;
    a2.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn peer_ids_are_unique_across_rooms() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let mut ids = std::collections::HashSet::new();
    for room in ["x", "y", "z"] {
        let ((_a, a_id), (_b, b_id)) = pair(&url, room).await?;
        ensure!(ids.insert(a_id) && ids.insert(b_id));
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_clients() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, _), (mut b, _)) = pair(&server.ws_url(), "r").await?;
    tokio::time::timeout(common::WAIT, server.shutdown()).await?;
    a.expect_closed().await?;
    b.expect_closed().await?;
    Ok(())
}

#[tokio::test]
async fn drop_stops_server() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await?;
    drop(server);
    a.expect_closed().await?;
    // Give the aborted task a moment, then the port refuses new clients.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    ensure!(Client::connect(&url).await.is_err());
    Ok(())
}

#[tokio::test]
async fn router_can_be_mounted() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = rtc_signaling::router(Config::default());
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let ((mut a, a_id), (mut b, b_id)) = pair(&format!("ws://{addr}/ws"), "r").await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    task.abort();
    Ok(())
}

/// A mesh call over real sockets: the first joiner sets the room's capacity (4), those already
/// in hear of each newcomer (`peer-joined`), all four get `ready`, a fifth gets `room_full`, and
/// a targeted offer reaches its target alone.
#[tokio::test]
async fn a_mesh_room_of_four_over_websockets() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        clients.push(Client::connect(&url).await?);
    }
    for (i, c) in clients.iter_mut().enumerate().take(4) {
        c.send(&ClientMessage::Join {
            room: "call".into(),
            capacity: (i == 0).then_some(4),
        })
        .await?;
        match c.recv().await? {
            ServerMessage::Joined { peer_id, peers } => {
                ensure!(peers == ids, "{peers:?} != {ids:?}");
                ids.push(peer_id);
            }
            other => anyhow::bail!("expected joined, got {other:?}"),
        }
    }
    for (i, c) in clients.iter_mut().enumerate().take(4) {
        for later in &ids[i + 1..] {
            ensure!(
                c.recv().await?
                    == ServerMessage::PeerJoined {
                        peer_id: later.clone()
                    }
            );
        }
        ensure!(c.recv().await? == ServerMessage::Ready { peers: ids.clone() });
    }
    clients[4]
        .send(&ClientMessage::Join {
            room: "call".into(),
            capacity: None,
        })
        .await?;
    clients[4].expect_error(ErrorCode::RoomFull).await?;
    clients[3].send(&offer("to-p2", Some(&ids[1]))).await?;
    ensure!(
        clients[1].recv().await?
            == ServerMessage::Offer {
                sdp: "to-p2".into(),
                from: ids[3].clone()
            }
    );
    for i in [0, 2, 3, 4] {
        clients[i].expect_quiet().await?;
    }
    server.shutdown().await;
    Ok(())
}
