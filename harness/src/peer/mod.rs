//! Peers: everything the scenario engine drives, behind one interface.
//!
//! The engine only sees [`Peer`] and [`Launcher`]; it never asks which kind of peer it has.
//! A kind plugs in by providing a [`Launcher`] (see [`Launchers`]). Peers report what they
//! observe as [`RawEvent`]s on one channel; the engine turns those into the scenario's
//! [`crate::timeline::Timeline`].
//!
//! A peer may hold several connections at once (each `connect` step names a connection id, which
//! is also the signaling room), so 1:N meshes fit without changing this interface.

pub mod bot;
pub mod browser;
pub mod media;
mod process;
pub mod signaling;
pub mod traced;

use crate::clock::Clock;
use crate::scenario::{PeerKind, PeerPlan};
use crate::timeline::EventKind;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use process::ProcessGroup;

/// An event as a peer reports it: stamped in Unix-epoch ms on the harness clock.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Harness-clock time, Unix-epoch ms.
    pub unix_ms: f64,
    /// Peer id.
    pub peer: String,
    /// Connection id.
    pub connection: String,
    /// What happened.
    pub event: EventKind,
}

/// Where a peer sends its events, with the clock to stamp them.
#[derive(Debug, Clone)]
pub struct EventSink {
    clock: Clock,
    peer: String,
    tx: mpsc::UnboundedSender<RawEvent>,
}

impl EventSink {
    /// A sink for `peer`.
    pub fn new(clock: Clock, peer: String, tx: mpsc::UnboundedSender<RawEvent>) -> Self {
        Self { clock, peer, tx }
    }

    /// Stamps an event now and hands it off (never blocks).
    pub fn emit(&self, connection: &str, event: EventKind) {
        self.emit_at(self.clock.now_unix_ms(), connection, event);
    }

    /// Hands off an event with a time already on the harness clock.
    pub fn emit_at(&self, unix_ms: f64, connection: &str, event: EventKind) {
        // The receiver is gone only once the scenario is over; late events are dropped.
        let _ = self.tx.send(RawEvent {
            unix_ms,
            peer: self.peer.clone(),
            connection: connection.to_string(),
            event,
        });
    }

    /// The peer id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The harness clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }
}

/// Offerer or answerer of a connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Calls createOffer once the signaling server says `ready`.
    Offerer,
    /// Answers the offer it receives.
    Answerer,
}

/// Ask a peer to take part in one connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectRequest {
    /// Connection id (as in the plan).
    pub connection: String,
    /// Signaling room: the connection id made unique for this run.
    pub room: String,
    /// This peer's role.
    pub role: Role,
    /// Label of a data channel the offerer creates before its offer.
    pub data_channel: Option<String>,
    /// Trickle candidates (true) or wait for gathering to complete and send them in the SDP.
    pub trickle: bool,
    /// WebSocket URL of the signaling server. Bots join through the `rtc-signaling` protocol
    /// there ([`signaling::connector_for`]) unless their launcher was given another connector.
    pub signaling_url: String,
    /// `RTCConfiguration.iceServers`.
    pub ice_servers: Vec<crate::scenario::IceServerEntry>,
    /// `RTCConfiguration.iceTransportPolicy`.
    pub ice_transport_policy: crate::scenario::IcePolicy,
    /// Media kinds negotiated: one transceiver per kind.
    pub media: Vec<crate::scenario::MediaKind>,
    /// This peer's transceiver direction for that media.
    pub direction: crate::scenario::Direction,
    /// Close this connection when the signaling server says the other peer left the room
    /// (`peer-left`), as a mesh call's app does (set by `mesh` steps).
    #[serde(default)]
    pub close_on_peer_left: bool,
    /// `join_app` steps: the app's own signaling protocol and who the bot is in it;
    /// `signaling_url` is then the app's base URL and `room` the app's room id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_signaling: Option<signaling::AppJoin>,
}

/// Ask a peer to send test messages (see [`crate::payload`]).
#[derive(Debug, Clone, Serialize)]
pub struct SendRequest {
    /// Connection id.
    pub connection: String,
    /// Data-channel label.
    pub channel: String,
    /// How many messages.
    pub messages: u64,
    /// Bytes per message.
    pub bytes: u64,
}

