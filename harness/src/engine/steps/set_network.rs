//! `set_network`: change a lab peer's packet loss while the scenario runs (fault injection);
//! done as soon as the new rules are in place, or, with `recovers_within_ms`, once every
//! connection of the peer is `connected` again (both ends), within that many milliseconds.

use super::{BuildCx, Immediate, Kind, Progress, Step, Watch};
use crate::engine::context::{Deadline, RunCx};
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(super) const KIND: Kind = Kind {
    action: "set_network",
    summary: "Change a network-lab peer's packet loss mid-scenario.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `set_network` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The lab peer whose network changes.
    peer: String,
    /// The new packet loss each direction, percent (0-100; 100 drops everything).
    /// Signed and wide so that any integer reaches the range check, which names the range.
    #[schemars(range(min = 0, max = 100))]
    loss_pct: i64,
    /// After the change, wait until every connection of the peer has `connectionState`
    /// `connected` at both ends, and fail the step if that takes longer than this, ms. Only
    /// with loss below 100. A connection that never left `connected` counts as recovered.
    #[schemars(range(min = 1))]
    recovers_within_ms: Option<u64>,
}

/// A checked set_network step.
#[derive(Debug, Clone, PartialEq)]
pub struct SetNetwork {
    /// The peer.
    pub peer: String,
    /// New loss each direction, percent.
    pub loss_pct: u8,
    /// `recovers_within_ms`, and the connections it watches.
    pub recovery: Option<(u64, Vec<Watched>)>,
}

/// A connection a recovery waits for: (id, offerer, answerer).
pub type Watched = (String, String, String);

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    if !cx.in_lab {
        return Err(cx.err(
            "action",
            "set_network needs the network lab: add a [network] table",
        ));
    }
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    let Some(loss_pct) = crate::scenario::checked_loss_pct(e.loss_pct) else {
        return Err(cx.err("loss_pct", "must be between 0 and 100"));
    };
    let recovery = match e.recovers_within_ms {
        None => None,
        Some(_) if loss_pct == 100 => {
            return Err(cx.err(
                "recovers_within_ms",
                "nothing can recover while loss_pct = 100: set it on the step that restores the link",
            ));
        }
        Some(0) => return Err(cx.err("recovers_within_ms", "must be at least 1")),
        Some(ms) => {
            let conns: Vec<Watched> = cx
                .connections
                .iter()
                .filter(|c| c.expect_connected && c.has(&e.peer))
                .filter(|c| !cx.closed.contains(&c.offerer) && !cx.closed.contains(&c.answerer))
                .map(|c| (c.id.clone(), c.offerer.clone(), c.answerer.clone()))
                .collect();
            if conns.is_empty() {
                return Err(cx.err(
                    "recovers_within_ms",
                    format!(
                        "peer {:?} has no live connection that could recover",
                        e.peer
                    ),
                ));
            }
            Some((ms, conns))
        }
    };
    Ok(Arc::new(SetNetwork {
        peer: e.peer,
        loss_pct,
        recovery,
    }))
}

#[async_trait]
impl Step for SetNetwork {
    fn describe(&self) -> String {
        match &self.recovery {
            Some((ms, _)) => format!(
                "set_network {}: loss {}%, recovers within {ms} ms",
                self.peer, self.loss_pct
            ),
            None => format!("set_network {}: loss {}%", self.peer, self.loss_pct),
        }
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.recovery
            .iter()
            .flat_map(|(_, conns)| conns)
            .flat_map(|(c, o, a)| [Endpoint::new(o, c), Endpoint::new(a, c)])
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        if cx.lab().is_none() {
            return Err(StepError::Impossible(
                "set_network needs the network lab".into(),
            ));
        }
        // Stamped just before the rules change (they are in place a few ms later), so that no
        // state change the new rules cause can come before it on the timeline.
        cx.record(
            &self.peer,
            "",
            EventKind::NetworkChanged {
                loss_pct: self.loss_pct,
            },
        );
        let deadline = cx.deadline().clone();
        let Some(lab) = cx.lab() else {
            return Err(StepError::Impossible(
                "set_network needs the network lab".into(),
            ));
        };
        match tokio::time::timeout_at(deadline.at, lab.set_loss(&self.peer, self.loss_pct)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(StepError::CommandDeadline {
                    what: format!("{}: set_network", self.peer),
                    limit: deadline.what,
                });
            }
        }
        let Some((ms, conns)) = &self.recovery else {
            return Ok(Box::new(Immediate));
        };
        let at = Instant::now() + Duration::from_millis(*ms);
        if at < cx.deadline().at {
            cx.deadline = Deadline {
                at,
                what: format!("its recovers_within_ms = {ms}"),
            };
        }
        Ok(Box::new(Recovery {
            endpoints: conns
                .iter()
                .flat_map(|(c, o, a)| [(o.clone(), c.clone()), (a.clone(), c.clone())])
                .collect(),
        }))
    }
}

/// Done once every watched endpoint's connectionState is `connected`.
struct Recovery {
    /// (peer, connection).
    endpoints: Vec<(String, String)>,
}

impl Recovery {
    fn not_connected<'a>(&'a self, timeline: &'a Timeline) -> Vec<String> {
        self.endpoints
            .iter()
            .filter_map(|(p, c)| {
                let ep = Endpoint::new(p, c);
                match timeline.states(ep, StateMachine::Connection).last() {
                    Some((_, "connected")) => None,
                    Some((t, s)) => Some(format!(
                        "peer {p} ({c}): connectionState {s} since {t:.1} ms"
                    )),
                    None => Some(format!("peer {p} ({c}): no connectionState")),
                }
            })
            .collect()
    }
}

impl Watch for Recovery {
    fn progress(&self, timeline: &Timeline) -> Progress {
        if self.not_connected(timeline).is_empty() {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        format!(
            "every connection connected again; not yet: {}",
            self.not_connected(timeline).join("; ")
        )
    }
}
