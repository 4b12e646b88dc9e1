//! `close`: `close()` on every connection of a peer (W3C webrtc-pc §4.4.1.6).

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
    action: "close",
    summary: "close() every connection of a peer.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `close` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer whose connections are closed.
    peer: String,
}

/// A checked close step.
#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    /// The peer.
    pub peer: String,
    /// Its connections (made by earlier connect steps).
    pub connections: Vec<String>,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("peer", &e.peer)?;
    let connections = cx.connections_of(&e.peer);
    if connections.is_empty() {
        return Err(cx.err(
            "peer",
            format!(
                "peer {:?} has no connection to close (no earlier connect step)",
                e.peer
            ),
        ));
    }
    if !cx.closed.insert(e.peer.clone()) {
        return Err(cx.err("peer", format!("peer {:?} is already closed", e.peer)));
    }
    Ok(Arc::new(Close {
        peer: e.peer,
        connections,
    }))
}

#[async_trait]
impl Step for Close {
    fn describe(&self) -> String {
        format!("close {}", self.peer)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.connections
            .iter()
            .map(|c| Endpoint::new(&self.peer, c))
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        for c in &self.connections {
            cx.bounded(
                format!("{}: close", self.peer),
                cx.peer(&self.peer)?.close(c),
            )
            .await?;
        }
        Ok(Box::new(Immediate))
    }
}