/// One action on a page peer's page (the page steps: `open`, `click`, `fill`, `wait_for`,
/// `eval`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PageAction {
    /// Navigate to a URL; returns once the page has loaded (WebDriver Navigate To).
    Open {
        /// The URL.
        url: String,
    },
    /// Click the first element matching a CSS selector.
    Click {
        /// The selector.
        selector: String,
    },
    /// Clear the first element matching a CSS selector and type text into it.
    Fill {
        /// The selector.
        selector: String,
        /// The text.
        text: String,
    },
    /// Whether any element matching a CSS selector is displayed (returns a JSON boolean).
    Visible {
        /// The selector.
        selector: String,
    },
    /// Evaluate a JavaScript expression in the page (it may use `await`); returns its value as
    /// JSON (`undefined` as `null`).
    Eval {
        /// The expression.
        js: String,
    },
}

/// What a peer is, for reports.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct PeerInfo {
    /// Peer id.
    pub id: String,
    /// Kind name (`bot`, `chromium`, `firefox`, or a user kind's).
    pub kind: String,
    /// Implementation and version, e.g. `webrtc-rs 0.21.1` or `chrome 156.0.8078.73`.
    pub product: String,
    /// WebDriver implementation and version, for browsers.
    pub driver: Option<String>,
    /// Bound on the error of this peer's timestamps relative to the harness clock, ms
    /// (0 for in-process peers).
    pub clock_error_ms: f64,
    /// Browsers: whether this peer ran in an instance an earlier scenario had used.
    pub reused_browser: Option<bool>,
    /// Browsers: the driver's log file (it covers every scenario the instance served).
    pub driver_log: Option<String>,
}

