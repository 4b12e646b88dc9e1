//! Real-socket tests for the server's protections: rate limits, the idle
//! timeout, binary and invalid UTF-8 frames, and JWT authentication.

mod common;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use common::{Client, QUIET, WAIT, exchange, pair};
use rtc_signaling::auth::{JwtSecret, encode_token};
use rtc_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use rtc_signaling::{Config, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

async fn start(config: Config) -> Result<Server> {
    Ok(Server::bind("127.0.0.1:0".parse()?, config).await?)
}

fn offer() -> ClientMessage {
    ClientMessage::Offer {
        sdp: "v=0".into(),
        to: None,
    }
}

fn close_code(frame: Option<CloseFrame>) -> Option<CloseCode> {
    frame.map(|f| f.code)
}

#[tokio::test]
async fn over_the_rate_limit_is_refused_then_disconnected_others_unaffected() -> Result<()> {
    let server = start(Config {
        rate_limit_per_second: 1,
        rate_limit_burst: 5,
        rate_limit_disconnect_after: 20,
        ..Config::default()
    })
    .await?;
    let url = server.ws_url();
    let ((mut flooder, _), (mut partner, _)) = pair(&url, "flood").await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&url, "calm").await?;
    // join used one token of the burst of 5: four offers pass.
    for _ in 0..4 {
        flooder.send(&offer()).await?;
        ensure!(matches!(partner.recv().await?, ServerMessage::Offer { .. }));
    }
    flooder.send(&offer()).await?;
    match flooder.recv().await? {
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message,
        } => ensure!(message.contains("1 messages/s (burst 5)"), "{message}"),
        other => bail!("expected rate_limited, got {other:?}"),
    }
    partner.expect_quiet().await?;
    // The other room is not limited by the flooder.
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    // The rest of the run is dropped silently; 19 more refusals make 20:
    // disconnected with 1008.
    for _ in 0..19 {
        flooder.send(&offer()).await?;
    }
    let frame = flooder.expect_close_next().await?;
    ensure!(
        frame.as_ref().map(|f| (f.code, f.reason.as_str()))
            == Some((CloseCode::Policy, "rate limit exceeded")),
        "{frame:?}"
    );
    // Nothing of the silent run reached the partner: the next is peer-left.
    ensure!(matches!(
        partner.recv().await?,
        ServerMessage::PeerLeft { .. }
    ));
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit_zero_disables_it() -> Result<()> {
    let server = start(Config {
        rate_limit_per_second: 0,
        rate_limit_burst: 1,
        ..Config::default()
    })
    .await?;
    let ((mut a, _), (mut b, _)) = pair(&server.ws_url(), "r").await?;
    for _ in 0..300 {
        a.send(&offer()).await?;
    }
    for _ in 0..300 {
        ensure!(matches!(b.recv().await?, ServerMessage::Offer { .. }));
    }
    a.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn idle_client_is_closed_but_pings_keep_it_open() -> Result<()> {
    let idle = Duration::from_millis(600);
    let server = start(Config {
        idle_timeout: Some(idle),
        ..Config::default()
    })
    .await?;
    let url = server.ws_url();
    let ((mut quiet, _), (mut pinger, _)) = pair(&url, "r").await?;
    // The pinger sends only pings, for well over the timeout.
    let started = tokio::time::Instant::now();
    while started.elapsed() < idle * 3 {
        pinger.ping().await?;
        // Reading also collects the pongs; the quiet one is closed meanwhile.
        if let Some(text) = pinger.recv_raw_within(idle / 4).await? {
            let msg: ServerMessage = serde_json::from_str(&text)?;
            ensure!(matches!(msg, ServerMessage::PeerLeft { .. }), "{msg:?}");
        }
    }
    let frame = quiet.closed_within(Duration::ZERO).await;
    let frame = match frame {
        Ok(frame) => frame,
        Err(_) => quiet.closed_within(WAIT).await?,
    };
    ensure!(
        frame.as_ref().map(|f| (f.code, f.reason.as_str()))
            == Some((CloseCode::Normal, "idle timeout")),
        "{frame:?}"
    );
    // Still open: it can join again and use the room.
    pinger.probe().await?;
    pinger.send(&ClientMessage::Leave).await?;
    pinger.join("r2").await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn idle_timeout_none_keeps_quiet_clients() -> Result<()> {
    let server = start(Config {
        idle_timeout: None,
        ..Config::default()
    })
    .await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;
    tokio::time::sleep(QUIET * 3).await;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn binary_frames_get_bad_message_and_the_socket_stays_open() -> Result<()> {
    let server = start(Config::default()).await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r").await?;
    for data in [Vec::new(), vec![0xff; 3], br#"{"type":"leave"}"#.to_vec()] {
        a.send_binary(data).await?;
        a.expect_error(ErrorCode::BadMessage).await?;
    }
    b.expect_quiet().await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

/// What really happens: the WebSocket layer (tungstenite, under axum)
/// validates UTF-8 itself and ends the connection's incoming stream, so the
/// socket cannot stay open (RFC 6455 section 8.1 requires failing the
/// connection anyway). The server replies `invalid_frame`, closes with 1007
/// and the room gets `peer-left`; nobody else is affected.
#[tokio::test]
async fn invalid_utf8_gets_invalid_frame_and_close_1007() -> Result<()> {
    let server = start(Config::default()).await?;
    let url = server.ws_url();
    let ((mut bad, bad_id), (mut partner, _)) = pair(&url, "r").await?;
    let ((mut a, a_id), (mut b, b_id)) = pair(&url, "other").await?;
    let frame = Frame::message(vec![b'{', 0xc3, 0x28, b'}'], OpCode::Data(Data::Text), true);
    bad.send_frame(Message::Frame(frame)).await?;
    match bad.recv().await? {
        ServerMessage::Error {
            code: ErrorCode::InvalidFrame,
            message,
        } => ensure!(message.contains("UTF-8"), "{message}"),
        other => bail!("expected invalid_frame, got {other:?}"),
    }
    let frame = bad.closed_within(WAIT).await?;
    ensure!(
        close_code(frame.clone()) == Some(CloseCode::Invalid),
        "{frame:?}"
    );
    ensure!(
        partner.recv().await? == ServerMessage::PeerLeft { peer_id: bad_id },
        "partner"
    );
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}

fn secret() -> JwtSecret {
    JwtSecret::new("test-secret").expect("secret")
}

fn token(secret: &JwtSecret, room: &str, valid_for: i64) -> Result<String> {
    let now = SystemTime::now();
    let exp = if valid_for >= 0 {
        now + Duration::from_secs(valid_for.unsigned_abs())
    } else {
        now - Duration::from_secs(valid_for.unsigned_abs())
    };
    Ok(encode_token(secret, room, exp)?)
}

async fn connect_with(server: &Server, token: Option<&str>) -> Result<Client> {
    let url = match token {
        Some(token) => format!("{}?token={token}", server.ws_url()),
        None => server.ws_url(),
    };
    Client::connect(&url).await
}

/// Joins `room` and expects `unauthorized` whose message contains `why`.
async fn expect_unauthorized(client: &mut Client, room: &str, why: &str) -> Result<()> {
    client
        .send(&ClientMessage::Join {
            room: room.into(),
            capacity: None,
        })
        .await?;
    match client.recv().await? {
        ServerMessage::Error {
            code: ErrorCode::Unauthorized,
            message,
        } => ensure!(message.contains(why), "{message:?} lacks {why:?}"),
        other => bail!("expected unauthorized, got {other:?}"),
    }
    // It joined nothing: a relay is refused.
    client.send(&offer()).await?;
    client.expect_error(ErrorCode::NotInRoom).await
}

#[tokio::test]
async fn jwt_valid_missing_wrong_secret_wrong_room_expired() -> Result<()> {
    let secret = secret();
    let server = start(Config {
        jwt_secret: Some(secret.clone()),
        ..Config::default()
    })
    .await?;
    let good_a = token(&secret, "r1", 600)?;
    let good_b = token(&secret, "r1", 600)?;
    let mut a = connect_with(&server, Some(&good_a)).await?;
    let mut b = connect_with(&server, Some(&good_b)).await?;
    let (a_id, _) = a.join("r1").await?;
    let (b_id, _) = b.join("r1").await?;
    a.expect_ready().await?;
    b.expect_ready().await?;

    let mut missing = connect_with(&server, None).await?;
    expect_unauthorized(&mut missing, "r1", "token is required").await?;
    let other = JwtSecret::new("another-secret").expect("secret");
    let mut wrong_secret = connect_with(&server, Some(&token(&other, "r1", 600)?)).await?;
    expect_unauthorized(&mut wrong_secret, "r1", "InvalidSignature").await?;
    let mut wrong_room = connect_with(&server, Some(&token(&secret, "r2", 600)?)).await?;
    expect_unauthorized(&mut wrong_room, "r1", "for room \"r2\"").await?;
    let mut expired = connect_with(&server, Some(&token(&secret, "r1", -5)?)).await?;
    expect_unauthorized(&mut expired, "r1", "ExpiredSignature").await?;
    let mut garbage = connect_with(&server, Some("abc")).await?;
    expect_unauthorized(&mut garbage, "r1", "invalid token").await?;
    // The wrong-room client may still join its own room.
    wrong_room.join("r2").await?;

    // None of the refused clients reached r1.
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    a.expect_quiet().await?;
    b.expect_quiet().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_a_secret_tokens_are_ignored() -> Result<()> {
    let server = start(Config::default()).await?;
    let mut a = connect_with(&server, Some("not-even-a-jwt")).await?;
    a.join("r").await.context("join without auth")?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn admin_disconnect_closes_one_peer_with_1012_and_the_room_sees_it_leave() -> Result<()> {
    let server = start(Config::default()).await?;
    let admin = server.admin();
    let ((mut a, a_id), (mut b, b_id)) = pair(&server.ws_url(), "r1").await?;
    // Not in that room, or no such room: nothing happens.
    ensure!(!admin.disconnect("r2", &a_id), "a is not in r2");
    ensure!(admin.disconnect_room("nowhere") == 0);
    ensure!(admin.disconnect("r1", &a_id), "a is in r1");
    let frame = a.closed_within(WAIT).await?;
    ensure!(
        close_code(frame.clone()) == Some(CloseCode::Restart),
        "a's close frame: {frame:?}"
    );
    match b.recv().await? {
        ServerMessage::PeerLeft { peer_id } if peer_id == a_id => {}
        other => bail!("b expected peer-left {a_id}, got {other:?}"),
    }
    // The room goes on: a new client joins it and gets ready with b.
    let mut c = Client::connect(&server.ws_url()).await?;
    c.join("r1").await?;
    let peers = b.expect_ready().await?;
    ensure!(peers.contains(&b_id), "ready lists b: {peers:?}");
    ensure!(admin.disconnect_room("r1") == 2);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn admin_restart_closes_everyone_refuses_while_down_then_rooms_start_afresh() -> Result<()> {
    let server = start(Config::default()).await?;
    let admin = server.admin();
    let url = server.ws_url();
    let ((mut a, _), (mut b, _)) = pair(&url, "r1").await?;
    // A connection that never joined a room is closed too.
    let mut lone = Client::connect(&url).await?;
    lone.probe().await?;
    let down = Duration::from_millis(500);
    let restart = {
        let admin = admin.clone();
        tokio::spawn(async move { admin.restart(down).await })
    };
    for c in [&mut a, &mut b, &mut lone] {
        let frame = c.closed_within(WAIT).await?;
        ensure!(
            close_code(frame.clone()) == Some(CloseCode::Restart),
            "close frame: {frame:?}"
        );
    }
    // While down, the WebSocket upgrade is refused with 503.
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            ensure!(resp.status() == 503, "status while down: {}", resp.status());
        }
        Err(e) => bail!("expected HTTP 503 while down, got {e}"),
        Ok(_) => bail!("a connection was accepted while the server was down"),
    }
    let closed = restart.await??;
    ensure!(
        closed == 3,
        "restart closed {closed} connections, expected 3"
    );
    // Up again, with no memory of r1: the first to join is alone, ready comes with the second.
    let ((mut a, a_id), (mut b, b_id)) = pair(&url, "r1").await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    server.shutdown().await;
    Ok(())
}
