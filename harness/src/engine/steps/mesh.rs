//! `mesh`: peers join an N-party call as a full mesh. Each newcomer, in the order given, offers
//! to every peer already in the call (those that joined it in earlier `mesh` steps, then the
//! newcomers before it): one RTCPeerConnection per pair, with connection id
//! `<newcomer>~<member>`. Every pair is negotiated at once; the step is done when every pair is
//! connected, and fails as soon as one pair cannot connect. A peer that leaves the call
//! (`close`, `kill`) is seen leaving by the others through the signaling server's `peer-left`:
//! each closes its connection to it (connectionState `closed`) and keeps the rest.
//!
//! Its metric `mesh_complete_ms` is the interval from the first createOffer of the step's pairs
//! to the last `connectionState` `connected` of either end of every pair (ms on the run's
//! timeline; absent when some pair never connected).

use super::{BuildCx, Kind, Step, Together, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::{MediaKind, ScenarioError};
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "mesh",
    summary: "Peers join a mesh call: each offers to every peer already in it; waits for every pair.",
    build,
    schema: super::schema_of::<Entry>,
};

/// Most peers in one mesh call (15 pairs at 6, 28 at 8; a browser holds one RTCPeerConnection
/// per other peer).
pub const MAX_MESH_PEERS: usize = 16;

/// The keys of a `mesh` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peers joining now, in join order: each offers to every peer already in the call.
    peers: Vec<String>,
    /// The call's name (default `mesh`): peers that joined a call of this name in earlier
    /// `mesh` steps are in it.
    call: Option<String>,
    /// Label of a data channel each offerer creates on each of its connections.
    data_channel: Option<String>,
    /// Media every peer sends to and receives from every other: `audio`, `video`.
    media: Option<Vec<MediaKind>>,
    /// Trickle ICE candidates (default: `[ice] trickle`, else true).
    trickle: Option<bool>,
}

/// A checked mesh step: its pairs, each a connect step.
#[derive(Debug)]
pub struct Mesh {
    /// The call's name.
    pub call: String,
    /// The peers that joined in this step, in order.
    pub joining: Vec<String>,
    /// The pairs made here, in offer order: (offerer, answerer, connection id).
    pub pairs: Vec<(String, String, String)>,
    /// The pairs' connect steps, run together.
    together: Together,
}

/// Who offers to whom when `joining` join a call that already holds `members` (pure): each
/// newcomer, in order, to every member and then to every earlier newcomer, as
/// `(offerer, answerer)`.
pub fn pairs(members: &[String], joining: &[String]) -> Vec<(String, String)> {
    let mut inside: Vec<&String> = members.iter().collect();
    let mut out = Vec::new();
    for j in joining {
        for m in &inside {
            out.push((j.clone(), (*m).clone()));
        }
        inside.push(j);
    }
    out
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    let call = e.call.clone().unwrap_or_else(|| "mesh".to_string());
    if e.data_channel.is_none() && e.media.as_ref().is_none_or(|m| m.is_empty()) {
        return Err(cx.err(
            "",
            "a mesh step needs something to negotiate on each pair: set `data_channel` or \
             `media`",
        ));
    }
    if e.peers.is_empty() {
        return Err(cx.err("peers", "name the peers that join the call"));
    }
    for (i, p) in e.peers.iter().enumerate() {
        let key = format!("peers[{i}]");
        cx.driven(&key, p)?;
        if cx.closed.contains(p) {
            return Err(cx.err(&key, format!("peer {p:?} was closed by an earlier step")));
        }
        if e.peers[..i].contains(p) {
            return Err(cx.err(&key, format!("peer {p:?} is named twice")));
        }
    }
    // Members: peers in connections of this call, not closed since, in the order they joined.
    let mut members: Vec<String> = Vec::new();
    for c in cx
        .connections
        .iter()
        .filter(|c| c.call.as_deref() == Some(call.as_str()))
    {
        for p in [&c.answerer, &c.offerer] {
            if !members.contains(p) && !cx.closed.contains(p) {
                members.push(p.clone());
            }
        }
    }
    for (i, p) in e.peers.iter().enumerate() {
        if members.contains(p) {
            return Err(cx.err(
                &format!("peers[{i}]"),
                format!("peer {p:?} is already in call {call:?}"),
            ));
        }
    }
    if members.len() + e.peers.len() < 2 {
        return Err(cx.err(
            "peers",
            format!(
                "a call needs two peers: call {call:?} would hold only {:?}",
                e.peers[0]
            ),
        ));
    }
    if members.len() + e.peers.len() > MAX_MESH_PEERS {
        return Err(cx.err(
            "peers",
            format!(
                "call {call:?} would hold {} peers; at most {MAX_MESH_PEERS} in a mesh",
                members.len() + e.peers.len()
            ),
        ));
    }
    for (offerer, answerer) in pairs(&members, &e.peers) {
        let id = format!("{offerer}~{answerer}");
        if let Some(prev) = cx.connections.iter().find(|c| c.id == id) {
            return Err(cx.err(
                "peers",
                format!(
                    "the mesh names the pair {offerer} -> {answerer} {id:?}, an id step {} \
                     already uses; rename that step's connection",
                    prev.step
                ),
            ));
        }
    }
    let mut parts: Vec<Arc<dyn Step>> = Vec::new();
    let mut made = Vec::new();
    for (offerer, answerer) in pairs(&members, &e.peers) {
        let mut t = toml::Table::new();
        t.insert("offerer".into(), offerer.clone().into());
        t.insert("answerer".into(), answerer.clone().into());
        if let Some(dc) = &e.data_channel {
            t.insert("data_channel".into(), dc.clone().into());
        }
        if let Some(media) = &e.media {
            let kinds: Vec<toml::Value> = media
                .iter()
                .map(|m| {
                    toml::Value::String(
                        match m {
                            MediaKind::Audio => "audio",
                            MediaKind::Video => "video",
                        }
                        .to_string(),
                    )
                })
                .collect();
            t.insert("media".into(), toml::Value::Array(kinds));
        }
        if let Some(trickle) = e.trickle {
            t.insert("trickle".into(), trickle.into());
        }
        // As mesh apps do: a peer that leaves the call is seen leaving (peer-left), and each
        // other peer closes its connection to it and keeps the rest.
        t.insert("close_on_peer_left".into(), true.into());
        let step = (super::connect::KIND.build)(cx, t).map_err(|err| {
            // The pair's own check (a pair already connected, nothing to negotiate): on the
            // step's keys, which the file has.
            cx.err(
                "peers",
                format!("pair {offerer} -> {answerer}: {}", err.message),
            )
        })?;
        if let Some(c) = cx.connections.last_mut() {
            c.call = Some(call.clone());
            made.push((offerer.clone(), answerer.clone(), c.id.clone()));
        }
        parts.push(step);
    }
    let n = made.len();
    Ok(Arc::new(Mesh {
        together: Together {
            what: format!(
                "mesh {call}: {} join{}, {n} pair{}",
                e.peers.join(", "),
                if e.peers.len() == 1 { "s" } else { "" },
                if n == 1 { "" } else { "s" }
            ),
            parts,
            every: None,
            strict: true,
        },
        call,
        joining: e.peers,
        pairs: made,
    }))
}

