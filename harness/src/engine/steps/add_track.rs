//! `add_track`: one peer adds a track mid-call and renegotiates; done when its answer is applied
//! and the other peer has received the new track.

use super::restart_ice::answers_applied;
use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::scenario::{MediaKind, ScenarioError};
use crate::timeline::{Endpoint, EventKind, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) const KIND: Kind = Kind {
    action: "add_track",
    summary: "One peer adds a track of `kind` mid-call, then a new offer/answer.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of an `add_track` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The peer adding the track (it makes the new offer).
    peer: String,
    /// The kind of the new track: `audio` or `video`.
    kind: MediaKind,
    /// The connection, when the peer is in several (a mesh): its id.
    connection: Option<String>,
}

/// A checked add_track step.
#[derive(Debug, Clone, PartialEq)]
pub struct AddTrack {
    /// The peer adding the track.
    pub peer: String,
    /// The other peer of the connection.
    pub other: String,
    /// Connection id.
    pub connection: String,
    /// Kind of the new track.
    pub kind: MediaKind,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("peer", &e.peer)?;
    let c = cx.connection_of(
        &e.peer,
        None,
        e.connection.as_deref().map(|c| ("connection", c)),
        "peer",
        format!(
            "peer {:?} has no connection to add a track to (no earlier connect step)",
            e.peer
        ),
    )?;
    if c.media.is_empty() {
        return Err(cx.err(
            "peer",
            "add_track needs a connection set up with `media` (its codecs are negotiated then)",
        ));
    }
    let other = c.other(&e.peer).unwrap_or_default().to_string();
    if other.is_empty() {
        return Err(cx.err(
            "peer",
            format!(
                "connection {:?} goes through the app to one of its pages, whose new tracks the \
                 harness does not count (use restart_ice to renegotiate it)",
                c.id
            ),
        ));
    }
    Ok(Arc::new(AddTrack {
        other,
        peer: e.peer,
        connection: c.id,
        kind: e.kind,
    }))
}

fn tracks_received(timeline: &Timeline, ep: Endpoint<'_>) -> usize {
    timeline
        .of(ep)
        .filter(|e| matches!(e.event, EventKind::TrackReceived { .. }))
        .count()
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

#[async_trait]
impl Step for AddTrack {
    fn describe(&self) -> String {
        format!(
            "add_track {} {} -> {}",
            kind_name(self.kind),
            self.peer,
            self.other
        )
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        vec![
            Endpoint::new(&self.peer, &self.connection),
            Endpoint::new(&self.other, &self.connection),
        ]
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let watch = Added {
            answers_before: answers_applied(cx.timeline(), &self.connection),
            tracks_before: tracks_received(
                cx.timeline(),
                Endpoint::new(&self.other, &self.connection),
            ),
            step: self.clone(),
        };
        cx.bounded(
            format!("{}: add_track", self.peer),
            cx.peer(&self.peer)?.add_track(&self.connection, self.kind),
        )
        .await?;
        Ok(Box::new(watch))
    }
}

struct Added {
    step: AddTrack,
    answers_before: usize,
    tracks_before: usize,
}

impl Watch for Added {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let s = &self.step;
        if answers_applied(timeline, &s.connection) > self.answers_before
            && tracks_received(timeline, Endpoint::new(&s.other, &s.connection))
                > self.tracks_before
        {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, _: &Timeline) -> String {
        format!(
            "the answer to {}'s new offer and a new {} track at {}",
            self.step.peer,
            kind_name(self.step.kind),
            self.step.other
        )
    }
}
