//! From a deserialized file to a checked [`Plan`]: peer ids resolve, each step has exactly the
//! keys its action needs, and no step is impossible given the steps before it.

use super::file::{
    AppEntry, ExpectEntry, IceEntry, IcePolicy, IceServerEntry, LoadEntry, MediaKind, Nat,
    NetworkEntry, PeerEntry, PeerKind, ScenarioFile, TurnTransport, UdpPolicy,
};
use super::{ScenarioError, line_column};
use crate::engine::steps::{self, BuildCx, Step};
use crate::timeline::StateMachine;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default `timeout_s`.
pub const DEFAULT_TIMEOUT_S: u64 = 30;

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
    /// The web app under test, when the file has an `[app]` table.
    pub app: Option<AppPlan>,
    /// Peers, in file order.
    pub peers: Vec<PeerPlan>,
    /// Steps, in order.
    pub steps: Vec<StepPlan>,
    /// The connections the connect steps make, in step order.
    pub connections: Vec<ConnectionPlan>,
    /// Expectations.
    pub expectations: Vec<Expectation>,
    /// The `[load]` table, checked (its peers and steps are in `peers` and `steps`).
    pub load: Option<LoadPlan>,
}

impl Plan {
    /// Whether a step acts on what every run of the process shares (see
    /// [`crate::engine::steps::Step::exclusive`]), or the plan is a load run (it measures the
    /// whole process): such a plan runs alone under `--jobs`.
    pub fn exclusive(&self) -> bool {
        self.load.is_some() || self.steps.iter().any(|s| s.step.exclusive())
    }

    /// The peer kinds this scenario needs.
    pub fn kinds(&self) -> HashSet<PeerKind> {
        self.peers.iter().map(|p| p.kind.clone()).collect()
    }
}

/// A checked `[load]` table (see [`crate::load`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Number of generated pairs.
    pub pairs: u32,
    /// Pairs started each second (`None`: all at once).
    pub ramp_per_s: Option<f64>,
    /// Kind of every generated peer.
    pub kind: PeerKind,
    /// How long the connections are held, ms.
    pub hold_ms: u64,
    /// The share of pairs that must connect, %.
    pub min_connected_pct: f64,
    /// Bound on the pairs' p95 setup time, ms.
    pub setup_ms_p95_max: Option<f64>,
    /// How often the process is sampled.
    pub sample_every: Duration,
}

/// Most pairs a `[load]` table may ask for.
pub const MAX_LOAD_PAIRS: u32 = 1000;

/// The candidate types (RFC 8445 §5.1.1, W3C `RTCIceCandidateType`).
pub const CANDIDATE_TYPES: [&str; 4] = ["host", "srflx", "prflx", "relay"];

/// The web app under test (the `[app]` table, checked). `{port}` is still unreplaced: each
/// run picks its own port (see [`crate::app`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppPlan {
    /// Program and arguments (`None`: the app runs elsewhere, at `url`).
    pub command: Option<Vec<String>>,
    /// Working directory (absolute, or relative to the harness's own).
    pub dir: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Base URL: what `{app}` stands for.
    pub url: String,
    /// URL polled until it answers.
    pub ready: String,
    /// How long the app may take to answer `ready`.
    pub ready_timeout: Duration,
    /// The app's signaling protocol, when bots join it.
    pub signaling: Option<AppSignalingPlan>,
}

/// How a bot speaks an app's signaling protocol (`[app.signaling]`, checked).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppSignalingPlan {
    /// The protocol.
    pub protocol: super::file::AppProtocol,
    /// Where the server is mounted on the app's base URL, e.g. `/socket.io/`, with any query.
    pub path: String,
    /// What the bot sends first (join a room, log in), if anything.
    pub join: Option<AppMessage>,
    /// What makes the offerer offer; `None`: the offerer offers once `join` is sent.
    pub ready: Option<AppMessage>,
    /// How offers travel.
    pub offer: AppMessage,
    /// How answers travel.
    pub answer: AppMessage,
    /// How candidates travel.
    pub candidate: AppMessage,
    /// How offers, answers and candidates arrive (the same three, where the app's relay
    /// changes them).
    pub received: AppReceived,
    /// Messages that mean the app refused the bot.
    pub errors: Vec<AppMessage>,
    /// The handshake's `auth` payload.
    pub auth: Option<serde_json::Value>,
    /// Extra handshake headers.
    pub headers: Vec<(String, String)>,
    /// Where `{token}` comes from.
    pub token: Option<TokenPlan>,
}

impl AppSignalingPlan {
    /// Whether any message the bot sends names the room (`{room}`).
    pub fn names_rooms(&self) -> bool {
        self.join
            .iter()
            .chain([&self.offer, &self.answer, &self.candidate])
            .any(|m| m.slots().contains(&super::template::Slot::Room))
    }

    /// Whether any template needs to know the other user's name (`{peer}`).
    pub fn names_peers(&self) -> bool {
        [&self.offer, &self.answer, &self.candidate]
            .iter()
            .any(|m| m.slots().contains(&super::template::Slot::Peer))
    }

