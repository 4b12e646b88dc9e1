//! The scenario file as written: TOML shapes deserialized with serde, before any cross-checks.
//!
//! Every table denies unknown keys. A `[[steps]]` table is kept as raw TOML here: its `action`
//! names a step kind, and the kind's own module (see [`crate::engine::steps`]) gives its shape
//! and checks it with located errors (serde's internally tagged enums would lose the position of
//! the offending key).

use schemars::JsonSchema;
use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Human-readable name, shown in tables and reports.
    pub name: String,
    /// Deadline for all steps together, in seconds (default 30).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Sample every peer's getStats this often, ms (default 1000; 0: only at the end of each
    /// step).
    #[serde(default)]
    pub stats_interval_ms: Option<u64>,
    /// When set, the scenario is expected to fail with a diagnostic containing this text
    /// (used by `scenarios/must-fail/`). It then passes only if it fails that way.
    #[serde(default)]
    pub expected_failure: Option<String>,
    /// ICE servers, transport policy, trickle default.
    #[serde(default)]
    pub ice: Option<IceEntry>,
    /// The network lab: when present, every peer runs in a network namespace of its own.
    #[serde(default)]
    pub network: Option<NetworkEntry>,
    /// The web app under test: a server the harness starts for the scenario (`command`), or
    /// one running elsewhere (`url`). Browser peers with a `url` load its pages.
    #[serde(default)]
    pub app: Option<AppEntry>,
    /// A load scenario: generated peer pairs connecting at once (then `peers` and `steps`
    /// stay empty: the table makes them).
    #[serde(default)]
    pub load: Option<LoadEntry>,
    /// The peers taking part.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Steps, run in order: each a table whose `action` names its kind (shapes:
    /// [`crate::engine::steps`]).
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub steps: Vec<toml::Table>,
    /// Expectations checked after the last step.
    #[serde(default)]
    pub expect: Vec<ExpectEntry>,
}

/// The `[ice]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IceEntry {
    /// `iceTransportPolicy`: `all` (default) or `relay`.
    pub policy: Option<IcePolicy>,
    /// Default `trickle` of connect steps (a step's own `trickle` wins).
    pub trickle: Option<bool>,
    /// STUN/TURN servers, as `RTCIceServer` dictionaries.
    #[serde(default)]
    pub servers: Vec<IceServerEntry>,
    /// Start a real coturn for the scenario and give every peer its TURN URLs.
    pub embedded_turn: Option<EmbeddedTurnEntry>,
    /// Give every peer a `stun:` URL of the scenario's own coturn (started for it).
    pub embedded_stun: Option<bool>,
}

/// The `[app]` table: the web app under test.
///
/// With `command`, the harness starts it for each run, in `dir`, inside the run's network
/// namespace, with `{port}` (in `command`, `env`, `url` and `ready`) replaced by a free TCP
/// port it picked; it polls `ready` until an HTTP response arrives, and kills the app's process
/// group when the run ends. Without `command`, `url` names an app the user runs elsewhere.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// The program and its arguments, e.g. `["node", "server.js"]`.
    pub command: Option<Vec<String>>,
    /// Where to run it; relative paths are relative to the scenario file's folder (default:
    /// that folder).
    pub dir: Option<String>,
    /// Extra environment variables for the app, e.g. `{ PORT = "{port}" }`.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// The app's base URL: `{app}` in peer URLs and page steps (default, with `command`:
    /// `http://127.0.0.1:{port}`).
    pub url: Option<String>,
    /// URL polled (HTTP GET) until it answers, any status (default: the base URL).
    pub ready: Option<String>,
    /// How long the app may take to answer `ready`, ms (default 20000).
    pub ready_timeout_ms: Option<u64>,
    /// The app's own signaling protocol, for bots that join it (`join_app` steps).
    pub signaling: Option<AppSignalingEntry>,
}

