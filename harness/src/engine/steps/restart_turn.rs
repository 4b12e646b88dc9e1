//! `restart_turn`: the scenario's embedded TURN server (coturn) crashes and comes back
//! (fault injection): SIGKILL, then, after `down_ms`, a new coturn on the same address, port
//! and credentials. Every allocation, permission and channel binding is lost, so a call over a
//! relay loses its path until its peers allocate again (an ICE restart gathers new relay
//! candidates). Done once the new coturn listens.

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub(super) const KIND: Kind = Kind {
    action: "restart_turn",
    summary: "Kill the embedded coturn and start it again on the same port (allocations are lost).",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `restart_turn` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// How long the server stays down before it starts again, ms (default 0).
    #[schemars(range(min = 0))]
    down_ms: Option<u64>,
}

/// A checked restart_turn step.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartTurn {
    /// Time down, ms.
    pub down_ms: u64,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    if !cx.embedded_turn {
        return Err(cx.err(
            "action",
            "restart_turn needs the embedded TURN server: add an [ice.embedded_turn] table",
        ));
    }
    let down_ms = cx.down_ms(e.down_ms)?;
    Ok(Arc::new(RestartTurn { down_ms }))
}

#[async_trait]
impl Step for RestartTurn {
    fn describe(&self) -> String {
        format!("restart_turn (down {} ms)", self.down_ms)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let Some(turn) = cx.turn() else {
            return Err(StepError::Impossible(
                "restart_turn needs the embedded TURN server".into(),
            ));
        };
        let down = Duration::from_millis(self.down_ms);
        cx.bounded("TURN server: restart", turn.restart(down))
            .await?;
        cx.record(
            "",
            "",
            EventKind::Mark {
                name: format!("TURN server restarted (down {} ms)", self.down_ms),
            },
        );
        Ok(Box::new(Immediate))
    }
}
