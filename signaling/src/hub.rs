//! Room bookkeeping and message routing, independent of the socket layer.
//!
//! The [`Hub`] owns every connected peer's [`Outbox`] and every room. All
//! state sits behind one mutex that is only held for short, non-blocking
//! sections (deliveries use `try_send`), so one slow or dead client can never
//! stall another: a client whose outbox is full is kicked instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, trace, warn};

use crate::Config;
use crate::protocol::{ClientMessage, ErrorCode, ServerMessage};

/// Longest excerpt of client-provided text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 160;

/// The sending side of one connection's writer task.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
    kick: Arc<Notify>,
}

impl Outbox {
    /// Creates an outbox holding at most `capacity` undelivered messages.
    ///
    /// Returns the outbox, the receiver for the writer task and the notifier
    /// that fires when the outbox overflowed and the connection must close.
    pub(crate) fn new(capacity: usize) -> (Outbox, mpsc::Receiver<ServerMessage>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let kick = Arc::new(Notify::new());
        (
            Outbox {
                tx,
                kick: Arc::clone(&kick),
            },
            rx,
            kick,
        )
    }

    /// Queues `msg` without waiting; a full queue kicks the slow client.
    fn deliver(&self, peer: &str, msg: ServerMessage) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                warn!(peer, "outbox full, disconnecting slow client");
                self.kick.notify_one();
            }
            Err(TrySendError::Closed(_)) => {
                trace!(peer, "outbox closed, dropping message");
            }
        }
    }
}

/// Why a client message was refused; becomes a [`ServerMessage::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("{0}")]
    BadMessage(String),
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not in a room: send `join` first")]
    NotInRoom,
    #[error("already in room {0:?}: send `leave` first")]
    AlreadyJoined(String),
    #[error("room {room:?} is full ({capacity} peers)")]
    RoomFull { room: String, capacity: usize },
    #[error("no other peer {0:?} in this room")]
    UnknownPeer(String),
}

impl Refusal {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refusal::BadMessage(_) => ErrorCode::BadMessage,
            Refusal::TooLarge { .. } => ErrorCode::TooLarge,
            Refusal::NotInRoom => ErrorCode::NotInRoom,
            Refusal::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            Refusal::RoomFull { .. } => ErrorCode::RoomFull,
            Refusal::UnknownPeer(_) => ErrorCode::UnknownPeer,
        }
    }

    fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// Shortens client-provided text before echoing it in an error message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}...", &text[..end]),
    }
}

#[derive(Debug)]
struct PeerEntry {
    outbox: Outbox,
    room: Option<String>,
}

#[derive(Debug, Default)]
struct Room {
    /// Peer ids in join order.
    members: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<String, PeerEntry>,
    rooms: HashMap<String, Room>,
}