    /// Replaces every string of the templates, the path, the `auth` payload and the headers
    /// by `f` of it: where `{run}`, `{app}` and `{token}` are filled in before a run.
    pub fn map_strings(&mut self, f: &dyn Fn(&str) -> String) {
        fn go(v: &mut serde_json::Value, f: &dyn Fn(&str) -> String) {
            match v {
                serde_json::Value::String(s) => *s = f(s),
                serde_json::Value::Array(a) => a.iter_mut().for_each(|x| go(x, f)),
                serde_json::Value::Object(o) => o.values_mut().for_each(|x| go(x, f)),
                _ => {}
            }
        }
        self.path = f(&self.path);
        let messages = self
            .join
            .iter_mut()
            .chain(self.ready.iter_mut())
            .chain([&mut self.offer, &mut self.answer, &mut self.candidate])
            .chain([
                &mut self.received.offer,
                &mut self.received.answer,
                &mut self.received.candidate,
            ])
            .chain(self.errors.iter_mut());
        for m in messages {
            m.args.iter_mut().for_each(|a| go(a, f));
        }
        if let Some(a) = self.auth.as_mut() {
            go(a, f);
        }
        for (_, v) in self.headers.iter_mut() {
            *v = f(v);
        }
    }
}

/// The shapes of relayed messages as a bot receives them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppReceived {
    /// A relayed offer.
    pub offer: AppMessage,
    /// A relayed answer.
    pub answer: AppMessage,
    /// A relayed candidate.
    pub candidate: AppMessage,
}

/// What `{token}` is (`[app.signaling.token]` in the scenario file).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenPlan {
    /// An HS256 JWT the harness mints.
    Mint {
        /// The secret.
        secret: String,
        /// The claims.
        claims: serde_json::Map<String, serde_json::Value>,
    },
    /// The app's login endpoint.
    Login {
        /// The URL (`{app}` unreplaced).
        url: String,
        /// The JSON body.
        body: serde_json::Value,
        /// The answer's field holding the token.
        field: String,
    },
}

/// One message of an app protocol: for Socket.IO an event and its arguments, for WebSocket
/// one JSON template (`event` is `None`, `args` holds it). Templates as in
/// [`super::template`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppMessage {
    /// The Socket.IO event name.
    pub event: Option<String>,
    /// The templates, in order.
    pub args: Vec<serde_json::Value>,
}

impl AppMessage {
    /// Every placeholder of the message's templates.
    pub fn slots(&self) -> Vec<super::template::Slot> {
        self.args.iter().flat_map(super::template::slots).collect()
    }
}

/// Default `[app] ready_timeout_ms`.
pub const DEFAULT_APP_READY_TIMEOUT_MS: u64 = 20_000;

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkPlan {
    /// Every peer's network.
    pub peers: Vec<PeerNetwork>,
}

/// Where one peer sits in the lab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Page peers: the app page to load (`{app}` and `{run}` still unreplaced; the run
    /// resolves them). `None`: the harness's own peer page (browsers) or no page (bots).
    pub url: Option<String>,
    /// Harness-page browsers: the page peers' instrumentation installed too (a measurement).
    pub instrument: bool,
}

impl PeerPlan {
    /// Whether the app's page drives this peer's connections (a browser with `url`).
    pub fn is_page(&self) -> bool {
        self.url.is_some()
    }
}

/// A step with its own deadline.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// What to do: a step of one of the kinds in [`crate::engine::steps`].
    pub step: Arc<dyn Step>,
    /// The step's own deadline, if the file set one (it is always cut to the scenario deadline).
    pub timeout: Option<Duration>,
}

/// One connection (one `RTCPeerConnection` at each of two peers), made by a connect step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionPlan {
    /// Connection id: the step's `connection` key, else `<offerer>~<answerer>`. Events,
    /// expectations (`connection = ...`) and the signaling room name use it.
    pub id: String,
    /// Index of the connect step that makes it.
    pub step: usize,
    /// The peer that calls createOffer (empty for a `join_app` bot that answers: the app
    /// decides who offers to it).
    pub offerer: String,
    /// The peer that answers (empty for a `join_app` bot that offers).
    pub answerer: String,
    /// Data channel the offerer creates.
    pub data_channel: Option<String>,
    /// Media negotiated.
    pub media: Vec<MediaKind>,
    /// Whether the connect step expects it to connect (false: `outcome = "failed"`).
    pub expect_connected: bool,
    /// The mesh call it belongs to (`mesh` steps), if any.
    pub call: Option<String>,
}

impl ConnectionPlan {
    /// The other peer of the connection (`None` when `peer` is not in it).
    pub fn other(&self, peer: &str) -> Option<&str> {
        if self.offerer == peer {
            Some(&self.answerer)
        } else if self.answerer == peer {
            Some(&self.offerer)
        } else {
            None
        }
    }

    /// Whether `peer` is one of its two peers.
    pub fn has(&self, peer: &str) -> bool {
        self.other(peer).is_some()
    }
}

/// What must hold for one peer after the last step.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    /// The peer.
    pub peer: String,
    /// The connection of that peer it is about (`None`: the peer is in no connection).
    pub connection: Option<String>,
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
    /// Minimum whole video frames received after the last recovery point.
    pub min_video_frames_after_recovery: Option<u64>,
    /// Minimum audio packets received after the last recovery point.
    pub min_audio_packets_after_recovery: Option<u64>,
    /// Upper bound on first_frame_ms.
    pub first_frame_ms_max: Option<f64>,
    /// Upper bound on the selected pair's RTT, ms.
    pub max_rtt_ms: Option<f64>,
    /// Upper bound on inbound RTP loss, percent.
    pub max_packet_loss_pct: Option<f64>,
    /// Page peers: the number of `RTCPeerConnection`s the page created.
    pub pc_count: Option<u64>,
}