/// Errors of peers.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A program the peer needs is not installed.
    #[error("{program} not found: {hint}")]
    Missing {
        /// The program.
        program: String,
        /// How to install it.
        hint: String,
    },
    /// A deadline passed.
    #[error("{0}: timed out")]
    Timeout(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl PeerError {
    /// Shorthand for [`PeerError::Failed`].
    pub fn failed(what: impl std::fmt::Display) -> Self {
        PeerError::Failed(what.to_string())
    }
}

/// One peer, whatever its kind.
#[async_trait]
pub trait Peer: Send + Sync {
    /// What it is.
    fn info(&self) -> PeerInfo;
    /// Starts taking part in a connection; returns once it has started (the engine waits for
    /// states on the timeline).
    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError>;
    /// Sends test messages; returns once they are handed to the data channel.
    async fn send(&self, req: &SendRequest) -> Result<(), PeerError>;
    /// The selected candidate pair's (local, remote) candidate types, from the peer's stats.
    async fn selected_pair(&self, connection: &str) -> Result<Option<(String, String)>, PeerError>;
    /// The peer's statistics for a connection, as webrtc-stats dictionaries (`type` is one of
    /// `candidate-pair`, `local-candidate`, `remote-candidate`, `inbound-rtp`, `outbound-rtp`,
    /// `transport`, `data-channel`; field names and units as in W3C webrtc-stats).
    async fn stats(&self, connection: &str) -> Result<Vec<serde_json::Value>, PeerError>;
    /// What the peer received on a connection so far.
    async fn media_counters(&self, connection: &str) -> Result<media::MediaCounters, PeerError>;
    /// Adds a track of `kind` and renegotiates (returns once the new offer is sent).
    async fn add_track(
        &self,
        connection: &str,
        kind: crate::scenario::MediaKind,
    ) -> Result<(), PeerError>;
    /// `restartIce()` on one connection, then a new offer through signaling (returns once the
    /// offer is sent; the engine waits for the answer on the timeline).
    async fn restart_ice(&self, connection: &str) -> Result<(), PeerError>;
    /// Calls `close()` on one connection.
    async fn close(&self, connection: &str) -> Result<(), PeerError>;
    /// Stops the peer as a crash would, without `close()`: nothing more leaves it on any of
    /// its connections or its signaling socket, and its own events stop. Emits
    /// [`EventKind::Killed`]. Later commands fail.
    async fn kill(&self) -> Result<(), PeerError> {
        Err(PeerError::failed(format!(
            "peer kind {} cannot be killed (its Peer implementation has no kill)",
            self.info().kind
        )))
    }
    /// Kills only the peer's automation server (a browser's WebDriver driver: chromedriver,
    /// geckodriver), not the peer itself, as a crashed driver would. The browser and its page
    /// go on; the harness drives the page over its own control socket, so later commands still
    /// work, and at shutdown the browser is killed with the driver's process group. Returns the
    /// name of the program killed.
    async fn kill_driver(&self) -> Result<String, PeerError> {
        Err(PeerError::failed(format!(
            "peer kind {} has no driver process to kill",
            self.info().kind
        )))
    }
    /// Makes the peer hang as a stuck process does: it stays up (sockets open) but answers
    /// nothing and sends nothing (a browser: SIGSTOP to its process group). Emits
    /// [`EventKind::Frozen`]. Later commands run into
    /// their deadlines.
    async fn freeze(&self) -> Result<(), PeerError> {
        Err(PeerError::failed(format!(
            "peer kind {} cannot be frozen (its Peer implementation has no freeze)",
            self.info().kind
        )))
    }
    /// Returns once every event the peer observed until now has been handed to its
    /// [`EventSink`] (a browser: one ping round trip on its ordered control socket). In-process
    /// peers emit synchronously and have nothing to wait for.
    async fn flush(&self) -> Result<(), PeerError> {
        Ok(())
    }
    /// Page peers: performs one action on the app's page; returns its JSON result.
    async fn page(&self, action: &PageAction) -> Result<serde_json::Value, PeerError> {
        Err(PeerError::failed(format!(
            "peer kind {} has no app page for {action:?} (only browser peers with `url` do)",
            self.info().kind
        )))
    }
    /// A PNG screenshot of the peer's page, when it has one.
    async fn screenshot(&self) -> Option<Vec<u8>> {
        None
    }
    /// Console output of the peer so far (browsers: the page's `console.*` calls).
    fn console(&self) -> Vec<String> {
        Vec::new()
    }
    /// Releases everything (connections, sessions, processes). Idempotent.
    async fn shutdown(&self);
}

/// Starts peers of one kind.
#[async_trait]
pub trait Launcher: Send + Sync {
    /// Checks that what the kind needs is installed, without starting anything.
    fn check(&self) -> Result<(), PeerError>;
    /// Starts one peer; with `lab`, inside that network-lab namespace (see [`crate::lab`]).
    async fn launch(
        &self,
        plan: &PeerPlan,
        sink: EventSink,
        lab: Option<&crate::lab::LabHost>,
    ) -> Result<Box<dyn Peer>, PeerError>;
}

/// The launchers available to a run, by kind.
#[derive(Clone, Default)]
pub struct Launchers {
    by_kind: HashMap<PeerKind, Arc<dyn Launcher>>,
}

impl std::fmt::Debug for Launchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launchers")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Launchers {
    /// Registers the launcher for a kind (replacing an earlier one for that kind).
    pub fn with(mut self, kind: PeerKind, launcher: Arc<dyn Launcher>) -> Self {
        // Each peer's calls in its own tracing span, so library lines name their peer.
        self.by_kind
            .insert(kind, Arc::new(traced::TracedLauncher(launcher)));
        self
    }

    /// Adds every launcher of `other`; for a kind both have, `other`'s wins.
    pub fn extend(mut self, other: &Launchers) -> Self {
        for (k, l) in &other.by_kind {
            self.by_kind.insert(k.clone(), l.clone());
        }
        self
    }

    /// The launcher for a kind.
    pub fn get(&self, kind: &PeerKind) -> Option<&Arc<dyn Launcher>> {
        self.by_kind.get(kind)
    }

    /// The kinds registered, sorted by name.
    pub fn kinds(&self) -> Vec<PeerKind> {
        let mut k: Vec<PeerKind> = self.by_kind.keys().cloned().collect();
        k.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        k
    }

    /// The kinds' names, comma-separated (for error messages).
    pub fn names(&self) -> String {
        self.kinds()
            .iter()
            .map(PeerKind::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The session's `a=ice-ufrag` value (RFC 8839 §5.4) of an SDP, from its first occurrence.
pub fn sdp_ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::to_string)
}

/// The candidate type (`typ` field, RFC 8839 §5.1) of a candidate-attribute line.
pub fn candidate_type(line: &str) -> String {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "typ" {
            return words.next().unwrap_or("unknown").to_string();
        }
    }
    "unknown".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_types_are_read_from_the_typ_field() {
        assert_eq!(
            candidate_type("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"),
            "host"
        );
        assert_eq!(
            candidate_type(
                "candidate:2 1 udp 1694498815 198.51.100.1 4000 typ srflx raddr 10.0.0.1 rport 5000"
            ),
            "srflx"
        );
        assert_eq!(candidate_type("garbage"), "unknown");
    }
}
