//! `connect`: offer/answer between two peers, then wait until both are `connected` (or, with
//! `outcome = "failed"`, both `failed`).

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::peer::{ConnectRequest, Role};
use crate::scenario::{ConnectOutcome, ConnectionPlan, Direction, MediaKind, ScenarioError};
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "connect",
    summary: "Offer/answer between two peers, then wait until both are connected.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `connect` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer that calls createOffer.
    offerer: String,
    /// The peer that answers.
    answerer: String,
    /// Id of the connection (default `<offerer>~<answerer>`): events, `[[expect]]
    /// connection = ...` and the signaling room use it.
    connection: Option<String>,
    /// Label of a data channel the offerer creates before its offer.
    data_channel: Option<String>,
    /// Trickle ICE candidates (default: `[ice] trickle`, else true); false sends them inside
    /// the SDP.
    trickle: Option<bool>,
    /// Media both peers send and receive: `audio`, `video`.
    media: Option<Vec<MediaKind>>,
    /// Per-peer transceiver direction for the media (default `sendrecv`).
    directions: Option<BTreeMap<String, Direction>>,
    /// `connected` (default) or `failed`: the step then passes once both peers'
    /// connectionState is `failed` (an expected ICE failure).
    outcome: Option<ConnectOutcome>,
    /// Each peer closes this connection when the signaling server says the other left the
    /// room (`peer-left`), as a mesh call's app does (default false; `mesh` steps set it).
    close_on_peer_left: Option<bool>,
}

/// A checked connect step.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// The connection it makes.
    pub connection: ConnectionPlan,
    /// Trickle ICE (true) or candidates inside the SDP (false).
    pub trickle: bool,
    /// Transceiver directions of the offerer and the answerer.
    pub directions: (Direction, Direction),
    /// What the step waits for.
    pub outcome: ConnectOutcome,
    /// Close on `peer-left`.
    pub close_on_peer_left: bool,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("offerer", &e.offerer)?;
    cx.driven("answerer", &e.answerer)?;
    if e.offerer == e.answerer {
        return Err(cx.err(
            "answerer",
            format!("a peer cannot connect to itself ({:?})", e.offerer),
        ));
    }
    if let Some(prev) = cx
        .connections
        .iter()
        .find(|c| c.has(&e.offerer) && c.has(&e.answerer))
    {
        return Err(cx.err(
            "answerer",
            format!(
                "{:?} and {:?} are already connected by step {} ({:?}): one connection per pair \
                 of peers",
                e.offerer, e.answerer, prev.step, prev.id
            ),
        ));
    }
    let media = {
        let mut m = e.media.clone().unwrap_or_default();
        m.dedup();
        m
    };
    match &e.data_channel {
        Some(label) if label.is_empty() || label.len() > 65_535 => {
            return Err(cx.err("data_channel", "label must be 1 to 65535 bytes"));
        }
        Some(_) => {}
        None if !media.is_empty() => {}
        // An offer with no data channel and no media has no m= section, so no ICE transport:
        // nothing could ever connect.
        None => {
            return Err(cx.err(
                "",
                "a connect step needs something to negotiate: set `data_channel` or `media` (an \
                 offer without any m= section has no ICE transport)",
            ));
        }
    }
    let dirs = e.directions.clone().unwrap_or_default();
    for k in dirs.keys() {
        if *k != e.offerer && *k != e.answerer {
            return Err(cx.err(
                &format!("directions.{k}"),
                format!("{k:?} is neither the offerer nor the answerer of this step"),
            ));
        }
    }
    if !dirs.is_empty() && media.is_empty() {
        return Err(cx.err("directions", "directions need `media`"));
    }
    let id = e
        .connection
        .clone()
        .unwrap_or_else(|| format!("{}~{}", e.offerer, e.answerer));
    if id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_~.".contains(ch))
    {
        return Err(cx.err(
            "connection",
            format!(
                "connection id {id:?} must be non-empty ASCII letters, digits, '-', '_', '~' or '.'"
            ),
        ));
    }
    if let Some(prev) = cx.connections.iter().find(|c| c.id == id) {
        return Err(cx.err(
            "connection",
            format!(
                "connection id {id:?} is already used by step {}; name this one with `connection`",
                prev.step
            ),
        ));
    }
    let outcome = e.outcome.unwrap_or_default();
    let connection = ConnectionPlan {
        id,
        step: cx.index,
        offerer: e.offerer.clone(),
        answerer: e.answerer.clone(),
        data_channel: e.data_channel.clone(),
        media,
        expect_connected: outcome == ConnectOutcome::Connected,
        call: None,
    };
    cx.connections.push(connection.clone());
    Ok(Arc::new(Connect {
        connection,
        trickle: e.trickle.unwrap_or(cx.trickle_default),
        directions: (
            dirs.get(&e.offerer).copied().unwrap_or_default(),
            dirs.get(&e.answerer).copied().unwrap_or_default(),
        ),
        outcome,
        close_on_peer_left: e.close_on_peer_left.unwrap_or(false),
    }))
}

