//! `join_app`: a bot joins the app's own signaling (`[app.signaling]`) as one of the app's
//! pages would, and takes part in the call the app sets up; done once the bot's
//! connectionState is `connected`, or with `until = "joined"` once the app took the bot in (its
//! `ready` reply to a WebSocket login; a sent Socket.IO join), so that a later step can make
//! the app's page call it.
//!
//! The bot's side is a connection of its own (default id `app`); the other side is whatever
//! the app pairs it with (typically a page peer's `pc1`), found again on the timeline by ICE
//! ufrag for the setup metrics. As `offerer` the bot offers when the app's `ready` message comes
//! (to the user named by `call`, for apps whose messages name their target); as `answerer` it
//! answers the offer the app relays, to whoever sent it.

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::peer::{ConnectRequest, Role};
use crate::scenario::{ConnectionPlan, Direction, MediaKind, ScenarioError};
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "join_app",
    summary: "A bot joins the app's own signaling ([app.signaling]) and takes part in its call; done when it is connected.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `join_app` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The bot.
    peer: String,
    /// The app's room id (`{room}` in the templates; `{run}` is replaced: a token unique to the
    /// run). Default: empty, for apps without rooms.
    room: Option<String>,
    /// The bot's own name in the app (`{name}`: the login name; `{run}` replaced). Default: the
    /// peer id.
    name: Option<String>,
    /// The user the bot calls (`{peer}`), for apps whose messages name their target
    /// (`{run}` replaced; offerer only).
    call: Option<String>,
    /// `offerer`: offer when the app says the room is ready; `answerer`: answer its offer.
    role: Role,
    /// The bot's connection id (default `app`).
    connection: Option<String>,
    /// Media the bot sends and receives: `audio`, `video`.
    media: Option<Vec<MediaKind>>,
    /// Label of a data channel the bot creates before its offer (offerer only).
    data_channel: Option<String>,
    /// Trickle candidates (default true).
    trickle: Option<bool>,
    /// When the step is done: `connected` (default: the bot's connectionState is `connected`)
    /// or `joined` (the app took the bot in; the call is checked by later steps).
    until: Option<Until>,
}

/// When a join_app step is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// The bot's connectionState is `connected`.
    Connected,
    /// The app took the bot in (the timeline's `signaling-joined`).
    Joined,
}

/// A checked join_app step.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinApp {
    /// The bot.
    pub peer: String,
    /// The room, `{run}` unreplaced.
    pub room: String,
    /// The bot's name in the app, `{run}` unreplaced.
    pub name: String,
    /// The user it calls, `{run}` unreplaced.
    pub call: Option<String>,
    /// Its role.
    pub role: Role,
    /// Its connection id.
    pub connection: String,
    /// Media.
    pub media: Vec<MediaKind>,
    /// Data channel.
    pub data_channel: Option<String>,
    /// Trickle.
    pub trickle: bool,
    /// When the step is done.
    pub until: Until,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    if !cx.app_signaling {
        return Err(cx.err(
            "",
            "join_app needs [app.signaling]: how the app's signaling protocol looks",
        ));
    }
    if !cx
        .peers
        .iter()
        .any(|p| p.id == e.peer && p.kind == crate::scenario::PeerKind::Bot)
    {
        return Err(cx.err(
            "peer",
            format!("join_app takes a bot; peer {:?} is not one (a browser joins the app by loading its page: `url`)", e.peer),
        ));
    }
    cx.live("peer", &e.peer)?;
    if e.room.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(cx.err(
            "room",
            "must not be empty (leave it out for an app without rooms)",
        ));
    }
    if e.room.is_none() && cx.app_names_rooms {
        return Err(cx.err(
            "",
            "the app's messages name a room (\"{room}\" in [app.signaling]): give `room`",
        ));
    }
    if e.name.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(cx.err("name", "must not be empty"));
    }
    match (&e.call, e.role) {
        (Some(_), Role::Answerer) => {
            return Err(cx.err(
                "call",
                "an answerer answers whoever calls it: `call` is for the offerer",
            ));
        }
        (None, Role::Offerer) if cx.app_names_peers => {
            return Err(cx.err(
                "",
                "the app's messages name their target (\"{peer}\" in [app.signaling]): give \
                 `call`, the name of the user the bot calls",
            ));
        }
        _ => {}
    }
    if e.data_channel.is_some() && e.role == Role::Answerer {
        return Err(cx.err(
            "data_channel",
            "only the offerer creates a data channel before its offer",
        ));
    }
    let media = e.media.unwrap_or_default();
    if media.is_empty() && e.data_channel.is_none() && e.role == Role::Offerer {
        return Err(cx.err(
            "",
            "an offer needs something to negotiate: give media or data_channel",
        ));
    }
    let id = e.connection.unwrap_or_else(|| "app".into());
    if cx.connections.iter().any(|c| c.id == id) {
        return Err(cx.err(
            "connection",
            format!("connection id {id:?} is already used by an earlier step"),
        ));
    }
    let (offerer, answerer) = match e.role {
        Role::Offerer => (e.peer.clone(), String::new()),
        Role::Answerer => (String::new(), e.peer.clone()),
    };
    cx.connections.push(ConnectionPlan {
        id: id.clone(),
        step: cx.index,
        offerer,
        answerer,
        data_channel: e.data_channel.clone(),
        media: media.clone(),
        expect_connected: true,
        call: None,
    });
    Ok(Arc::new(JoinApp {
        name: e.name.unwrap_or_else(|| e.peer.clone()),
        call: e.call,
        peer: e.peer,
        room: e.room.unwrap_or_default(),
        role: e.role,
        connection: id,
        media,
        data_channel: e.data_channel,
        trickle: e.trickle.unwrap_or(true),
        until: e.until.unwrap_or(Until::Connected),
    }))
}

