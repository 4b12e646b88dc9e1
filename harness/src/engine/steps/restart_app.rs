//! `restart_app`: the app under test crashes and comes back (fault injection): its process
//! group is killed (SIGKILL), and after `down_ms` its `command` starts again on the same port,
//! its output added to the same log. Done once the app answers `ready` again. What the app's
//! pages and the bots in its signaling do meanwhile is theirs to show: an established call
//! needs no signaling, so its media goes on; a page's socket reconnects, or not.

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
    action: "restart_app",
    summary: "Kill the app under test and start it again on the same port; done when it answers `ready`.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `restart_app` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// How long the app stays down before it starts again, ms (default 0).
    #[schemars(range(min = 0))]
    down_ms: Option<u64>,
}

/// A checked restart_app step.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartApp {
    /// Time down, ms.
    pub down_ms: u64,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    if !cx.app_started {
        return Err(cx.err(
            "action",
            "restart_app needs an app the harness starts: an [app] table with `command`",
        ));
    }
    let down_ms = cx.down_ms(e.down_ms)?;
    Ok(Arc::new(RestartApp { down_ms }))
}

#[async_trait]
impl Step for RestartApp {
    fn describe(&self) -> String {
        format!("restart_app (down {} ms)", self.down_ms)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let Some(app) = cx.setup.app.as_ref() else {
            return Err(StepError::Impossible(
                "restart_app needs the app under test".into(),
            ));
        };
        let down = Duration::from_millis(self.down_ms);
        cx.bounded("app under test: restart", async {
            app.restart(down)
                .await
                .map_err(crate::peer::PeerError::failed)
        })
        .await?;
        cx.record(
            "",
            "",
            EventKind::Mark {
                name: format!("app restarted (down {} ms)", self.down_ms),
            },
        );
        Ok(Box::new(Immediate))
    }
}
