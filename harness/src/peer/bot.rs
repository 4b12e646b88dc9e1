//! `bot`: an in-process webrtc-rs (`webrtc` 0.21) peer.
//!
//! Sockets are bound to an explicit address (127.0.0.1 by default), never a wildcard, so a bot
//! never offers the machine's outside interface as a candidate. mDNS is disabled: it needs a
//! multicast route that a private network namespace does not have, and host candidates are
//! plain IPs anyway. In the network lab a bot binds its lab address, and webrtc-rs runs on a
//! runtime whose thread is inside the peer's namespace (see [`crate::lab::netns`]); its
//! signaling connection stays in the harness's namespace. A bot negotiates through the
//! [`super::signaling`] traits only: `rtc-signaling` at the request's `signaling_url` unless
//! its launcher was given another connector ([`BotLauncher::with_signaling`]). The ICE timers of the scenario's peer table map onto webrtc-rs's
//! `SettingEngine`; unset ones keep the webrtc-rs defaults.

use super::media::{self, MediaCounters};
use super::signaling::{
    self, IceCandidateInit, Outgoing, Signal, SignalingConnector, SignalingEvent, SignalingSession,
};
use super::{
    ConnectRequest, EventSink, Launcher, Peer, PeerError, PeerInfo, Role, SendRequest,
    candidate_type,
};
use crate::logs::runtime::{KillSwitch, SpanRuntime};
use crate::payload;
use crate::scenario::{BotTimers, PeerPlan};
use crate::timeline::{EventKind, StateMachine};
use async_trait::async_trait;
use rtc::ice::mdns::MulticastDnsMode;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};
use webrtc::peer_connection::Registry;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType, RTCIceConnectionState,
    RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceErrorEvent,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, RTCSignalingState,
    RTCStatsReportEntry, SettingEngineBuilder, StatsSelector, register_default_interceptors,
};

/// webrtc-rs version this harness is built against.
pub const WEBRTC_RS_VERSION: &str = "0.21.1";

/// How long a non-trickle peer waits for gathering to complete before sending its SDP.
const GATHERING_DEADLINE: Duration = Duration::from_secs(10);

/// Starts bots.
#[derive(Clone)]
pub struct BotLauncher {
    bind_ip: IpAddr,
    /// Overrides the connector chosen from each request ([`signaling::connector_for`]).
    signaling: Option<Arc<dyn SignalingConnector>>,
}