impl Expectation {
    /// Whether it checks anything about a connection (everything but `pc_count`).
    pub fn about_connection(&self) -> bool {
        !self.sequences.is_empty()
            || !self.never.is_empty()
            || self.received_messages.is_some()
            || self.setup_ms_max.is_some()
            || self.candidate_types_gathered.is_some()
            || self.selected_pair.is_some()
            || self.min_video_frames.is_some()
            || self.min_audio_packets.is_some()
            || self.min_video_frames_after_recovery.is_some()
            || self.min_audio_packets_after_recovery.is_some()
            || self.first_frame_ms_max.is_some()
            || self.max_rtt_ms.is_some()
            || self.max_packet_loss_pct.is_some()
    }
}

/// One segment of a key path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Makes located errors for one file.
pub(crate) struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::Document<String>>,
}

impl<'a> Checker<'a> {
    /// A checker for `text`, the contents of `path`.
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            doc: toml_edit::Document::parse(text.to_owned()).ok(),
        }
    }

    /// An error pointing at the value (or, if absent, the closest enclosing table) of `segs`.
    pub(crate) fn err(&self, segs: &[Seg<'_>], message: impl Into<String>) -> ScenarioError {
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
    let c = Checker::new(path, text);

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
    let mut raw = raw;
    let load = match raw.load.take() {
        None => None,
        Some(l) => {
            let (plan, peers, steps) = check_load(&c, &l, &raw, timeout_s)?;
            raw.peers = peers;
            raw.steps = steps;
            Some(plan)
        }
    };
    let app = raw
        .app
        .as_ref()
        .map(|a| check_app(&c, a, path))
        .transpose()?;
    let peers = check_peers(&c, &raw.peers)?;
    if app.is_none()
        && let Some(i) = peers
            .iter()
            .position(|p| p.url.as_deref().is_some_and(|u| u.contains("{app}")))
    {
        return Err(c.err(
            &[Seg::Key("peers"), Seg::Index(i), Seg::Key("url")],
            "uses {app}, but the scenario has no [app] table",
        ));
    }
    if app.is_some()
        && let Some(n) = &raw.network
    {
        let _ = n;
        return Err(c.err(
            &[Seg::Key("network")],
            "[app] and [network] cannot be combined yet: the app runs in the harness's own \
             namespace, which lab peers cannot reach",
        ));
    }
    let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    let network = raw
        .network
        .as_ref()
        .map(|n| check_network(&c, n, &ids))
        .transpose()?;
    let (steps, connections) = check_steps(
        &c,
        &raw.steps,
        &peers,
        timeout_s,
        Tables {
            trickle_default,
            in_lab: network.is_some(),
            embedded_turn: ice.embedded_turn.is_some(),
            app_signaling: app.as_ref().is_some_and(|a| a.signaling.is_some()),
            app_started: app.as_ref().is_some_and(|a| a.command.is_some()),
            app_names_rooms: app
                .as_ref()
                .and_then(|a| a.signaling.as_ref())
                .is_some_and(AppSignalingPlan::names_rooms),
            app_names_peers: app
                .as_ref()
                .and_then(|a| a.signaling.as_ref())
                .is_some_and(AppSignalingPlan::names_peers),
        },
    )?;
    let expectations = check_expectations(&c, &raw.expect, &peers, &connections)?;
    let steps = match &load {
        Some(l) => group_load_steps(steps, l),
        None => steps,
    };

    Ok(Plan {
        name: raw.name,
        description: raw.description,
        source: path.to_owned(),
        timeout: Duration::from_secs(timeout_s),
        expected_failure: raw.expected_failure,
        // A load run samples getStats only at the end of its steps unless asked: hundreds of
        // connections sampled each second would be the load.
        stats_interval: match raw
            .stats_interval_ms
            .unwrap_or(if load.is_some() { 0 } else { 1000 })
        {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        ice,
        network,
        app,
        peers,
        steps,
        connections,
        expectations,
        load,
    })
}

/// Checks a `[load]` table and makes the peers and step tables it stands for: per pair a
/// `connect` (with a data channel `load` when the table asks for neither a data channel nor
/// media), then one `wait` of `hold_ms`, then a `close` of every peer.
fn check_load(
    c: &Checker<'_>,
    l: &LoadEntry,
    raw: &ScenarioFile,
    timeout_s: u64,
) -> Result<(LoadPlan, Vec<PeerEntry>, Vec<toml::Table>), ScenarioError> {
    let at = |k| [Seg::Key("load"), Seg::Key(k)];
    for (key, given) in [
        ("peers", !raw.peers.is_empty()),
        ("steps", !raw.steps.is_empty()),
        ("network", raw.network.is_some()),
        ("app", raw.app.is_some()),
    ] {
        if given {
            return Err(c.err(
                &[Seg::Key(key)],
                format!(
                    "a [load] scenario makes its own peers and steps and runs on loopback: \
                     remove `{key}` (or the [load] table)"
                ),
            ));
        }
    }
    if l.pairs == 0 || l.pairs > MAX_LOAD_PAIRS {
        return Err(c.err(
            &at("pairs"),
            format!("must be between 1 and {MAX_LOAD_PAIRS}, got {}", l.pairs),
        ));
    }
    let positive = |key, v: Option<f64>, unit| match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(c.err(
            &at(key),
            format!("must be a positive number of {unit}, got {x}"),
        )),
        _ => Ok(()),
    };
    positive("ramp_per_s", l.ramp_per_s, "pairs a second")?;
    positive("setup_ms_p95_max", l.setup_ms_p95_max, "ms")?;
    let hold_ms = l.hold_ms.unwrap_or(1000);
    let ramp_ms = l
        .ramp_per_s
        .map(|r| (f64::from(l.pairs - 1) / r * 1000.0) as u64)
        .unwrap_or(0);
    if hold_ms + ramp_ms >= timeout_s * 1000 {
        return Err(c.err(
            // The larger of the two is the one to change.
            &at(if ramp_ms >= hold_ms {
                "ramp_per_s"
            } else {
                "hold_ms"
            }),
            format!(
                "the ramp ({ramp_ms} ms) and the hold ({hold_ms} ms) leave no time to connect \
                 within the scenario's timeout_s ({timeout_s} s)"
            ),
        ));
    }
    let min_connected_pct = l.min_connected_pct.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&min_connected_pct) {
        return Err(c.err(
            &at("min_connected_pct"),
            format!("must be between 0 and 100, got {min_connected_pct}"),
        ));
    }
    let sample_every_ms = l.sample_every_ms.unwrap_or(250);
    if !(10..=60_000).contains(&sample_every_ms) {
        return Err(c.err(
            &at("sample_every_ms"),
            format!("must be between 10 and 60000 ms, got {sample_every_ms}"),
        ));
    }
    if let Some(label) = &l.data_channel
        && (label.is_empty() || label.len() > 65_535)
    {
        return Err(c.err(&at("data_channel"), "label must be 1 to 65535 bytes"));
    }
    let kind = l.kind.clone().unwrap_or(PeerKind::Bot);
    let media = l.media.clone().unwrap_or_default();
    let data_channel = match (&l.data_channel, media.is_empty()) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => Some("load".to_string()),
        (None, false) => None,
    };
    let mut peers = Vec::new();
    let mut connects = Vec::new();
    let mut closes = Vec::new();
    for i in 1..=l.pairs {
        let (o, a) = crate::load::pair_ids(i);
        for id in [&o, &a] {
            peers.push(PeerEntry {
                id: id.clone(),
                kind: kind.clone(),
                fresh_browser: None,
                url: None,
                instrument: None,
                ice_check_interval_ms: None,
                host_acceptance_wait_ms: None,
                srflx_acceptance_wait_ms: None,
                prflx_acceptance_wait_ms: None,
                relay_acceptance_wait_ms: None,
                ice_disconnected_timeout_ms: None,
                ice_failed_timeout_ms: None,
            });
        }
        let mut t = toml::Table::new();
        t.insert("action".into(), "connect".into());
        t.insert("offerer".into(), o.clone().into());
        t.insert("answerer".into(), a.clone().into());
        if let Some(d) = &data_channel {
            t.insert("data_channel".into(), d.clone().into());
        }
        if !media.is_empty() {
            let m: Vec<toml::Value> = media
                .iter()
                .map(|k| {
                    match k {
                        MediaKind::Audio => "audio",
                        MediaKind::Video => "video",
                    }
                    .into()
                })
                .collect();
            t.insert("media".into(), toml::Value::Array(m));
        }
        if let Some(tr) = l.trickle {
            t.insert("trickle".into(), tr.into());
        }
        connects.push(t);
        for id in [o, a] {
            let mut t = toml::Table::new();
            t.insert("action".into(), "close".into());
            t.insert("peer".into(), id.into());
            closes.push(t);
        }
    }
    let mut wait = toml::Table::new();
    wait.insert("action".into(), "wait".into());
    wait.insert("ms".into(), (hold_ms as i64).into());
    let mut steps = connects;
    steps.push(wait);
    steps.extend(closes);
    Ok((
        LoadPlan {
            pairs: l.pairs,
            ramp_per_s: l.ramp_per_s,
            kind,
            hold_ms,
            min_connected_pct,
            setup_ms_p95_max: l.setup_ms_p95_max,
            sample_every: Duration::from_millis(sample_every_ms),
        },
        peers,
        steps,
    ))
}

