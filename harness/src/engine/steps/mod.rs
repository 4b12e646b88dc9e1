//! Step kinds: one module per `action`, each holding everything about its kind.
//!
//! A kind's module gives, in one place:
//! - its **file shape**: a `serde` + `schemars` struct of the keys a `[[steps]]` table of that
//!   action takes (besides `action` and `timeout_ms`, which every step has), and the checks
//!   against the plan so far, with located errors ([`BuildCx`]);
//! - how it **starts** ([`Step::start`]: the commands it gives peers), and what **completes** it:
//!   a [`Watch`] whose [`Watch::progress`] is a pure function of the timeline;
//! - what it is **waiting for** when its deadline passes ([`Watch::waiting_for`]), which peers a
//!   diagnosis shows ([`Step::endpoints`]), and its one-line **description** for the progress line.
//!
//! Adding a kind is its module plus one line in [`KINDS`]. The engine never matches on kinds.

mod add_track;
mod close;
mod connect;
mod drop_signaling;
mod freeze;
mod join_app;
mod kill;
mod mark;
mod mesh;
mod page;
mod restart_app;
mod restart_ice;
mod restart_signaling;
mod restart_turn;
mod send;
mod set_network;
mod together;
mod wait;
mod wait_state;

pub use connect::Connect;
pub use mesh::{MAX_MESH_PEERS, Mesh};
pub use send::{MAX_MESSAGE_BYTES, MAX_MESSAGES, MIN_MESSAGE_BYTES, SendMessages};
pub use together::Together;

