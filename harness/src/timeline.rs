//! One timeline for every peer of a scenario run.
//!
//! Every observation a peer makes (a state change, a candidate, a message) becomes an [`Event`]
//! stamped with `t_ms`: milliseconds since the scenario started, on the harness's clock. Bots
//! stamp events in-process; browser events carry the page's own
//! `performance.timeOrigin + performance.now()` and are mapped onto the harness clock by
//! [`crate::clock`]. Everything downstream (waits, verdicts, metrics, reports) reads this
//! structure and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The four W3C state machines of an `RTCPeerConnection`
/// (W3C webrtc-pc, §4.3 "State Definitions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateMachine {
    /// `RTCPeerConnectionState` (`connectionState`).
    #[serde(rename = "connectionState")]
    Connection,
    /// `RTCIceConnectionState` (`iceConnectionState`).
    #[serde(rename = "iceConnectionState")]
    IceConnection,
    /// `RTCSignalingState` (`signalingState`).
    #[serde(rename = "signalingState")]
    Signaling,
    /// `RTCIceGatheringState` (`iceGatheringState`).
    #[serde(rename = "iceGatheringState")]
    IceGathering,
}

impl StateMachine {
    /// All four, in report order.
    pub const ALL: [StateMachine; 4] = [
        StateMachine::Connection,
        StateMachine::IceConnection,
        StateMachine::Signaling,
        StateMachine::IceGathering,
    ];

    /// The W3C attribute name, e.g. `connectionState`.
    pub fn attribute(self) -> &'static str {
        match self {
            StateMachine::Connection => "connectionState",
            StateMachine::IceConnection => "iceConnectionState",
            StateMachine::Signaling => "signalingState",
            StateMachine::IceGathering => "iceGatheringState",
        }
    }

    /// The scenario-file key, e.g. `connection_state`.
    pub fn key(self) -> &'static str {
        match self {
            StateMachine::Connection => "connection_state",
            StateMachine::IceConnection => "ice_connection_state",
            StateMachine::Signaling => "signaling_state",
            StateMachine::IceGathering => "ice_gathering_state",
        }
    }

    /// The enumeration values the spec defines for this machine.
    pub fn states(self) -> &'static [&'static str] {
        match self {
            StateMachine::Connection => &[
                "new",
                "connecting",
                "connected",
                "disconnected",
                "failed",
                "closed",
            ],
            StateMachine::IceConnection => &[
                "new",
                "checking",
                "connected",
                "completed",
                "disconnected",
                "failed",
                "closed",
            ],
            StateMachine::Signaling => &[
                "stable",
                "have-local-offer",
                "have-remote-offer",
                "have-local-pranswer",
                "have-remote-pranswer",
                "closed",
            ],
            StateMachine::IceGathering => &["new", "gathering", "complete"],
        }
    }

    /// The value at construction of an `RTCPeerConnection`.
    pub fn initial(self) -> &'static str {
        self.states()[0]
    }
}

