//! `wait_state`: wait until one of a connection's four W3C state machines has a given value,
//! e.g. until the survivor of a `kill` reports `connectionState` `failed`. The step's duration
//! is how long that took; its `timeout_ms` bounds it.

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "wait_state",
    summary: "Wait until a connection's state machine has a value (e.g. connection_state = \"failed\").",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `wait_state` step: `peer`, optionally `connection`, and exactly one of the
/// four machines with the value to wait for.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer whose state is watched.
    peer: String,
    /// Its connection (default: the peer's only connection).
    connection: Option<String>,
    /// A `connectionState` value (W3C webrtc-pc §4.3.3, RTCPeerConnectionState).
    connection_state: Option<String>,
    /// An `iceConnectionState` value (RTCIceConnectionState).
    ice_connection_state: Option<String>,
    /// A `signalingState` value (RTCSignalingState).
    signaling_state: Option<String>,
    /// An `iceGatheringState` value (RTCIceGatheringState).
    ice_gathering_state: Option<String>,
}

/// A checked wait_state step.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitState {
    /// The peer.
    pub peer: String,
    /// Its connection.
    pub connection: String,
    /// The machine.
    pub machine: StateMachine,
    /// The value waited for.
    pub state: String,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    let given: Vec<(StateMachine, &String)> = [
        (StateMachine::Connection, &e.connection_state),
        (StateMachine::IceConnection, &e.ice_connection_state),
        (StateMachine::Signaling, &e.signaling_state),
        (StateMachine::IceGathering, &e.ice_gathering_state),
    ]
    .into_iter()
    .filter_map(|(m, v)| v.as_ref().map(|v| (m, v)))
    .collect();
    let [(machine, state)] = given.as_slice() else {
        return Err(cx.err(
            "",
            "wait_state needs exactly one of connection_state, ice_connection_state, \
             signaling_state, ice_gathering_state",
        ));
    };
    if !machine.states().contains(&state.as_str()) {
        return Err(cx.err(
            machine.key(),
            format!(
                "{state:?} is not a {} value (one of: {})",
                machine.attribute(),
                machine.states().join(", ")
            ),
        ));
    }
    let connection = if cx.page(&e.peer) {
        cx.page_connection(e.connection.as_deref())?
    } else {
        cx.connection_named(&e.peer, e.connection.as_deref())?
    };
    cx.live("peer", &e.peer)?;
    Ok(Arc::new(WaitState {
        peer: e.peer,
        connection,
        machine: *machine,
        state: state.to_string(),
    }))
}

#[async_trait]
impl Step for WaitState {
    fn describe(&self) -> String {
        if self.connection.is_empty() {
            return format!(
                "wait_state {} (its page's RTCPeerConnection): {} {}",
                self.peer,
                self.machine.attribute(),
                self.state
            );
        }
        format!(
            "wait_state {} ({}): {} {}",
            self.peer,
            self.connection,
            self.machine.attribute(),
            self.state
        )
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        vec![Endpoint::new(&self.peer, &self.connection)]
    }

    async fn start(&self, _cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        Ok(Box::new(self.clone()))
    }
}

impl WaitState {
    /// The connection watched: as planned, or a page's (see [`Timeline::page_connection`]).
    fn resolved(&self, timeline: &Timeline) -> Result<Option<String>, String> {
        if self.connection.is_empty() || crate::scenario::is_page_connection_id(&self.connection) {
            timeline.page_connection(&self.peer, &self.connection)
        } else {
            Ok(Some(self.connection.clone()))
        }
    }
}

impl Watch for WaitState {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let connection = match self.resolved(timeline) {
            Ok(Some(c)) => c,
            Ok(None) => return Progress::Waiting,
            Err(why) => return Progress::Failed(why),
        };
        let ep = Endpoint::new(&self.peer, &connection);
        match timeline.current_state(ep, self.machine) {
            Some(s) if s == self.state => Progress::Done,
            Some("closed") => Progress::Failed(format!(
                "peer {} ({}): {} is closed, it cannot become {}",
                self.peer,
                self.connection,
                self.machine.attribute(),
                self.state
            )),
            _ => Progress::Waiting,
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let connection = match self.resolved(timeline) {
            Ok(Some(c)) => c,
            Ok(None) if self.connection.is_empty() => {
                return format!(
                    "peer {}: its page to create an RTCPeerConnection (it has created none)",
                    self.peer
                );
            }
            Ok(None) => {
                return format!(
                    "peer {}: its page to create {} (it has created {})",
                    self.peer,
                    self.connection,
                    timeline.connections_of(&self.peer).len()
                );
            }
            Err(why) => return why,
        };
        let ep = Endpoint::new(&self.peer, &connection);
        let now = match timeline.states(ep, self.machine).last() {
            Some((t, s)) => format!("{s} since {t:.1} ms"),
            None => "no value yet".into(),
        };
        format!(
            "peer {} ({}): {} to become {} (now {now})",
            self.peer,
            self.connection,
            self.machine.attribute(),
            self.state
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Event, EventKind};

    fn state(t: f64, s: &str) -> Event {
        Event {
            t_ms: t,
            peer: "a".into(),
            connection: "a~b".into(),
            event: EventKind::State {
                machine: StateMachine::Connection,
                state: s.into(),
            },
        }
    }

    fn watch(state: &str) -> WaitState {
        WaitState {
            peer: "a".into(),
            connection: "a~b".into(),
            machine: StateMachine::Connection,
            state: state.into(),
        }
    }

    #[test]
    fn done_when_the_current_value_is_the_one_waited_for() {
        let mut t = Timeline::new();
        t.push(state(1.0, "connected"));
        let w = watch("failed");
        assert_eq!(w.progress(&t), Progress::Waiting);
        assert!(w.waiting_for(&t).contains("now connected since 1.0 ms"));
        t.push(state(2.0, "disconnected"));
        assert_eq!(w.progress(&t), Progress::Waiting);
        t.push(state(3.0, "failed"));
        assert_eq!(w.progress(&t), Progress::Done);
    }

    #[test]
    fn closed_cannot_get_there() {
        let mut t = Timeline::new();
        t.push(state(1.0, "closed"));
        assert!(matches!(watch("failed").progress(&t), Progress::Failed(_)));
    }
}
