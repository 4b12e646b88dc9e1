//! `kill`: stop a peer as a crash would, without `close()` (fault injection). A browser's
//! process group gets SIGKILL; a bot's connection tasks and sockets are dropped. The other
//! side hears nothing more and goes through its own timers (disconnected, then failed): assert
//! that with state lists, or wait for it with `wait_state`.

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::Endpoint;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "kill",
    summary: "Stop a peer without close(): SIGKILL to a browser, a bot's tasks and sockets dropped.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `kill` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer to kill. Later steps may not use it.
    peer: String,
}

/// A checked kill step.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    /// The peer.
    pub peer: String,
    /// Its connections (made by earlier connect steps).
    pub connections: Vec<String>,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    let connections = cx.connections_of(&e.peer);
    if !cx.closed.insert(e.peer.clone()) {
        return Err(cx.err(
            "peer",
            format!("peer {:?} was already closed or killed", e.peer),
        ));
    }
    Ok(Arc::new(Kill {
        peer: e.peer,
        connections,
    }))
}

#[async_trait]
impl Step for Kill {
    fn describe(&self) -> String {
        format!("kill {}", self.peer)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.connections
            .iter()
            .map(|c| Endpoint::new(&self.peer, c))
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        cx.bounded(format!("{}: kill", self.peer), cx.peer(&self.peer)?.kill())
            .await?;
        Ok(Box::new(Immediate))
    }
}
