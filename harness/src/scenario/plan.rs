//! From a deserialized file to a checked [`Plan`]: peer ids resolve, each step has exactly the
//! keys its action needs, and no step is impossible given the steps before it.

use super::file::{
    Action, ConnectOutcome, Direction, ExpectEntry, IceEntry, IcePolicy, IceServerEntry, MediaKind,
    Nat, NetworkEntry, PeerEntry, PeerKind, ScenarioFile, StepEntry, TurnTransport, UdpPolicy,
};
use super::{ScenarioError, line_column};
use crate::timeline::StateMachine;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `timeout_s`.
pub const DEFAULT_TIMEOUT_S: u64 = 30;
/// Smallest message `send` accepts: the header of sequence number and checksum (see
/// [`crate::payload`]).
pub const MIN_MESSAGE_BYTES: u64 = crate::payload::HEADER_LEN as u64;
/// Largest message `send` accepts, in bytes (the data-channel message size every browser takes).
pub const MAX_MESSAGE_BYTES: u64 = 65_536;
/// Most messages one `send` step may send.
pub const MAX_MESSAGES: u64 = 100_000;

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// The file it came from.
    pub source: PathBuf,
    /// Deadline for all steps together.
    pub timeout: Duration,
    /// Periodic stats sampling (`None`: only at the end of each step).
    pub stats_interval: Option<Duration>,
    /// Expected failure diagnostic (must-fail scenarios).
    pub expected_failure: Option<String>,
    /// ICE configuration shared by every peer.
    pub ice: IcePlan,
    /// The network lab, when the file has a `[network]` table.
    pub network: Option<NetworkPlan>,
    /// Peers, in file order.
    pub peers: Vec<PeerPlan>,
    /// Steps, in order.
    pub steps: Vec<StepPlan>,
    /// Expectations.
    pub expectations: Vec<Expectation>,
}

impl Plan {
    /// The peer kinds this scenario needs.
    pub fn kinds(&self) -> HashSet<PeerKind> {
        self.peers.iter().map(|p| p.kind).collect()
    }
}

/// The candidate types (RFC 8445 §5.1.1, W3C `RTCIceCandidateType`).
pub const CANDIDATE_TYPES: [&str; 4] = ["host", "srflx", "prflx", "relay"];

/// ICE configuration of a scenario.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IcePlan {
    /// `iceTransportPolicy`.
    pub policy: IcePolicy,
    /// Servers given as such.
    pub servers: Vec<IceServerEntry>,
    /// A coturn the harness starts for the scenario.
    pub embedded_turn: Option<EmbeddedTurnPlan>,
    /// Give every peer a `stun:` URL of that coturn (it is started for STUN alone too).
    pub embedded_stun: bool,
}

impl IcePlan {
    /// Whether the scenario needs its own coturn.
    pub fn needs_coturn(&self) -> bool {
        self.embedded_turn.is_some() || self.embedded_stun
    }
}

/// The network lab of a scenario: one entry per peer, in peer order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NetworkPlan {
    /// Every peer's network.
    pub peers: Vec<PeerNetwork>,
}

/// Where one peer sits in the lab.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerNetwork {
    /// Peer id.
    pub peer: String,
    /// Its NAT.
    pub nat: Nat,
    /// Its firewall's UDP policy.
    pub udp: UdpPolicy,
    /// Packets dropped each direction, percent.
    pub loss_pct: u8,
    /// Rate limit each direction, kbit/s.
    pub rate_kbit: Option<u64>,
}

/// The embedded TURN server's settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbeddedTurnPlan {
    /// Which `transport=` URLs peers get.
    pub transports: Vec<TurnTransport>,
    /// A wrong password to hand out instead of the right one.
    pub wrong_credential: Option<String>,
}

/// ICE timer overrides for a bot (`None` keeps the webrtc-rs default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BotTimers {
    /// Connectivity-check interval, ms.
    pub ice_check_interval_ms: Option<u64>,
    /// Host-pair acceptance wait, ms.
    pub host_acceptance_wait_ms: Option<u64>,
    /// Server-reflexive-pair acceptance wait, ms.
    pub srflx_acceptance_wait_ms: Option<u64>,
    /// Peer-reflexive-pair acceptance wait, ms.
    pub prflx_acceptance_wait_ms: Option<u64>,
    /// Relay-pair acceptance wait, ms.
    pub relay_acceptance_wait_ms: Option<u64>,
    /// ICE disconnected timeout, ms.
    pub ice_disconnected_timeout_ms: Option<u64>,
    /// ICE failed timeout, ms.
    pub ice_failed_timeout_ms: Option<u64>,
}

