//! `kill`: stop a peer as a crash would, without `close()` (fault injection). A browser's
//! process group gets SIGKILL; a bot's connection tasks and sockets are dropped. The other
//! side hears nothing more and goes through its own timers (disconnected, then failed): assert
//! that with state lists, or wait for it with `wait_state`.
//!
//! With `process = "driver"` only a browser's WebDriver server (chromedriver, geckodriver) is
//! killed, as a crashed driver would be: the browser and its page go on (the harness drives the
//! page over its own control socket), later steps may still use the peer, and at the end of the
//! scenario the browser is killed with the driver's process group instead of being reused.

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
    action: "kill",
    summary: "Stop a peer without close(): SIGKILL to a browser, a bot's tasks and sockets dropped.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `kill` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer to kill. Later steps may not use it (unless only its driver is killed).
    peer: String,
    /// What to kill: `all` (default: the peer) or `driver` (a browser's WebDriver server
    /// alone).
    process: Option<Process>,
}

/// What a kill step kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// The peer: a browser's whole process tree, a bot's tasks and sockets.
    All,
    /// A browser's WebDriver server alone.
    Driver,
}

/// A checked kill step.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    /// The peer.
    pub peer: String,
    /// Its connections (made by earlier connect steps).
    pub connections: Vec<String>,
    /// What is killed.
    pub process: Process,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    let connections = cx.connections_of(&e.peer);
    let process = e.process.unwrap_or(Process::All);
    if process == Process::Driver {
        // A custom kind may have a driver of its own (its Peer::kill_driver says at run time).
        if cx
            .peers
            .iter()
            .any(|p| p.id == e.peer && p.kind == crate::scenario::PeerKind::Bot)
        {
            return Err(cx.err(
                "process",
                format!(
                    "process = \"driver\" needs a browser peer; bot {:?} has no driver",
                    e.peer
                ),
            ));
        }
        cx.live("peer", &e.peer)?;
        return Ok(Arc::new(Kill {
            peer: e.peer,
            connections,
            process,
        }));
    }
    if !cx.closed.insert(e.peer.clone()) {
        return Err(cx.err(
            "peer",
            format!("peer {:?} was already closed or killed", e.peer),
        ));
    }
    Ok(Arc::new(Kill {
        peer: e.peer,
        connections,
        process,
    }))
}

#[async_trait]
impl Step for Kill {
    fn describe(&self) -> String {
        match self.process {
            Process::All => format!("kill {}", self.peer),
            Process::Driver => format!("kill {}'s driver", self.peer),
        }
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.connections
            .iter()
            .map(|c| Endpoint::new(&self.peer, c))
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let peer = cx.peer(&self.peer)?;
        match self.process {
            Process::All => {
                cx.bounded(format!("{}: kill", self.peer), peer.kill())
                    .await?;
            }
            Process::Driver => {
                let program = cx
                    .bounded(format!("{}: kill driver", self.peer), peer.kill_driver())
                    .await?;
                cx.record(
                    "",
                    "",
                    EventKind::Mark {
                        name: format!("{}: {program} killed", self.peer),
                    },
                );
            }
        }
        Ok(Box::new(Immediate))
    }
}
