//! `set_network`: change a lab peer's packet loss while the scenario runs (fault injection);
//! done as soon as the new rules are in place.

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
}

/// A checked set_network step.
#[derive(Debug, Clone, PartialEq)]
pub struct SetNetwork {
    /// The peer.
    pub peer: String,
    /// New loss each direction, percent.
    pub loss_pct: u8,
}

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
    Ok(Arc::new(SetNetwork {
        peer: e.peer,
        loss_pct,
    }))
}

#[async_trait]
impl Step for SetNetwork {
    fn describe(&self) -> String {
        format!("set_network {}: loss {}%", self.peer, self.loss_pct)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let lab = cx
            .lab()
            .ok_or_else(|| StepError::Impossible("set_network needs the network lab".into()))?;
        let deadline = cx.deadline().clone();
        match tokio::time::timeout_at(deadline.at, lab.set_loss(&self.peer, self.loss_pct)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(StepError::CommandDeadline {
                    what: format!("{}: set_network", self.peer),
                    limit: deadline.what,
                });
            }
        }
        Ok(Box::new(Immediate))
    }
}