impl BotTimers {
    fn is_default(&self) -> bool {
        *self == BotTimers::default()
    }
}

/// One peer.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    /// Id from the file.
    pub id: String,
    /// Kind.
    pub kind: PeerKind,
    /// Bot timer overrides (always default for other kinds).
    pub timers: BotTimers,
    /// Browsers: never reuse an instance for this peer.
    pub fresh_browser: bool,
}

/// A step with its own deadline.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// What to do.
    pub step: Step,
    /// The step's own deadline, if the file set one (it is always cut to the scenario deadline).
    pub timeout: Option<Duration>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Negotiate a connection and wait for both peers to be `connected`.
    Connect {
        /// Connection id (also the signaling room name).
        connection: String,
        /// Calls createOffer.
        offerer: String,
        /// Answers.
        answerer: String,
        /// Data channel created by the offerer.
        data_channel: Option<String>,
        /// Trickle ICE (true) or candidates inside the SDP (false).
        trickle: bool,
        /// Media kinds negotiated.
        media: Vec<MediaKind>,
        /// Transceiver directions of the offerer and the answerer.
        directions: (Direction, Direction),
        /// What the step waits for: both `connected`, or both `failed`.
        outcome: ConnectOutcome,
    },
    /// Send numbered messages and wait until the other side has them all.
    Send {
        /// Sender.
        from: String,
        /// Receiver (the other peer of the connection carrying `channel`).
        to: String,
        /// Connection id.
        connection: String,
        /// Data-channel label.
        channel: String,
        /// Message count.
        messages: u64,
        /// Bytes per message.
        bytes: u64,
    },
    /// Sleep.
    Wait {
        /// Duration.
        ms: u64,
    },
    /// Close every connection of a peer.
    Close {
        /// The peer.
        peer: String,
    },
    /// `peer` adds a track of `kind` and renegotiates; done when its answer is applied and the
    /// other peer has received the new track.
    AddTrack {
        /// The peer adding the track (it makes the new offer).
        peer: String,
        /// The other peer of the connection.
        other: String,
        /// Connection id.
        connection: String,
        /// Kind of the new track.
        kind: MediaKind,
    },
    /// A lab peer's packet loss changes (done as soon as the rules are in place).
    SetNetwork {
        /// The peer.
        peer: String,
        /// New loss each direction, percent.
        loss_pct: u8,
    },
    /// ICE restart initiated by `peer`: `restartIce()`, a new offer, the other side answers;
    /// done when the answer is applied and both peers are connected again.
    RestartIce {
        /// The initiating peer (it makes the new offer).
        peer: String,
        /// The other peer of the connection.
        other: String,
        /// Connection id.
        connection: String,
    },
}

impl Step {
    /// One-line description for progress output and diagnoses.
    pub fn describe(&self) -> String {
        match self {
            Step::Connect {
                offerer, answerer, ..
            } => format!("connect {offerer} -> {answerer}"),
            Step::Send {
                from,
                to,
                channel,
                messages,
                bytes,
                ..
            } => format!("send {messages} x {bytes} B {from} -> {to} on '{channel}'"),
            Step::Wait { ms } => format!("wait {ms} ms"),
            Step::Close { peer } => format!("close {peer}"),
            Step::SetNetwork { peer, loss_pct } => format!("set_network {peer}: loss {loss_pct}%"),
            Step::RestartIce { peer, other, .. } => format!("restart_ice {peer} -> {other}"),
            Step::AddTrack {
                peer, other, kind, ..
            } => format!("add_track {kind:?} {peer} -> {other}").to_lowercase(),
        }
    }
}

/// What must hold for one peer after the last step.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    /// The peer.
    pub peer: String,
    /// Exact state sequences, per state machine.
    pub sequences: Vec<(StateMachine, Vec<String>)>,
    /// States that must not occur.
    pub never: Vec<String>,
    /// Intact, in-order messages received.
    pub received_messages: Option<u64>,
    /// Upper bound on setup_ms.
    pub setup_ms_max: Option<f64>,
    /// Candidate types gathered, sorted and unique.
    pub candidate_types_gathered: Option<Vec<String>>,
    /// Selected pair's (local, remote) candidate types.
    pub selected_pair: Option<(String, String)>,
    /// Minimum whole video frames received.
    pub min_video_frames: Option<u64>,
    /// Minimum audio packets received.
    pub min_audio_packets: Option<u64>,
    /// Upper bound on first_frame_ms.
    pub first_frame_ms_max: Option<f64>,
    /// Upper bound on the selected pair's RTT, ms.
    pub max_rtt_ms: Option<f64>,
    /// Upper bound on inbound RTP loss, percent.
    pub max_packet_loss_pct: Option<f64>,
}