impl Mesh {
    /// `mesh_complete_ms` (see the module documentation), from the timeline.
    pub fn complete_ms(&self, timeline: &Timeline) -> Option<f64> {
        let first_offer = timeline
            .events()
            .iter()
            .filter(|e| {
                matches!(e.event, EventKind::CreateOffer)
                    && self.pairs.iter().any(|(_, _, c)| *c == e.connection)
            })
            .map(|e| e.t_ms)
            .reduce(f64::min)?;
        let mut last = first_offer;
        for (o, a, c) in &self.pairs {
            for p in [o, a] {
                let t = timeline.first_state_time(
                    Endpoint::new(p, c),
                    StateMachine::Connection,
                    "connected",
                )?;
                last = last.max(t);
            }
        }
        Some(last - first_offer)
    }
}

#[async_trait]
impl Step for Mesh {
    fn describe(&self) -> String {
        self.together.describe()
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.together.endpoints()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        self.together.start(cx).await
    }

    fn samples_while_waiting(&self) -> bool {
        self.together.samples_while_waiting()
    }

    async fn finish(&self, cx: &mut RunCx<'_>) -> Result<(), StepError> {
        self.together.finish(cx).await
    }

    fn metrics(&self, timeline: &Timeline) -> Vec<(String, f64)> {
        self.complete_ms(timeline)
            .map(|v| vec![("mesh_complete_ms".to_string(), v)])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_newcomer_offers_to_every_peer_already_in_the_call() {
        let got = pairs(&[], &ids(&["a", "b", "c"]));
        let want: Vec<(String, String)> = [("b", "a"), ("c", "a"), ("c", "b")]
            .iter()
            .map(|(o, a)| (o.to_string(), a.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_later_joiner_offers_to_the_members_first_then_to_earlier_newcomers() {
        let got = pairs(&ids(&["a", "b"]), &ids(&["d", "e"]));
        let want: Vec<(String, String)> =
            [("d", "a"), ("d", "b"), ("e", "a"), ("e", "b"), ("e", "d")]
                .iter()
                .map(|(o, a)| (o.to_string(), a.to_string()))
                .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn n_peers_make_n_choose_2_pairs() {
        for n in 2..=MAX_MESH_PEERS {
            let peers: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
            assert_eq!(pairs(&[], &peers).len(), n * (n - 1) / 2);
        }
    }
}
