//! Figures for the README, not assertions: memory per idle client and relay
//! latency under load, measured against the `rtc-signaling` binary in a
//! child process (so the server's RSS holds no client memory).
//!
//! ```text
//! ci/netns-run cargo test -p rtc-signaling --test figures -- --ignored --nocapture
//! ```
#![cfg(target_os = "linux")]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use rtc_signaling::protocol::{ClientMessage, ServerMessage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ROOMS: usize = 1000;
/// Messages each client sends for the latency figure (within the burst).
const SEQUENCE: usize = 20;
const WAIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

async fn recv(ws: &mut Ws) -> Result<ServerMessage> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await? {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("unexpected {other:?}"),
        }
    }
}

async fn join(url: &str, room: &str) -> Result<(Ws, String)> {
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await??;
    let join = ClientMessage::Join {
        room: room.into(),
        capacity: None,
    };
    ws.send(Message::text(serde_json::to_string(&join)?))
        .await?;
    match recv(&mut ws).await? {
        ServerMessage::Joined { peer_id, .. } => Ok((ws, peer_id)),
        other => bail!("expected joined, got {other:?}"),
    }
}

/// Sends `SEQUENCE` offers `gap` apart, stamped with the time since `base`,
/// and returns the latencies of the partner's offers, in microseconds.
async fn stamp_and_measure(
    ws: Ws,
    base: Instant,
    gap: Duration,
    start: Arc<Barrier>,
) -> Result<(Vec<u64>, Ws)> {
    start.wait().await;
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        for _ in 0..SEQUENCE {
            let sdp = base.elapsed().as_micros().to_string();
            let offer = ClientMessage::Offer { sdp, to: None };
            sink.send(Message::text(serde_json::to_string(&offer)?))
                .await?;
            tokio::time::sleep(gap).await;
        }
        anyhow::Ok(sink)
    });
    let mut latencies = Vec::with_capacity(SEQUENCE);
    while latencies.len() < SEQUENCE {
        match tokio::time::timeout(WAIT, stream.next()).await? {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str())? {
                ServerMessage::Offer { sdp, .. } => {
                    let sent: u128 = sdp.parse()?;
                    let now = base.elapsed().as_micros();
                    latencies.push(u64::try_from(now.saturating_sub(sent))?);
                }
                other => bail!("unexpected {other:?}"),
            },
            other => bail!("unexpected {other:?}"),
        }
    }
    let sink = sender.await??;
    let ws = sink.reunite(stream).context("reunite")?;
    Ok((latencies, ws))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn memory_per_idle_client_and_relay_latency() -> Result<()> {
    rlimit::increase_nofile_limit(16_384)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-signaling"))
        .args(["--listen", "127.0.0.1:0", "--idle-timeout", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("pid")?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("stdout")?;
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line)).await??;
    let url = line.trim().to_owned();

    // Warm up (first-use allocations), then measure a baseline.
    let warm: Vec<_> = futures::future::try_join_all((0..10).map(|i| {
        let url = url.clone();
        async move { join(&url, &format!("warm-{i}")).await }
    }))
    .await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;

    let mut joined = Vec::with_capacity(2 * ROOMS);
    for room in 0..ROOMS {
        for _ in 0..2 {
            joined.push(join(&url, &format!("room-{room}")).await?);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid)?;
    let per_client = (idle.saturating_sub(before)) as f64 * 1024.0 / (2 * ROOMS) as f64;
    println!(
        "server RSS {before} KiB before, {idle} KiB with {} idle clients in {ROOMS} rooms: \
         {:.1} KB ({:.1} KiB) per idle client",
        2 * ROOMS,
        per_client / 1000.0,
        per_client / 1024.0,
    );

    let mut clients: Vec<Ws> = Vec::new();
    for (mut ws, _) in joined {
        loop {
            match recv(&mut ws).await? {
                // The first of a pair hears of the second before ready.
                ServerMessage::PeerJoined { .. } => {}
                ServerMessage::Ready { .. } => break,
                other => bail!("expected ready, got {other:?}"),
            }
        }
        clients.push(ws);
    }
    for gap_ms in [200, 20] {
        let gap = Duration::from_millis(gap_ms);
        let base = Instant::now();
        let start = Arc::new(Barrier::new(2 * ROOMS));
        let tasks: Vec<_> = clients
            .drain(..)
            .map(|ws| tokio::spawn(stamp_and_measure(ws, base, gap, Arc::clone(&start))))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            let (measured, ws) = task.await??;
            latencies.extend(measured);
            clients.push(ws);
        }
        latencies.sort_unstable();
        let rate = 2 * ROOMS as u64 * 1000 / gap_ms;
        let busy = rss_kib(pid)?;
        println!(
            "relay latency over {} messages ({} clients each sending {SEQUENCE} offers {gap_ms} ms \
             apart, about {rate} messages/s in all): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             server RSS then {busy} KiB",
            latencies.len(),
            2 * ROOMS,
            percentile(&latencies, 0.50) as f64 / 1000.0,
            percentile(&latencies, 0.99) as f64 / 1000.0,
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        );
        // Let the rate limit's bucket refill before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    child.kill().await?;
    Ok(())
}