/// One segment of a key path.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::Document<String>>,
}

impl Checker<'_> {
    /// An error pointing at the value (or, if absent, the closest enclosing table) of `segs`.
    fn err(&self, segs: &[Seg<'_>], message: impl Into<String>) -> ScenarioError {
        let span = self.doc.as_ref().and_then(|d| locate(d, segs));
        let (line, column) = line_column(self.text, span.map(|s| s.start).unwrap_or(0));
        ScenarioError {
            file: self.path.to_owned(),
            line,
            column,
            key: render_path(segs),
            message: message.into(),
        }
    }
}

fn render_path(segs: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A position inside a parsed document while following a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
}

impl Node<'_> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }
}

/// The span of the deepest item of `segs` that exists in the document.
fn locate(doc: &toml_edit::Document<String>, segs: &[Seg<'_>]) -> Option<Range<usize>> {
    use toml_edit::{Item, Value};
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in segs {
        let value = match node {
            Node::Item(Item::Value(v)) | Node::Value(v) => Some(v),
            _ => None,
        };
        let next = match (node, value, seg) {
            (Node::Table(t), _, Seg::Key(k)) | (Node::Item(Item::Table(t)), _, Seg::Key(k)) => {
                t.get(k).map(Node::Item)
            }
            (Node::Item(Item::ArrayOfTables(a)), _, Seg::Index(i)) => a.get(*i).map(Node::Table),
            (_, Some(Value::InlineTable(t)), Seg::Key(k)) => t.get(k).map(Node::Value),
            (_, Some(Value::Array(a)), Seg::Index(i)) => a.get(*i).map(Node::Value),
            _ => None,
        };
        let Some(n) = next else { break };
        best = n.span().or(best);
        node = n;
    }
    best
}

pub(super) fn build(path: &Path, text: &str, raw: ScenarioFile) -> Result<Plan, ScenarioError> {
    let c = Checker {
        path,
        text,
        doc: toml_edit::Document::parse(text.to_owned()).ok(),
    };

    if raw.name.trim().is_empty() {
        return Err(c.err(&[Seg::Key("name")], "must not be empty"));
    }
    let timeout_s = raw.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
    if timeout_s == 0 || timeout_s > 3600 {
        return Err(c.err(
            &[Seg::Key("timeout_s")],
            format!("must be between 1 and 3600 seconds, got {timeout_s}"),
        ));
    }
    if let Some(f) = &raw.expected_failure
        && f.trim().is_empty()
    {
        return Err(c.err(
            &[Seg::Key("expected_failure")],
            "must not be empty: name the diagnostic the scenario must fail with",
        ));
    }

    let (ice, trickle_default) = check_ice(&c, raw.ice.as_ref())?;
    let peers = check_peers(&c, &raw.peers)?;
    let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    let network = raw
        .network
        .as_ref()
        .map(|n| check_network(&c, n, &ids))
        .transpose()?;
    let steps = check_steps(
        &c,
        &raw.steps,
        &ids,
        timeout_s,
        trickle_default,
        network.is_some(),
    )?;
    let expectations = check_expectations(&c, &raw.expect, &ids)?;

    Ok(Plan {
        name: raw.name,
        description: raw.description,
        source: path.to_owned(),
        timeout: Duration::from_secs(timeout_s),
        expected_failure: raw.expected_failure,
        stats_interval: match raw.stats_interval_ms.unwrap_or(1000) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        ice,
        network,
        peers,
        steps,
        expectations,
    })
}

fn check_ice(c: &Checker<'_>, raw: Option<&IceEntry>) -> Result<(IcePlan, bool), ScenarioError> {
    let Some(raw) = raw else {
        return Ok((IcePlan::default(), true));
    };
    for (i, s) in raw.servers.iter().enumerate() {
        let at = |k| {
            [
                Seg::Key("ice"),
                Seg::Key("servers"),
                Seg::Index(i),
                Seg::Key(k),
            ]
        };
        if s.urls.is_empty() {
            return Err(c.err(&at("urls"), "an ICE server needs at least one URL"));
        }
        for u in &s.urls {
            let scheme = u.split(':').next().unwrap_or("");
            if !["stun", "stuns", "turn", "turns"].contains(&scheme) || !u.contains(':') {
                return Err(c.err(
                    &at("urls"),
                    format!(
                        "{u:?} is not a stun:, stuns:, turn: or turns: URL (RFC 7064, RFC 7065)"
                    ),
                ));
            }
            if scheme.starts_with("turn") && (s.username.is_none() || s.credential.is_none()) {
                return Err(c.err(
                    &at("urls"),
                    format!("TURN URL {u:?} needs `username` and `credential`"),
                ));
            }
        }
    }
    let embedded_turn = match &raw.embedded_turn {
        None => None,
        Some(t) => {
            let transports = t
                .transports
                .clone()
                .unwrap_or_else(|| vec![TurnTransport::Udp, TurnTransport::Tcp]);
            if transports.is_empty() {
                return Err(c.err(
                    &[
                        Seg::Key("ice"),
                        Seg::Key("embedded_turn"),
                        Seg::Key("transports"),
                    ],
                    "name at least one of \"udp\", \"tcp\"",
                ));
            }
            Some(EmbeddedTurnPlan {
                transports,
                wrong_credential: t.credential.clone(),
            })
        }
    };
    if raw.policy == Some(IcePolicy::Relay) && raw.servers.is_empty() && embedded_turn.is_none() {
        return Err(c.err(
            &[Seg::Key("ice"), Seg::Key("policy")],
            "policy \"relay\" needs a TURN server: add `servers` or `[ice.embedded_turn]`",
        ));
    }
    Ok((
        IcePlan {
            policy: raw.policy.unwrap_or_default(),
            servers: raw.servers.clone(),
            embedded_turn,
            embedded_stun: raw.embedded_stun.unwrap_or(false),
        },
        raw.trickle.unwrap_or(true),
    ))
}

/// A loss percentage from a scenario file, if it is one (0-100; 100 drops every packet).
fn checked_loss_pct(raw: i64) -> Option<u8> {
    u8::try_from(raw).ok().filter(|l| *l <= 100)
}

fn check_network(
    c: &Checker<'_>,
    raw: &NetworkEntry,
    ids: &[&str],
) -> Result<NetworkPlan, ScenarioError> {
    for (id, n) in &raw.peers {
        let at = |k| {
            [
                Seg::Key("network"),
                Seg::Key("peers"),
                Seg::Key(id),
                Seg::Key(k),
            ]
        };
        if !ids.contains(&id.as_str()) {
            return Err(c.err(
                &[Seg::Key("network"), Seg::Key("peers"), Seg::Key(id)],
                format!("unknown peer id {id:?} (peers: {})", ids.join(", ")),
            ));
        }
        if n.loss_pct.is_some_and(|l| checked_loss_pct(l).is_none()) {
            return Err(c.err(&at("loss_pct"), "must be between 0 and 100"));
        }
        if n.rate_kbit.is_some_and(|r| !(8..=10_000_000).contains(&r)) {
            return Err(c.err(&at("rate_kbit"), "must be between 8 and 10000000 kbit/s"));
        }
    }
    Ok(NetworkPlan {
        peers: ids
            .iter()
            .map(|id| {
                let n = raw.peers.get(*id);
                PeerNetwork {
                    peer: id.to_string(),
                    nat: n.and_then(|n| n.nat).unwrap_or_default(),
                    udp: n.and_then(|n| n.udp).unwrap_or_default(),
                    loss_pct: n
                        .and_then(|n| n.loss_pct)
                        .and_then(checked_loss_pct)
                        .unwrap_or(0),
                    rate_kbit: n.and_then(|n| n.rate_kbit),
                }
            })
            .collect(),
    })
}

fn check_peers(c: &Checker<'_>, raw: &[PeerEntry]) -> Result<Vec<PeerPlan>, ScenarioError> {
    if raw.is_empty() {
        return Err(c.err(&[Seg::Key("peers")], "a scenario needs at least one peer"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = |k| [Seg::Key("peers"), Seg::Index(i), Seg::Key(k)];
        if p.id.is_empty()
            || !p
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(c.err(
                &at("id"),
                format!(
                    "peer id {:?} must be non-empty ASCII letters, digits, '-' or '_'",
                    p.id
                ),
            ));
        }
        if !seen.insert(p.id.as_str()) {
            return Err(c.err(&at("id"), format!("duplicate peer id {:?}", p.id)));
        }
        let timers = BotTimers {
            ice_check_interval_ms: p.ice_check_interval_ms,
            host_acceptance_wait_ms: p.host_acceptance_wait_ms,
            srflx_acceptance_wait_ms: p.srflx_acceptance_wait_ms,
            prflx_acceptance_wait_ms: p.prflx_acceptance_wait_ms,
            relay_acceptance_wait_ms: p.relay_acceptance_wait_ms,
            ice_disconnected_timeout_ms: p.ice_disconnected_timeout_ms,
            ice_failed_timeout_ms: p.ice_failed_timeout_ms,
        };
        if p.kind != PeerKind::Bot && !timers.is_default() {
            let key = [
                ("ice_check_interval_ms", p.ice_check_interval_ms),
                ("host_acceptance_wait_ms", p.host_acceptance_wait_ms),
                ("srflx_acceptance_wait_ms", p.srflx_acceptance_wait_ms),
                ("prflx_acceptance_wait_ms", p.prflx_acceptance_wait_ms),
                ("relay_acceptance_wait_ms", p.relay_acceptance_wait_ms),
                ("ice_disconnected_timeout_ms", p.ice_disconnected_timeout_ms),
                ("ice_failed_timeout_ms", p.ice_failed_timeout_ms),
            ]
            .into_iter()
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k)
            .unwrap_or("kind");
            return Err(c.err(
                &at(key),
                format!(
                    "ICE timers can only be set on kind \"bot\"; peer {:?} is {:?}",
                    p.id,
                    p.kind.as_str()
                ),
            ));
        }
        if p.fresh_browser.is_some() && !p.kind.is_browser() {
            return Err(c.err(
                &at("fresh_browser"),
                format!(
                    "fresh_browser only applies to browser kinds; peer {:?} is {:?}",
                    p.id,
                    p.kind.as_str()
                ),
            ));
        }
        if p.ice_check_interval_ms == Some(0) {
            return Err(c.err(&at("ice_check_interval_ms"), "must be at least 1 ms"));
        }
        out.push(PeerPlan {
            id: p.id.clone(),
            kind: p.kind,
            timers,
            fresh_browser: p.fresh_browser.unwrap_or(false),
        });
    }
    Ok(out)
}

fn check_steps(
    c: &Checker<'_>,
    raw: &[StepEntry],
    ids: &[&str],
    timeout_s: u64,
    trickle_default: bool,
    in_lab: bool,
) -> Result<Vec<StepPlan>, ScenarioError> {
    // Connections known so far: id -> (offerer, answerer, data channel); and closed peers.
    let mut connections: Vec<(String, String, String, Option<String>)> = Vec::new();
    let mut connected: HashMap<String, usize> = HashMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut with_media: HashSet<String> = HashSet::new();
    let mut out = Vec::new();

    for (i, s) in raw.iter().enumerate() {
        let at = |k| [Seg::Key("steps"), Seg::Index(i), Seg::Key(k)];
        let allowed: &[&str] = match s.action {
            Action::Connect => &[
                "offerer",
                "answerer",
                "data_channel",
                "trickle",
                "media",
                "directions",
                "outcome",
            ],
            Action::Send => &["from", "channel", "messages", "bytes"],
            Action::Wait => &["ms"],
            Action::Close | Action::RestartIce => &["peer"],
            Action::AddTrack => &["peer", "kind"],
            Action::SetNetwork => &["peer", "loss_pct"],
        };
        let present = [
            ("offerer", s.offerer.is_some()),
            ("answerer", s.answerer.is_some()),
            ("data_channel", s.data_channel.is_some()),
            ("trickle", s.trickle.is_some()),
            ("media", s.media.is_some()),
            ("kind", s.kind.is_some()),
            ("directions", s.directions.is_some()),
            ("outcome", s.outcome.is_some()),
            ("from", s.from.is_some()),
            ("channel", s.channel.is_some()),
            ("messages", s.messages.is_some()),
            ("bytes", s.bytes.is_some()),
            ("ms", s.ms.is_some()),
            ("peer", s.peer.is_some()),
            ("loss_pct", s.loss_pct.is_some()),
        ];
        if let Some((k, _)) = present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
            return Err(c.err(
                &at(k),
                format!(
                    "key `{k}` is not used by action {:?} (it takes: {})",
                    s.action.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
        let need_str = |k: &'static str, v: &Option<String>| -> Result<String, ScenarioError> {
            v.clone().ok_or_else(|| {
                c.err(
                    &[Seg::Key("steps"), Seg::Index(i)],
                    format!("action {:?} needs key `{k}`", s.action.as_str()),
                )
            })
        };
        let need_u64 = |k: &'static str, v: Option<u64>| -> Result<u64, ScenarioError> {
            v.ok_or_else(|| {
                c.err(
                    &[Seg::Key("steps"), Seg::Index(i)],
                    format!("action {:?} needs key `{k}`", s.action.as_str()),
                )
            })
        };
        let peer_ref = |k: &'static str, v: &str| -> Result<(), ScenarioError> {
            if ids.contains(&v) {
                Ok(())
            } else {
                Err(c.err(
                    &at(k),
                    format!("unknown peer id {v:?} (peers: {})", ids.join(", ")),
                ))
            }
        };
        // The connection a peer is in (optionally the one carrying `channel`), the other peer of
        // it, and a check that neither was closed by an earlier step.
        let find_connection = |peer: &str,
                               channel: Option<&str>,
                               key: &'static str,
                               missing: String|
         -> Result<(String, String), ScenarioError> {
            let Some((connection, o, a, _)) = connections.iter().find(|(_, o, a, dc)| {
                (o == peer || a == peer) && channel.is_none_or(|ch| dc.as_deref() == Some(ch))
            }) else {
                return Err(c.err(&at(key), missing));
            };
            let other = if o == peer { a.clone() } else { o.clone() };
            for p in [peer, other.as_str()] {
                if closed.contains(p) {
                    return Err(c.err(
                        &at(key),
                        format!("peer {p:?} was closed by an earlier step"),
                    ));
                }
            }
            Ok((connection.clone(), other))
        };
        if let Some(t) = s.timeout_ms
            && (t == 0 || t > timeout_s * 1000)
        {
            return Err(c.err(
                &at("timeout_ms"),
                format!(
                    "must be between 1 and the scenario's timeout_s ({timeout_s} s = {} ms)",
                    timeout_s * 1000
                ),
            ));
        }

        let step = match s.action {
            Action::Connect => {
                let offerer = need_str("offerer", &s.offerer)?;
                let answerer = need_str("answerer", &s.answerer)?;
                peer_ref("offerer", &offerer)?;
                peer_ref("answerer", &answerer)?;
                if offerer == answerer {
                    return Err(c.err(
                        &at("answerer"),
                        format!("a peer cannot connect to itself ({offerer:?})"),
                    ));
                }
                for (k, p) in [("offerer", &offerer), ("answerer", &answerer)] {
                    if let Some(prev) = connected.get(p) {
                        return Err(c.err(
                            &at(k),
                            format!(
                                "peer {p:?} is already in the connection of step {prev}; one \
                                 connection per peer is supported so far"
                            ),
                        ));
                    }
                }
                match &s.data_channel {
                    Some(label) if label.is_empty() || label.len() > 65_535 => {
                        return Err(c.err(&at("data_channel"), "label must be 1 to 65535 bytes"));
                    }
                    Some(_) => {}
                    None if s.media.as_ref().is_some_and(|m| !m.is_empty()) => {}
                    // An offer with no data channel and no media has no m= section, so no ICE
                    // transport: nothing could ever connect.
                    None => {
                        return Err(c.err(
                            &[Seg::Key("steps"), Seg::Index(i)],
                            "a connect step needs something to negotiate: set `data_channel` or \
                             `media` (an offer without any m= section has no ICE transport)",
                        ));
                    }
                }
                let dirs = s.directions.clone().unwrap_or_default();
                for k in dirs.keys() {
                    if *k != offerer && *k != answerer {
                        return Err(c.err(
                            &[
                                Seg::Key("steps"),
                                Seg::Index(i),
                                Seg::Key("directions"),
                                Seg::Key(k),
                            ],
                            format!("{k:?} is neither the offerer nor the answerer of this step"),
                        ));
                    }
                }
                if !dirs.is_empty() && s.media.as_ref().is_none_or(|m| m.is_empty()) {
                    return Err(c.err(&at("directions"), "directions need `media`"));
                }
                let directions = (
                    dirs.get(&offerer).copied().unwrap_or_default(),
                    dirs.get(&answerer).copied().unwrap_or_default(),
                );
                let connection = format!("conn{i}-{offerer}-{answerer}");
                if s.media.as_ref().is_some_and(|m| !m.is_empty()) {
                    with_media.insert(connection.clone());
                }
                connected.insert(offerer.clone(), i);
                connected.insert(answerer.clone(), i);
                let outcome = s.outcome.unwrap_or_default();
                // A connection that is meant to fail carries nothing later steps could use.
                if outcome == ConnectOutcome::Connected {
                    connections.push((
                        connection.clone(),
                        offerer.clone(),
                        answerer.clone(),
                        s.data_channel.clone(),
                    ));
                }
                Step::Connect {
                    connection,
                    offerer,
                    answerer,
                    data_channel: s.data_channel.clone(),
                    trickle: s.trickle.unwrap_or(trickle_default),
                    media: {
                        let mut m = s.media.clone().unwrap_or_default();
                        m.dedup();
                        m
                    },
                    directions,
                    outcome,
                }
            }
            Action::Send => {
                let from = need_str("from", &s.from)?;
                let channel = need_str("channel", &s.channel)?;
                let messages = need_u64("messages", s.messages)?;
                let bytes = need_u64("bytes", s.bytes)?;
                peer_ref("from", &from)?;
                if messages == 0 || messages > MAX_MESSAGES {
                    return Err(c.err(
                        &at("messages"),
                        format!("must be between 1 and {MAX_MESSAGES}, got {messages}"),
                    ));
                }
                if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&bytes) {
                    return Err(c.err(
                        &at("bytes"),
                        format!(
                            "must be between {MIN_MESSAGE_BYTES} (the sequence-number and \
                             checksum header) and {MAX_MESSAGE_BYTES}, got {bytes}"
                        ),
                    ));
                }
                let (connection, to) = find_connection(
                    &from,
                    Some(&channel),
                    "channel",
                    format!(
                        "no earlier connect step gives peer {from:?} a data channel \
                         {channel:?} (set `data_channel = {channel:?}` on its connect step)"
                    ),
                )?;
                Step::Send {
                    from,
                    to,
                    connection,
                    channel,
                    messages,
                    bytes,
                }
            }
            Action::Wait => {
                let ms = need_u64("ms", s.ms)?;
                if let Some(t) = s.timeout_ms
                    && ms > t
                {
                    return Err(c.err(
                        &at("ms"),
                        format!(
                            "waiting {ms} ms cannot finish within this step's timeout_ms = {t}"
                        ),
                    ));
                }
                if ms > timeout_s * 1000 {
                    return Err(c.err(
                        &at("ms"),
                        format!("{ms} ms is longer than the scenario's timeout_s ({timeout_s} s)"),
                    ));
                }
                Step::Wait { ms }
            }
            Action::AddTrack => {
                let peer = need_str("peer", &s.peer)?;
                peer_ref("peer", &peer)?;
                let kind = s.kind.ok_or_else(|| {
                    c.err(
                        &[Seg::Key("steps"), Seg::Index(i)],
                        "action \"add_track\" needs key `kind` (\"audio\" or \"video\")",
                    )
                })?;
                let (connection, other) = find_connection(
                    &peer,
                    None,
                    "peer",
                    format!(
                        "peer {peer:?} has no connection to add a track to (no earlier connect step)"
                    ),
                )?;
                if !with_media.contains(&connection) {
                    return Err(c.err(
                        &at("peer"),
                        "add_track needs a connection set up with `media` (its codecs are negotiated then)",
                    ));
                }
                Step::AddTrack {
                    peer,
                    other,
                    connection,
                    kind,
                }
            }
            Action::RestartIce => {
                let peer = need_str("peer", &s.peer)?;
                peer_ref("peer", &peer)?;
                let (connection, other) = find_connection(
                    &peer,
                    None,
                    "peer",
                    format!("peer {peer:?} has no connection to restart (no earlier connect step)"),
                )?;
                Step::RestartIce {
                    peer,
                    other,
                    connection,
                }
            }
            Action::Close => {
                let peer = need_str("peer", &s.peer)?;
                peer_ref("peer", &peer)?;
                if !connected.contains_key(&peer) {
                    return Err(c.err(
                        &at("peer"),
                        format!(
                            "peer {peer:?} has no connection to close (no earlier connect step)"
                        ),
                    ));
                }
                if !closed.insert(peer.clone()) {
                    return Err(c.err(&at("peer"), format!("peer {peer:?} is already closed")));
                }
                Step::Close { peer }
            }
            Action::SetNetwork => {
                let peer = need_str("peer", &s.peer)?;
                peer_ref("peer", &peer)?;
                if !in_lab {
                    return Err(c.err(
                        &at("action"),
                        "set_network needs the network lab: add a [network] table",
                    ));
                }
                let loss_pct = s.loss_pct.ok_or_else(|| {
                    c.err(
                        &[Seg::Key("steps"), Seg::Index(i)],
                        "action \"set_network\" needs key `loss_pct`",
                    )
                })?;
                let Some(loss_pct) = checked_loss_pct(loss_pct) else {
                    return Err(c.err(&at("loss_pct"), "must be between 0 and 100"));
                };
                Step::SetNetwork { peer, loss_pct }
            }
        };
        out.push(StepPlan {
            step,
            timeout: s.timeout_ms.map(Duration::from_millis),
        });
    }
    Ok(out)
}