impl fmt::Display for StateMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    /// One of the four state machines took a value (the value at creation included).
    State {
        /// Which machine.
        machine: StateMachine,
        /// The W3C enumeration value, e.g. `have-local-offer`.
        state: String,
    },
    /// The offerer called `createOffer()`.
    CreateOffer,
    /// The offerer finished `setRemoteDescription(answer)`.
    AnswerApplied,
    /// The answerer finished `setRemoteDescription(offer)`.
    OfferApplied,
    /// An `icecandidate` event with a candidate (RFC 8839 candidate-attribute).
    LocalCandidate {
        /// `host`, `srflx`, `prflx` or `relay`.
        candidate_type: String,
        /// The candidate line.
        candidate: String,
    },
    /// A remote candidate handed to `addIceCandidate()`.
    RemoteCandidate {
        /// `host`, `srflx`, `prflx` or `relay`.
        candidate_type: String,
        /// The candidate line.
        candidate: String,
    },
    /// An `icecandidateerror` event (W3C webrtc-pc §4.8.2): a STUN/TURN server answered
    /// with an error, e.g. 401 for wrong TURN credentials.
    IceCandidateError {
        /// The server URL.
        url: String,
        /// STUN error code (RFC 5389 §15.6), or 701 when the server could not be reached.
        error_code: u16,
        /// The reason phrase.
        error_text: String,
    },
    /// A remote track arrived (`track` event).
    TrackReceived {
        /// `audio` or `video`.
        kind: String,
    },
    /// The first whole video frame: decoded and painted by a browser
    /// (`requestVideoFrameCallback`), completely received by a bot.
    FirstVideoFrame,
    /// The selected candidate pair once connected (from the peer's stats).
    SelectedCandidatePair {
        /// Local candidate type.
        local: String,
        /// Remote candidate type.
        remote: String,
    },
    /// A data channel reached `open` on this peer.
    DataChannelOpen {
        /// Channel label.
        label: String,
    },
    /// This peer finished handing `count` messages to `send()`.
    MessagesSent {
        /// Channel label.
        label: String,
        /// How many messages.
        count: u64,
    },
    /// A data-channel message arrived and was checked.
    MessageReceived {
        /// Channel label.
        label: String,
        /// Sequence number carried by the message (`-1` when unreadable).
        seq: i64,
        /// Length and checksum are right.
        intact: bool,
        /// The sequence number is the next one expected.
        in_order: bool,
    },
    /// The harness began a `send` step from this peer (stamped just before the peer is asked to
    /// send): where `first_message_ms` starts.
    SendStarted {
        /// Channel label.
        label: String,
        /// How many messages the step sends.
        count: u64,
    },
    /// A `mark` step: a named point on the timeline (peer and connection are empty).
    Mark {
        /// The name the scenario gave it.
        name: String,
    },
    /// `close()` was called on the connection.
    Closed,
    /// A `kill` step stopped the peer without `close()` (peer-wide: connection is empty): a
    /// browser's process group got SIGKILL, a bot's tasks and sockets were dropped. Nothing
    /// more is sent, so the other side learns of it only through its own timers (RFC 7675).
    Killed,
    /// The connection's signaling session joined its room; `peer_id` is the id the
    /// signaling server gave it (a new one after each reconnect).
    SignalingJoined {
        /// The server's id for this session (empty if the protocol gives none).
        peer_id: String,
    },
    /// The connection's signaling socket closed while in use; the peer reconnects (a first
    /// attempt at once, then backoff from 100 ms doubling to 2 s) and rejoins the same room.
    SignalingClosed,
    /// What the peer had received on the connection at a recovery point (a `set_network`
    /// step with `recovers_within_ms`, once it completed); the `*_after_recovery`
    /// expectations count from here.
    MediaAtRecovery {
        /// Whole video frames received so far (as `MediaCounters::video_frames`).
        video_frames: u64,
        /// Audio packets received so far.
        audio_packets_received: u64,
    },
    /// A `freeze` step made the peer hang (peer-wide): a browser's process group got SIGSTOP.
    Frozen,
    /// A `set_network` step changed the peer's link (peer-wide: connection is empty).
    NetworkChanged {
        /// The new loss each direction, percent (100: nothing passes).
        loss_pct: u8,
        /// The new UDP policy (`blocked`: no UDP passes, TCP does).
        udp: crate::scenario::UdpPolicy,
    },
    /// Page peers: the page called an `RTCPeerConnection` method and it settled (W3C
    /// webrtc-pc §4.4: `createOffer`, `createAnswer`, `setLocalDescription`,
    /// `setRemoteDescription`, `addIceCandidate`). A rejection is recorded here with its
    /// error, not as an [`EventKind::Error`]: what an app does with it is the app's business.
    Call {
        /// The method.
        method: String,
        /// The description type applied (`offer`, `answer`, `pranswer`, `rollback`), for the
        /// two description methods.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_type: Option<String>,
        /// The description's `a=ice-ufrag` (RFC 8839 §5.4), which pairs a page's connection
        /// with the remote one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ice_ufrag: Option<String>,
        /// `name: message` of the error it was rejected with; absent when it succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Page peers: an `eval` step's result, as JSON text.
    Eval {
        /// The value.
        value: String,
    },
    /// A screenshot of the peer's page, taken when a page step failed.
    Screenshot {
        /// The PNG file.
        path: String,
    },
    /// Something went wrong inside the peer (an API call rejected, a signaling error).
    Error {
        /// What the peer reported.
        message: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::State { machine, state } => write!(f, "{machine} {state}"),
            EventKind::CreateOffer => f.write_str("createOffer"),
            EventKind::AnswerApplied => f.write_str("answer applied"),
            EventKind::OfferApplied => f.write_str("offer applied"),
            EventKind::LocalCandidate {
                candidate_type,
                candidate,
            } => write!(f, "local candidate {candidate_type} ({candidate})"),
            EventKind::RemoteCandidate {
                candidate_type,
                candidate,
            } => write!(f, "remote candidate {candidate_type} ({candidate})"),
            EventKind::IceCandidateError {
                url,
                error_code,
                error_text,
            } => write!(f, "icecandidateerror {error_code} {error_text} ({url})"),
            EventKind::TrackReceived { kind } => write!(f, "track received ({kind})"),
            EventKind::FirstVideoFrame => f.write_str("first video frame"),
            EventKind::SelectedCandidatePair { local, remote } => {
                write!(f, "selected candidate pair {local} -> {remote}")
            }
            EventKind::DataChannelOpen { label } => write!(f, "data channel '{label}' open"),
            EventKind::MessagesSent { label, count } => {
                write!(f, "sent {count} messages on '{label}'")
            }
            EventKind::MessageReceived {
                label,
                seq,
                intact,
                in_order,
            } => write!(
                f,
                "message #{seq} on '{label}'{}{}",
                if *intact { "" } else { " CORRUPT" },
                if *in_order { "" } else { " OUT OF ORDER" }
            ),
            EventKind::SendStarted { label, count } => {
                write!(f, "send of {count} messages on '{label}' started")
            }
            EventKind::Mark { name } => write!(f, "mark '{name}'"),
            EventKind::Closed => f.write_str("close()"),
            EventKind::Killed => f.write_str("killed"),
            EventKind::Frozen => f.write_str("frozen"),
            EventKind::MediaAtRecovery {
                video_frames,
                audio_packets_received,
            } => write!(
                f,
                "recovered with {video_frames} video frames, {audio_packets_received} audio packets received so far"
            ),
            EventKind::SignalingJoined { peer_id } => write!(f, "signaling joined as {peer_id:?}"),
            EventKind::SignalingClosed => f.write_str("signaling socket closed"),
            EventKind::NetworkChanged { loss_pct, udp } => match udp {
                crate::scenario::UdpPolicy::Open => write!(f, "network: loss {loss_pct}%"),
                crate::scenario::UdpPolicy::Blocked => {
                    write!(f, "network: loss {loss_pct}%, UDP blocked")
                }
            },
            EventKind::Call {
                method,
                sdp_type,
                error,
                ..
            } => {
                let arg = sdp_type.as_deref().unwrap_or("");
                match error {
                    None => write!(f, "{method}({arg}) resolved"),
                    Some(e) => write!(f, "{method}({arg}) rejected: {e}"),
                }
            }
            EventKind::Eval { value } => write!(f, "eval: {value}"),
            EventKind::Screenshot { path } => write!(f, "screenshot {path}"),
            EventKind::Error { message } => write!(f, "error: {message}"),
        }
    }
}