#[async_trait]
impl Step for JoinApp {
    fn describe(&self) -> String {
        format!(
            "join_app {} {} as {}",
            self.peer,
            match &self.call {
                Some(c) => format!("calling {c}"),
                None if self.room.is_empty() => format!("named {}", self.name),
                None => format!("room {}", self.room),
            },
            match self.role {
                Role::Offerer => "offerer",
                Role::Answerer => "answerer",
            }
        )
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        vec![Endpoint::new(&self.peer, &self.connection)]
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let app = cx
            .setup
            .app
            .as_ref()
            .ok_or_else(|| StepError::Impossible("join_app: the scenario has no app".into()))?;
        let signaling = cx
            .setup
            .app_signaling
            .clone()
            .ok_or_else(|| StepError::Impossible("join_app: no [app.signaling]".into()))?;
        let req = ConnectRequest {
            connection: self.connection.clone(),
            room: cx.setup.expand(&self.room),
            role: self.role,
            data_channel: self.data_channel.clone(),
            trickle: self.trickle,
            signaling_url: app.base().to_string(),
            ice_servers: cx.ice().servers.clone(),
            ice_transport_policy: cx.ice().policy,
            media: self.media.clone(),
            direction: Direction::Sendrecv,
            close_on_peer_left: false,
            app_signaling: Some(crate::peer::signaling::AppJoin {
                plan: signaling,
                name: cx.setup.expand(&self.name),
                peer: self.call.as_deref().map(|c| cx.setup.expand(c)),
            }),
        };
        cx.bounded(
            format!("{}: join_app", self.peer),
            cx.peer(&self.peer)?.connect(&req),
        )
        .await?;
        Ok(Box::new(self.clone()))
    }

    fn samples_while_waiting(&self) -> bool {
        false
    }
}

impl Watch for JoinApp {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let ep = Endpoint::new(&self.peer, &self.connection);
        if self.until == Until::Joined
            && timeline
                .of(ep)
                .any(|e| matches!(e.event, EventKind::SignalingJoined { .. }))
        {
            return Progress::Done;
        }
        match timeline.current_state(ep, StateMachine::Connection) {
            Some("connected") => Progress::Done,
            Some(s @ ("failed" | "closed")) => Progress::Failed(format!(
                "peer {} ({}): connectionState {s}",
                self.peer, self.connection
            )),
            _ => Progress::Waiting,
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let ep = Endpoint::new(&self.peer, &self.connection);
        let now = timeline
            .current_state(ep, StateMachine::Connection)
            .unwrap_or("no RTCPeerConnection yet");
        match self.until {
            Until::Connected => format!(
                "peer {} ({}) to be connected through the app's signaling (connectionState now: {now})",
                self.peer, self.connection
            ),
            Until::Joined => format!(
                "the app to take peer {} in (its `ready` message; connectionState now: {now})",
                self.peer
            ),
        }
    }
}