fn check_expectations(
    c: &Checker<'_>,
    raw: &[ExpectEntry],
    ids: &[&str],
) -> Result<Vec<Expectation>, ScenarioError> {
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let at = |k| [Seg::Key("expect"), Seg::Index(i), Seg::Key(k)];
        if !ids.contains(&e.peer.as_str()) {
            return Err(c.err(
                &at("peer"),
                format!("unknown peer id {:?} (peers: {})", e.peer, ids.join(", ")),
            ));
        }
        let mut sequences = Vec::new();
        for (machine, seq) in [
            (StateMachine::Connection, &e.connection_state),
            (StateMachine::IceConnection, &e.ice_connection_state),
            (StateMachine::Signaling, &e.signaling_state),
            (StateMachine::IceGathering, &e.ice_gathering_state),
        ] {
            let Some(seq) = seq else { continue };
            for (j, s) in seq.iter().enumerate() {
                if !machine.states().contains(&s.as_str()) {
                    return Err(c.err(
                        &[
                            Seg::Key("expect"),
                            Seg::Index(i),
                            Seg::Key(machine.key()),
                            Seg::Index(j),
                        ],
                        format!(
                            "{s:?} is not a {} value (one of: {})",
                            machine.attribute(),
                            machine.states().join(", ")
                        ),
                    ));
                }
            }
            if seq.first().map(String::as_str) != Some(machine.initial()) {
                return Err(c.err(
                    &at(machine.key()),
                    format!(
                        "a state sequence starts with the state at creation, {:?}",
                        machine.initial()
                    ),
                ));
            }
            sequences.push((machine, seq.clone()));
        }
        let never = e.never.clone().unwrap_or_default();
        for (j, s) in never.iter().enumerate() {
            if !StateMachine::ALL
                .iter()
                .any(|m| m.states().contains(&s.as_str()))
            {
                return Err(c.err(
                    &[
                        Seg::Key("expect"),
                        Seg::Index(i),
                        Seg::Key("never"),
                        Seg::Index(j),
                    ],
                    format!("{s:?} is not a state of any of the four state machines"),
                ));
            }
        }
        if let Some(m) = e.setup_ms_max
            && !(m.is_finite() && m > 0.0)
        {
            return Err(c.err(&at("setup_ms_max"), "must be a positive number of ms"));
        }
        let mut gathered = None;
        if let Some(types) = &e.candidate_types_gathered {
            for (j, t) in types.iter().enumerate() {
                if !CANDIDATE_TYPES.contains(&t.as_str()) {
                    return Err(c.err(
                        &[
                            Seg::Key("expect"),
                            Seg::Index(i),
                            Seg::Key("candidate_types_gathered"),
                            Seg::Index(j),
                        ],
                        format!(
                            "{t:?} is not a candidate type (one of: {})",
                            CANDIDATE_TYPES.join(", ")
                        ),
                    ));
                }
            }
            let mut t = types.clone();
            t.sort();
            t.dedup();
            gathered = Some(t);
        }
        let mut selected = None;
        if let Some(p) = &e.selected_pair {
            for (k, v) in [("local", &p.local), ("remote", &p.remote)] {
                if !CANDIDATE_TYPES.contains(&v.as_str()) {
                    return Err(c.err(
                        &[
                            Seg::Key("expect"),
                            Seg::Index(i),
                            Seg::Key("selected_pair"),
                            Seg::Key(k),
                        ],
                        format!(
                            "{v:?} is not a candidate type (one of: {})",
                            CANDIDATE_TYPES.join(", ")
                        ),
                    ));
                }
            }
            selected = Some((p.local.clone(), p.remote.clone()));
        }
        if let Some(m) = e.first_frame_ms_max
            && !(m.is_finite() && m > 0.0)
        {
            return Err(c.err(&at("first_frame_ms_max"), "must be a positive number of ms"));
        }
        out.push(Expectation {
            min_video_frames: e.min_video_frames,
            min_audio_packets: e.min_audio_packets,
            first_frame_ms_max: e.first_frame_ms_max,
            max_rtt_ms: e.max_rtt_ms,
            max_packet_loss_pct: e.max_packet_loss_pct,
            candidate_types_gathered: gathered,
            selected_pair: selected,
            peer: e.peer.clone(),
            sequences,
            never,
            received_messages: e.received_messages,
            setup_ms_max: e.setup_ms_max,
        });
    }
    Ok(out)
}
