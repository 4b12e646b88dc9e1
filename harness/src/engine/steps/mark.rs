//! `mark`: a named point on the timeline, so a long scenario can be cut into phases. It is listed
//! in the JSON (`marks`, and as a `mark` event with no peer) and drawn in the HTML timeline.

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "mark",
    summary: "Put a named marker on the timeline (drawn in the HTML report, listed in the JSON).",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `mark` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The marker's name (1 to 200 characters, not only spaces).
    #[schemars(length(min = 1, max = 200), regex(pattern = r"\S"))]
    name: String,
}

/// A checked mark step.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The marker's name.
    pub name: String,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    let len = e.name.chars().count();
    if e.name.trim().is_empty() || len > 200 {
        return Err(cx.err("name", "must be 1 to 200 characters, not only spaces"));
    }
    Ok(Arc::new(Mark { name: e.name }))
}

#[async_trait]
impl Step for Mark {
    fn describe(&self) -> String {
        format!("mark '{}'", self.name)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        cx.record(
            "",
            "",
            EventKind::Mark {
                name: self.name.clone(),
            },
        );
        Ok(Box::new(Immediate))
    }
}