/// The checked steps of a load plan as three: every connect together (ramped), the hold,
/// every close together.
fn group_load_steps(mut steps: Vec<StepPlan>, l: &LoadPlan) -> Vec<StepPlan> {
    let n = l.pairs as usize;
    let closes: Vec<Arc<dyn Step>> = steps.split_off(n + 1).into_iter().map(|s| s.step).collect();
    let hold = steps.pop().expect("the hold step");
    let connects: Vec<Arc<dyn Step>> = steps.into_iter().map(|s| s.step).collect();
    let ramp = l
        .ramp_per_s
        .map(|r| format!(", {r} a second"))
        .unwrap_or_default();
    vec![
        StepPlan {
            step: Arc::new(steps::Together {
                what: format!("connect {n} pairs{ramp}"),
                parts: connects,
                every: l.ramp_per_s.map(|r| Duration::from_secs_f64(1.0 / r)),
                strict: false,
            }),
            timeout: None,
        },
        hold,
        StepPlan {
            step: Arc::new(steps::Together {
                what: format!("close all {} peers", 2 * n),
                parts: closes,
                every: None,
                strict: false,
            }),
            timeout: None,
        },
    ]
}

fn check_app(c: &Checker<'_>, a: &AppEntry, file: &Path) -> Result<AppPlan, ScenarioError> {
    let at = |k| [Seg::Key("app"), Seg::Key(k)];
    // A bare file name ("my.toml") has an empty parent: the current folder.
    let here = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if a.command.is_none() && a.url.is_none() {
        return Err(c.err(
            &[Seg::Key("app")],
            "[app] needs `command` (an app the harness starts) or `url` (one running elsewhere)",
        ));
    }
    if let Some(cmd) = &a.command
        && cmd.first().is_none_or(|p| p.trim().is_empty())
    {
        return Err(c.err(
            &at("command"),
            "must name a program: a list such as [\"node\", \"server.js\"]",
        ));
    }
    if a.command.is_none() {
        for (key, given) in [
            ("dir", a.dir.is_some()),
            ("env", !a.env.is_empty()),
            ("ready", a.ready.is_some()),
            ("ready_timeout_ms", a.ready_timeout_ms.is_some()),
        ] {
            if given {
                return Err(c.err(
                    &at(key),
                    "only applies with `command` (an app the harness starts)",
                ));
            }
        }
    }
    let url = match (&a.url, &a.command) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, _) => "http://127.0.0.1:{port}".to_string(),
    };
    for (key, v) in [("url", Some(&url)), ("ready", a.ready.as_ref())] {
        let Some(v) = v else { continue };
        let probe = v.replace("{port}", "1");
        if !(probe.starts_with("http://") || probe.starts_with("https://"))
            || probe.split("//").nth(1).is_none_or(|h| h.is_empty())
        {
            return Err(c.err(&at(key), format!("{v:?} is not an http:// or https:// URL")));
        }
    }
    let uses_port = a.command.iter().flatten().any(|s| s.contains("{port}"))
        || a.env.values().any(|v| v.contains("{port}"));
    if a.command.is_some() && url.contains("{port}") && !uses_port {
        return Err(c.err(
            &at("env"),
            "the app's URL uses {port}, but neither `command` nor `env` passes {port} to the \
             app (e.g. env = { PORT = \"{port}\" })",
        ));
    }
    let timeout_ms = a.ready_timeout_ms.unwrap_or(DEFAULT_APP_READY_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > 600_000 {
        return Err(c.err(&at("ready_timeout_ms"), "must be between 1 and 600000 ms"));
    }
    let dir = match &a.dir {
        Some(d) => here.join(d),
        None => here.to_path_buf(),
    };
    if a.command.is_some() && !dir.is_dir() {
        return Err(c.err(&at("dir"), format!("{} is not a folder", dir.display())));
    }
    Ok(AppPlan {
        command: a.command.clone(),
        dir,
        env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ready: a.ready.clone().unwrap_or_else(|| url.clone()),
        url,
        ready_timeout: Duration::from_millis(timeout_ms),
        signaling: a
            .signaling
            .as_ref()
            .map(|s| check_app_signaling(c, s))
            .transpose()?,
    })
}

