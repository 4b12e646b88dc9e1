//! `send`: numbered, checksummed data-channel messages from one peer; done when the other peer
//! has received them all (see [`crate::payload`]).

use super::{BuildCx, Kind, Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::peer::SendRequest;
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

/// Smallest message `send` accepts: the header of sequence number and checksum (see
/// [`crate::payload`]).
pub const MIN_MESSAGE_BYTES: u64 = crate::payload::HEADER_LEN as u64;
/// Largest message `send` accepts, in bytes (the data-channel message size every browser takes).
pub const MAX_MESSAGE_BYTES: u64 = 65_536;
/// Most messages one `send` step may send.
pub const MAX_MESSAGES: u64 = 100_000;

pub(super) const KIND: Kind = Kind {
    action: "send",
    summary: "Send numbered, checksummed data-channel messages and wait for their delivery.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `send` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The sending peer.
    from: String,
    /// Label of the data channel (created by an earlier connect step's `data_channel`).
    channel: String,
    /// How many messages (1 to 100000).
    #[schemars(range(min = 1, max = MAX_MESSAGES))]
    messages: u64,
    /// Bytes per message (20 to 65536).
    #[schemars(range(min = MIN_MESSAGE_BYTES, max = MAX_MESSAGE_BYTES))]
    bytes: u64,
    /// The receiving peer, when `from` has that channel on several connections (a mesh).
    to: Option<String>,
    /// The connection id, instead of `to`.
    connection: Option<String>,
}

/// A checked send step.
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessages {
    /// Sender.
    pub from: String,
    /// Receiver (the other peer of the connection carrying `channel`).
    pub to: String,
    /// Connection id.
    pub connection: String,
    /// Data-channel label.
    pub channel: String,
    /// Message count.
    pub messages: u64,
    /// Bytes per message.
    pub bytes: u64,
}

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: Entry = cx.parse(table)?;
    cx.driven("from", &e.from)?;
    if e.messages == 0 || e.messages > MAX_MESSAGES {
        return Err(cx.err(
            "messages",
            format!("must be between 1 and {MAX_MESSAGES}, got {}", e.messages),
        ));
    }
    if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&e.bytes) {
        return Err(cx.err(
            "bytes",
            format!(
                "must be between {MIN_MESSAGE_BYTES} (the sequence-number and checksum header) \
                 and {MAX_MESSAGE_BYTES}, got {}",
                e.bytes
            ),
        ));
    }
    if e.to.is_some() && e.connection.is_some() {
        return Err(cx.err("connection", "give `to` or `connection`, not both"));
    }
    let pick = match (&e.to, &e.connection) {
        (Some(to), _) => Some(("to", to.as_str())),
        (None, Some(c)) => Some(("connection", c.as_str())),
        (None, None) => None,
    };
    let c = cx.connection_of(
        &e.from,
        Some(&e.channel),
        pick,
        "channel",
        format!(
            "no earlier connect step gives peer {:?} a data channel {:?} (set `data_channel = \
             {:?}` on its connect step)",
            e.from, e.channel, e.channel
        ),
    )?;
    let to = c.other(&e.from).unwrap_or_default().to_string();
    if to.is_empty() {
        // A join_app connection: the other side is whatever the app paired the bot with.
        return Err(cx.err(
            "channel",
            format!(
                "connection {:?} goes through the app to one of its pages, whose messages the \
                 harness does not count; check what the page shows with a wait_for step",
                c.id
            ),
        ));
    }
    Ok(Arc::new(SendMessages {
        to,
        from: e.from,
        connection: c.id,
        channel: e.channel,
        messages: e.messages,
        bytes: e.bytes,
    }))
}

#[async_trait]
impl Step for SendMessages {
    fn describe(&self) -> String {
        format!(
            "send {} x {} B {} -> {} on '{}'",
            self.messages, self.bytes, self.from, self.to, self.channel
        )
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        vec![
            Endpoint::new(&self.from, &self.connection),
            Endpoint::new(&self.to, &self.connection),
        ]
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let watch = Delivery {
            step: self.clone(),
            before: received(cx.timeline(), self),
        };
        // Where `first_message_ms` starts: the moment the harness asks for the send.
        cx.record(
            &self.from,
            &self.connection,
            EventKind::SendStarted {
                label: self.channel.clone(),
                count: self.messages,
            },
        );
        let req = SendRequest {
            connection: self.connection.clone(),
            channel: self.channel.clone(),
            messages: self.messages,
            bytes: self.bytes,
        };
        cx.bounded(
            format!("{}: send", self.from),
            cx.peer(&self.from)?.send(&req),
        )
        .await?;
        Ok(Box::new(watch))
    }
}

fn received(timeline: &Timeline, s: &SendMessages) -> usize {
    timeline
        .messages_received(Endpoint::new(&s.to, &s.connection), Some(&s.channel))
        .len()
}

/// Done when the receiver has `messages` more messages on the channel than when the step began.
struct Delivery {
    step: SendMessages,
    before: usize,
}

impl Watch for Delivery {
    fn progress(&self, timeline: &Timeline) -> Progress {
        let got = received(timeline, &self.step).saturating_sub(self.before);
        if got as u64 >= self.step.messages {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        format!(
            "{} to receive {} messages on '{}' (has {})",
            self.step.to,
            self.step.messages,
            self.step.channel,
            received(timeline, &self.step).saturating_sub(self.before)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;

    #[test]
    fn waits_for_every_message_of_this_step() {
        let step = SendMessages {
            from: "a".into(),
            to: "b".into(),
            connection: "c".into(),
            channel: "chat".into(),
            messages: 2,
            bytes: 100,
        };
        let mut t = Timeline::new();
        let msg = |t: &mut Timeline, seq, connection: &str| {
            t.push(Event {
                t_ms: seq as f64,
                peer: "b".into(),
                connection: connection.into(),
                event: EventKind::MessageReceived {
                    label: "chat".into(),
                    seq,
                    intact: true,
                    in_order: true,
                },
            })
        };
        let w = Delivery {
            step: step.clone(),
            before: received(&t, &step),
        };
        msg(&mut t, 0, "c");
        // A message on another connection's channel of the same label does not count.
        msg(&mut t, 0, "elsewhere");
        assert_eq!(w.progress(&t), Progress::Waiting);
        assert!(w.waiting_for(&t).contains("has 1"), "{}", w.waiting_for(&t));
        msg(&mut t, 1, "c");
        assert_eq!(w.progress(&t), Progress::Done);
        // A second send of 2 on the same channel needs 2 more, not 2 in all.
        let again = Delivery {
            step: step.clone(),
            before: received(&t, &step),
        };
        assert_eq!(again.progress(&t), Progress::Waiting);
        msg(&mut t, 2, "c");
        msg(&mut t, 3, "c");
        assert_eq!(again.progress(&t), Progress::Done);
    }
}
