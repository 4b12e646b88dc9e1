//! `freeze`: make a browser hang as a stuck process does (fault injection): SIGSTOP to its
//! WebDriver process group. Its sockets stay open but it answers and sends nothing: the other
//! side goes through its ICE timers, and any later command to the frozen peer runs into its
//! step's deadline. The group is killed (SIGKILL) at the end of the scenario as always.

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::{PeerKind, ScenarioError};
use crate::timeline::Endpoint;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "freeze",
    summary: "Make a browser hang (SIGSTOP to its process group) until the scenario ends.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `freeze` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The browser peer to freeze.
    peer: String,
}

/// A checked freeze step.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    /// The peer.
    pub peer: String,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    if cx
        .peers
        .iter()
        .any(|p| p.id == e.peer && p.kind == PeerKind::Bot)
    {
        return Err(cx.err(
            "peer",
            format!(
                "peer {:?} is a bot, which runs inside the harness's own process and cannot be \
                 stopped on its own: use `kill`, or freeze a browser",
                e.peer
            ),
        ));
    }
    cx.live("peer", &e.peer)?;
    Ok(Arc::new(Freeze { peer: e.peer }))
}

#[async_trait]
impl Step for Freeze {
    fn describe(&self) -> String {
        format!("freeze {}", self.peer)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        cx.bounded(
            format!("{}: freeze", self.peer),
            cx.peer(&self.peer)?.freeze(),
        )
        .await?;
        Ok(Box::new(Immediate))
    }
}
