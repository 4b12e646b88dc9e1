//! Room bookkeeping and message routing, independent of the socket layer.
//!
//! The [`Hub`] owns every connected peer's [`Outbox`] and every room. All
//! state sits behind one mutex that is only held for short, non-blocking
//! sections (deliveries use `try_send`), so one slow or dead client can never
//! stall another: a client whose outbox is full is kicked instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, trace, warn};

use crate::Config;
use crate::auth::{AuthError, Verifier};
use crate::protocol::{ClientMessage, ErrorCode, ServerMessage};

/// Longest excerpt of client-provided text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 160;

/// The sending side of one connection's writer task.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
    kick: Arc<Notify>,
    /// Set by the first overflow, so a kicked client is logged once, not
    /// once per message dropped until its connection is gone.
    kicked: Arc<AtomicBool>,
    /// Fired by [`Hub::disconnect`]: the server closes the connection on purpose.
    disconnect: Arc<Notify>,
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
                kicked: Arc::new(AtomicBool::new(false)),
                disconnect: Arc::new(Notify::new()),
            },
            rx,
            kick,
        )
    }

    /// Fires when [`Hub::disconnect`] asks for this connection to be closed.
    pub(crate) fn disconnect_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.disconnect)
    }

    /// Queues `msg` without waiting; a full queue kicks the slow client.
    fn deliver(&self, peer: &str, msg: ServerMessage) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.kicked.swap(true, Ordering::Relaxed) {
                    trace!(peer, "outbox full, dropping message");
                } else {
                    let capacity = self.tx.max_capacity();
                    warn!(
                        peer,
                        "outbox full ({capacity} messages unread), disconnecting slow client"
                    );
                    self.kick.notify_one();
                }
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
    #[error("{0}")]
    BadCapacity(String),
    #[error(
        "this room holds {0} peers: an offer, answer or candidate must name its target with `to`"
    )]
    TargetRequired(usize),
    #[error("no other peer {0:?} in this room")]
    UnknownPeer(String),
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error(
        "over the rate limit of {per_second} messages/s (burst {burst}): this message \
         and every further one until one passes again are dropped; retry in {retry_after_ms} ms"
    )]
    RateLimited {
        per_second: u32,
        burst: u32,
        retry_after_ms: u128,
    },
    #[error("{0}; closing the connection")]
    InvalidFrame(String),
}

impl Refusal {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refusal::BadMessage(_) => ErrorCode::BadMessage,
            Refusal::TooLarge { .. } => ErrorCode::TooLarge,
            Refusal::NotInRoom => ErrorCode::NotInRoom,
            Refusal::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            Refusal::RoomFull { .. } => ErrorCode::RoomFull,
            Refusal::BadCapacity(_) => ErrorCode::BadCapacity,
            Refusal::TargetRequired(_) => ErrorCode::TargetRequired,
            Refusal::UnknownPeer(_) => ErrorCode::UnknownPeer,
            Refusal::Unauthorized(_) => ErrorCode::Unauthorized,
            Refusal::RateLimited { .. } => ErrorCode::RateLimited,
            Refusal::InvalidFrame(_) => ErrorCode::InvalidFrame,
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
    /// The `?token=` the connection came with.
    token: Option<String>,
}

#[derive(Debug, Default)]
struct Room {
    /// Peer ids in join order.
    members: Vec<String>,
    /// Peers it holds (set by its first joiner).
    capacity: usize,
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
    verifier: Option<Verifier>,
    state: Mutex<State>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// False while the server is down for a restart ([`crate::Admin::restart`]): new
    /// connections are refused.
    accepting: AtomicBool,
}