/// One observation, placed on the scenario's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the scenario started (harness clock).
    pub t_ms: f64,
    /// Peer id from the scenario file.
    pub peer: String,
    /// The connection the event belongs to (one per `connect` step).
    pub connection: String,
    /// What happened.
    pub event: EventKind,
}

/// One peer's side of one connection: what step completion, diagnoses and expectations address
/// (a peer may hold several connections; each has its own four state machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint<'a> {
    /// Peer id.
    pub peer: &'a str,
    /// Connection id.
    pub connection: &'a str,
}

impl<'a> Endpoint<'a> {
    /// `peer`'s side of `connection`.
    pub fn new(peer: &'a str, connection: &'a str) -> Self {
        Self { peer, connection }
    }

    /// Whether an event belongs here. Events of the peer as a whole (no connection, e.g. its
    /// browser page going away) count for every connection of the peer.
    pub fn owns(&self, e: &Event) -> bool {
        e.peer == self.peer && (e.connection == self.connection || e.connection.is_empty())
    }
}

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.peer, self.connection)
    }
}

/// All events of one scenario run, kept in time order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    events: Vec<Event>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event, keeping time order (events from different clocks can arrive late).
    pub fn push(&mut self, event: Event) {
        let at = self.events.partition_point(|e| e.t_ms <= event.t_ms);
        self.events.insert(at, event);
    }

    /// All events in time order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events at or before `t_ms`.
    pub fn until(&self, t_ms: f64) -> Timeline {
        Timeline {
            events: self
                .events
                .iter()
                .filter(|e| e.t_ms <= t_ms)
                .cloned()
                .collect(),
        }
    }

    /// One peer's events.
    pub fn of_peer<'a>(&'a self, peer: &str) -> impl Iterator<Item = &'a Event> + 'a {
        let peer = peer.to_owned();
        self.events.iter().filter(move |e| e.peer == peer)
    }

    /// The connections a peer has events of, in order of their first event (a page peer:
    /// `pc1`, `pc2`, ... in creation order).
    pub fn connections_of(&self, peer: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in self.events.iter().filter(|e| e.peer == peer) {
            if !e.connection.is_empty() && !out.contains(&e.connection.as_str()) {
                out.push(&e.connection);
            }
        }
        out
    }

    /// Resolves a page peer's connection as steps and expectations name it: `pcN` as given, or
    /// `""` for "the page's only RTCPeerConnection". `Ok(None)`: it does not exist (yet);
    /// `Err`: `""` but the page created several.
    pub fn page_connection(&self, peer: &str, named: &str) -> Result<Option<String>, String> {
        let mine = self.connections_of(peer);
        if !named.is_empty() {
            return Ok(mine.contains(&named).then(|| named.to_string()));
        }
        match mine.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some(only.to_string())),
            many => Err(format!(
                "the page of peer {peer} created {} RTCPeerConnections ({}): name one with \
                 `connection`",
                many.len(),
                many.join(", ")
            )),
        }
    }

    /// The events of one endpoint (its connection's, and the peer's own without a connection).
    pub fn of<'a>(&'a self, ep: Endpoint<'_>) -> impl Iterator<Item = &'a Event> {
        self.events.iter().filter(move |e| ep.owns(e))
    }

    /// The harness's own events (`mark` steps): no peer, no connection.
    pub fn marks(&self) -> impl Iterator<Item = (f64, &str)> {
        self.events.iter().filter_map(|e| match &e.event {
            EventKind::Mark { name } => Some((e.t_ms, name.as_str())),
            _ => None,
        })
    }

    /// The values one state machine of one endpoint went through, with their times; a value
    /// equal to the one before it is not a transition and is dropped.
    pub fn states(&self, ep: Endpoint<'_>, machine: StateMachine) -> Vec<(f64, &str)> {
        transitions(self.of(ep), machine)
    }

    /// Every value one state machine took across all connections of a peer, in time order (for
    /// drawing a peer's lane; judging uses [`Timeline::states`]).
    pub fn peer_states(&self, peer: &str, machine: StateMachine) -> Vec<(f64, &str)> {
        transitions(self.of_peer(peer), machine)
    }

    /// The current value of one state machine of an endpoint (`None` before the connection
    /// exists).
    pub fn current_state(&self, ep: Endpoint<'_>, machine: StateMachine) -> Option<&str> {
        self.states(ep, machine).last().map(|(_, s)| *s)
    }

    /// Time of the first event of an endpoint matching `pred`.
    pub fn first_time(&self, ep: Endpoint<'_>, pred: impl Fn(&EventKind) -> bool) -> Option<f64> {
        self.of(ep).find(|e| pred(&e.event)).map(|e| e.t_ms)
    }

    /// Time at which an endpoint's state machine first took `state`.
    pub fn first_state_time(
        &self,
        ep: Endpoint<'_>,
        machine: StateMachine,
        state: &str,
    ) -> Option<f64> {
        self.first_time(
            ep,
            |k| matches!(k, EventKind::State { machine: m, state: s } if *m == machine && s == state),
        )
    }

    /// Time of the first event in `connection`, any peer, matching `pred`.
    pub fn first_in_connection(
        &self,
        connection: &str,
        pred: impl Fn(&EventKind) -> bool,
    ) -> Option<f64> {
        self.events
            .iter()
            .find(|e| e.connection == connection && pred(&e.event))
            .map(|e| e.t_ms)
    }

    /// Messages received at an endpoint (all of them, intact or not), on one channel or all.
    pub fn messages_received(&self, ep: Endpoint<'_>, label: Option<&str>) -> Vec<&Event> {
        self.of(ep)
            .filter(|e| match &e.event {
                EventKind::MessageReceived { label: l, .. } => label.is_none_or(|want| want == l),
                _ => false,
            })
            .collect()
    }

    /// Intact, in-order messages received at an endpoint.
    pub fn intact_in_order_received(&self, ep: Endpoint<'_>) -> u64 {
        self.of(ep)
            .filter(|e| {
                matches!(
                    e.event,
                    EventKind::MessageReceived {
                        intact: true,
                        in_order: true,
                        ..
                    }
                )
            })
            .count() as u64
    }

    /// The last `n` events of a peer, for diagnoses.
    pub fn last_of_peer(&self, peer: &str, n: usize) -> Vec<&Event> {
        let all: Vec<&Event> = self.of_peer(peer).collect();
        all[all.len().saturating_sub(n)..].to_vec()
    }

    /// A peer's events as text, one line each: four spaces, the time in ms right-aligned in 9
    /// columns with one decimal, two spaces, the event.
    ///
    /// ```
    /// use rtc_harness::timeline::{Event, EventKind, StateMachine, Timeline};
    /// let mut t = Timeline::new();
    /// t.push(Event {
    ///     t_ms: 12.34,
    ///     peer: "bot".into(),
    ///     connection: "bot~chrome".into(),
    ///     event: EventKind::State { machine: StateMachine::Connection, state: "connected".into() },
    /// });
    /// assert_eq!(t.render_peer("bot"), "         12.3 ms  connectionState connected\n");
    /// ```
    pub fn render_peer(&self, peer: &str) -> String {
        let mut out = String::new();
        for e in self.of_peer(peer) {
            out.push_str(&format!("    {:>9.1} ms  {}\n", e.t_ms, e.event));
        }
        out
    }
}

