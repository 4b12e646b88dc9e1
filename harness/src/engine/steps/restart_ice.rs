//! `restart_ice`: `restartIce()` on one peer, a new offer, the other side answers; done when the
//! answer is applied and both peers are connected again (W3C webrtc-pc §4.4.1.6).

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "restart_ice",
    summary: "restartIce() on one peer and a new offer; waits for the answer and both connected.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `restart_ice` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer that restarts (it makes the new offer).
    peer: String,
    /// The connection, when the peer is in several (a mesh): its id.
    connection: Option<String>,
}

/// A checked restart_ice step.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartIce {
    /// The initiating peer.
    pub peer: String,
    /// The other peer of the connection.
    pub other: String,
    /// Connection id.
    pub connection: String,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("peer", &e.peer)?;
    let c = cx.connection_of(
        &e.peer,
        None,
        e.connection.as_deref().map(|c| ("connection", c)),
        "peer",
        format!(
            "peer {:?} has no connection to restart (no earlier connect step)",
            e.peer
        ),
    )?;
    Ok(Arc::new(RestartIce {
        other: c.other(&e.peer).unwrap_or_default().to_string(),
        peer: e.peer,
        connection: c.id,
    }))
}

/// Answers applied in a connection so far (any peer).
pub(super) fn answers_applied(timeline: &Timeline, connection: &str) -> usize {
    timeline
        .events()
        .iter()
        .filter(|e| e.connection == connection && matches!(e.event, EventKind::AnswerApplied))
        .count()
}

#[async_trait]
impl Step for RestartIce {
    fn describe(&self) -> String {
        let other = if self.other.is_empty() {
            "the app's side"
        } else {
            &self.other
        };
        format!("restart_ice {} -> {other}", self.peer)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        // A join_app connection has no harness peer on the other side (it is the app's page):
        // then the bot's own end is what is watched.
        let mut eps = vec![Endpoint::new(&self.peer, &self.connection)];
        if !self.other.is_empty() {
            eps.push(Endpoint::new(&self.other, &self.connection));
        }
        eps
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let watch = Restarted {
            step: self.clone(),
            answers_before: answers_applied(cx.timeline(), &self.connection),
        };
        cx.bounded(
            format!("{}: restart_ice", self.peer),
            cx.peer(&self.peer)?.restart_ice(&self.connection),
        )
        .await?;
        Ok(Box::new(watch))
    }
}

struct Restarted {
    step: RestartIce,
    answers_before: usize,
}

impl Watch for Restarted {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let answered = answers_applied(timeline, &self.step.connection) > self.answers_before;
        let connected = self.step.endpoints().iter().all(|ep| {
            timeline.current_state(*ep, StateMachine::Connection) == Some("connected")
                && matches!(
                    timeline.current_state(*ep, StateMachine::IceConnection),
                    Some("connected") | Some("completed")
                )
        });
        if answered && connected {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, _: &Timeline) -> String {
        let (p, o) = (&self.step.peer, &self.step.other);
        if o.is_empty() {
            return format!(
                "the restart's answer to be applied at {p} and {p} to be connected again"
            );
        }
        format!(
            "the restart's answer to be applied at {p} and both {p} and {o} to be connected again"
        )
    }
}
