//! The harness's overhead baseline: the same bot↔bot connect as `scenarios/bot-bot.toml`, done
//! by a minimal webrtc-rs program with no harness (no signaling server, no scenario engine, no
//! timeline). Offer, answer and candidates are handed over in-process.
//!
//! It measures what the harness calls `setup_ms` for the answerer: from the offerer's
//! createOffer call to the answerer's connectionState `connected`, in ms, and prints the
//! median over `--repeat` runs.
//!
//! ```text
//! cargo run -p rtc-harness --example bare_bot_pair -- --repeat 20 [--tuned]
//! ```
//! `--tuned` sets the same timers as `scenarios/tuned/`: a 20 ms check interval and no
//! peer-reflexive acceptance wait.

use clap::Parser;
use rtc::ice::mdns::MulticastDnsMode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState, SettingEngineBuilder,
};

#[derive(Parser)]
struct Args {
    /// Number of connects.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// 20 ms check interval and no peer-reflexive acceptance wait.
    #[arg(long)]
    tuned: bool,
}

struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    connected: mpsc::UnboundedSender<Instant>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.candidates.send(c);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(Instant::now());
        }
    }
}

type Peer = (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    mpsc::UnboundedReceiver<Instant>,
);

async fn peer(tuned: bool) -> anyhow::Result<Peer> {
    let (ctx, crx) = mpsc::unbounded_channel();
    let (stx, srx) = mpsc::unbounded_channel();
    let mut se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true);
    if tuned {
        se = se
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO));
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se.build())
        .with_handler(Arc::new(Handler {
            candidates: ctx,
            connected: stx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await?;
    Ok((Arc::new(pc), crx, srx))
}

async fn once(tuned: bool) -> anyhow::Result<f64> {
    let (a, mut a_cands, _a_conn) = peer(tuned).await?;
    let (b, mut b_cands, mut b_conn) = peer(tuned).await?;
    let _dc = a.create_data_channel("chat", None).await?;
    let t0 = Instant::now();
    let offer = a.create_offer(None).await?;
    a.set_local_description(offer.clone()).await?;
    b.set_remote_description(offer).await?;
    let answer = b.create_answer(None).await?;
    b.set_local_description(answer.clone()).await?;
    a.set_remote_description(answer).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let connected = loop {
        tokio::select! {
            Some(c) = a_cands.recv() => b.add_ice_candidate(c).await?,
            Some(c) = b_cands.recv() => a.add_ice_candidate(c).await?,
            Some(t) = b_conn.recv() => break t,
            _ = tokio::time::sleep_until(deadline) => anyhow::bail!("not connected within 10 s"),
        }
    };
    let ms = connected.duration_since(t0).as_secs_f64() * 1000.0;
    a.close().await?;
    b.close().await?;
    Ok(ms)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut v = Vec::new();
    for _ in 0..args.repeat {
        v.push(once(args.tuned).await?);
    }
    let s = rtc_harness::metrics::summarize(&v).ok_or_else(|| anyhow::anyhow!("no samples"))?;
    println!(
        "bare webrtc-rs bot pair ({}): setup_ms n={} min={:.1} median={:.1} p95={:.1} max={:.1}",
        if args.tuned { "tuned" } else { "defaults" },
        s.n,
        s.min,
        s.median,
        s.p95,
        s.max
    );
    Ok(())
}
