//! A peer kind of this crate's own, plugged into rtc-harness through its public API only: a
//! small webrtc-rs endpoint (data channels, no media), as a crate would wrap the code it tests.
//!
//! It negotiates through the public signaling traits ([`rtc_harness::peer::signaling`]): the
//! connector a [`ConnectRequest`] names, so the harness's bots and browsers can be the other
//! side. It reports the W3C states, candidates and data-channel messages on the harness's
//! [`EventSink`], which is all the harness needs to judge a scenario.

use async_trait::async_trait;
use rtc_harness::payload;
use rtc_harness::peer::media::MediaCounters;
use rtc_harness::peer::signaling::{
    self, IceCandidateInit, Outgoing, Signal, SignalingEvent, SignalingSession,
};
use rtc_harness::peer::{
    ConnectRequest, EventSink, Launcher, Peer, PeerError, PeerInfo, Role, SendRequest,
    candidate_type,
};
use rtc_harness::scenario::{MediaKind, PeerPlan};
use rtc_harness::timeline::{EventKind, StateMachine};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, RTCSignalingState,
    SettingEngineBuilder,
};

/// The kind's name in scenario files (`kind = "echo-endpoint"`).
pub const KIND: &str = "echo-endpoint";

/// Starts endpoints. Each binds its UDP socket to 127.0.0.1 (never a wildcard address).
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointLauncher;

#[async_trait]
impl Launcher for EndpointLauncher {
    fn check(&self) -> Result<(), PeerError> {
        Ok(())
    }

    async fn launch(
        &self,
        plan: &PeerPlan,
        sink: EventSink,
        lab: Option<&rtc_harness::lab::LabHost>,
    ) -> Result<Box<dyn Peer>, PeerError> {
        if lab.is_some() {
            return Err(PeerError::failed(format!(
                "kind {KIND:?} does not run in the network lab"
            )));
        }
        Ok(Box::new(Endpoint {
            id: plan.id.clone(),
            sink,
            connections: Mutex::new(HashMap::new()),
        }))
    }
}

struct Endpoint {
    id: String,
    sink: EventSink,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

struct Connection {
    pc: Arc<dyn PeerConnection>,
    channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>>,
    next_seq: Mutex<HashMap<String, u64>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Connection {
    fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// webrtc-rs callbacks: stamp and hand off, nothing else (they run on the driver loop).
struct Events {
    sink: EventSink,
    connection: String,
    candidates: mpsc::UnboundedSender<Option<RTCIceCandidateInit>>,
    channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>>,
}

impl Events {
    fn state(&self, machine: StateMachine, state: String) {
        self.sink
            .emit(&self.connection, EventKind::State { machine, state });
    }
}

#[async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.sink.emit(
                &self.connection,
                EventKind::LocalCandidate {
                    candidate_type: candidate_type(&init.candidate),
                    candidate: init.candidate.clone(),
                },
            );
            let _ = self.candidates.send(Some(init));
        }
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
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state(StateMachine::Connection, state.to_string());
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let (sink, connection, channels) = (
            self.sink.clone(),
            self.connection.clone(),
            self.channels.clone(),
        );
        tokio::spawn(async move {
            let label = dc.label().await.unwrap_or_default();
            if let Ok(mut c) = channels.lock() {
                c.insert(label.clone(), dc.clone());
            }
            read(dc, label, sink, connection).await;
        });
    }
}

