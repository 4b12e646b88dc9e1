//! Load test on real sockets: 2000 clients in 1000 rooms relay numbered
//! sequences, next to one slow consumer (never reads) and one flooder.
//!
//! The test process holds both ends of every socket (about 4000 file
//! descriptors), so it raises its own `RLIMIT_NOFILE` soft limit first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use rtc_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use rtc_signaling::{Config, Server};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ROOMS: usize = 1000;
/// Messages each client sends to its partner.
const SEQUENCE: usize = 10;
/// Upper bound for the whole test.
const DEADLINE: Duration = Duration::from_secs(50);
/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server's settings: the defaults.
fn config() -> Config {
    Config::default()
}

async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")??;
    Ok(ws)
}

/// A client whose socket buffers only a few KiB, so the server's outbox
/// fills soon when it does not read.
async fn connect_small_buffers(addr: SocketAddr, url: &str) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket.connect(addr).await?;
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .context("connect timed out")??;
    Ok(ws)
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<()> {
    let text = serde_json::to_string(msg)?;
    tokio::time::timeout(WAIT, ws.send(Message::text(text)))
        .await
        .context("send timed out")?
        .context("send failed")
}

async fn recv(ws: &mut Ws) -> Result<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("receive timed out")?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("unexpected {other:?}"),
        }
    }
}

async fn join(ws: &mut Ws, room: &str) -> Result<String> {
    send(
        ws,
        &ClientMessage::Join {
            room: room.into(),
            capacity: None,
        },
    )
    .await?;
    match recv(ws).await? {
        ServerMessage::Joined { peer_id, .. } => Ok(peer_id),
        other => bail!("expected joined, got {other:?}"),
    }
}

async fn expect_ready(ws: &mut Ws) -> Result<()> {
    loop {
        match recv(ws).await? {
            // The first of a pair hears of the second before ready.
            ServerMessage::PeerJoined { .. } => {}
            ServerMessage::Ready { .. } => return Ok(()),
            other => bail!("expected ready, got {other:?}"),
        }
    }
}

/// One client of a well-behaved pair: sends its numbered sequence to the
/// partner and checks the partner's arrives complete, in order and from the
/// partner of this room only. Returns the socket, still open.
async fn relay_sequence(
    mut ws: Ws,
    room: usize,
    me: usize,
    partner_id: String,
    all_done: Arc<Barrier>,
) -> Result<Ws> {
    for seq in 0..SEQUENCE {
        send(
            &mut ws,
            &ClientMessage::Offer {
                sdp: format!("room {room} client {me} seq {seq}"),
                to: Some(partner_id.clone()),
            },
        )
        .await?;
    }
    let other = 1 - me;
    for seq in 0..SEQUENCE {
        let expected = ServerMessage::Offer {
            sdp: format!("room {room} client {other} seq {seq}"),
            from: partner_id.clone(),
        };
        let got = recv(&mut ws).await?;
        ensure!(
            got == expected,
            "room {room}: expected {expected:?}, got {got:?}"
        );
    }
    // Everyone stays connected until every pair is through.
    tokio::time::timeout(WAIT, all_done.wait())
        .await
        .context("other pairs did not finish")?;
    // Nothing stray arrived meanwhile: the next message is the probe's reply.
    ws.send(Message::text(r#"{"type":"probe"}"#)).await?;
    match recv(&mut ws).await? {
        ServerMessage::Error {
            code: ErrorCode::BadMessage,
            ..
        } => Ok(ws),
        other => bail!("room {room}: stray message {other:?}"),
    }
}

async fn run_pair(url: String, room: usize, all_done: Arc<Barrier>) -> Result<()> {
    let name = format!("load-{room}");
    let mut a = connect(&url).await?;
    let mut b = connect(&url).await?;
    let a_id = join(&mut a, &name).await?;
    let b_id = join(&mut b, &name).await?;
    expect_ready(&mut a).await?;
    expect_ready(&mut b).await?;
    let (ra, rb) = tokio::join!(
        relay_sequence(a, room, 0, b_id, Arc::clone(&all_done)),
        relay_sequence(b, room, 1, a_id, all_done),
    );
    // Both sockets close only once both probes are answered.
    ra?;
    rb?;
    Ok(())
}

/// The slow consumer joins and never reads; its feeder sends 60 kB offers
/// until it sees the consumer leave (kicked for a full outbox).
async fn slow_consumer(addr: SocketAddr, url: String) -> Result<(Duration, usize)> {
    let started = tokio::time::Instant::now();
    let mut slow = connect_small_buffers(addr, &url).await?;
    send(
        &mut slow,
        &ClientMessage::Join {
            room: "slow".into(),
            capacity: None,
        },
    )
    .await?;
    let mut feeder = connect(&url).await?;
    join(&mut feeder, "slow").await?;
    expect_ready(&mut feeder).await?;
    let (mut sink, mut stream) = feeder.split();
    // Large, so that the socket buffers take few of them.
    let sdp = "x".repeat(60_000);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let writer = tokio::spawn(async move {
        // Stops when the server drops the room or the socket.
        let burst = config().rate_limit_burst as usize;
        let pace = Duration::from_secs(1) * 11 / (10 * config().rate_limit_per_second);
        for n in 0..2000 {
            let text = serde_json::to_string(&ClientMessage::Offer {
                sdp: sdp.clone(),
                to: None,
            })?;
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
            counter.fetch_add(1, Ordering::Relaxed);
            // The burst (less the join) at once, then within the rate limit.
            if n + 2 >= burst {
                tokio::time::sleep(pace).await;
            }
        }
        anyhow::Ok(())
    });
    let left = tokio::time::timeout(WAIT, async {
        while let Some(frame) = stream.next().await {
            if let Message::Text(text) = frame? {
                match serde_json::from_str::<ServerMessage>(text.as_str())? {
                    ServerMessage::PeerLeft { .. } => return Ok(()),
                    ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        ..
                    } => {}
                    other => bail!("feeder got {other:?}"),
                }
            }
        }
        bail!("feeder's socket closed")
    })
    .await
    .context("the slow consumer was not disconnected")?;
    let kicked_after = started.elapsed();
    writer.abort();
    let sent = sent.load(Ordering::Relaxed);
    left?;
    // The slow consumer's socket ends (after what had been queued).
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = slow.next().await {
            if let Message::Close(_) = frame {
                break;
            }
        }
    })
    .await
    .context("slow consumer's socket not closed")?;
    Ok((kicked_after, sent))
}