/// Shared state of one signaling server.
#[derive(Debug)]
pub(crate) struct Hub {
    config: Config,
    state: Mutex<State>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Hub {
    pub(crate) fn new(config: Config) -> Hub {
        Hub {
            config,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection and returns its unique peer id.
    pub(crate) fn register(&self, outbox: Outbox) -> String {
        let id = format!("p{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock()
            .peers
            .insert(id.clone(), PeerEntry { outbox, room: None });
        debug!(peer = %id, "connected");
        id
    }

    /// Removes a connection, leaving its room (with `peer-left` notices).
    ///
    /// Drops the hub's handle on the peer's outbox, so its writer task ends
    /// once the queued messages are flushed.
    pub(crate) fn unregister(&self, peer: &str) {
        let mut state = self.lock();
        leave_room(&mut state, peer);
        state.peers.remove(peer);
        debug!(peer, "disconnected");
    }

    /// Handles one text frame from `peer`.
    pub(crate) fn handle_text(&self, peer: &str, text: &str) {
        let limit = self.config.max_message_bytes;
        let result = if text.len() > limit {
            Err(Refusal::TooLarge {
                size: text.len(),
                limit,
            })
        } else {
            match serde_json::from_str::<ClientMessage>(text) {
                Ok(msg) => self.dispatch(peer, msg),
                Err(err) => Err(Refusal::BadMessage(clip(&format!(
                    "invalid message: {err}"
                )))),
            }
        };
        self.finish(peer, result);
    }

    /// Handles one binary frame of `len` bytes from `peer` (always refused).
    pub(crate) fn handle_binary(&self, peer: &str, len: usize) {
        let limit = self.config.max_message_bytes;
        let refusal = if len > limit {
            Refusal::TooLarge { size: len, limit }
        } else {
            Refusal::BadMessage("binary frames are not supported: send JSON text".into())
        };
        self.finish(peer, Err(refusal));
    }

    /// Handles one decoded client message from `peer`.
    #[cfg(test)]
    pub(crate) fn handle(&self, peer: &str, msg: ClientMessage) {
        let result = self.dispatch(peer, msg);
        self.finish(peer, result);
    }

    fn finish(&self, peer: &str, result: Result<(), Refusal>) {
        if let Err(refusal) = result {
            debug!(peer, code = %refusal.code(), "refused: {refusal}");
            let state = self.lock();
            if let Some(entry) = state.peers.get(peer) {
                entry.outbox.deliver(peer, refusal.to_message());
            }
        }
    }

    fn dispatch(&self, peer: &str, msg: ClientMessage) -> Result<(), Refusal> {
        let mut state = self.lock();
        match msg {
            ClientMessage::Join { room } => self.join(&mut state, peer, room),
            ClientMessage::Offer { sdp, to } => relay(
                &state,
                peer,
                to,
                ServerMessage::Offer {
                    sdp,
                    from: peer.to_owned(),
                },
            ),
            ClientMessage::Answer { sdp, to } => relay(
                &state,
                peer,
                to,
                ServerMessage::Answer {
                    sdp,
                    from: peer.to_owned(),
                },
            ),
            ClientMessage::Candidate { candidate, to } => relay(
                &state,
                peer,
                to,
                ServerMessage::Candidate {
                    candidate,
                    from: peer.to_owned(),
                },
            ),
            ClientMessage::Leave => {
                if leave_room(&mut state, peer) {
                    Ok(())
                } else {
                    Err(Refusal::NotInRoom)
                }
            }
        }
    }

    fn join(&self, state: &mut State, peer: &str, room: String) -> Result<(), Refusal> {
        let State { peers, rooms } = state;
        let Some(entry) = peers.get_mut(peer) else {
            return Ok(()); // Already unregistered: nothing to do.
        };
        if let Some(current) = &entry.room {
            return Err(Refusal::AlreadyJoined(clip(current)));
        }
        let capacity = self.config.room_capacity;
        if rooms.get(&room).map_or(0, |r| r.members.len()) >= capacity {
            return Err(Refusal::RoomFull {
                room: clip(&room),
                capacity,
            });
        }
        debug!(peer, room = %clip(&room), "joined");
        entry.room = Some(room.clone());
        let joined_room = rooms.entry(room).or_default();
        let existing = joined_room.members.clone();
        joined_room.members.push(peer.to_owned());
        entry.outbox.deliver(
            peer,
            ServerMessage::Joined {
                peer_id: peer.to_owned(),
                peers: existing,
            },
        );
        if joined_room.members.len() == capacity {
            let ready = ServerMessage::Ready {
                peers: joined_room.members.clone(),
            };
            for member in &joined_room.members {
                if let Some(target) = peers.get(member) {
                    target.outbox.deliver(member, ready.clone());
                }
            }
        }
        Ok(())
    }

    /// A receiver that turns `true` when the server is shutting down.
    pub(crate) fn subscribe_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks every connection to close.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    #[cfg(test)]
    fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }
}

/// Relays `msg` from `peer` to `to`, or to every other peer of its room.
fn relay(state: &State, peer: &str, to: Option<String>, msg: ServerMessage) -> Result<(), Refusal> {
    let room = state
        .peers
        .get(peer)
        .and_then(|entry| entry.room.as_ref())
        .and_then(|room| state.rooms.get(room))
        .ok_or(Refusal::NotInRoom)?;
    let deliver = |target: &str, msg: ServerMessage| {
        if let Some(entry) = state.peers.get(target) {
            trace!(from = peer, to = target, "relay");
            entry.outbox.deliver(target, msg);
        }
    };
    match to {
        Some(target) => {
            if target == peer || !room.members.contains(&target) {
                return Err(Refusal::UnknownPeer(clip(&target)));
            }
            deliver(&target, msg);
        }
        None => {
            for member in room.members.iter().filter(|m| *m != peer) {
                deliver(member, msg.clone());
            }
        }
    }
    Ok(())
}

/// Takes `peer` out of its room, notifying the rest; removes empty rooms.
///
/// Returns `false` if the peer was not in a room.
fn leave_room(state: &mut State, peer: &str) -> bool {
    let State { peers, rooms } = state;
    let Some(room_name) = peers.get_mut(peer).and_then(|entry| entry.room.take()) else {
        return false;
    };
    let Some(room) = rooms.get_mut(&room_name) else {
        return true;
    };
    room.members.retain(|m| m != peer);
    debug!(peer, room = %clip(&room_name), "left");
    if room.members.is_empty() {
        rooms.remove(&room_name);
    } else {
        let notice = ServerMessage::PeerLeft {
            peer_id: peer.to_owned(),
        };
        for member in &room.members {
            if let Some(entry) = peers.get(member) {
                entry.outbox.deliver(member, notice.clone());
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct TestPeer {
        id: String,
        rx: mpsc::Receiver<ServerMessage>,
        kick: Arc<Notify>,
    }

    impl TestPeer {
        fn next(&mut self) -> ServerMessage {
            self.rx.try_recv().expect("a message")
        }

        fn assert_empty(&mut self) {
            if let Ok(msg) = self.rx.try_recv() {
                panic!("unexpected message for {}: {msg:?}", self.id);
            }
        }

        fn expect_error(&mut self, code: ErrorCode) {
            match self.next() {
                ServerMessage::Error { code: got, .. } => assert_eq!(got, code),
                other => panic!("expected error {code}, got {other:?}"),
            }
        }
    }

    fn hub(capacity: usize) -> Hub {
        Hub::new(Config {
            room_capacity: capacity,
            max_message_bytes: 100,
        })
    }

    fn connect(hub: &Hub, queue: usize) -> TestPeer {
        let (outbox, rx, kick) = Outbox::new(queue);
        let id = hub.register(outbox);
        TestPeer { id, rx, kick }
    }

    fn join(hub: &Hub, peer: &TestPeer, room: &str) {
        hub.handle(&peer.id, ClientMessage::Join { room: room.into() });
    }

    #[test]
    fn ids_are_unique() {
        let hub = hub(2);
        let a = connect(&hub, 8);
        let b = connect(&hub, 8);
        assert_eq!(a.id, "p1");
        assert_eq!(b.id, "p2");
    }

    #[test]
    fn join_ready_relay_leave() {
        let hub = hub(2);
        let mut a = connect(&hub, 8);
        let mut b = connect(&hub, 8);
        join(&hub, &a, "r");
        assert_eq!(
            a.next(),
            ServerMessage::Joined {
                peer_id: a.id.clone(),
                peers: vec![]
            }
        );
        a.assert_empty();
        join(&hub, &b, "r");
        assert_eq!(
            b.next(),
            ServerMessage::Joined {
                peer_id: b.id.clone(),
                peers: vec![a.id.clone()]
            }
        );
        let ready = ServerMessage::Ready {
            peers: vec![a.id.clone(), b.id.clone()],
        };
        assert_eq!(a.next(), ready);
        assert_eq!(b.next(), ready);

        hub.handle(
            &a.id,
            ClientMessage::Candidate {
                candidate: Some(json!({"candidate": "c"})),
                to: Some(b.id.clone()),
            },
        );
        assert_eq!(
            b.next(),
            ServerMessage::Candidate {
                candidate: Some(json!({"candidate": "c"})),
                from: a.id.clone()
            }
        );
        a.assert_empty();

        hub.handle(&a.id, ClientMessage::Leave);
        assert_eq!(
            b.next(),
            ServerMessage::PeerLeft {
                peer_id: a.id.clone()
            }
        );
        assert_eq!(hub.room_count(), 1);
        hub.unregister(&b.id);
        assert_eq!(hub.room_count(), 0);
        a.assert_empty();
    }

    #[test]
    fn refusals() {
        let hub = hub(1);
        let mut a = connect(&hub, 8);
        let mut b = connect(&hub, 8);
        hub.handle(&a.id, ClientMessage::Leave);
        a.expect_error(ErrorCode::NotInRoom);
        join(&hub, &a, "r");
        a.next(); // joined
        a.next(); // ready (capacity 1)
        join(&hub, &a, "other");
        a.expect_error(ErrorCode::AlreadyJoined);
        join(&hub, &b, "r");
        b.expect_error(ErrorCode::RoomFull);
        hub.handle(
            &a.id,
            ClientMessage::Offer {
                sdp: "x".into(),
                to: Some(a.id.clone()),
            },
        );
        a.expect_error(ErrorCode::UnknownPeer);
        hub.handle_text(&a.id, &"x".repeat(101));
        a.expect_error(ErrorCode::TooLarge);
        hub.handle_text(&a.id, "{");
        a.expect_error(ErrorCode::BadMessage);
        hub.handle_binary(&a.id, 3);
        a.expect_error(ErrorCode::BadMessage);
        hub.handle_binary(&a.id, 1000);
        a.expect_error(ErrorCode::TooLarge);
        a.assert_empty();
        b.assert_empty();
    }

    #[test]
    fn zero_capacity_leaves_no_empty_room() {
        let hub = hub(0);
        let mut a = connect(&hub, 8);
        join(&hub, &a, "r");
        a.expect_error(ErrorCode::RoomFull);
        assert_eq!(hub.room_count(), 0);
    }

    #[tokio::test]
    async fn slow_client_is_kicked_without_blocking_others() {
        let hub = hub(2);
        let mut fast = connect(&hub, 64);
        let slow = connect(&hub, 2);
        join(&hub, &fast, "r");
        join(&hub, &slow, "r"); // joined + ready fill the slow queue
        for _ in 0..10 {
            hub.handle(
                &fast.id,
                ClientMessage::Offer {
                    sdp: "x".into(),
                    to: None,
                },
            );
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), slow.kick.notified())
            .await
            .expect("slow client kicked");
        assert!(matches!(fast.next(), ServerMessage::Joined { .. }));
        assert!(matches!(fast.next(), ServerMessage::Ready { .. }));
        fast.assert_empty();
    }

    #[test]
    fn clip_is_char_safe() {
        let long = "é".repeat(500);
        let clipped = clip(&long);
        assert!(clipped.ends_with("..."));
        assert_eq!(clipped.chars().count(), MAX_ECHO_CHARS + 3);
        assert_eq!(clip("short"), "short");
    }
}
