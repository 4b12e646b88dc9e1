//! `wait`: sleep for a while (taking stats samples when they fall due).

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::Endpoint;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(super) const KIND: Kind = Kind {
    action: "wait",
    summary: "Sleep for `ms` milliseconds.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `wait` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// How long, ms.
    ms: u64,
}

/// A checked wait step.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// Duration, ms.
    pub ms: u64,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    if let Some(t) = cx.timeout_ms
        && e.ms > t
    {
        return Err(cx.err(
            "ms",
            format!(
                "waiting {} ms cannot finish within this step's timeout_ms = {t}",
                e.ms
            ),
        ));
    }
    if e.ms > cx.timeout_s * 1000 {
        return Err(cx.err(
            "ms",
            format!(
                "{} ms is longer than the scenario's timeout_s ({} s)",
                e.ms, cx.timeout_s
            ),
        ));
    }
    Ok(Arc::new(Wait { ms: e.ms }))
}

#[async_trait]
impl Step for Wait {
    fn describe(&self) -> String {
        format!("wait {} ms", self.ms)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let until = Instant::now() + Duration::from_millis(self.ms);
        if until > cx.deadline().at {
            return Err(StepError::Impossible(format!(
                "waiting {} ms would pass the deadline ({})",
                self.ms,
                cx.deadline().what
            )));
        }
        cx.sleep_until(until).await;
        Ok(Box::new(Immediate))
    }
}