/// The flooder sends as fast as it can; it must see `rate_limited`
/// refusals and then be disconnected with close code 1008, while its
/// partner gets only what passed the limit.
async fn flooder(url: String) -> Result<(usize, usize, usize)> {
    let mut flood = connect(&url).await?;
    let mut partner = connect(&url).await?;
    let flood_id = join(&mut flood, "flood").await?;
    join(&mut partner, "flood").await?;
    expect_ready(&mut flood).await?;
    expect_ready(&mut partner).await?;
    let (mut sink, mut stream) = flood.split();
    let text = serde_json::to_string(&ClientMessage::Offer {
        sdp: "flood".into(),
        to: None,
    })?;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        for _ in 0..20_000 {
            if sink.send(Message::text(text.clone())).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let (refused, close) = tokio::time::timeout(WAIT, async {
        let mut refused = 0usize;
        while let Some(frame) = stream.next().await {
            match frame? {
                Message::Text(text) => {
                    match serde_json::from_str::<ServerMessage>(text.as_str())? {
                        ServerMessage::Error {
                            code: ErrorCode::RateLimited,
                            ..
                        } => refused += 1,
                        other => bail!("flooder got {other:?}"),
                    }
                }
                Message::Close(frame) => {
                    return Ok((refused, frame.map(|f| (f.code, f.reason.to_string()))));
                }
                _ => {}
            }
        }
        Ok((refused, None))
    })
    .await
    .context("the flooder was not disconnected")??;
    let sent = tokio::time::timeout(WAIT, writer).await??;
    ensure!(
        close == Some((CloseCode::Policy, "rate limit exceeded".to_owned())),
        "flooder closed with {close:?}"
    );
    // One reply per run of refused messages: at most one per message that
    // passed, never one per refused message.
    let limit = config().rate_limit_disconnect_after as usize;
    ensure!(refused >= 1, "the flooder saw no rate_limited reply");
    let mut relayed = 0usize;
    loop {
        match recv(&mut partner).await? {
            ServerMessage::Offer { from, .. } if from == flood_id => relayed += 1,
            ServerMessage::PeerLeft { peer_id } if peer_id == flood_id => break,
            other => bail!("flooder's partner got {other:?}"),
        }
    }
    ensure!(
        relayed >= config().rate_limit_burst as usize - 1,
        "{relayed}"
    );
    ensure!(relayed < sent, "{relayed} of {sent} passed");
    ensure!(
        refused <= relayed + 1,
        "{refused} replies for {relayed} passed"
    );
    ensure!(
        sent >= relayed + limit,
        "disconnected after {sent} messages"
    );
    Ok((sent, relayed, refused))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_a_slow_consumer_and_a_flooder() -> Result<()> {
    let limit = rlimit::increase_nofile_limit(16_384)?;
    ensure!(
        limit >= 4 * ROOMS as u64 + 100,
        "RLIMIT_NOFILE only {limit}"
    );
    let server = Server::bind("127.0.0.1:0".parse()?, config()).await?;
    let url = server.ws_url();
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(DEADLINE, async {
        let all_done = Arc::new(Barrier::new(2 * ROOMS));
        let pairs: Vec<_> = (0..ROOMS)
            .map(|room| tokio::spawn(run_pair(url.clone(), room, Arc::clone(&all_done))))
            .collect();
        let slow = tokio::spawn(slow_consumer(server.local_addr(), url.clone()));
        let flood = tokio::spawn(flooder(url.clone()));
        for (room, pair) in pairs.into_iter().enumerate() {
            pair.await?
                .with_context(|| format!("pair in room {room}"))?;
        }
        let pairs_done = started.elapsed();
        let slow_done = slow.await?.context("slow consumer")?;
        let (sent, relayed, refused) = flood.await?.context("flooder")?;
        anyhow::Ok((pairs_done, slow_done, sent, relayed, refused))
    })
    .await
    .context("load test over its deadline")??;
    let (pairs_done, slow_done, sent, relayed, refused) = outcome;
    eprintln!(
        "{} clients in {ROOMS} rooms relayed {SEQUENCE} messages each, done after {pairs_done:?}; \
         slow consumer disconnected after {:?} and {} messages; flooder disconnected after \
         sending {sent} messages, {relayed} passed the rate limit, {refused} rate_limited replies",
        2 * ROOMS,
        slow_done.0,
        slow_done.1,
    );
    server.shutdown().await;
    Ok(())
}