fn check_app_signaling(
    c: &Checker<'_>,
    s: &super::file::AppSignalingEntry,
) -> Result<AppSignalingPlan, ScenarioError> {
    use super::file::AppProtocol;
    use super::template::{self as tpl, Slot};
    let socket_io = s.protocol == AppProtocol::SocketIo;
    let key_at = |key: &'static str, i: Option<usize>| {
        let mut at = vec![Seg::Key("app"), Seg::Key("signaling"), Seg::Key(key)];
        at.extend(i.map(Seg::Index));
        at
    };
    // A given message, as JSON; `None` when the key is absent.
    let json_of = |v: &toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    let message_at =
        |at: Vec<Seg<'static>>, given: &toml::Value| -> Result<AppMessage, ScenarioError> {
            let v = json_of(given);
            let m = if socket_io {
                let Some(words) = v.as_array() else {
                    return Err(c.err(
                        &at,
                        "a Socket.IO message is a list: the event name, then its arguments",
                    ));
                };
                let Some((serde_json::Value::String(event), rest)) = words.split_first() else {
                    return Err(c.err(&at, "the first element is the event name, a string"));
                };
                if event.trim().is_empty() || event.starts_with('{') {
                    return Err(c.err(&at, "the first element is the event name"));
                }
                AppMessage {
                    event: Some(event.clone()),
                    args: rest.to_vec(),
                }
            } else {
                if !(v.is_object() || v.is_array()) {
                    return Err(c.err(
                        &at,
                        "a WebSocket message template is a table (a JSON object) or a list",
                    ));
                }
                AppMessage {
                    event: None,
                    args: vec![v],
                }
            };
            for a in &m.args {
                if let Some(bad) = tpl::unknown_placeholders(a).first() {
                    return Err(c.err(
                        &at,
                        format!(
                            "{bad} (placeholders: {{description}}, \
                         {{description.type}}, {{description.sdp}}, {{candidate}}, \
                         {{candidate.candidate}}, {{candidate.sdpMid}}, \
                         {{candidate.sdpMLineIndex}}, {{candidate.usernameFragment}}, {{room}}, \
                         {{name}}, {{peer}}, {{message}}; replaced before the run: {{run}}, \
                         {{app}}, {{token}})"
                        ),
                    ));
                }
            }
            Ok(m)
        };
    let message = |key: &'static str, i: Option<usize>, given: &toml::Value| {
        message_at(key_at(key, i), given)
    };
    let described_at =
        |at: Vec<Seg<'static>>, m: AppMessage| -> Result<AppMessage, ScenarioError> {
            let slots = m.slots();
            let sdp = slots
                .iter()
                .filter(|x| matches!(x, Slot::Description | Slot::DescriptionSdp))
                .count();
            if sdp != 1 {
                return Err(c.err(
                    &at,
                    "needs exactly one \"{description}\" (the RTCSessionDescriptionInit) or \
                 \"{description.sdp}\" (its SDP text)",
                ));
            }
            Ok(m)
        };
    let defaults = |sio: &str, ws: &str| -> toml::Value {
        let text = if socket_io { sio } else { ws };
        toml::from_str::<toml::Table>(&format!("v = {text}"))
            .map(|mut t| t.remove("v").unwrap_or(toml::Value::Boolean(false)))
            .unwrap_or(toml::Value::Boolean(false))
    };
    let or = |given: &Option<toml::Value>, sio: &str, ws: &str| {
        given.clone().unwrap_or_else(|| defaults(sio, ws))
    };
    // `join = false`: the bot sends nothing before negotiating (the app knows it by its URL).
    let join = match &s.join {
        Some(toml::Value::Boolean(false)) => None,
        given => Some(message(
            "join",
            None,
            &or(
                given,
                r#"["join", "{room}"]"#,
                r#"{ type = "login", name = "{name}" }"#,
            ),
        )?),
    };
    // Socket.IO's `ready` may be just the event name. The WebSocket default waits for the login
    // reply only when the login is the default one too.
    let ready = match (&s.ready, socket_io) {
        (Some(toml::Value::String(event)), true) => Some(message(
            "ready",
            None,
            &toml::Value::Array(vec![toml::Value::String(event.clone())]),
        )?),
        (Some(v), _) => Some(message("ready", None, v)?),
        (None, true) => Some(message("ready", None, &defaults(r#"["ready"]"#, ""))?),
        (None, false) if s.join.is_none() => Some(message(
            "ready",
            None,
            &defaults("", r#"{ type = "login", success = true }"#),
        )?),
        (None, false) => None,
    };
    let described = |key: &'static str, m: AppMessage| described_at(key_at(key, None), m);
    let offer = described(
        "offer",
        message(
            "offer",
            None,
            &or(
                &s.offer,
                r#"["offer", "{description}", "{room}"]"#,
                r#"{ type = "offer", offer = "{description}", name = "{peer}" }"#,
            ),
        )?,
    )?;
    let answer = described(
        "answer",
        message(
            "answer",
            None,
            &or(
                &s.answer,
                r#"["answer", "{description}", "{room}"]"#,
                r#"{ type = "answer", answer = "{description}", name = "{peer}" }"#,
            ),
        )?,
    )?;
    let candidate = message(
        "candidate",
        None,
        &or(
            &s.candidate,
            r#"["ice-candidate", "{candidate}", "{room}"]"#,
            r#"{ type = "candidate", candidate = "{candidate}", name = "{peer}" }"#,
        ),
    )?;
    let candidated = |at: Vec<Seg<'static>>, m: AppMessage| -> Result<AppMessage, ScenarioError> {
        let whole = m
            .slots()
            .iter()
            .filter(|x| matches!(x, Slot::Candidate | Slot::CandidateMember("candidate")))
            .count();
        if whole != 1 {
            return Err(c.err(
                &at,
                "needs exactly one \"{candidate}\" (the RTCIceCandidateInit) or \
                 \"{candidate.candidate}\" (its candidate-attribute)",
            ));
        }
        Ok(m)
    };
    let candidate = candidated(key_at("candidate", None), candidate)?;
    let received = {
        let r = s.received.as_ref();
        let at = |k: &'static str| {
            vec![
                Seg::Key("app"),
                Seg::Key("signaling"),
                Seg::Key("received"),
                Seg::Key(k),
            ]
        };
        let one = |k: &'static str,
                   given: Option<&toml::Value>,
                   sent: &AppMessage|
         -> Result<AppMessage, ScenarioError> {
            match given {
                None => Ok(sent.clone()),
                Some(v) => message_at(at(k), v),
            }
        };
        let offer_in = one("offer", r.and_then(|r| r.offer.as_ref()), &offer)?;
        let answer_in = one("answer", r.and_then(|r| r.answer.as_ref()), &answer)?;
        let candidate_in = one(
            "candidate",
            r.and_then(|r| r.candidate.as_ref()),
            &candidate,
        )?;
        let typed = |m: &AppMessage| {
            m.slots()
                .iter()
                .any(|x| matches!(x, Slot::Description | Slot::DescriptionType))
        };
        if offer_in == answer_in && !typed(&offer_in) {
            return Err(c.err(
                &key_at("answer", None),
                "offer and answer arrive in the same shape and neither carries the \
                 description's type (\"{description}\" or \"{description.type}\"): the bot \
                 could not tell an answer from an offer",
            ));
        }
        AppReceived {
            offer: described_at(at("offer"), offer_in)?,
            answer: described_at(at("answer"), answer_in)?,
            candidate: candidated(at("candidate"), candidate_in)?,
        }
    };
    let errors = match &s.errors {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| message("errors", Some(i), v))
            .collect::<Result<Vec<_>, _>>()?,
        None if socket_io => Vec::new(),
        None => vec![
            message(
                "errors",
                None,
                &defaults("", r#"{ type = "error", message = "{message}" }"#),
            )?,
            message(
                "errors",
                None,
                &defaults("", r#"{ type = "login", success = false }"#),
            )?,
        ],
    };
    if !socket_io && s.auth.is_some() {
        return Err(c.err(
            &key_at("auth", None),
            "auth is the Socket.IO handshake payload; a WebSocket app takes a token in `path` \
             (e.g. \"/ws?token={token}\"), `headers` or the `join` message",
        ));
    }
    let path = s
        .path
        .clone()
        .unwrap_or_else(|| if socket_io { "/socket.io/" } else { "/" }.into());
    if !path.starts_with('/') {
        return Err(c.err(
            &[Seg::Key("app"), Seg::Key("signaling"), Seg::Key("path")],
            "must start with /",
        ));
    }
    let auth = match &s.auth {
        Some(t) => Some(serde_json::to_value(t).map_err(|e| {
            c.err(
                &[Seg::Key("app"), Seg::Key("signaling"), Seg::Key("auth")],
                e.to_string(),
            )
        })?),
        None => None,
    };
    let tat = |k| {
        [
            Seg::Key("app"),
            Seg::Key("signaling"),
            Seg::Key("token"),
            Seg::Key(k),
        ]
    };
    let token = match &s.token {
        None => None,
        Some(t) => Some(match (&t.secret, &t.login_url) {
            (Some(secret), None) => {
                if t.login_body.is_some() || t.field.is_some() {
                    return Err(c.err(
                        &tat("secret"),
                        "a minted token takes secret and claims only",
                    ));
                }
                let claims = match &t.claims {
                    Some(c) => serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_object().cloned())
                        .unwrap_or_default(),
                    None => serde_json::Map::new(),
                };
                TokenPlan::Mint {
                    secret: secret.clone(),
                    claims,
                }
            }
            (None, Some(url)) => {
                if t.claims.is_some() {
                    return Err(c.err(&tat("claims"), "claims are for a minted token (secret)"));
                }
                TokenPlan::Login {
                    url: url.clone(),
                    body: t
                        .login_body
                        .as_ref()
                        .and_then(|b| serde_json::to_value(b).ok())
                        .unwrap_or(serde_json::json!({})),
                    field: t.field.clone().unwrap_or_else(|| "token".into()),
                }
            }
            _ => {
                return Err(c.err(
                    &[Seg::Key("app"), Seg::Key("signaling"), Seg::Key("token")],
                    "needs exactly one of `secret` (the harness mints an HS256 JWT) and \
                     `login_url` (the app's login endpoint)",
                ));
            }
        }),
    };
    Ok(AppSignalingPlan {
        token,
        headers: s
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        protocol: s.protocol,
        path,
        join,
        ready,
        offer,
        answer,
        candidate,
        received,
        errors,
        auth,
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
pub(crate) fn checked_loss_pct(raw: i64) -> Option<u8> {
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
        if let Some(u) = &p.url {
            if !p.kind.is_browser() {
                return Err(c.err(
                    &at("url"),
                    format!(
                        "url (a page peer) only applies to browser kinds; peer {:?} is {:?}",
                        p.id,
                        p.kind.as_str()
                    ),
                ));
            }
            let probe = u.replace("{app}", "http://app").replace("{run}", "r");
            if !(probe.starts_with("http://") || probe.starts_with("https://")) {
                return Err(c.err(
                    &at("url"),
                    format!(
                        "{u:?} is not an http:// or https:// URL (or one starting with {{app}})"
                    ),
                ));
            }
        }
        if p.instrument.is_some() && (!p.kind.is_browser() || p.url.is_some()) {
            return Err(c.err(
                &at("instrument"),
                "instrument applies to browsers on the harness's own page (page peers always are)",
            ));
        }
        if p.ice_check_interval_ms == Some(0) {
            return Err(c.err(&at("ice_check_interval_ms"), "must be at least 1 ms"));
        }
        out.push(PeerPlan {
            id: p.id.clone(),
            kind: p.kind.clone(),
            timers,
            fresh_browser: p.fresh_browser.unwrap_or(false),
            url: p.url.clone(),
            instrument: p.instrument.unwrap_or(false),
        });
    }
    Ok(out)
}

/// What the scenario's other tables say that steps depend on.
struct Tables {
    trickle_default: bool,
    in_lab: bool,
    embedded_turn: bool,
    app_signaling: bool,
    app_names_peers: bool,
    app_started: bool,
    app_names_rooms: bool,
}

fn check_steps(
    c: &Checker<'_>,
    raw: &[toml::Table],
    peers: &[PeerPlan],
    timeout_s: u64,
    tables: Tables,
) -> Result<(Vec<StepPlan>, Vec<ConnectionPlan>), ScenarioError> {
    let Tables {
        trickle_default,
        in_lab,
        embedded_turn,
        app_signaling,
        app_names_peers,
        app_started,
        app_names_rooms,
    } = tables;
    let mut connections = Vec::new();
    let mut closed = HashSet::new();
    let mut out = Vec::new();
    for (i, table) in raw.iter().enumerate() {
        let mut table = table.clone();
        let here = [Seg::Key("steps"), Seg::Index(i)];
        let at = |k| [Seg::Key("steps"), Seg::Index(i), Seg::Key(k)];
        let actions = steps::KINDS
            .iter()
            .map(|k| k.action)
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match table.remove("action") {
            None => {
                return Err(c.err(
                    &here,
                    format!("a step needs key `action` (one of: {actions})"),
                ));
            }
            Some(toml::Value::String(a)) => steps::kind(&a).ok_or_else(|| {
                c.err(
                    &at("action"),
                    format!("unknown action {a:?} (actions: {actions})"),
                )
            })?,
            Some(_) => {
                return Err(c.err(
                    &at("action"),
                    format!("must be a string naming the action (one of: {actions})"),
                ));
            }
        };
        let timeout_ms = match table.remove("timeout_ms") {
            None => None,
            Some(toml::Value::Integer(t)) if t >= 1 && (t as u64) <= timeout_s * 1000 => {
                Some(t as u64)
            }
            Some(_) => {
                return Err(c.err(
                    &at("timeout_ms"),
                    format!(
                        "must be a whole number of ms between 1 and the scenario's timeout_s \
                         ({timeout_s} s = {} ms)",
                        timeout_s * 1000
                    ),
                ));
            }
        };
        let mut cx = BuildCx {
            checker: c,
            index: i,
            action: kind.action,
            peers,
            timeout_s,
            timeout_ms,
            trickle_default,
            in_lab,
            embedded_turn,
            app_signaling,
            app_names_peers,
            app_started,
            app_names_rooms,
            connections: &mut connections,
            closed: &mut closed,
        };
        let step = (kind.build)(&mut cx, table)?;
        out.push(StepPlan {
            step,
            timeout: timeout_ms.map(Duration::from_millis),
        });
    }
    Ok((out, connections))
}

/// Whether `id` names a page's RTCPeerConnection: `pc1`, `pc2`, ...
pub fn is_page_connection_id(id: &str) -> bool {
    id.strip_prefix("pc").is_some_and(|n| {
        !n.starts_with('0') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn check_expectations(
    c: &Checker<'_>,
    raw: &[ExpectEntry],
    peers: &[PeerPlan],
    connections: &[ConnectionPlan],
) -> Result<Vec<Expectation>, ScenarioError> {
    let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let at = |k| [Seg::Key("expect"), Seg::Index(i), Seg::Key(k)];
        if !ids.contains(&e.peer.as_str()) {
            return Err(c.err(
                &at("peer"),
                format!("unknown peer id {:?} (peers: {})", e.peer, ids.join(", ")),
            ));
        }
        let page = peers.iter().any(|p| p.id == e.peer && p.is_page());
        if e.pc_count.is_some() && !page {
            return Err(c.err(
                &at("pc_count"),
                format!(
                    "pc_count only applies to page peers (a browser with `url`); peer {:?} is not one",
                    e.peer
                ),
            ));
        }
        let page_connection = match (&e.connection, page) {
            (_, false) => None,
            (None, true) => Some(String::new()),
            (Some(want), true) if is_page_connection_id(want) => Some(want.clone()),
            (Some(want), true) => {
                return Err(c.err(
                    &at("connection"),
                    format!(
                        "{want:?} is not a page connection id: a page's RTCPeerConnections are \
                         pc1, pc2, ... in creation order"
                    ),
                ));
            }
        };
        let mine: Vec<&str> = connections
            .iter()
            .filter(|k| k.has(&e.peer))
            .map(|k| k.id.as_str())
            .collect();
        let connection = match (&e.connection, mine.as_slice()) {
            _ if page_connection.is_some() => page_connection,
            (Some(want), _) if mine.contains(&want.as_str()) => Some(want.clone()),
            (Some(want), []) => {
                return Err(c.err(
                    &at("connection"),
                    format!(
                        "peer {:?} is in no connection (no connect step names it), so not in {want:?}",
                        e.peer
                    ),
                ));
            }
            (Some(want), _) => {
                return Err(c.err(
                    &at("connection"),
                    format!(
                        "peer {:?} is not in connection {want:?} (its connections: {})",
                        e.peer,
                        mine.join(", ")
                    ),
                ));
            }
            (None, []) => None,
            (None, [only]) => Some(only.to_string()),
            (None, several) => {
                return Err(c.err(
                    &[Seg::Key("expect"), Seg::Index(i)],
                    format!(
                        "peer {:?} is in {} connections ({}): name one with `connection`",
                        e.peer,
                        several.len(),
                        several.join(", ")
                    ),
                ));
            }
        };
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
            min_video_frames_after_recovery: e.min_video_frames_after_recovery,
            min_audio_packets_after_recovery: e.min_audio_packets_after_recovery,
            first_frame_ms_max: e.first_frame_ms_max,
            max_rtt_ms: e.max_rtt_ms,
            max_packet_loss_pct: e.max_packet_loss_pct,
            candidate_types_gathered: gathered,
            selected_pair: selected,
            peer: e.peer.clone(),
            connection,
            sequences,
            never,
            received_messages: e.received_messages,
            setup_ms_max: e.setup_ms_max,
            pc_count: e.pc_count,
        });
    }
    Ok(out)
}