/// `[app.signaling]`: how a bot speaks the app's signaling protocol, as message templates (see
/// [`crate::scenario::template`]: a string that is exactly `"{description}"`, `"{candidate}"`,
/// `"{room}"`, `"{name}"`, `"{peer}"`, ... stands for that part of the call; anything else is
/// sent as it is and must be equal in what is received).
///
/// With `protocol = "socket.io"` a message is a list: the event name, then its arguments. The
/// defaults are the room protocol of the apps this project grew from (the example app
/// `socketio-rooms`). With `protocol = "websocket"` a message is one JSON object (a TOML table)
/// sent as a text frame; the defaults are the classic named-user chat server (the example app
/// `ws-named`): `{type = "login", name = "{name}"}`, then `{type = "offer", offer =
/// "{description}", name = "{peer}"}` and so on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSignalingEntry {
    /// The protocol: `socket.io` (Socket.IO v4 over Engine.IO v4) or `websocket` (JSON text
    /// messages over one WebSocket, RFC 6455).
    pub protocol: AppProtocol,
    /// Where the server is mounted on the app's base URL, with any query string, e.g.
    /// `/ws?token={token}` (default `/socket.io/` for Socket.IO, `/` for WebSocket).
    pub path: Option<String>,
    /// What a bot sends first, to join a room or log in (Socket.IO default `["join",
    /// "{room}"]`; WebSocket default `{ type = "login", name = "{name}" }`); `false`: nothing.
    #[schemars(with = "Option<serde_json::Value>")]
    pub join: Option<toml::Value>,
    /// What the server sends once the bot may offer: the offerer offers on it. Socket.IO: the
    /// event name (default `ready`) or a list [event, args...]; WebSocket: a template (default,
    /// when `join` is the default too: `{ type = "login", success = true }`; else none: the
    /// offerer offers as soon as `join` is sent).
    #[schemars(with = "Option<serde_json::Value>")]
    pub ready: Option<toml::Value>,
    /// How an offer travels, both ways (Socket.IO default `["offer", "{description}",
    /// "{room}"]`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub offer: Option<toml::Value>,
    /// How an answer travels (Socket.IO default `["answer", "{description}", "{room}"]`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub answer: Option<toml::Value>,
    /// How a trickled candidate travels (Socket.IO default `["ice-candidate", "{candidate}",
    /// "{room}"]`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub candidate: Option<toml::Value>,
    /// How offers, answers and candidates look when they arrive, where the app's relay
    /// changes them (e.g. `to = "{peer}"` sent, `from = "{peer}"` received). Default: as sent.
    pub received: Option<AppReceivedEntry>,
    /// Messages that mean the app refused the bot (a failed login, an error reply); `{message}`
    /// marks the app's words. Socket.IO default none; WebSocket default `[{ type = "error",
    /// message = "{message}" }, { type = "login", success = false }]`.
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub errors: Option<Vec<toml::Value>>,
    /// The Socket.IO `auth` payload of the handshake, e.g. `{ token = "{token}" }` (`{run}`
    /// and `{token}` are replaced in its strings).
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub auth: Option<toml::Table>,
    /// Extra HTTP headers of the handshake, e.g. `{ Authorization = "Bearer {token}" }`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Where `{token}` comes from: a JWT the harness mints, or the app's login endpoint.
    pub token: Option<TokenEntry>,
}

/// `[app.signaling.received]`: the shape of relayed messages as the bot receives them, each
/// defaulting to the one sent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppReceivedEntry {
    /// A relayed offer.
    #[schemars(with = "Option<serde_json::Value>")]
    pub offer: Option<toml::Value>,
    /// A relayed answer.
    #[schemars(with = "Option<serde_json::Value>")]
    pub answer: Option<toml::Value>,
    /// A relayed candidate.
    #[schemars(with = "Option<serde_json::Value>")]
    pub candidate: Option<toml::Value>,
}

/// `[app.signaling.token]`: what `{token}` is. Either `secret` (and `claims`): an HS256 JWT
/// (RFC 7519) minted by the harness for each run; or `login_url`: the app's login endpoint,
/// POSTed `login_body` as JSON, the token taken from the answer's `field`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The HS256 secret.
    pub secret: Option<String>,
    /// The claims (`{run}` replaced in strings); `exp` is one hour from now unless given.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub claims: Option<toml::Table>,
    /// The login URL (`{app}` replaced), e.g. `{app}/login`.
    pub login_url: Option<String>,
    /// The JSON body to POST there.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub login_body: Option<toml::Table>,
    /// The answer's field holding the token (default `token`).
    pub field: Option<String>,
}