impl Hub {
    pub(crate) fn new(config: Config) -> Hub {
        Hub {
            verifier: config.jwt_secret.as_ref().map(Verifier::new),
            config,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            accepting: AtomicBool::new(true),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection (with the token it came with, if any) and
    /// returns its unique peer id.
    pub(crate) fn register(&self, outbox: Outbox, token: Option<String>) -> String {
        let id = format!("p{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock().peers.insert(
            id.clone(),
            PeerEntry {
                outbox,
                room: None,
                token,
            },
        );
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

    /// Closes the connections of `room`'s members (all of them, or only `peer`), as a server
    /// restart or an operator would; returns how many were asked to close.
    pub(crate) fn disconnect(&self, room: &str, peer: Option<&str>) -> usize {
        let state = self.lock();
        let Some(r) = state.rooms.get(room) else {
            return 0;
        };
        let mut n = 0;
        for id in r
            .members
            .iter()
            .filter(|m| peer.is_none_or(|p| p == m.as_str()))
        {
            if let Some(entry) = state.peers.get(id) {
                entry.outbox.disconnect.notify_one();
                n += 1;
            }
        }
        debug!(room, ?peer, n, "disconnecting on request");
        n
    }

    /// Closes every connection, in a room or not (a restart); returns how many.
    pub(crate) fn disconnect_all(&self) -> usize {
        let state = self.lock();
        for entry in state.peers.values() {
            entry.outbox.disconnect.notify_one();
        }
        debug!(
            n = state.peers.len(),
            "disconnecting every connection on request"
        );
        state.peers.len()
    }

    /// Open connections.
    pub(crate) fn connection_count(&self) -> usize {
        self.lock().peers.len()
    }

    /// Whether new connections are accepted (false while down for a restart).
    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    pub(crate) fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::SeqCst);
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

    /// Sends `refusal` to `peer` as an `error`.
    pub(crate) fn refuse(&self, peer: &str, refusal: Refusal) {
        self.finish(peer, Err(refusal));
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
            ClientMessage::Join { room, capacity } => self.join(&mut state, peer, room, capacity),
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

    fn join(
        &self,
        state: &mut State,
        peer: &str,
        room: String,
        asked: Option<usize>,
    ) -> Result<(), Refusal> {
        let State { peers, rooms } = state;
        let Some(entry) = peers.get_mut(peer) else {
            return Ok(()); // Already unregistered: nothing to do.
        };
        if let Some(current) = &entry.room {
            return Err(Refusal::AlreadyJoined(clip(current)));
        }
        if let Some(verifier) = &self.verifier {
            verifier
                .check(entry.token.as_deref(), &room)
                .map_err(|err| match err {
                    AuthError::WrongRoom { token_room, room } => AuthError::WrongRoom {
                        token_room: clip(&token_room),
                        room: clip(&room),
                    },
                    other => other,
                })?;
        }
        let max = self.config.max_room_capacity.max(self.config.room_capacity);
        if let Some(n) = asked
            && !(2..=max).contains(&n)
        {
            return Err(Refusal::BadCapacity(format!(
                "capacity {n} is out of range: 2 to {max} peers"
            )));
        }
        let capacity = match (rooms.get(&room), asked) {
            (Some(r), Some(n)) if r.capacity != n => {
                return Err(Refusal::BadCapacity(format!(
                    "room {:?} holds {} peers (set by its first joiner); this join asks for {n}",
                    clip(&room),
                    r.capacity
                )));
            }
            (Some(r), _) => r.capacity,
            (None, n) => n.unwrap_or(self.config.room_capacity),
        };
        if rooms.get(&room).map_or(0, |r| r.members.len()) >= capacity {
            return Err(Refusal::RoomFull {
                room: clip(&room),
                capacity,
            });
        }
        debug!(peer, room = %clip(&room), capacity, "joined");
        entry.room = Some(room.clone());
        let joined_room = rooms.entry(room).or_insert_with(|| Room {
            members: Vec::new(),
            capacity,
        });
        let existing = joined_room.members.clone();
        joined_room.members.push(peer.to_owned());
        entry.outbox.deliver(
            peer,
            ServerMessage::Joined {
                peer_id: peer.to_owned(),
                peers: existing.clone(),
            },
        );
        let arrived = ServerMessage::PeerJoined {
            peer_id: peer.to_owned(),
        };
        for member in &existing {
            if let Some(target) = peers.get(member) {
                target.outbox.deliver(member, arrived.clone());
            }
        }
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

    #[cfg(test)]
    fn peer_count(&self) -> usize {
        self.lock().peers.len()
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
        None if room.capacity > 2 => return Err(Refusal::TargetRequired(room.capacity)),
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
            ..Config::default()
        })
    }

    fn connect(hub: &Hub, queue: usize) -> TestPeer {
        let (outbox, rx, kick) = Outbox::new(queue);
        let id = hub.register(outbox, None);
        TestPeer { id, rx, kick }
    }

    fn join(hub: &Hub, peer: &TestPeer, room: &str) {
        hub.handle(
            &peer.id,
            ClientMessage::Join {
                room: room.into(),
                capacity: None,
            },
        );
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
        assert_eq!(
            a.next(),
            ServerMessage::PeerJoined {
                peer_id: b.id.clone()
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
    fn a_mesh_room_takes_its_capacity_from_its_first_joiner_and_wants_targets() {
        let hub = hub(2);
        let mut p: Vec<TestPeer> = (0..5).map(|_| connect(&hub, 16)).collect();
        let join_with = |peer: &TestPeer, capacity: Option<usize>| {
            hub.handle(
                &peer.id,
                ClientMessage::Join {
                    room: "call".into(),
                    capacity,
                },
            );
        };
        join_with(&p[0], Some(4));
        p[0].next(); // joined
        // A later joiner may leave the capacity out, or name the same one.
        join_with(&p[1], None);
        join_with(&p[2], Some(4));
        // A different one is refused, and changes nothing.
        join_with(&p[3], Some(6));
        p[3].expect_error(ErrorCode::BadCapacity);
        join_with(&p[3], Some(4));
        for (i, peer) in p.iter_mut().enumerate().take(4) {
            let ids: Vec<String> = (0..4).map(|j| format!("p{}", j + 1)).collect();
            if i > 0 {
                assert_eq!(
                    peer.next(),
                    ServerMessage::Joined {
                        peer_id: ids[i].clone(),
                        peers: ids[..i].to_vec()
                    }
                );
            }
            // peer-joined for every later joiner, then ready once the room is full.
            for later in &ids[i + 1..] {
                assert_eq!(
                    peer.next(),
                    ServerMessage::PeerJoined {
                        peer_id: later.clone()
                    }
                );
            }
            assert_eq!(peer.next(), ServerMessage::Ready { peers: ids.clone() });
            peer.assert_empty();
        }
        // The fifth joiner is refused: the room is full.
        join_with(&p[4], None);
        p[4].expect_error(ErrorCode::RoomFull);
        // In a room of more than two, an untargeted relay is refused; a targeted one goes to
        // its target alone.
        hub.handle(
            &p[0].id,
            ClientMessage::Offer {
                sdp: "o".into(),
                to: None,
            },
        );
        p[0].expect_error(ErrorCode::TargetRequired);
        hub.handle(
            &p[0].id,
            ClientMessage::Offer {
                sdp: "o".into(),
                to: Some(p[2].id.clone()),
            },
        );
        assert_eq!(
            p[2].next(),
            ServerMessage::Offer {
                sdp: "o".into(),
                from: p[0].id.clone()
            }
        );
        for i in [0, 1, 3, 4] {
            p[i].assert_empty();
        }
        // Out of range.
        let q = connect(&hub, 4);
        for n in [0, 1, 17] {
            hub.handle(
                &q.id,
                ClientMessage::Join {
                    room: format!("r{n}"),
                    capacity: Some(n),
                },
            );
        }
        let mut q = q;
        for _ in 0..3 {
            q.expect_error(ErrorCode::BadCapacity);
        }
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
        assert!(matches!(fast.next(), ServerMessage::PeerJoined { .. }));
        assert!(matches!(fast.next(), ServerMessage::Ready { .. }));
        fast.assert_empty();
    }

    /// Counts WARN events logged on this thread while `f` runs.
    fn warnings_during(f: impl FnOnce()) -> usize {
        use std::sync::atomic::AtomicUsize;
        use tracing_subscriber::layer::{Context, SubscriberExt};

        struct CountWarnings(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                if *event.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountWarnings(Arc::clone(&count)));
        tracing::subscriber::with_default(subscriber, f);
        count.load(Ordering::Relaxed)
    }

    #[test]
    fn a_slow_client_is_logged_once_not_per_dropped_message() {
        let hub = hub(2);
        let mut fast = connect(&hub, 1024);
        let slow = connect(&hub, 4);
        join(&hub, &fast, "r");
        join(&hub, &slow, "r");
        let warnings = warnings_during(|| {
            for _ in 0..500 {
                hub.handle(
                    &fast.id,
                    ClientMessage::Offer {
                        sdp: "x".into(),
                        to: None,
                    },
                );
            }
        });
        assert_eq!(warnings, 1);
        fast.next(); // joined
        fast.next(); // peer-joined
        fast.next(); // ready
        fast.assert_empty();
        drop(slow);
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

/// Property: no sequence of client messages (several clients, several rooms)
/// makes the hub panic, deliver anything other than what the protocol
/// prescribes (in particular nothing across rooms), or keep a room or peer
/// once everybody has gone.
#[cfg(test)]
mod sequences {
    use super::*;
    use crate::auth::{JwtSecret, encode_token};
    use proptest::prelude::*;
    use std::time::{Duration, SystemTime};

    const ROOMS: usize = 3;
    const MAX_BYTES: usize = 100;

    #[derive(Debug, Clone)]
    enum Target {
        Everyone,
        Client(usize),
        Nobody,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Connect,
        Disconnect(usize),
        Join(usize, usize),
        Leave(usize),
        Offer(usize, Target),
        Answer(usize, Target),
        Candidate(usize, bool, Target),
        Garbage(usize, String),
        Binary(usize, usize),
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            2 => Just(Target::Everyone),
            3 => (0..8usize).prop_map(Target::Client),
            1 => Just(Target::Nobody),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let c = 0..8usize;
        prop_oneof![
            3 => Just(Op::Connect),
            1 => c.clone().prop_map(Op::Disconnect),
            4 => (c.clone(), 0..ROOMS).prop_map(|(c, r)| Op::Join(c, r)),
            1 => c.clone().prop_map(Op::Leave),
            2 => (c.clone(), target()).prop_map(|(c, t)| Op::Offer(c, t)),
            1 => (c.clone(), target()).prop_map(|(c, t)| Op::Answer(c, t)),
            2 => (c.clone(), any::<bool>(), target()).prop_map(|(c, n, t)| Op::Candidate(c, n, t)),
            1 => (c.clone(), "[^{\\[\"0-9tfn ]\\PC{0,120}").prop_map(|(c, g)| Op::Garbage(c, g)),
            1 => (c, 0..2 * MAX_BYTES).prop_map(|(c, n)| Op::Binary(c, n)),
        ]
    }

    struct Client {
        id: String,
        rx: mpsc::Receiver<ServerMessage>,
        room: Option<usize>,
        /// The room its token admits to (auth runs only).
        token_room: usize,
    }

    /// What a message should look like, errors compared by code only.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Msg(ServerMessage),
        Error(ErrorCode),
    }

    fn seen(msg: ServerMessage) -> Seen {
        match msg {
            ServerMessage::Error { code, .. } => Seen::Error(code),
            other => Seen::Msg(other),
        }
    }

    struct Model {
        hub: Hub,
        capacity: usize,
        auth: Option<JwtSecret>,
        clients: Vec<Client>,
        /// Members of each room, in join order (indexes into `clients`).
        rooms: Vec<Vec<usize>>,
        expected: Vec<Vec<Seen>>,
    }

    impl Model {
        fn new(capacity: usize, auth: bool) -> Model {
            let auth = auth.then(|| JwtSecret::new("k").expect("secret"));
            let hub = Hub::new(Config {
                room_capacity: capacity,
                max_message_bytes: MAX_BYTES,
                jwt_secret: auth.clone(),
                ..Config::default()
            });
            Model {
                hub,
                capacity,
                auth,
                clients: Vec::new(),
                rooms: vec![Vec::new(); ROOMS],
                expected: Vec::new(),
            }
        }

        /// The live client for an index, if any client is connected.
        fn pick(&self, n: usize) -> Option<usize> {
            (!self.clients.is_empty()).then(|| n % self.clients.len())
        }

        fn expect(&mut self, client: usize, what: Seen) {
            self.expected[client].push(what);
        }

        fn members(&self, client: usize) -> Option<&Vec<usize>> {
            self.clients[client].room.map(|r| &self.rooms[r])
        }

        fn leave(&mut self, c: usize) {
            let Some(room) = self.clients[c].room.take() else {
                return;
            };
            self.rooms[room].retain(|m| *m != c);
            let notice = ServerMessage::PeerLeft {
                peer_id: self.clients[c].id.clone(),
            };
            for m in self.rooms[room].clone() {
                self.expect(m, Seen::Msg(notice.clone()));
            }
        }

        fn relay(&mut self, c: usize, to: &Target, msg: ServerMessage) -> Option<String> {
            let Some(members) = self.members(c).cloned() else {
                self.expect(c, Seen::Error(ErrorCode::NotInRoom));
                return None;
            };
            let to_id = match to {
                Target::Everyone => None,
                Target::Client(n) => Some(self.clients[n % self.clients.len()].id.clone()),
                Target::Nobody => Some("nobody".to_owned()),
            };
            match &to_id {
                // A room of more than two wants every relay targeted.
                None if self.capacity > 2 => self.expect(c, Seen::Error(ErrorCode::TargetRequired)),
                None => {
                    for m in members.into_iter().filter(|m| *m != c) {
                        self.expect(m, Seen::Msg(msg.clone()));
                    }
                }
                Some(id) => match members.iter().find(|m| self.clients[**m].id == *id) {
                    Some(&m) if m != c => self.expect(m, Seen::Msg(msg)),
                    _ => self.expect(c, Seen::Error(ErrorCode::UnknownPeer)),
                },
            }
            to_id
        }

        fn apply(&mut self, op: &Op) {
            match op {
                Op::Connect => {
                    let (outbox, rx, _kick) = Outbox::new(4096);
                    let token_room = self.clients.len() % ROOMS;
                    let token = self.auth.as_ref().map(|secret| {
                        let exp = SystemTime::now() + Duration::from_secs(600);
                        encode_token(secret, &format!("room-{token_room}"), exp).expect("token")
                    });
                    let id = self.hub.register(outbox, token);
                    self.clients.push(Client {
                        id,
                        rx,
                        room: None,
                        token_room,
                    });
                    self.expected.push(Vec::new());
                }
                Op::Disconnect(n) => {
                    let Some(c) = self.pick(*n) else { return };
                    self.hub.unregister(&self.clients[c].id);
                    self.leave(c);
                    self.clients.remove(c);
                    self.expected.remove(c);
                    for room in &mut self.rooms {
                        for m in room.iter_mut() {
                            if *m > c {
                                *m -= 1;
                            }
                        }
                    }
                }
                Op::Join(n, room) => {
                    let Some(c) = self.pick(*n) else { return };
                    self.hub.handle_text(
                        &self.clients[c].id,
                        &format!(r#"{{"type":"join","room":"room-{room}"}}"#),
                    );
                    if self.clients[c].room.is_some() {
                        self.expect(c, Seen::Error(ErrorCode::AlreadyJoined));
                    } else if self.auth.is_some() && self.clients[c].token_room != *room {
                        self.expect(c, Seen::Error(ErrorCode::Unauthorized));
                    } else if self.rooms[*room].len() >= self.capacity {
                        self.expect(c, Seen::Error(ErrorCode::RoomFull));
                    } else {
                        let peers = self.rooms[*room]
                            .iter()
                            .map(|m| self.clients[*m].id.clone())
                            .collect();
                        let id = self.clients[c].id.clone();
                        self.expect(
                            c,
                            Seen::Msg(ServerMessage::Joined {
                                peer_id: id.clone(),
                                peers,
                            }),
                        );
                        for m in self.rooms[*room].clone() {
                            self.expect(
                                m,
                                Seen::Msg(ServerMessage::PeerJoined {
                                    peer_id: id.clone(),
                                }),
                            );
                        }
                        self.rooms[*room].push(c);
                        self.clients[c].room = Some(*room);
                        if self.rooms[*room].len() == self.capacity {
                            let ids: Vec<String> = self.rooms[*room]
                                .iter()
                                .map(|m| self.clients[*m].id.clone())
                                .collect();
                            for m in self.rooms[*room].clone() {
                                self.expect(
                                    m,
                                    Seen::Msg(ServerMessage::Ready { peers: ids.clone() }),
                                );
                            }
                        }
                    }
                }
                Op::Leave(n) => {
                    let Some(c) = self.pick(*n) else { return };
                    self.hub
                        .handle_text(&self.clients[c].id, r#"{"type":"leave"}"#);
                    if self.clients[c].room.is_none() {
                        self.expect(c, Seen::Error(ErrorCode::NotInRoom));
                    } else {
                        self.leave(c);
                    }
                }
                Op::Offer(n, to) | Op::Answer(n, to) => {
                    let Some(c) = self.pick(*n) else { return };
                    let from = self.clients[c].id.clone();
                    let (kind, msg) = if matches!(op, Op::Offer(..)) {
                        (
                            "offer",
                            ServerMessage::Offer {
                                sdp: "s".into(),
                                from,
                            },
                        )
                    } else {
                        (
                            "answer",
                            ServerMessage::Answer {
                                sdp: "s".into(),
                                from,
                            },
                        )
                    };
                    let to_json = self
                        .relay(c, to, msg)
                        .map_or("null".into(), |id| format!("{id:?}"));
                    let text = format!(r#"{{"type":"{kind}","sdp":"s","to":{to_json}}}"#);
                    self.hub.handle_text(&self.clients[c].id, &text);
                }
                Op::Candidate(n, null, to) => {
                    let Some(c) = self.pick(*n) else { return };
                    let candidate = (!null).then(|| serde_json::json!({"candidate": "c"}));
                    let msg = ServerMessage::Candidate {
                        candidate: candidate.clone(),
                        from: self.clients[c].id.clone(),
                    };
                    let to = self.relay(c, to, msg);
                    let text = serde_json::to_string(&ClientMessage::Candidate { candidate, to })
                        .expect("encode");
                    self.hub.handle_text(&self.clients[c].id, &text);
                }
                Op::Garbage(n, text) => {
                    let Some(c) = self.pick(*n) else { return };
                    self.hub.handle_text(&self.clients[c].id, text);
                    let code = if text.len() > MAX_BYTES {
                        ErrorCode::TooLarge
                    } else {
                        ErrorCode::BadMessage
                    };
                    self.expect(c, Seen::Error(code));
                }
                Op::Binary(n, len) => {
                    let Some(c) = self.pick(*n) else { return };
                    self.hub.handle_binary(&self.clients[c].id, *len);
                    let code = if *len > MAX_BYTES {
                        ErrorCode::TooLarge
                    } else {
                        ErrorCode::BadMessage
                    };
                    self.expect(c, Seen::Error(code));
                }
            }
        }

        /// Every client got exactly what the model expects, and the hub
        /// holds exactly the model's non-empty rooms.
        fn check(&mut self) -> Result<(), TestCaseError> {
            for (client, expected) in self.clients.iter_mut().zip(&mut self.expected) {
                let mut got = Vec::new();
                while let Ok(msg) = client.rx.try_recv() {
                    got.push(seen(msg));
                }
                prop_assert_eq!(&got, &*expected, "messages for {}", client.id);
                expected.clear();
            }
            let rooms = self.rooms.iter().filter(|r| !r.is_empty()).count();
            prop_assert_eq!(self.hub.room_count(), rooms);
            prop_assert_eq!(self.hub.peer_count(), self.clients.len());
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn message_sequences_keep_rooms_apart_and_leak_nothing(
            capacity in 1..4usize,
            auth in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut model = Model::new(capacity, auth);
            for op in &ops {
                model.apply(op);
                model.check()?;
            }
            while !model.clients.is_empty() {
                model.apply(&Op::Disconnect(0));
                model.check()?;
            }
            prop_assert_eq!(model.hub.room_count(), 0);
            prop_assert_eq!(model.hub.peer_count(), 0);
        }
    }
}
