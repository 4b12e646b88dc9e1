//! `restart_signaling`: the embedded signaling server crashes and comes back on the same
//! address (fault injection): every WebSocket is closed (code 1012, service restart), every
//! room is forgotten, and for `down_ms` new connections get HTTP 503. Peers reconnect as apps
//! do (bots and the harness page: a first attempt at once, then backoff from 100 ms doubling to
//! 2 s) and join their rooms again. The step is done once every live peer has rejoined each of
//! its connections' rooms. A connected call needs no signaling, so it goes on meanwhile; a later
//! `restart_ice` or `add_track` shows that negotiation works again.
//!
//! The embedded server is one per harness process: under `--jobs` a scenario with this step
//! runs alone, after the others, so only its own rooms are affected.

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::peer::PeerError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub(super) const KIND: Kind = Kind {
    action: "restart_signaling",
    summary: "Restart the embedded signaling server: every socket closed, rooms forgotten, 503 \
              while down; done once every live peer has rejoined.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `restart_signaling` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// How long the server refuses connections (HTTP 503) before it accepts them again, ms
    /// (default 0).
    #[schemars(range(min = 0))]
    down_ms: Option<u64>,
}

/// A checked restart_signaling step.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartSignaling {
    /// Time down, ms.
    pub down_ms: u64,
    /// (peer, connection) pairs that must rejoin: every connection made by an earlier step,
    /// for each of its peers not closed or killed.
    pub rejoin: Vec<(String, String)>,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    let down_ms = cx.down_ms(e.down_ms)?;
    cx.no_mesh_call()?;
    let rejoin: Vec<(String, String)> = cx
        .connections
        .iter()
        .flat_map(|c| {
            [&c.offerer, &c.answerer]
                .into_iter()
                .filter(|p| !cx.closed.contains(p.as_str()))
                .map(|p| (p.clone(), c.id.clone()))
        })
        .collect();
    if rejoin.is_empty() {
        return Err(cx.err(
            "action",
            "restart_signaling needs a connection made by an earlier connect step, with a peer \
             not closed or killed",
        ));
    }
    Ok(Arc::new(RestartSignaling { down_ms, rejoin }))
}

/// How many times the endpoint has joined its signaling room, and seen its socket close, so far.
fn joins(timeline: &Timeline, ep: Endpoint<'_>) -> (usize, usize) {
    timeline.of(ep).fold((0, 0), |(j, c), e| match e.event {
        EventKind::SignalingJoined { .. } => (j + 1, c),
        EventKind::SignalingClosed => (j, c + 1),
        _ => (j, c),
    })
}

#[async_trait]
impl Step for RestartSignaling {
    fn describe(&self) -> String {
        format!("restart_signaling (down {} ms)", self.down_ms)
    }

    fn exclusive(&self) -> bool {
        // It restarts the server every run of the process uses.
        true
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.rejoin
            .iter()
            .map(|(p, c)| Endpoint::new(p, c))
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let admin = cx.signaling_admin().cloned().ok_or_else(|| {
            StepError::Impossible(
                "restart_signaling needs the harness's own signaling server (this run's \
                 signaling is elsewhere)"
                    .into(),
            )
        })?;
        let before: Vec<(usize, usize)> = self
            .rejoin
            .iter()
            .map(|(p, c)| joins(cx.timeline(), Endpoint::new(p, c)))
            .collect();
        let down = Duration::from_millis(self.down_ms);
        let closed = cx
            .bounded("signaling server: restart", async {
                admin.restart(down).await.map_err(PeerError::failed)
            })
            .await?;
        cx.record(
            "",
            "",
            EventKind::Mark {
                name: format!(
                    "signaling server restarted (down {} ms, {closed} sockets closed)",
                    self.down_ms
                ),
            },
        );
        Ok(Box::new(Rejoin {
            rejoin: self.rejoin.clone(),
            before,
        }))
    }
}

/// Done once every endpoint has joined more often than before the restart.
struct Rejoin {
    rejoin: Vec<(String, String)>,
    /// Joins and closes of each endpoint before the restart.
    before: Vec<(usize, usize)>,
}

impl Rejoin {
    /// Endpoints not rejoined yet, and whether each has seen its socket close.
    fn missing<'a>(
        &'a self,
        timeline: &'a Timeline,
    ) -> impl Iterator<Item = (&'a (String, String), bool)> {
        self.rejoin
            .iter()
            .zip(&self.before)
            .filter_map(|(ep, before)| {
                let (joined, closed) = joins(timeline, Endpoint::new(&ep.0, &ep.1));
                (joined <= before.0).then_some((ep, closed > before.1))
            })
    }
}

impl Watch for Rejoin {
    fn progress(&self, timeline: &Timeline) -> Progress {
        if self.missing(timeline).next().is_none() {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let missing: Vec<String> = self
            .missing(timeline)
            .map(|((p, c), closed)| {
                format!(
                    "{p} ({c}: {})",
                    if closed {
                        "its socket closed; no new join yet"
                    } else {
                        "it has not reported its socket closed"
                    }
                )
            })
            .collect();
        format!(
            "peers to rejoin their signaling rooms after the restart: {}",
            missing.join(", ")
        )
    }
}