impl Connect {
    fn pair(&self) -> [Endpoint<'_>; 2] {
        let c = &self.connection;
        [
            Endpoint::new(&c.offerer, &c.id),
            Endpoint::new(&c.answerer, &c.id),
        ]
    }
}

#[async_trait]
impl Step for Connect {
    fn describe(&self) -> String {
        format!(
            "connect {} -> {}",
            self.connection.offerer, self.connection.answerer
        )
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.pair().to_vec()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let c = &self.connection;
        // The answerer first, so that it is in the room when the offerer's `ready` comes.
        for (id, role, direction) in [
            (&c.answerer, Role::Answerer, self.directions.1),
            (&c.offerer, Role::Offerer, self.directions.0),
        ] {
            let req = ConnectRequest {
                connection: c.id.clone(),
                room: cx.room(&c.id),
                role,
                data_channel: c.data_channel.clone(),
                trickle: self.trickle,
                signaling_url: cx.signaling_url().to_string(),
                ice_servers: cx.ice().servers.clone(),
                ice_transport_policy: cx.ice().policy,
                media: c.media.clone(),
                direction,
                close_on_peer_left: self.close_on_peer_left,
                app_signaling: None,
            };
            cx.bounded(format!("{id}: connect"), cx.peer(id)?.connect(&req))
                .await?;
        }
        Ok(Box::new(self.clone()))
    }

    fn samples_while_waiting(&self) -> bool {
        false
    }

    async fn finish(&self, cx: &mut RunCx<'_>) -> Result<(), StepError> {
        if self.outcome == ConnectOutcome::Failed {
            return Ok(());
        }
        // A connected pair: record which candidate pair each side selected.
        for ep in self.pair() {
            let what = format!("{}: selected candidate pair", ep.peer);
            if let Some((local, remote)) = cx
                .bounded(what, cx.peer(ep.peer)?.selected_pair(ep.connection))
                .await?
            {
                cx.record(
                    ep.peer,
                    ep.connection,
                    EventKind::SelectedCandidatePair { local, remote },
                );
            }
        }
        Ok(())
    }
}

