//! `drop_signaling`: the signaling server closes a peer's WebSocket mid-call (fault
//! injection), as a server restart or a lost connection would; the step is done once the peer
//! has reconnected and joined its room again. Peers reconnect as apps do (bots and the harness
//! page: backoff from 100 ms, doubling to 2 s). The call itself needs no signaling once
//! connected; a later `restart_ice` or `add_track` shows that negotiation works again.

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "drop_signaling",
    summary: "The signaling server closes a peer's WebSocket; done once it has rejoined its room.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `drop_signaling` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer whose signaling socket the server closes.
    peer: String,
    /// Its connection (default: the peer's only connection); each connection has a socket.
    connection: Option<String>,
}

/// A checked drop_signaling step.
#[derive(Debug, Clone, PartialEq)]
pub struct DropSignaling {
    /// The peer.
    pub peer: String,
    /// Its connection.
    pub connection: String,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("peer", &e.peer)?;
    let connection = cx.connection_named(&e.peer, e.connection.as_deref())?;
    cx.no_mesh_call()?;
    cx.live("peer", &e.peer)?;
    Ok(Arc::new(DropSignaling {
        peer: e.peer,
        connection,
    }))
}

/// Signaling sessions the endpoint has joined so far.
fn joins(timeline: &Timeline, ep: Endpoint<'_>) -> Vec<String> {
    timeline
        .of(ep)
        .filter_map(|e| match &e.event {
            EventKind::SignalingJoined { peer_id } => Some(peer_id.clone()),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl Step for DropSignaling {
    fn describe(&self) -> String {
        format!("drop_signaling {} ({})", self.peer, self.connection)
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        vec![Endpoint::new(&self.peer, &self.connection)]
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let ep = Endpoint::new(&self.peer, &self.connection);
        let admin = cx.signaling_admin().ok_or_else(|| {
            StepError::Impossible(
                "drop_signaling needs the harness's own signaling server (this run's signaling \
                 is elsewhere)"
                    .into(),
            )
        })?;
        let joined = joins(cx.timeline(), ep);
        let Some(peer_id) = joined.last() else {
            return Err(StepError::Impossible(format!(
                "peer {} ({}) has not joined a signaling room (no signaling-joined event)",
                self.peer, self.connection
            )));
        };
        let room = cx.room(&self.connection);
        if !admin.disconnect(&room, peer_id) {
            return Err(StepError::Impossible(format!(
                "peer {} ({}): the signaling server has no session {peer_id:?} in room {room:?}",
                self.peer, self.connection
            )));
        }
        Ok(Box::new(Rejoin {
            peer: self.peer.clone(),
            connection: self.connection.clone(),
            joins_before: joined.len(),
        }))
    }
}

/// Done once the endpoint reports its socket closed and a new join after it.
struct Rejoin {
    peer: String,
    connection: String,
    joins_before: usize,
}

impl Watch for Rejoin {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let ep = Endpoint::new(&self.peer, &self.connection);
        if joins(timeline, ep).len() > self.joins_before {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let ep = Endpoint::new(&self.peer, &self.connection);
        let closed = timeline
            .first_time(ep, |k| matches!(k, EventKind::SignalingClosed))
            .is_some();
        format!(
            "peer {} ({}) to rejoin its signaling room ({})",
            self.peer,
            self.connection,
            if closed {
                "its socket closed; no new join yet"
            } else {
                "it has not reported its socket closed"
            }
        )
    }
}