use super::context::RunCx;
use super::error::StepError;
use crate::scenario::{Checker, ConnectionPlan, PeerPlan, ScenarioError, Seg};
use crate::timeline::{Endpoint, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::sync::Arc;

/// A kind's check of one `[[steps]]` table: the step, or a located error.
pub type BuildFn = fn(&mut BuildCx<'_>, toml::Table) -> Result<Arc<dyn Step>, ScenarioError>;

/// One registered step kind.
pub struct Kind {
    /// The `action` value that selects it.
    pub action: &'static str,
    /// One line on what it does (shown in the JSON Schema).
    pub summary: &'static str,
    /// Checks a `[[steps]]` table (without `action` and `timeout_ms`) against the plan so far.
    pub build: BuildFn,
    /// The JSON Schema of the table's own keys.
    pub schema: fn() -> schemars::Schema,
}

/// Every step kind, in the order the README documents them. Registering a kind is one line.
pub const KINDS: &[Kind] = &[
    connect::KIND,
    mesh::KIND,
    join_app::KIND,
    send::KIND,
    wait::KIND,
    close::KIND,
    restart_ice::KIND,
    add_track::KIND,
    set_network::KIND,
    kill::KIND,
    freeze::KIND,
    drop_signaling::KIND,
    restart_signaling::KIND,
    restart_app::KIND,
    restart_turn::KIND,
    wait_state::KIND,
    mark::KIND,
    page::OPEN,
    page::CLICK,
    page::FILL,
    page::WAIT_FOR,
    page::EVAL,
];

/// The kind for an `action` value.
pub fn kind(action: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.action == action)
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Finished.
    Done,
    /// Not yet.
    Waiting,
    /// Cannot finish any more.
    Failed(String),
}

/// A step of a plan: built from the file once, run once per repetition.
#[async_trait]
pub trait Step: std::fmt::Debug + std::any::Any + std::marker::Send + Sync {
    /// One-line description for the progress line and diagnoses.
    fn describe(&self) -> String;
    /// The endpoints (peer, connection) a diagnosis of this step shows.
    fn endpoints(&self) -> Vec<Endpoint<'_>>;
    /// Gives the peers their commands and returns what decides completion. The timeline in `cx`
    /// is still as it was when the step began (events that arrive meanwhile are queued).
    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError>;
    /// Whether interval stats samples may be taken while the step waits (a connect step says
    /// no: getStats on a browser's main thread would disturb the setup it times).
    fn samples_while_waiting(&self) -> bool {
        true
    }
    /// Whether the step acts on something every scenario run of the process shares (the
    /// embedded signaling server): a plan with such a step never runs beside another under
    /// `--jobs`.
    fn exclusive(&self) -> bool {
        false
    }
    /// Runs once the step is done (a connect step records the selected candidate pairs).
    async fn finish(&self, _cx: &mut RunCx<'_>) -> Result<(), StepError> {
        Ok(())
    }
    /// Intervals the step itself defines, from the run's timeline, as `(name, ms)` (a mesh
    /// step's `mesh_complete_ms`); most steps define none.
    fn metrics(&self, _timeline: &Timeline) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// Decides, from the timeline alone, whether a started step is done (pure).
pub trait Watch: std::marker::Send {
    /// Where the step stands.
    fn progress(&self, timeline: &Timeline) -> Progress;
    /// What it still waits for, for the diagnosis when the deadline passes.
    fn waiting_for(&self, timeline: &Timeline) -> String;
}

/// A step that is done as soon as it has started (its command returned).
pub struct Immediate;

impl Watch for Immediate {
    fn progress(&self, _: &Timeline) -> Progress {
        Progress::Done
    }
    fn waiting_for(&self, _: &Timeline) -> String {
        "the step's command to finish".into()
    }
}

/// What a kind's `build` sees: the file's location service, the step's index, and the plan so far.
pub struct BuildCx<'a> {
    pub(crate) checker: &'a Checker<'a>,
    /// Index of the step in `[[steps]]`.
    pub index: usize,
    /// Its action.
    pub action: &'static str,
    /// The scenario's peers.
    pub peers: &'a [PeerPlan],
    /// The scenario's `timeout_s`.
    pub timeout_s: u64,
    /// The step's own `timeout_ms`, if set.
    pub timeout_ms: Option<u64>,
    /// The `[ice] trickle` default.
    pub trickle_default: bool,
    /// Whether the scenario uses the network lab.
    pub in_lab: bool,
    /// Whether the scenario starts the embedded TURN server (`[ice.embedded_turn]`).
    pub embedded_turn: bool,
    /// Whether the scenario says how to speak the app's signaling (`[app.signaling]`).
    pub app_signaling: bool,
    /// Whether the app's offers, answers or candidates name their target user (`{peer}`).
    pub app_names_peers: bool,
    /// Whether the harness starts the app (`[app] command`).
    pub app_started: bool,
    /// Whether the app's messages name the room (`{room}`).
    pub app_names_rooms: bool,
    /// Connections made by earlier steps (a connect step adds its own).
    pub connections: &'a mut Vec<ConnectionPlan>,
    /// Peers closed by earlier steps.
    pub closed: &'a mut HashSet<String>,
}

impl BuildCx<'_> {
    /// A restart step's `down_ms` (how long the server stays down): default 0, at most the
    /// scenario's `timeout_s`.
    pub fn down_ms(&self, given: Option<u64>) -> Result<u64, ScenarioError> {
        let down_ms = given.unwrap_or(0);
        if down_ms > self.timeout_s * 1000 {
            return Err(self.err(
                "down_ms",
                format!(
                    "{down_ms} ms is longer than the scenario's timeout_s ({} s)",
                    self.timeout_s
                ),
            ));
        }
        Ok(down_ms)
    }

    /// A located error at `key` inside this step (`""`: the step table itself; nested keys as
    /// `directions.bot` or `media[1]`).
    pub fn err(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        let mut segs = vec![Seg::Key("steps"), Seg::Index(self.index)];
        for part in key.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                segs.push(Seg::Key(name));
            }
            for idx in rest.split('[') {
                if let Ok(n) = idx.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(n));
                }
            }
        }
        self.checker.err(&segs, message)
    }

    /// Deserializes the step's table into its kind's shape: unknown keys, missing keys and wrong
    /// types become located errors that name the action.
    pub fn parse<T: DeserializeOwned + JsonSchema>(
        &self,
        table: toml::Table,
    ) -> Result<T, ScenarioError> {
        let takes = keys_of::<T>();
        if let Some(k) = table.keys().find(|k| !takes.contains(k)) {
            let mut all = takes.clone();
            all.push("timeout_ms".into());
            return Err(self.err(
                k,
                format!(
                    "key `{k}` is not used by action {:?} (it takes: {})",
                    self.action,
                    all.join(", ")
                ),
            ));
        }
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.inner().message().trim().to_string();
            match message.strip_prefix("missing field `") {
                Some(rest) => {
                    let key = rest.split('`').next().unwrap_or(rest);
                    self.err(&path, format!("action {:?} needs key `{key}`", self.action))
                }
                None => self.err(&path, message),
            }
        })
    }

    /// Refuses a step that makes the signaling server send `peer-left` (a dropped or restarted
    /// socket) in a scenario with mesh calls: each end of a mesh pair closes its connection on
    /// `peer-left`, so the step would end healthy calls.
    pub fn no_mesh_call(&self) -> Result<(), ScenarioError> {
        match self.connections.iter().find(|c| c.call.is_some()) {
            Some(c) => Err(self.err(
                "action",
                format!(
                    "not in a scenario with mesh calls yet: their peers close a connection when \
                     the signaling server says the other left (peer-left), which this step makes \
                     it say (connection {:?} of step {})",
                    c.id, c.step
                ),
            )),
            None => Ok(()),
        }
    }

    /// Checks that `peer` (the value of `key`) was not closed or killed by an earlier step.
    pub fn live(&self, key: &str, peer: &str) -> Result<(), ScenarioError> {
        if self.closed.contains(peer) {
            return Err(self.err(
                key,
                format!("peer {peer:?} was closed or killed by an earlier step"),
            ));
        }
        Ok(())
    }

    /// Ids of the connections `peer` is in, made by earlier steps.
    pub fn connections_of(&self, peer: &str) -> Vec<String> {
        self.connections
            .iter()
            .filter(|c| c.has(peer))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Checks that `id` (the value of `key`) names a peer the harness drives itself: not a page
    /// peer, whose connections the app's page makes.
    pub fn driven(&self, key: &str, id: &str) -> Result<(), ScenarioError> {
        self.peer(key, id)?;
        if self.page(id) {
            return Err(self.err(
                key,
                format!(
                    "peer {id:?} is a page peer (it has a `url`): the app's page makes and drives \
                     its connections, so action {:?} cannot be given to it; use the page steps \
                     (open, click, fill, wait_for, eval) and wait_state",
                    self.action
                ),
            ));
        }
        Ok(())
    }

    /// Whether `id` is a page peer (a browser with `url`).
    pub fn page(&self, id: &str) -> bool {
        self.peers.iter().any(|p| p.id == id && p.is_page())
    }

    /// A page peer's connection: `named` (`pc1`, `pc2`, ...) if given, else `""`, which steps
    /// and expectations read as "the page's only RTCPeerConnection" when they run.
    pub fn page_connection(&self, named: Option<&str>) -> Result<String, ScenarioError> {
        match named {
            None => Ok(String::new()),
            Some(c) if crate::scenario::is_page_connection_id(c) => Ok(c.to_string()),
            Some(c) => Err(self.err(
                "connection",
                format!(
                    "{c:?} is not a page connection id: a page's RTCPeerConnections are pc1, \
                     pc2, ... in creation order"
                ),
            )),
        }
    }

    /// Checks that `id` (the value of `key`) names a peer.
    pub fn peer(&self, key: &str, id: &str) -> Result<(), ScenarioError> {
        if self.peers.iter().any(|p| p.id == id) {
            Ok(())
        } else {
            let ids: Vec<&str> = self.peers.iter().map(|p| p.id.as_str()).collect();
            Err(self.err(
                key,
                format!("unknown peer id {id:?} (peers: {})", ids.join(", ")),
            ))
        }
    }

    /// The id of `peer`'s connection made by an earlier step: `named` (the value of a
    /// `connection` key) if given, else the peer's only one; located errors otherwise.
    pub fn connection_named(
        &self,
        peer: &str,
        named: Option<&str>,
    ) -> Result<String, ScenarioError> {
        let mine = self.connections_of(peer);
        match (named, mine.as_slice()) {
            (Some(c), _) if mine.iter().any(|m| m == c) => Ok(c.to_string()),
            (Some(c), _) => Err(self.err(
                "connection",
                format!(
                    "peer {peer:?} is not in a connection {c:?} made by an earlier step (its connections: {})",
                    if mine.is_empty() { "none".into() } else { mine.join(", ") }
                ),
            )),
            (None, [only]) => Ok(only.to_string()),
            (None, []) => Err(self.err(
                "peer",
                format!("peer {peer:?} has no connection yet (no earlier connect step)"),
            )),
            (None, many) => Err(self.err(
                "connection",
                format!(
                    "peer {peer:?} is in several connections ({}): name one with `connection`",
                    many.join(", ")
                ),
            )),
        }
    }

    /// The live connection `peer` is in (optionally the one carrying data channel `channel`),
    /// checking that neither of its peers was closed; `missing` is the error when there is none.
    /// A peer in several such connections (a mesh) must say which: `pick` is the step's
    /// `connection` key (a connection id) or `to` key (the other peer), as `(key, value)`.
    pub fn connection_of(
        &self,
        peer: &str,
        channel: Option<&str>,
        pick: Option<(&str, &str)>,
        key: &str,
        missing: String,
    ) -> Result<ConnectionPlan, ScenarioError> {
        let all: Vec<&ConnectionPlan> = self
            .connections
            .iter()
            .filter(|c| {
                c.expect_connected
                    && c.has(peer)
                    && channel.is_none_or(|ch| c.data_channel.as_deref() == Some(ch))
            })
            .collect();
        // Connections whose other peer was closed are gone (a peer that left a mesh), unless
        // nothing else is left: then the error below says which peer was closed.
        let live: Vec<&ConnectionPlan> = all
            .iter()
            .copied()
            .filter(|c| {
                !self.closed.contains(c.offerer.as_str())
                    && !self.closed.contains(c.answerer.as_str())
            })
            .collect();
        let candidates = if live.is_empty() || pick.is_some() {
            all
        } else {
            live
        };
        let found = match (pick, candidates.as_slice()) {
            (_, []) => return Err(self.err(key, missing)),
            (None, [one]) => *one,
            (None, many) => {
                let ids: Vec<&str> = many.iter().map(|c| c.id.as_str()).collect();
                return Err(self.err(
                    key,
                    format!(
                        "peer {peer:?} is in {} connections{} ({}): say which with `to` (the \
                         other peer) or `connection`",
                        many.len(),
                        channel
                            .map(|ch| format!(" with a data channel {ch:?}"))
                            .unwrap_or_default(),
                        ids.join(", ")
                    ),
                ));
            }
            (Some((pick_key, want)), many) => {
                let hit = many.iter().find(|c| {
                    if pick_key == "to" {
                        c.other(peer) == Some(want)
                    } else {
                        c.id == want
                    }
                });
                match hit {
                    Some(c) => *c,
                    None => {
                        let ids: Vec<&str> = many.iter().map(|c| c.id.as_str()).collect();
                        return Err(self.err(
                            pick_key,
                            format!(
                                "peer {peer:?} has no such connection{}: it is in {}",
                                channel
                                    .map(|ch| format!(" with a data channel {ch:?}"))
                                    .unwrap_or_default(),
                                ids.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        for p in [found.offerer.as_str(), found.answerer.as_str()] {
            if self.closed.contains(p) {
                return Err(self.err(key, format!("peer {p:?} was closed by an earlier step")));
            }
        }
        Ok(found.clone())
    }
}

/// The keys (properties) of a table shape, from its JSON Schema: the one list both the checks
/// and the published schema use.
pub fn keys_of<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The JSON Schema of a table shape (for [`Kind::schema`]).
pub fn schema_of<T: JsonSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>()
}