/// An app signaling protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
pub enum AppProtocol {
    /// Socket.IO v4 (Engine.IO v4), through the `rust_socketio` client.
    #[serde(rename = "socket.io")]
    SocketIo,
    /// JSON text messages over one WebSocket (RFC 6455), through `tokio-tungstenite`.
    #[serde(rename = "websocket")]
    WebSocket,
}

/// The `[network]` table: the network lab (see [`crate::lab`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    /// Per peer id: where it sits. Peers not named get the defaults (no NAT, UDP open).
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, PeerNetworkEntry>,
}

/// `[network.peers.<id>]`: one peer's network.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerNetworkEntry {
    /// The NAT between the peer and the lab's internet segment (default `none`).
    pub nat: Option<Nat>,
    /// Whether UDP passes the peer's firewall (default `open`).
    pub udp: Option<UdpPolicy>,
    /// Percentage of packets dropped, each direction, 0-100 (default 0; 100: every packet).
    /// Signed and wide so that any integer reaches the range check, which names the range.
    #[schemars(range(min = 0, max = 100))]
    pub loss_pct: Option<i64>,
    /// Rate limit each direction, kbit/s (token bucket; default none).
    pub rate_kbit: Option<u64>,
}

/// NAT behaviour (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    /// The peer has an address on the internet segment itself.
    #[default]
    None,
    /// Endpoint-independent mapping (RFC 4787 §4.1), address-and-port-dependent filtering.
    EndpointIndependent,
    /// Address-and-port-dependent mapping (a "symmetric" NAT): a new external port per
    /// destination.
    Symmetric,
}

/// What the peer's firewall does with UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UdpPolicy {
    /// UDP passes.
    #[default]
    Open,
    /// Every UDP packet in or out is dropped (TCP still passes).
    Blocked,
}

/// `iceTransportPolicy` (W3C webrtc-pc §4.2.1, RTCIceTransportPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IcePolicy {
    /// Use every candidate type.
    #[default]
    All,
    /// Use relay candidates only.
    Relay,
}

/// An `RTCIceServer` (W3C webrtc-pc §4.2.2).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IceServerEntry {
    /// `stun:`/`turn:`/`turns:` URLs (RFC 7064, RFC 7065).
    pub urls: Vec<String>,
    /// TURN username.
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

/// `[ice.embedded_turn]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedTurnEntry {
    /// Which `transport=` URLs the peers get: `udp`, `tcp` (default both).
    pub transports: Option<Vec<TurnTransport>>,
    /// Give the peers this password instead of the right one (tests the failure path).
    pub credential: Option<String>,
}

/// TURN client-to-server transport (RFC 7065 `transport=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TurnTransport {
    /// TURN over UDP.
    Udp,
    /// TURN over TCP.
    Tcp,
}

/// Which implementation drives a peer: one of the built-in kinds, or a kind a user crate
/// registers a launcher for ([`crate::runner::Options::launchers`]).
///
/// Written in scenario files as a string (`kind = "bot"`, `kind = "my-endpoint"`). A name that
/// is not built in parses as [`PeerKind::Custom`]; whether a launcher exists for it is checked
/// when the scenario is loaded for a harness ([`crate::scenario::load_with_kinds`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum PeerKind {
    /// An in-process webrtc-rs (`webrtc` crate) peer connection.
    Bot,
    /// Headless Chromium driven by chromedriver over WebDriver.
    Chromium,
    /// Headless Firefox driven by geckodriver over WebDriver.
    Firefox,
    /// A kind of the user's own: an ASCII name of lowercase letters, digits and `-`, starting
    /// with a letter (never one of the built-in names).
    Custom(String),
}

impl PeerKind {
    /// The kinds every harness has a launcher for.
    pub const BUILT_IN: [PeerKind; 3] = [PeerKind::Bot, PeerKind::Chromium, PeerKind::Firefox];