fn transitions<'a>(
    events: impl Iterator<Item = &'a Event>,
    machine: StateMachine,
) -> Vec<(f64, &'a str)> {
    let mut out: Vec<(f64, &str)> = Vec::new();
    for e in events {
        if let EventKind::State { machine: m, state } = &e.event
            && *m == machine
            && out.last().map(|(_, s)| *s) != Some(state.as_str())
        {
            out.push((e.t_ms, state.as_str()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: f64, peer: &str, kind: EventKind) -> Event {
        Event {
            t_ms: t,
            peer: peer.into(),
            connection: "c".into(),
            event: kind,
        }
    }

    fn st(machine: StateMachine, s: &str) -> EventKind {
        EventKind::State {
            machine,
            state: s.into(),
        }
    }

    #[test]
    fn push_keeps_time_order_for_late_events() {
        let mut t = Timeline::new();
        t.push(ev(5.0, "a", EventKind::CreateOffer));
        t.push(ev(1.0, "b", EventKind::Closed));
        t.push(ev(3.0, "a", EventKind::AnswerApplied));
        let times: Vec<f64> = t.events().iter().map(|e| e.t_ms).collect();
        assert_eq!(times, vec![1.0, 3.0, 5.0]);
    }

    #[test]
    fn states_drop_repeats_and_other_peers() {
        let mut t = Timeline::new();
        t.push(ev(0.0, "a", st(StateMachine::Connection, "new")));
        t.push(ev(1.0, "a", st(StateMachine::Connection, "new")));
        t.push(ev(2.0, "b", st(StateMachine::Connection, "connecting")));
        t.push(ev(3.0, "a", st(StateMachine::Signaling, "stable")));
        t.push(ev(4.0, "a", st(StateMachine::Connection, "connecting")));
        let s: Vec<&str> = t
            .states(Endpoint::new("a", "c"), StateMachine::Connection)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(s, vec!["new", "connecting"]);
        assert_eq!(
            t.current_state(Endpoint::new("b", "c"), StateMachine::Connection),
            Some("connecting")
        );
        assert_eq!(
            t.current_state(Endpoint::new("b", "c"), StateMachine::Signaling),
            None
        );
    }

    #[test]
    fn each_connection_of_a_peer_has_its_own_states() {
        let mut t = Timeline::new();
        let mut put = |ms, conn: &str, kind| {
            t.push(Event {
                t_ms: ms,
                peer: "a".into(),
                connection: conn.into(),
                event: kind,
            })
        };
        put(0.0, "a~b", st(StateMachine::Connection, "new"));
        put(1.0, "a~c", st(StateMachine::Connection, "new"));
        put(2.0, "a~b", st(StateMachine::Connection, "connected"));
        put(3.0, "a~c", st(StateMachine::Connection, "failed"));
        // A peer-wide event (no connection) belongs to every connection of the peer.
        put(
            4.0,
            "",
            EventKind::Error {
                message: "page gone".into(),
            },
        );
        let ab = Endpoint::new("a", "a~b");
        let ac = Endpoint::new("a", "a~c");
        assert_eq!(
            t.current_state(ab, StateMachine::Connection),
            Some("connected")
        );
        assert_eq!(
            t.current_state(ac, StateMachine::Connection),
            Some("failed")
        );
        assert_eq!(t.of(ab).count(), 3);
        assert_eq!(t.of(ac).count(), 3);
        let lane: Vec<&str> = t
            .peer_states("a", StateMachine::Connection)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(lane, vec!["new", "connected", "failed"]);
    }

    #[test]
    fn until_cuts_at_the_end_of_steps() {
        let mut t = Timeline::new();
        t.push(ev(1.0, "a", st(StateMachine::Connection, "connected")));
        t.push(ev(9.0, "a", st(StateMachine::Connection, "closed")));
        assert_eq!(t.until(5.0).events().len(), 1);
    }

    #[test]
    fn event_json_shape_is_stable() {
        let e = ev(1.5, "a", st(StateMachine::IceConnection, "checking"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"t_ms": 1.5, "peer": "a", "connection": "c",
                "event": {"type": "state", "machine": "iceConnectionState", "state": "checking"}})
        );
    }
}