/// Reports the channel's opening and every message, checked with the harness's payload format.
async fn read(dc: Arc<dyn DataChannel>, label: String, sink: EventSink, connection: String) {
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
    if matches!(dc.ready_state().await, Ok(RTCDataChannelState::Open)) {
        open(&sink);
    }
    let mut receiver = payload::Receiver::default();
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => open(&sink),
            DataChannelEvent::OnMessage(msg) => {
                let (seq, intact, in_order) = receiver.accept(&msg.data);
                sink.emit(
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

impl Endpoint {
    fn connection(&self, id: &str) -> Result<Arc<Connection>, PeerError> {
        self.connections
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .get(id)
            .cloned()
            .ok_or_else(|| PeerError::failed(format!("no connection {id:?}")))
    }
}

#[async_trait]
impl Peer for Endpoint {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            kind: KIND.into(),
            product: "custom-peer example (webrtc-rs)".into(),
            ..PeerInfo::default()
        }
    }

    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError> {
        if !req.media.is_empty() {
            return Err(PeerError::failed(format!("kind {KIND:?} has no media")));
        }
        let (cand_tx, cand_rx) = mpsc::unbounded_channel();
        let channels: Arc<Mutex<HashMap<String, Arc<dyn DataChannel>>>> = Arc::default();
        let events = Arc::new(Events {
            sink: self.sink.clone(),
            connection: req.connection.clone(),
            candidates: cand_tx,
            channels: channels.clone(),
        });
        for m in StateMachine::ALL {
            events.state(m, m.initial().to_string());
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
        // No mDNS: a loopback-only namespace has no multicast route.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(servers)
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(events)
            .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
            .build()
            .await
            .map_err(|e| PeerError::failed(format!("building the peer connection: {e}")))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let conn = Arc::new(Connection {
            pc: pc.clone(),
            channels: channels.clone(),
            next_seq: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        self.connections
            .lock()
            .map_err(|_| PeerError::failed("poisoned"))?
            .insert(req.connection.clone(), conn.clone());
        let mut tasks = Vec::new();
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
            tasks.push(tokio::spawn(read(
                dc,
                label.clone(),
                self.sink.clone(),
                req.connection.clone(),
            )));
        }
        let session = signaling::connector_for(req)
            .join(&req.room)
            .await
            .map_err(PeerError::failed)?;
        tasks.push(tokio::spawn(negotiate(
            pc,
            session,
            cand_rx,
            req.clone(),
            self.sink.clone(),
        )));
        if let Ok(mut t) = conn.tasks.lock() {
            t.extend(tasks);
        }
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
        let first = {
            let mut next = conn
                .next_seq
                .lock()
                .map_err(|_| PeerError::failed("poisoned"))?;
            let n = next.entry(req.channel.clone()).or_insert(0);
            let first = *n;
            *n += req.messages;
            first
        };
        for seq in first..first + req.messages {
            dc.send_text(&payload::encode(seq, req.bytes as usize))
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

    async fn selected_pair(&self, _: &str) -> Result<Option<(String, String)>, PeerError> {
        // Not reported by this example: scenarios of this kind do not assert `selected_pair`.
        Ok(None)
    }

    async fn stats(&self, _: &str) -> Result<Vec<serde_json::Value>, PeerError> {
        Ok(Vec::new())
    }

    async fn media_counters(&self, _: &str) -> Result<MediaCounters, PeerError> {
        Ok(MediaCounters::default())
    }

    async fn add_track(&self, _: &str, _: MediaKind) -> Result<(), PeerError> {
        Err(PeerError::failed(format!("kind {KIND:?} has no media")))
    }

    async fn restart_ice(&self, _: &str) -> Result<(), PeerError> {
        Err(PeerError::failed(format!(
            "kind {KIND:?} does not restart ICE"
        )))
    }

    async fn close(&self, connection: &str) -> Result<(), PeerError> {
        let conn = self.connection(connection)?;
        conn.stop();
        self.sink.emit(connection, EventKind::Closed);
        conn.pc
            .close()
            .await
            .map_err(|e| PeerError::failed(format!("close: {e}")))?;
        // close() sets these without firing events (W3C webrtc-pc §4.4.1.6).
        for machine in [
            StateMachine::Signaling,
            StateMachine::IceConnection,
            StateMachine::Connection,
        ] {
            self.sink.emit(
                connection,
                EventKind::State {
                    machine,
                    state: "closed".into(),
                },
            );
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let all: Vec<Arc<Connection>> = self
            .connections
            .lock()
            .map(|mut c| c.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for conn in all {
            conn.stop();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.pc.close()).await;
        }
    }
}

/// Offer/answer and trickled candidates of one connection (no renegotiation).
async fn negotiate(
    pc: Arc<dyn PeerConnection>,
    mut session: Box<dyn SignalingSession>,
    mut local: mpsc::UnboundedReceiver<Option<RTCIceCandidateInit>>,
    req: ConnectRequest,
    sink: EventSink,
) {
    let conn = req.connection.clone();
    let mut pending: Vec<RTCIceCandidateInit> = Vec::new();
    let mut have_remote = false;
    loop {
        let result: Result<(), String> = tokio::select! {
            Some(c) = local.recv() => {
                let signal = match c {
                    Some(c) => Signal::Candidate(IceCandidateInit {
                        candidate: c.candidate,
                        sdp_mid: c.sdp_mid,
                        sdp_m_line_index: c.sdp_mline_index,
                        username_fragment: c.username_fragment,
                    }),
                    None => Signal::EndOfCandidates,
                };
                session.send(Outgoing::to_room(signal)).map_err(|e| e.to_string())
            }
            event = session.recv() => {
                let Some(event) = event else {
                    sink.emit(&conn, EventKind::Error { message: "signaling closed".into() });
                    return;
                };
                match event {
                    SignalingEvent::Ready { .. } if req.role == Role::Offerer => {
                        sink.emit(&conn, EventKind::CreateOffer);
                        match describe(&pc, true).await {
                            Ok(sdp) => session
                                .send(Outgoing::to_room(Signal::Offer { sdp }))
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        }
                    }
                    SignalingEvent::Signal { signal: Signal::Offer { sdp }, .. } => {
                        match apply(&pc, RTCSessionDescription::offer(sdp), &mut pending).await {
                            Ok(()) => {
                                sink.emit(&conn, EventKind::OfferApplied);
                                have_remote = true;
                                match describe(&pc, false).await {
                                    Ok(sdp) => session
                                        .send(Outgoing::to_room(Signal::Answer { sdp }))
                                        .map_err(|e| e.to_string()),
                                    Err(e) => Err(e),
                                }
                            }
                            Err(e) => Err(e),
                        }
                    }
                    SignalingEvent::Signal { signal: Signal::Answer { sdp }, .. } => {
                        let r = apply(&pc, RTCSessionDescription::answer(sdp), &mut pending).await;
                        if r.is_ok() {
                            sink.emit(&conn, EventKind::AnswerApplied);
                            have_remote = true;
                        }
                        r
                    }
                    SignalingEvent::Signal { signal: Signal::Candidate(c), .. } => {
                        sink.emit(&conn, EventKind::RemoteCandidate {
                            candidate_type: candidate_type(&c.candidate),
                            candidate: c.candidate.clone(),
                        });
                        let init = RTCIceCandidateInit {
                            candidate: c.candidate,
                            sdp_mid: c.sdp_mid,
                            sdp_mline_index: c.sdp_m_line_index,
                            username_fragment: c.username_fragment,
                            url: None,
                        };
                        if have_remote {
                            pc.add_ice_candidate(init).await.map_err(|e| format!("addIceCandidate: {e}"))
                        } else {
                            pending.push(init);
                            Ok(())
                        }
                    }
                    SignalingEvent::Error(e) => Err(e.to_string()),
                    _ => Ok(()),
                }
            }
        };
        if let Err(message) = result {
            sink.emit(&conn, EventKind::Error { message });
        }
    }
}

/// createOffer/createAnswer, then setLocalDescription; the SDP to send (candidates trickle).
async fn describe(pc: &Arc<dyn PeerConnection>, offer: bool) -> Result<String, String> {
    let desc = if offer {
        pc.create_offer(None).await
    } else {
        pc.create_answer(None).await
    }
    .map_err(|e| format!("create description: {e}"))?;
    let sdp = desc.sdp.clone();
    pc.set_local_description(desc)
        .await
        .map_err(|e| format!("setLocalDescription: {e}"))?;
    Ok(sdp)
}

/// setRemoteDescription, then the candidates that arrived before it.
async fn apply(
    pc: &Arc<dyn PeerConnection>,
    desc: Result<RTCSessionDescription, webrtc::error::Error>,
    pending: &mut Vec<RTCIceCandidateInit>,
) -> Result<(), String> {
    let desc = desc.map_err(|e| format!("unreadable remote SDP: {e}"))?;
    pc.set_remote_description(desc)
        .await
        .map_err(|e| format!("setRemoteDescription: {e}"))?;
    for c in pending.drain(..) {
        pc.add_ice_candidate(c)
            .await
            .map_err(|e| format!("addIceCandidate (queued): {e}"))?;
    }
    Ok(())
}