    /// The name used in scenario files.
    pub fn as_str(&self) -> &str {
        match self {
            PeerKind::Bot => "bot",
            PeerKind::Chromium => "chromium",
            PeerKind::Firefox => "firefox",
            PeerKind::Custom(name) => name,
        }
    }

    /// Whether this kind is a browser driven over WebDriver (built-in browsers only).
    pub fn is_browser(&self) -> bool {
        matches!(self, PeerKind::Chromium | PeerKind::Firefox)
    }
}

impl std::fmt::Display for PeerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PeerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bot" => Ok(PeerKind::Bot),
            "chromium" => Ok(PeerKind::Chromium),
            "firefox" => Ok(PeerKind::Firefox),
            other => {
                let mut chars = other.chars();
                let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && other.len() <= 64;
                if well_formed {
                    Ok(PeerKind::Custom(other.to_string()))
                } else {
                    Err(format!(
                        "peer kind {other:?} is not a kind name (built-in: bot, chromium, \
                         firefox; others: lowercase ASCII letters, digits and '-', starting \
                         with a letter, at most 64 characters)"
                    ))
                }
            }
        }
    }
}

impl TryFrom<String> for PeerKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PeerKind> for String {
    fn from(k: PeerKind) -> String {
        match k {
            PeerKind::Custom(name) => name,
            other => other.as_str().to_string(),
        }
    }
}

impl JsonSchema for PeerKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PeerKind".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Which implementation drives a peer: `bot`, `chromium`, `firefox`, \
                or a kind a launcher was registered for by the crate running the scenarios.",
            "type": "string",
            "pattern": "^[a-z][a-z0-9-]{0,63}$",
            "examples": ["bot", "chromium", "firefox"]
        })
    }
}

/// A `[[peers]]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Unique id inside the scenario.
    pub id: String,
    /// Peer kind.
    pub kind: PeerKind,
    /// Browsers only: start a new browser instance for this peer instead of reusing one.
    pub fresh_browser: Option<bool>,
    /// Browsers only: load this page of the app under test instead of the harness's own peer
    /// page (a *page peer*). `{app}` is the `[app]` base URL, `{run}` a token unique to the run
    /// (for room names). Every `RTCPeerConnection` the page creates is observed, as connections
    /// `pc1`, `pc2`, ... in creation order; the page's own script drives them.
    pub url: Option<String>,
    /// Browsers without `url`: install the page peers' instrumentation on the harness's own peer
    /// page too (its observations are dropped), to measure what the wrapper costs.
    pub instrument: Option<bool>,
    /// Bot only: interval between ICE connectivity checks, ms (webrtc-rs default 200).
    pub ice_check_interval_ms: Option<u64>,
    /// Bot only: wait before nominating a host pair, ms (webrtc-rs default 0).
    pub host_acceptance_wait_ms: Option<u64>,
    /// Bot only: wait before nominating a server-reflexive pair, ms (default 500).
    pub srflx_acceptance_wait_ms: Option<u64>,
    /// Bot only: wait before nominating a peer-reflexive pair, ms (default 1000).
    pub prflx_acceptance_wait_ms: Option<u64>,
    /// Bot only: wait before nominating a relay pair, ms (default 2000).
    pub relay_acceptance_wait_ms: Option<u64>,
    /// Bot only: time without ICE traffic before `disconnected`, ms (webrtc-rs default 5000).
    pub ice_disconnected_timeout_ms: Option<u64>,
    /// Bot only: time in `disconnected` (or checking without success) before `failed`, ms
    /// (webrtc-rs default 25000).
    pub ice_failed_timeout_ms: Option<u64>,
}