impl std::fmt::Debug for BotLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotLauncher")
            .field("bind_ip", &self.bind_ip)
            .field("signaling", &self.signaling.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl BotLauncher {
    /// Bots binding their UDP sockets to `bind_ip`.
    pub fn new(bind_ip: IpAddr) -> Self {
        Self {
            bind_ip,
            signaling: None,
        }
    }

    /// Bots that join every room through `connector` instead of the one each
    /// [`ConnectRequest`] names (its `signaling_url` is then ignored).
    pub fn with_signaling(mut self, connector: Arc<dyn SignalingConnector>) -> Self {
        self.signaling = Some(connector);
        self
    }
}

impl Default for BotLauncher {
    fn default() -> Self {
        Self::new(IpAddr::from([127, 0, 0, 1]))
    }
}

#[async_trait]
impl Launcher for BotLauncher {
    fn check(&self) -> Result<(), PeerError> {
        Ok(())
    }

    async fn launch(
        &self,
        plan: &PeerPlan,
        sink: EventSink,
        lab: Option<&crate::lab::LabHost>,
    ) -> Result<Box<dyn Peer>, PeerError> {
        // In the lab: the peer's own address, and sockets opened inside its namespace.
        let (bind_ip, runtime) = match lab {
            Some(h) => (
                IpAddr::V4(h.ip),
                Some(h.ns.webrtc_runtime().map_err(|e| {
                    PeerError::failed(format!("runtime in namespace {}: {e}", h.ns.name()))
                })?),
            ),
            None => (self.bind_ip, None),
        };
        Ok(Box::new(Bot {
            id: plan.id.clone(),
            timers: plan.timers,
            bind_ip,
            runtime,
            sink,
            signaling: self.signaling.clone(),
            connections: Mutex::new(HashMap::new()),
            kill: KillSwitch::default(),
        }))
    }
}

struct Bot {
    id: String,
    timers: BotTimers,
    bind_ip: IpAddr,
    /// The lab namespace's runtime (webrtc-rs binds its sockets on it), if in the lab.
    runtime: Option<Arc<dyn webrtc::runtime::Runtime>>,
    sink: EventSink,
    /// The launcher's connector override, if any.
    signaling: Option<Arc<dyn SignalingConnector>>,
    connections: Mutex<HashMap<String, Arc<BotConnection>>>,
    /// Aborts every task of every connection (the `kill` step).
    kill: KillSwitch,
}

struct BotConnection {
    pc: Arc<dyn PeerConnection>,
    /// What arrived on the remote tracks.
    received: Arc<Mutex<MediaCounters>>,
    /// Asks the negotiation task to renegotiate; it answers once the new offer is sent.
    renegotiate: mpsc::UnboundedSender<(Renegotiation, oneshot::Sender<Result<(), String>>)>,
    /// Next sequence number to send, per channel (a second `send` continues the sequence).
    next_seq: Mutex<HashMap<String, u64>>,
    channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl BotConnection {
    /// Forgets the connection's data channels. The connection's event handler holds the same
    /// map, and each channel holds the connection's internals: left filled, that is a
    /// reference cycle, and a closed connection's memory (its SCTP association, DTLS state,
    /// buffers) is never freed.
    fn forget_channels(&self) {
        if let Ok(mut c) = self.channels.lock() {
            c.clear();
        }
    }

    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
        {
            t.abort();
        }
    }

    /// Aborts every task of the connection but the one calling (the negotiation task closing
    /// the connection after `peer-left`).
    fn abort_other_tasks(&self) {
        let me = tokio::task::try_id();
        if let Ok(mut v) = self.tasks.lock() {
            v.retain(|t| {
                if Some(t.id()) == me {
                    return true;
                }
                t.abort();
                false
            });
        }
    }
}

/// Forwards webrtc-rs callbacks: each one only stamps the time and hands off, because the
/// callbacks are awaited on the connection's driver loop.
struct Handler {
    sink: EventSink,
    connection: String,
    /// Local candidates (`None` = gathering complete) for the signaling task.
    candidates: mpsc::UnboundedSender<Option<RTCIceCandidateInit>>,
    gathering_complete: watch::Sender<bool>,
    channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>>,
    /// Becomes true at connectionState `connected` (media starts flowing then).
    connected: watch::Sender<bool>,
    received: Arc<Mutex<MediaCounters>>,
}

impl Handler {
    fn state(&self, machine: StateMachine, state: String) {
        self.sink
            .emit(&self.connection, EventKind::State { machine, state });
    }
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let t = self.sink.clock().now_unix_ms();
        if let Ok(init) = event.candidate.to_json() {
            self.sink.emit_at(
                t,
                &self.connection,
                EventKind::LocalCandidate {
                    candidate_type: candidate_type(&init.candidate),
                    candidate: init.candidate.clone(),
                },
            );
            let _ = self.candidates.send(Some(init));
        }
    }

    async fn on_ice_candidate_error(&self, event: RTCPeerConnectionIceErrorEvent) {
        self.sink.emit(
            &self.connection,
            EventKind::IceCandidateError {
                url: event.url.clone(),
                error_code: event.error_code,
                error_text: event.error_text.clone(),
            },
        );
    }

    async fn on_signaling_state_change(&self, state: RTCSignalingState) {
        self.state(StateMachine::Signaling, state.to_string());
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        self.state(StateMachine::IceConnection, state.to_string());
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.state(StateMachine::IceGathering, state.to_string());
        if state == RTCIceGatheringState::Complete {
            let _ = self.candidates.send(None);
            let _ = self.gathering_complete.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state(StateMachine::Connection, state.to_string());
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        let sink = self.sink.clone();
        let connection = self.connection.clone();
        let received = self.received.clone();
        tokio::spawn(
            async move {
                let kind = track.kind().await.to_string().to_lowercase();
                sink.emit(&connection, EventKind::TrackReceived { kind });
                let first = {
                    let sink = sink.clone();
                    let connection = connection.clone();
                    move || sink.emit(&connection, EventKind::FirstVideoFrame)
                };
                media::count(track, received, first).await;
            }
            .in_current_span(),
        );
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let sink = self.sink.clone();
        let connection = self.connection.clone();
        let channels = self.channels.clone();
        tokio::spawn(
            async move {
                let label = dc.label().await.unwrap_or_default();
                if let Ok(mut c) = channels.lock() {
                    c.insert(label.clone(), dc.clone());
                }
                read_channel(dc, label, sink, connection).await;
            }
            .in_current_span(),
        );
    }
}

/// Reports a channel's opening and checks every message it delivers.
async fn read_channel(
    dc: Arc<dyn DataChannel>,
    label: String,
    sink: EventSink,
    connection: String,
) {
    let mut opened = false;
    let mut open = |sink: &EventSink| {
        if !std::mem::replace(&mut opened, true) {
            sink.emit(
                &connection,
                EventKind::DataChannelOpen {
                    label: label.clone(),
                },
            );
        }
    };
    // A channel announced by the remote side may already be open.
    if matches!(dc.ready_state().await, Ok(RTCDataChannelState::Open)) {
        open(&sink);
    }
    let mut receiver = payload::Receiver::default();
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => open(&sink),
            DataChannelEvent::OnMessage(msg) => {
                let t = sink.clock().now_unix_ms();
                let (seq, intact, in_order) = receiver.accept(&msg.data);
                sink.emit_at(
                    t,
                    &connection,
                    EventKind::MessageReceived {
                        label: label.clone(),
                        seq,
                        intact,
                        in_order,
                    },
                );
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
}

impl Bot {
    fn setting_engine(&self) -> webrtc::peer_connection::SettingEngine {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        let t = &self.timers;
        SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(self.bind_ip.is_loopback())
            .with_ice_connection_attempts(ms(t.ice_check_interval_ms), None)
            .with_host_acceptance_min_wait(ms(t.host_acceptance_wait_ms))
            .with_srflx_acceptance_min_wait(ms(t.srflx_acceptance_wait_ms))
            .with_prflx_acceptance_min_wait(ms(t.prflx_acceptance_wait_ms))
            .with_relay_acceptance_min_wait(ms(t.relay_acceptance_wait_ms))
            .with_ice_timeouts(
                ms(t.ice_disconnected_timeout_ms),
                ms(t.ice_failed_timeout_ms),
                None,
            )
            .build()
    }
}

#[async_trait]
impl Peer for Bot {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            kind: "bot".into(),
            product: format!("webrtc-rs {WEBRTC_RS_VERSION}"),
            driver: None,
            clock_error_ms: 0.0,
            reused_browser: None,
            driver_log: None,
        }
    }

    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError> {
        let (cand_tx, cand_rx) = mpsc::unbounded_channel();
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let (connected_tx, mut connected_rx) = watch::channel(false);
        let channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>> = Arc::default();
        let received: Arc<Mutex<MediaCounters>> = Arc::default();
        let handler = Arc::new(Handler {
            sink: self.sink.clone(),
            connection: req.connection.clone(),
            candidates: cand_tx,
            gathering_complete: gathered_tx,
            channels: channels.clone(),
            connected: connected_tx,
            received: received.clone(),
        });
        // Creation: the four machines start at their W3C initial values.
        for m in StateMachine::ALL {
            handler.state(m, m.initial().to_string());
        }
        let servers = req
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let policy = match req.ice_transport_policy {
            crate::scenario::IcePolicy::All => RTCIceTransportPolicy::All,
            crate::scenario::IcePolicy::Relay => RTCIceTransportPolicy::Relay,
        };
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(servers)
            .with_ice_transport_policy(policy)
            .build();
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(self.setting_engine())
            .with_handler(handler)
            .with_udp_addrs(vec![format!("{}:0", self.bind_ip)]);
        // Every task webrtc-rs spawns for this connection runs in the peer's span (the
        // current one: `connect` runs in it), so its log lines name this peer.
        let runtime = match &self.runtime {
            Some(rt) => rt.clone(),
            None => webrtc::runtime::default_runtime()
                .ok_or_else(|| PeerError::failed("webrtc-rs has no async runtime"))?,
        };
        builder = builder.with_runtime(Arc::new(
            SpanRuntime::new(runtime, tracing::Span::current()).with_kill_switch(self.kill.clone()),
        ));
        if !req.media.is_empty() {
            // Codecs and the default interceptors (RTCP reports, NACK) only when media flows,
            // so data-channel-only setups are measured as before.
            let mut engine = MediaEngine::default();
            engine
                .register_default_codecs()
                .map_err(|e| PeerError::failed(format!("registering codecs: {e}")))?;
            let registry = register_default_interceptors(Registry::new(), &mut engine)
                .map_err(|e| PeerError::failed(format!("registering interceptors: {e}")))?;
            builder = builder
                .with_media_engine(engine)
                .with_interceptor_registry(registry);
        }
        let pc = builder
            .build()
            .await
            .map_err(|e| PeerError::failed(format!("building the peer connection: {e}")))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let (renegotiate_tx, renegotiate_rx) = mpsc::unbounded_channel();
        let conn = Arc::new(BotConnection {
            pc: pc.clone(),
            received,
            renegotiate: renegotiate_tx,
            next_seq: Mutex::new(HashMap::new()),
            channels: channels.clone(),
            tasks: Mutex::new(Vec::new()),
        });
        // Registered at once: whatever fails below, `shutdown` closes this peer connection
        // (an unclosed one keeps its driver, and in the lab its namespace runtime, alive).
        self.connections
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .insert(req.connection.clone(), conn.clone());
        let add_task = |t: tokio::task::JoinHandle<()>| {
            if let Ok(mut v) = conn.tasks.lock() {
                v.push(t);
            }
        };

        let outgoing = media::set_up(&pc, &req.media, req.direction, req.role, &self.id)
            .await
            .map_err(PeerError::failed)?;
        for out in outgoing {
            let sink = self.sink.clone();
            let conn = req.connection.clone();
            let mut connected = connected_rx.clone();
            add_task(tokio::spawn(
                async move {
                    // The negotiated payload type is known once connected.
                    if connected.wait_for(|c| *c).await.is_err() {
                        return;
                    }
                    if let Err(e) = media::stream(out).await {
                        sink.emit(&conn, EventKind::Error { message: e });
                    }
                }
                .in_current_span(),
            ));
        }
        let _ = connected_rx.borrow_and_update();
        if req.role == Role::Offerer
            && let Some(label) = &req.data_channel
        {
            let dc = pc
                .create_data_channel(label, None)
                .await
                .map_err(|e| PeerError::failed(format!("createDataChannel: {e}")))?;
            channels
                .lock()
                .map_err(|_| PeerError::failed("poisoned"))?
                .insert(label.clone(), dc.clone());
            add_task(tokio::spawn(
                read_channel(dc, label.clone(), self.sink.clone(), req.connection.clone())
                    .in_current_span(),
            ));
        }

        let connector: Arc<dyn SignalingConnector> = match &self.signaling {
            Some(connector) => connector.clone(),
            None => Arc::from(signaling::connector_for(req)),
        };
        let session = connector.join(&req.room).await.map_err(PeerError::failed)?;
        add_task(tokio::spawn(
            negotiate(
                (pc.clone(), Arc::downgrade(&conn)),
                (connector, session),
                cand_rx,
                gathered_rx,
                renegotiate_rx,
                req.clone(),
                self.sink.clone(),
            )
            .in_current_span(),
        ));
        Ok(())
    }

    async fn send(&self, req: &SendRequest) -> Result<(), PeerError> {
        let conn = self.connection(&req.connection)?;
        let dc = conn
            .channels
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .get(&req.channel)
            .cloned()
            .ok_or_else(|| PeerError::failed(format!("no data channel {:?}", req.channel)))?;
        let first = conn
            .next_seq
            .lock()
            .map(|mut n| {
                let e = n.entry(req.channel.clone()).or_insert(0);
                let first = *e;
                *e += req.messages;
                first
            })
            .map_err(|_| PeerError::failed("poisoned"))?;
        for seq in first..first + req.messages {
            let msg = payload::encode(seq, req.bytes as usize);
            dc.send_text(&msg)
                .await
                .map_err(|e| PeerError::failed(format!("send #{seq}: {e}")))?;
        }
        self.sink.emit(
            &req.connection,
            EventKind::MessagesSent {
                label: req.channel.clone(),
                count: req.messages,
            },
        );
        Ok(())
    }

    async fn selected_pair(&self, connection: &str) -> Result<Option<(String, String)>, PeerError> {
        let conn = self.connection(connection)?;
        if let Some(pair) = self.transport_selected_pair(&conn).await {
            return Ok(Some(pair));
        }
        let report = conn
            .pc
            .get_stats(std::time::Instant::now(), StatsSelector::None)
            .await;
        // The transport's selectedCandidatePairId when webrtc-rs fills it, else the nominated
        // pair (webrtc-stats RTCIceCandidatePairStats.nominated).
        let by_id = report
            .transport()
            .map(|t| t.selected_candidate_pair_id.clone())
            .filter(|id| !id.is_empty())
            .and_then(|id| match report.get(&id) {
                Some(RTCStatsReportEntry::IceCandidatePair(p)) => Some(p),
                _ => None,
            });
        let Some(pair) = by_id.or_else(|| report.candidate_pairs().find(|p| p.nominated)) else {
            return Ok(None);
        };
        // webrtc-rs 0.21 names the candidates' stats objects `RTCLocalIceCandidate_<id>` and
        // `RTCRemoteIceCandidate_<id>` while the pair's localCandidateId/remoteCandidateId hold
        // the bare `<id>`: accept both.
        let kind = |id: &str, prefix: &str| {
            let entry = report
                .get(id)
                .or_else(|| report.get(&format!("{prefix}_{id}")));
            match entry {
                Some(RTCStatsReportEntry::LocalCandidate(c))
                | Some(RTCStatsReportEntry::RemoteCandidate(c)) => {
                    Some(c.candidate_type.to_string())
                }
                _ => None,
            }
        };
        // A remote candidate missing from the remote-candidate stats was learned from a check
        // (webrtc-rs lists only signalled ones): peer-reflexive, RFC 8445 section 7.3.1.3.
        Ok(
            kind(&pair.local_candidate_id, "RTCLocalIceCandidate").map(|local| {
                let remote = kind(&pair.remote_candidate_id, "RTCRemoteIceCandidate")
                    .unwrap_or_else(|| RTCIceCandidateType::Prflx.to_string());
                (local, remote)
            }),
        )
    }

    async fn stats(&self, connection: &str) -> Result<Vec<serde_json::Value>, PeerError> {
        let conn = self.connection(connection)?;
        let report = conn
            .pc
            .get_stats(std::time::Instant::now(), StatsSelector::None)
            .await;
        // webrtc-rs serializes its stats with the webrtc-stats names already.
        let value = |e: &RTCStatsReportEntry| -> Option<serde_json::Value> {
            match e {
                RTCStatsReportEntry::Transport(s) => serde_json::to_value(s).ok(),
                RTCStatsReportEntry::IceCandidatePair(s) => serde_json::to_value(s).ok(),
                RTCStatsReportEntry::LocalCandidate(s)
                | RTCStatsReportEntry::RemoteCandidate(s) => serde_json::to_value(s).ok(),
                RTCStatsReportEntry::InboundRtp(s) => serde_json::to_value(s).ok(),
                RTCStatsReportEntry::OutboundRtp(s) => serde_json::to_value(s).ok(),
                RTCStatsReportEntry::DataChannel(s) => serde_json::to_value(s).ok(),
                _ => None,
            }
        };
        Ok(report.iter().filter_map(value).collect())
    }

    async fn media_counters(&self, connection: &str) -> Result<MediaCounters, PeerError> {
        // What arrived before a kill still counts: no kill check here.
        let conn = self
            .connections
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .get(connection)
            .cloned()
            .ok_or_else(|| PeerError::failed(format!("no connection {connection:?}")))?;
        conn.received
            .lock()
            .map(|c| *c)
            .map_err(|_| PeerError::failed("poisoned"))
    }

    async fn add_track(
        &self,
        connection: &str,
        kind: crate::scenario::MediaKind,
    ) -> Result<(), PeerError> {
        self.renegotiate(connection, Renegotiation::AddTrack(kind), "add_track")
            .await
    }

    async fn restart_ice(&self, connection: &str) -> Result<(), PeerError> {
        self.renegotiate(connection, Renegotiation::RestartIce, "restart_ice")
            .await
    }

    async fn close(&self, connection: &str) -> Result<(), PeerError> {
        let conn = self.connection(connection)?;
        conn.abort_tasks();
        self.sink.emit(connection, EventKind::Closed);
        conn.pc
            .close()
            .await
            .map_err(|e| PeerError::failed(format!("close: {e}")))?;
        // close() sets these without firing events (W3C webrtc-pc §4.4.1.6, close()).
        for m in [
            StateMachine::Signaling,
            StateMachine::IceConnection,
            StateMachine::Connection,
        ] {
            self.sink.emit(
                connection,
                EventKind::State {
                    machine: m,
                    state: "closed".into(),
                },
            );
        }
        Ok(())
    }

    async fn kill(&self) -> Result<(), PeerError> {
        self.sink.emit("", EventKind::Killed);
        // Driver loops and sockets first, so nothing more is sent; then the bot's own tasks
        // (negotiation, whose drop closes the signaling socket; channel readers).
        self.kill.kill();
        let all: Vec<Arc<BotConnection>> = self
            .connections
            .lock()
            .map(|c| c.values().cloned().collect())
            .map_err(|_| PeerError::failed("poisoned"))?;
        for conn in all {
            conn.abort_tasks();
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let all: Vec<Arc<BotConnection>> = self
            .connections
            .lock()
            .map(|mut c| c.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        let killed = self.kill.is_killed();
        for conn in all {
            conn.abort_tasks();
            if !killed {
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.pc.close()).await;
            }
            conn.forget_channels();
        }
    }
}

/// What a renegotiation is for.
enum Renegotiation {
    RestartIce,
    AddTrack(crate::scenario::MediaKind),
}

impl Bot {
    async fn renegotiate(
        &self,
        connection: &str,
        what: Renegotiation,
        name: &str,
    ) -> Result<(), PeerError> {
        let conn = self.connection(connection)?;
        let (tx, rx) = oneshot::channel();
        conn.renegotiate
            .send((what, tx))
            .map_err(|_| PeerError::failed(format!("{name}: negotiation task gone")))?;
        rx.await
            .map_err(|_| PeerError::failed(format!("{name}: negotiation task gone")))?
            .map_err(|e| PeerError::failed(format!("{name}: {e}")))
    }

    /// The ICE transport's selected pair (W3C `RTCIceTransport.getSelectedCandidatePair()`),
    /// reached through the SCTP transport, so only on connections with a data channel.
    ///
    /// A remote candidate learned from a check is peer-reflexive (RFC 8445 section 7.3.1.3).
    /// When the same transport address is signalled later, libwebrtc replaces the prflx
    /// candidate with the signalled one and reports its type; webrtc-rs keeps prflx. To compare
    /// the stacks on the path and not on which of signaling and the first check came first,
    /// this reports the signalled candidate's type when one has the prflx candidate's protocol,
    /// address and port.
    async fn transport_selected_pair(&self, conn: &BotConnection) -> Option<(String, String)> {
        let ice = conn.pc.sctp().await?.transport().ice_transport();
        let pair = ice.get_selected_candidate_pair().await.ok()??;
        let (local, remote) = (pair.local(), pair.remote());
        let mut remote_type = remote.typ;
        if remote_type == RTCIceCandidateType::Prflx {
            let signalled = ice.get_remote_candidates().await.unwrap_or_default();
            if let Some(c) = signalled.iter().find(|c| {
                c.typ != RTCIceCandidateType::Prflx
                    && c.protocol == remote.protocol
                    && c.address == remote.address
                    && c.port == remote.port
            }) {
                remote_type = c.typ;
            }
        }
        Some((local.typ.to_string(), remote_type.to_string()))
    }

    fn connection(&self, id: &str) -> Result<Arc<BotConnection>, PeerError> {
        if self.kill.is_killed() {
            return Err(PeerError::failed(format!(
                "{}: killed by a kill step",
                self.id
            )));
        }
        self.connections
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .get(id)
            .cloned()
            .ok_or_else(|| PeerError::failed(format!("no connection {id:?}")))
    }
}

/// The offer/answer exchange of one connection, driven by signaling events. It sees only the
/// [`signaling`] traits, never a protocol's own messages.
async fn negotiate(
    // The peer connection, and (weak: it holds this task) the harness's record of it.
    (pc, this): (Arc<dyn PeerConnection>, std::sync::Weak<BotConnection>),
    // The connector (to rejoin after the socket closes) and the joined session.
    (connector, mut session): (Arc<dyn SignalingConnector>, Box<dyn SignalingSession>),
    mut local_candidates: mpsc::UnboundedReceiver<Option<RTCIceCandidateInit>>,
    gathered: watch::Receiver<bool>,
    mut renegotiations: mpsc::UnboundedReceiver<(
        Renegotiation,
        oneshot::Sender<Result<(), String>>,
    )>,
    req: ConnectRequest,
    sink: EventSink,
) {
    // Tracks added mid-call start streaming once their answer is applied (their payload type
    // is negotiated then); the set aborts them when this task ends.
    let mut unstarted: Vec<media::Outgoing> = Vec::new();
    let mut streams = tokio::task::JoinSet::new();
    let conn = req.connection.clone();
    let report = |what: String| sink.emit(&conn, EventKind::Error { message: what });
    let mut pending_remote: Vec<RTCIceCandidateInit> = Vec::new();
    let mut have_remote = false;
    // The first offer goes out on the first `ready`; a `ready` after a signaling reconnect
    // (the room complete again) does not renegotiate by itself.
    let mut offered = false;
    loop {
        tokio::select! {
            Some((what, done)) = renegotiations.recv() => {
                let prepared = match what {
                    // restartIce(): the next offer carries fresh ICE credentials (W3C §4.4.1.6).
                    Renegotiation::RestartIce => {
                        pc.restart_ice().await.map_err(|e| format!("restartIce: {e}"))
                    }
                    Renegotiation::AddTrack(kind) => {
                        media::add_tracks(&pc, &[kind], sink.peer()).await.map(|mut t| {
                            unstarted.append(&mut t);
                        })
                    }
                };
                let r = match prepared {
                    Ok(()) => {
                        sink.emit(&conn, EventKind::CreateOffer);
                        local_sdp(&pc, true, req.trickle, gathered.clone()).await.inspect(|sdp| described(&sink, &conn, "setLocalDescription", "offer", sdp)).and_then(|sdp| {
                            send(&mut *session, Signal::Offer { sdp })
                        })
                    }
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            local = local_candidates.recv() => {
                let Some(local) = local else { continue };
                if req.trickle {
                    let signal = match local {
                        Some(c) => Signal::Candidate(neutral_candidate(c)),
                        None => Signal::EndOfCandidates,
                    };
                    if let Err(e) = send(&mut *session, signal) {
                        report(e);
                    }
                }
            }
            event = session.recv() => {
                let Some(event) = event else {
                    // The socket closed under us (a server restart, a dropped connection):
                    // rejoin the room as apps do; what queued meanwhile is sent after.
                    sink.emit(&conn, EventKind::SignalingClosed);
                    match rejoin(&*connector, &req.room).await {
                        Ok(s) => session = s,
                        Err(e) => {
                            report(format!("signaling reconnect failed: {e}"));
                            return;
                        }
                    }
                    continue;
                };
                let result = match event {
                    SignalingEvent::Joined { peer_id, .. } => {
                        sink.emit(&conn, EventKind::SignalingJoined { peer_id: peer_id.unwrap_or_default() });
                        Ok(())
                    }
                    SignalingEvent::Ready { .. } if req.role == Role::Offerer && !offered => {
                        offered = true;
                        sink.emit(&conn, EventKind::CreateOffer);
                        local_sdp(&pc, true, req.trickle, gathered.clone()).await.inspect(|sdp| described(&sink, &conn, "setLocalDescription", "offer", sdp)).and_then(|sdp| {
                            send(&mut *session, Signal::Offer { sdp })
                        })
                    }
                    SignalingEvent::Signal { signal: Signal::Offer { sdp }, .. } => {
                        let remote_sdp = sdp.clone();
                        match apply_remote(&pc, RTCSessionDescription::offer(sdp)).await {
                            Ok(()) => {
                                described(&sink, &conn, "setRemoteDescription", "offer", &remote_sdp);
                                sink.emit(&conn, EventKind::OfferApplied);
                                have_remote = true;
                                // An inactive answerer turns the offered transceivers off.
                                if req.direction == crate::scenario::Direction::Inactive
                                    && let Err(e) = media::set_all_directions(
                                        &pc,
                                        crate::scenario::Direction::Inactive,
                                    )
                                    .await
                                {
                                    report(e);
                                }
                                if let Err(e) = add_pending(&pc, &mut pending_remote).await {
                                    report(e);
                                }
                                local_sdp(&pc, false, req.trickle, gathered.clone()).await.inspect(|sdp| described(&sink, &conn, "setLocalDescription", "answer", sdp)).and_then(|sdp| {
                                    send(&mut *session, Signal::Answer { sdp })
                                })
                            }
                            Err(e) => Err(e),
                        }
                    }
                    SignalingEvent::Signal { signal: Signal::Answer { sdp }, .. } => {
                        let remote_sdp = sdp.clone();
                        match apply_remote(&pc, RTCSessionDescription::answer(sdp)).await {
                            Ok(()) => {
                                described(&sink, &conn, "setRemoteDescription", "answer", &remote_sdp);
                                sink.emit(&conn, EventKind::AnswerApplied);
                                have_remote = true;
                                for out in unstarted.drain(..) {
                                    let sink = sink.clone();
                                    let conn = conn.clone();
                                    streams.spawn(async move {
                                        if let Err(e) = media::stream(out).await {
                                            sink.emit(&conn, EventKind::Error { message: e });
                                        }
                                    }.in_current_span());
                                }
                                add_pending(&pc, &mut pending_remote).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    SignalingEvent::Signal { signal: Signal::Candidate(c), .. } => {
                        let init = webrtc_candidate(c);
                        sink.emit(&conn, EventKind::RemoteCandidate {
                            candidate_type: candidate_type(&init.candidate),
                            candidate: init.candidate.clone(),
                        });
                        if have_remote {
                            pc.add_ice_candidate(init).await.map_err(|e| format!("addIceCandidate: {e}"))
                        } else {
                            pending_remote.push(init);
                            Ok(())
                        }
                    }
                    SignalingEvent::PeerLeft { .. } if req.close_on_peer_left => {
                        // A mesh call's app closes the connection of a peer that left the call
                        // and keeps the rest: its media and channel tasks stop, close() here,
                        // and the task ends with it.
                        if let Some(c) = this.upgrade() {
                            c.abort_other_tasks();
                        }
                        sink.emit(&conn, EventKind::Closed);
                        if let Err(e) = pc.close().await {
                            report(format!("close after peer-left: {e}"));
                        }
                        for m in [StateMachine::Signaling, StateMachine::IceConnection, StateMachine::Connection] {
                            sink.emit(&conn, EventKind::State { machine: m, state: "closed".into() });
                        }
                        return;
                    }
                    SignalingEvent::Error(e) => Err(e.to_string()),
                    // The remote's end-of-candidates, joined and the other room events need
                    // nothing from a peer of a two-peer room.
                    SignalingEvent::Signal { signal: Signal::EndOfCandidates, .. }
                    | SignalingEvent::Ready { .. }
                    | SignalingEvent::PeerJoined { .. }
                    | SignalingEvent::PeerLeft { .. } => Ok(()),
                };
                if let Err(e) = result {
                    report(e);
                }
            }
        }
    }
}

/// Sends a signal to the room's other peer.
/// Joins `room` again after the signaling socket closed: a first attempt at once, then
/// 100 ms apart, doubling to 2 s, for about a minute in all.
async fn rejoin(
    connector: &dyn SignalingConnector,
    room: &str,
) -> Result<Box<dyn SignalingSession>, signaling::SignalingError> {
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(35);
    (|| connector.join(room)).retry(backoff).await
}

fn send(session: &mut dyn SignalingSession, signal: Signal) -> Result<(), String> {
    session
        .send(Outgoing::to_room(signal))
        .map_err(|e| e.to_string())
}

/// webrtc-rs's `RTCIceCandidateInit` as the signaling traits carry it (its `url`, a webrtc-rs
/// extension, is not part of the W3C dictionary and is not sent).
fn neutral_candidate(c: RTCIceCandidateInit) -> IceCandidateInit {
    IceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_m_line_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
    }
}

/// A received candidate as webrtc-rs takes it.
fn webrtc_candidate(c: IceCandidateInit) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
        url: None,
    }
}

/// Records a description applied, with its ICE ufrag: what pairs this connection with the
/// other end's on the timeline (see [`crate::metrics::paired_endpoint`]).
fn described(sink: &EventSink, conn: &str, method: &str, sdp_type: &str, sdp: &str) {
    sink.emit(
        conn,
        EventKind::Call {
            method: method.into(),
            sdp_type: Some(sdp_type.into()),
            ice_ufrag: crate::peer::sdp_ice_ufrag(sdp),
            error: None,
        },
    );
}

async fn apply_remote(
    pc: &Arc<dyn PeerConnection>,
    desc: Result<RTCSessionDescription, webrtc::error::Error>,
) -> Result<(), String> {
    let desc = desc.map_err(|e| format!("unreadable remote SDP: {e}"))?;
    pc.set_remote_description(desc)
        .await
        .map_err(|e| format!("setRemoteDescription: {e}"))
}

async fn add_pending(
    pc: &Arc<dyn PeerConnection>,
    pending: &mut Vec<RTCIceCandidateInit>,
) -> Result<(), String> {
    for c in pending.drain(..) {
        if let Err(e) = pc.add_ice_candidate(c).await {
            return Err(format!("addIceCandidate (queued): {e}"));
        }
    }
    Ok(())
}

/// createOffer/createAnswer + setLocalDescription; without trickle, waits for gathering to
/// complete and returns the SDP with all candidates.
async fn local_sdp(
    pc: &Arc<dyn PeerConnection>,
    offer: bool,
    trickle: bool,
    mut gathered: watch::Receiver<bool>,
) -> Result<String, String> {
    let desc = if offer {
        pc.create_offer(None)
            .await
            .map_err(|e| format!("createOffer: {e}"))?
    } else {
        pc.create_answer(None)
            .await
            .map_err(|e| format!("createAnswer: {e}"))?
    };
    let sdp = desc.sdp.clone();
    pc.set_local_description(desc)
        .await
        .map_err(|e| format!("setLocalDescription: {e}"))?;
    if trickle {
        return Ok(sdp);
    }
    tokio::time::timeout(GATHERING_DEADLINE, gathered.wait_for(|done| *done))
        .await
        .map_err(|_| format!("ICE gathering not complete after {GATHERING_DEADLINE:?}"))?
        .map_err(|_| "connection gone while gathering".to_string())?;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| "no local description after gathering".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::peer::RawEvent;
    use crate::peer::signaling::SignalingError;
    use crate::peer::signaling::memory::MemorySignaling;
    use crate::scenario::PeerKind;

    /// Every wait in these tests ends here at the latest.
    const DEADLINE: Duration = Duration::from_secs(20);

    async fn bot(
        launcher: &BotLauncher,
        id: &str,
        events: &mpsc::UnboundedSender<RawEvent>,
    ) -> Box<dyn Peer> {
        let plan = PeerPlan {
            id: id.into(),
            kind: PeerKind::Bot,
            timers: BotTimers {
                ice_check_interval_ms: Some(20),
                prflx_acceptance_wait_ms: Some(0),
                ..BotTimers::default()
            },
            fresh_browser: false,
            url: None,
            instrument: false,
        };
        let sink = EventSink::new(Clock::start(), id.into(), events.clone());
        launcher.launch(&plan, sink, None).await.expect("launch")
    }

    fn request(role: Role) -> ConnectRequest {
        ConnectRequest {
            connection: "c1".into(),
            room: "c1-run1".into(),
            role,
            data_channel: Some("chat".into()),
            trickle: true,
            // Never dialled: the launcher's connector replaces it.
            signaling_url: "ws://127.0.0.1:9/unused".into(),
            ice_servers: Vec::new(),
            ice_transport_policy: crate::scenario::IcePolicy::All,
            media: Vec::new(),
            direction: crate::scenario::Direction::Sendrecv,
            close_on_peer_left: false,
            app_signaling: None,
        }
    }

    /// Reads events until `want` holds for one, or the deadline passes; returns the events seen.
    async fn wait_for(
        events: &mut mpsc::UnboundedReceiver<RawEvent>,
        mut want: impl FnMut(&RawEvent) -> bool,
    ) -> Result<Vec<RawEvent>, Vec<RawEvent>> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(e) = events.recv().await {
                let hit = want(&e);
                seen.push(e);
                if hit {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if found { Ok(seen) } else { Err(seen) }
    }

    fn connected(e: &RawEvent) -> bool {
        matches!(&e.event, EventKind::State { machine: StateMachine::Connection, state } if state == "connected")
    }

    #[tokio::test]
    async fn two_bots_negotiate_through_in_memory_signaling_and_connect() {
        let signaling = MemorySignaling::new(2);
        let launcher = BotLauncher::default().with_signaling(Arc::new(signaling.clone()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let alice = bot(&launcher, "alice", &tx).await;
        let bob = bot(&launcher, "bob", &tx).await;
        bob.connect(&request(Role::Answerer))
            .await
            .expect("bob connect");
        alice
            .connect(&request(Role::Offerer))
            .await
            .expect("alice connect");
        assert_eq!(signaling.members("c1-run1").len(), 2);
        let mut pending: Vec<&str> = vec!["alice", "bob"];
        let seen = wait_for(&mut rx, |e| {
            if connected(e) {
                pending.retain(|p| *p != e.peer);
            }
            pending.is_empty()
        })
        .await;
        alice.shutdown().await;
        bob.shutdown().await;
        let seen = seen.unwrap_or_else(|seen| panic!("not both connected; events: {seen:#?}"));
        // The offer went through the in-memory room: each side applied the other's SDP.
        let has = |peer: &str, kind: fn(&EventKind) -> bool| {
            seen.iter().any(|e| e.peer == peer && kind(&e.event))
        };
        assert!(has("bob", |k| matches!(k, EventKind::OfferApplied)));
        assert!(has("alice", |k| matches!(k, EventKind::AnswerApplied)));
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e.event, EventKind::Error { .. }))
        );
    }

    /// A bot as `BotLauncher::launch` makes it, concrete, so that a test can see inside.
    fn concrete_bot(
        signaling: &MemorySignaling,
        id: &str,
        events: &mpsc::UnboundedSender<RawEvent>,
    ) -> Bot {
        Bot {
            id: id.into(),
            timers: BotTimers {
                ice_check_interval_ms: Some(20),
                prflx_acceptance_wait_ms: Some(0),
                ..BotTimers::default()
            },
            bind_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            runtime: None,
            sink: EventSink::new(Clock::start(), id.into(), events.clone()),
            signaling: Some(Arc::new(signaling.clone())),
            connections: Mutex::new(HashMap::new()),
            kill: KillSwitch::default(),
        }
    }

    #[tokio::test]
    async fn a_closed_connection_and_its_data_channels_are_freed_after_shutdown() {
        let signaling = MemorySignaling::new(2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let alice = concrete_bot(&signaling, "alice", &tx);
        let bob = concrete_bot(&signaling, "bob", &tx);
        bob.connect(&request(Role::Answerer))
            .await
            .expect("bob connect");
        alice
            .connect(&request(Role::Offerer))
            .await
            .expect("alice connect");
        // Both ends' channel open: then both maps hold it.
        let mut pending: Vec<&str> = vec!["alice", "bob"];
        let seen = wait_for(&mut rx, |e| {
            if matches!(e.event, EventKind::DataChannelOpen { .. }) {
                pending.retain(|p| *p != e.peer);
            }
            pending.is_empty()
        })
        .await;
        seen.unwrap_or_else(|seen| panic!("channels not open on both; events: {seen:#?}"));
        let weak: Vec<std::sync::Weak<dyn DataChannel>> = [&alice, &bob]
            .iter()
            .flat_map(|b| {
                let conns = b.connections.lock().unwrap();
                conns
                    .values()
                    .flat_map(|c| {
                        c.channels
                            .lock()
                            .unwrap()
                            .values()
                            .map(Arc::downgrade)
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(weak.len(), 2, "one channel at each end");
        alice.shutdown().await;
        bob.shutdown().await;
        // The connections' tasks wind down on their own: wait for it, under the deadline.
        let freed = tokio::time::timeout(DEADLINE, async {
            while weak.iter().any(|w| w.strong_count() > 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            freed.is_ok(),
            "{} of 2 data channels still alive {DEADLINE:?} after shutdown: something holds a \
             closed connection (a reference cycle through the channel map?)",
            weak.iter().filter(|w| w.strong_count() > 0).count()
        );
    }

    #[tokio::test]
    async fn a_signaling_error_event_is_an_error_on_the_timeline() {
        let signaling = MemorySignaling::new(2);
        let launcher = BotLauncher::default().with_signaling(Arc::new(signaling.clone()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bob = bot(&launcher, "bob", &tx).await;
        bob.connect(&request(Role::Answerer))
            .await
            .expect("bob connect");
        let delivered = signaling.deliver(
            "c1-run1",
            SignalingEvent::Error(SignalingError::Refused {
                code: "unknown_peer".into(),
                message: "no peer \"p9\" in room".into(),
            }),
        );
        assert_eq!(delivered, 1);
        let seen = wait_for(&mut rx, |e| matches!(e.event, EventKind::Error { .. })).await;
        bob.shutdown().await;
        let seen = seen.unwrap_or_else(|seen| panic!("no error event; events: {seen:#?}"));
        let Some(RawEvent {
            peer,
            connection,
            event: EventKind::Error { message },
            ..
        }) = seen.last()
        else {
            panic!("last event is not the error: {seen:#?}");
        };
        assert_eq!((peer.as_str(), connection.as_str()), ("bob", "c1"));
        assert_eq!(
            message,
            "signaling server: unknown_peer: no peer \"p9\" in room"
        );
    }
}