impl Watch for Connect {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let expect_failed = self.outcome == ConnectOutcome::Failed;
        let state = |ep| timeline.current_state(ep, StateMachine::Connection);
        for ep in self.pair() {
            let p = ep.peer;
            match state(ep) {
                Some("failed") if !expect_failed => {
                    return Progress::Failed(format!("peer {p}: connectionState failed"));
                }
                Some("connected") if expect_failed => {
                    return Progress::Failed(format!(
                        "peer {p}: connectionState connected, but this step expects ICE to fail \
                         (outcome = \"failed\")"
                    ));
                }
                _ => {}
            }
            // Gathering finished without a single candidate: nothing can ever connect.
            let gathered = timeline
                .of(ep)
                .any(|e| matches!(e.event, EventKind::LocalCandidate { .. }));
            let complete = timeline
                .first_state_time(ep, StateMachine::IceGathering, "complete")
                .is_some();
            if complete && !gathered {
                let errors: Vec<String> = timeline
                    .of(ep)
                    .filter(|e| matches!(e.event, EventKind::IceCandidateError { .. }))
                    .map(|e| e.event.to_string())
                    .collect();
                return Progress::Failed(format!(
                    "peer {p} gathered no ICE candidates{}",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
        }
        let want = if expect_failed { "failed" } else { "connected" };
        // A failure is complete once ICE has left checking too: webrtc-rs can report
        // connectionState `failed` a few ms before iceConnectionState `failed`, and a step that
        // ended in between left the latter off the judged timeline. (Chromium 156 leaves
        // iceConnectionState at `disconnected`, which counts. `connected` needs no such wait:
        // ICE connects before DTLS, so iceConnectionState is connected first.)
        let ice_settled = |ep| {
            !matches!(
                timeline.current_state(ep, StateMachine::IceConnection),
                Some("new" | "checking") | None
            )
        };
        let reached = self
            .pair()
            .iter()
            .all(|ep| state(*ep) == Some(want) && (!expect_failed || ice_settled(*ep)));
        let channels_open = expect_failed
            || self.connection.data_channel.as_ref().is_none_or(|label| {
                self.pair()
                    .iter()
                    .all(|ep| channel_open(timeline, *ep, label))
            });
        if reached && channels_open {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let want = match self.outcome {
            ConnectOutcome::Connected => "connected",
            ConnectOutcome::Failed => "failed",
        };
        let mut parts = Vec::new();
        for ep in self.pair() {
            let now = timeline
                .current_state(ep, StateMachine::Connection)
                .unwrap_or("(no peer connection yet)");
            if now != want {
                parts.push(format!("{} connectionState {want} (now {now})", ep.peer));
            }
            if let Some(label) = &self.connection.data_channel
                && self.outcome == ConnectOutcome::Connected
                && !channel_open(timeline, ep, label)
            {
                parts.push(format!("data channel '{label}' open on {}", ep.peer));
            }
        }
        parts.join(", ")
    }
}

fn channel_open(timeline: &Timeline, ep: Endpoint<'_>, label: &str) -> bool {
    timeline
        .first_time(
            ep,
            |k| matches!(k, EventKind::DataChannelOpen { label: l } if l == label),
        )
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;

    fn connect(outcome: ConnectOutcome) -> Connect {
        Connect {
            connection: ConnectionPlan {
                id: "c".into(),
                step: 0,
                offerer: "a".into(),
                answerer: "b".into(),
                data_channel: Some("chat".into()),
                media: vec![],
                expect_connected: outcome == ConnectOutcome::Connected,
                call: None,
            },
            trickle: true,
            directions: Default::default(),
            outcome,
            close_on_peer_left: false,
        }
    }

    fn push(t: &mut Timeline, peer: &str, connection: &str, kind: EventKind) {
        let at = t.events().len() as f64;
        t.push(Event {
            t_ms: at,
            peer: peer.into(),
            connection: connection.into(),
            event: kind,
        });
    }

    fn state(s: &str) -> EventKind {
        EventKind::State {
            machine: StateMachine::Connection,
            state: s.into(),
        }
    }

    fn open() -> EventKind {
        EventKind::DataChannelOpen {
            label: "chat".into(),
        }
    }

    #[test]
    fn needs_both_connected_and_channels_open() {
        let step = connect(ConnectOutcome::Connected);
        let mut t = Timeline::new();
        push(&mut t, "a", "c", state("connected"));
        assert_eq!(step.progress(&t), Progress::Waiting);
        push(&mut t, "b", "c", state("connected"));
        assert_eq!(step.progress(&t), Progress::Waiting);
        assert!(
            step.waiting_for(&t)
                .contains("data channel 'chat' open on a")
        );
        push(&mut t, "a", "c", open());
        push(&mut t, "b", "c", open());
        assert_eq!(step.progress(&t), Progress::Done);
    }

    #[test]
    fn another_connection_of_the_same_peers_does_not_count() {
        let step = connect(ConnectOutcome::Connected);
        let mut t = Timeline::new();
        for p in ["a", "b"] {
            push(&mut t, p, "other", state("connected"));
            push(&mut t, p, "other", open());
        }
        assert_eq!(step.progress(&t), Progress::Waiting);
        push(&mut t, "b", "other", state("failed"));
        assert_eq!(step.progress(&t), Progress::Waiting);
    }

    #[test]
    fn fails_fast_on_failed_state_and_names_the_peer() {
        let step = connect(ConnectOutcome::Connected);
        let mut t = Timeline::new();
        push(&mut t, "b", "c", state("connecting"));
        push(&mut t, "b", "c", state("failed"));
        match step.progress(&t) {
            Progress::Failed(why) => assert!(why.contains("peer b"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expected_to_fail_waits_for_both_failed_and_rejects_connected() {
        let step = connect(ConnectOutcome::Failed);
        let mut t = Timeline::new();
        push(&mut t, "a", "c", state("connecting"));
        push(&mut t, "a", "c", state("failed"));
        assert_eq!(step.progress(&t), Progress::Waiting);
        push(&mut t, "b", "c", state("failed"));
        // connectionState failed on both, ICE still checking (webrtc-rs can report them a few
        // ms apart in this order): not done, or the judged timeline misses ICE's end.
        let ice = |s: &str| EventKind::State {
            machine: StateMachine::IceConnection,
            state: s.into(),
        };
        push(&mut t, "a", "c", ice("checking"));
        push(&mut t, "b", "c", ice("checking"));
        assert_eq!(step.progress(&t), Progress::Waiting);
        push(&mut t, "a", "c", ice("failed"));
        assert_eq!(step.progress(&t), Progress::Waiting);
        // Chromium leaves iceConnectionState at disconnected: that is settled too.
        push(&mut t, "b", "c", ice("disconnected"));
        assert_eq!(step.progress(&t), Progress::Done);

        let mut t = Timeline::new();
        push(&mut t, "b", "c", state("connected"));
        match step.progress(&t) {
            Progress::Failed(why) => assert!(
                why.contains("peer b") && why.contains("expects ICE to fail"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gathering_complete_without_candidates_fails_with_the_server_errors() {
        let step = connect(ConnectOutcome::Connected);
        let mut t = Timeline::new();
        push(
            &mut t,
            "a",
            "c",
            EventKind::IceCandidateError {
                url: "turn:x".into(),
                error_code: 401,
                error_text: "Unauthorized".into(),
            },
        );
        push(
            &mut t,
            "a",
            "c",
            EventKind::State {
                machine: StateMachine::IceGathering,
                state: "complete".into(),
            },
        );
        match step.progress(&t) {
            Progress::Failed(why) => {
                assert!(why.contains("peer a gathered no ICE candidates"), "{why}");
                assert!(why.contains("401 Unauthorized"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