/// The `[load]` table: `pairs` generated pairs of peers (`o001`/`a001`, ...), each pair one
/// connection, connected `ramp_per_s` a second, held `hold_ms`, then closed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadEntry {
    /// How many pairs (1 to 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub pairs: u32,
    /// Pairs whose connect starts each second (default: all at once).
    pub ramp_per_s: Option<f64>,
    /// The kind of every generated peer (default `bot`).
    pub kind: Option<PeerKind>,
    /// Label of a data channel each offerer creates.
    pub data_channel: Option<String>,
    /// Media each pair sends both ways: `audio`, `video`.
    pub media: Option<Vec<MediaKind>>,
    /// Trickle ICE (default: `[ice] trickle`, else true).
    pub trickle: Option<bool>,
    /// How long every connection is kept up once all pairs have settled, ms (default 1000).
    pub hold_ms: Option<u64>,
    /// The share of pairs that must connect, % (default 100).
    pub min_connected_pct: Option<f64>,
    /// Fail when the pairs' p95 setup time is above this, ms (default: no bound).
    pub setup_ms_p95_max: Option<f64>,
    /// How often the harness samples its CPU, memory and descriptors, ms (default 250).
    pub sample_every_ms: Option<u64>,
}

/// A media kind (W3C `MediaStreamTrack.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

/// `RTCRtpTransceiverDirection` (W3C webrtc-pc §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Send and receive.
    #[default]
    Sendrecv,
    /// Send only.
    Sendonly,
    /// Receive only.
    Recvonly,
    /// Neither.
    Inactive,
}

/// What a connect step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectOutcome {
    /// Both peers reach connectionState `connected`.
    #[default]
    Connected,
    /// Both peers reach connectionState `failed`.
    Failed,
}

/// An `[[expect]]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectEntry {
    /// The peer the expectation is about.
    pub peer: String,
    /// The connection of that peer it is about (default: the peer's only connection; required
    /// when the peer is in several). Ids: a connect step's `connection`, else
    /// `<offerer>~<answerer>`.
    pub connection: Option<String>,
    /// Exact sequence of `connectionState` values, from creation to the end of the last step.
    pub connection_state: Option<Vec<String>>,
    /// Exact sequence of `iceConnectionState` values.
    pub ice_connection_state: Option<Vec<String>>,
    /// Exact sequence of `signalingState` values.
    pub signaling_state: Option<Vec<String>>,
    /// Exact sequence of `iceGatheringState` values.
    pub ice_gathering_state: Option<Vec<String>>,
    /// States that must not occur in any of the four state machines.
    pub never: Option<Vec<String>>,
    /// Intact, in-order data-channel messages this peer must have received.
    pub received_messages: Option<u64>,
    /// Upper bound on `setup_ms` (offerer's createOffer to this peer's `connected`), ms.
    pub setup_ms_max: Option<f64>,
    /// The candidate types this peer gathered, as a set (`host`, `srflx`, `prflx`, `relay`).
    pub candidate_types_gathered: Option<Vec<String>>,
    /// Types of the selected candidate pair once connected.
    pub selected_pair: Option<SelectedPairEntry>,
    /// Whole video frames this peer must have received (browsers: `framesDecoded`).
    pub min_video_frames: Option<u64>,
    /// Audio packets this peer must have received (`packetsReceived`).
    pub min_audio_packets: Option<u64>,
    /// Whole video frames this peer must have received after the last recovery point (a
    /// `set_network` step with `recovers_within_ms`, once it completed) until the end.
    pub min_video_frames_after_recovery: Option<u64>,
    /// Audio packets this peer must have received after the last recovery point.
    pub min_audio_packets_after_recovery: Option<u64>,
    /// Upper bound on `first_frame_ms` (connected → first video frame at this peer), ms.
    pub first_frame_ms_max: Option<f64>,
    /// Upper bound on the selected candidate pair's `currentRoundTripTime`, ms (last stats
    /// sample of the steps).
    pub max_rtt_ms: Option<f64>,
    /// Upper bound on inbound RTP loss, percent: `packetsLost / (packetsReceived +
    /// packetsLost)` over every `inbound-rtp` of the peer (last stats sample).
    pub max_packet_loss_pct: Option<f64>,
    /// Page peers: how many `RTCPeerConnection`s the page created during the steps.
    pub pc_count: Option<u64>,
}

/// `selected_pair = { local = "relay", remote = "host" }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectedPairEntry {
    /// Local candidate type.
    pub local: String,
    /// Remote candidate type.
    pub remote: String,
}
