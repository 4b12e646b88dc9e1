//! Signaling behind an interface: how a bot reaches the other peer of a connection.
//!
//! A [`SignalingConnector`] joins a room and yields a [`SignalingSession`]; the session sends
//! [`Outgoing`] messages and receives [`SignalingEvent`]s. A bot's negotiation (offer/answer,
//! trickled candidates, restarts) uses only these types, so another app protocol plugs in by
//! implementing the two traits, without touching the negotiation code. Both traits are object
//! safe: a scenario can pick an implementation at run time ([`connector_for`]).
//!
//! Names follow W3C webrtc-pc and the IETF: an offer or answer carries SDP text (RFC 8866), a
//! candidate an `RTCIceCandidateInit` ([`IceCandidateInit`]), and end-of-candidates is the
//! `null` candidate of webrtc-pc §4.8.1 (RFC 8838 §13). Messages carry an optional target peer
//! (`to`) and an optional sender (`from`), so rooms of more than two peers fit.
//!
//! Implementations:
//! - [`rtc_signaling`]: the `rtc-signaling` protocol over a real WebSocket (the default, chosen
//!   by [`crate::peer::ConnectRequest::signaling_url`]);
//! - [`socket_io`]: a web app's own Socket.IO rooms, mapped by the scenario's `[app.signaling]`;
//! - [`websocket`]: a web app's own JSON messages over a WebSocket (named users, targeted
//!   messages), mapped the same way;
//! - [`memory`]: rooms over in-process channels, for tests.

pub mod app;
pub mod memory;
pub mod rtc_signaling;
pub mod socket_io;
pub mod websocket;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// An ICE candidate as W3C webrtc-pc's `RTCIceCandidateInit` dictionary (§4.8.1), with its
/// JSON member names (`candidate`, `sdpMid`, `sdpMLineIndex`, `usernameFragment`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidateInit {
    /// The candidate-attribute (RFC 8839 §5.1), e.g. `candidate:1 1 udp ... typ host`.
    pub candidate: String,
    /// The media stream identification tag of the candidate's m= section.
    pub sdp_mid: Option<String>,
    /// The index of the candidate's m= section.
    #[serde(rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to.
    pub username_fragment: Option<String>,
}

/// What one peer sends another through signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An SDP offer (`RTCSessionDescriptionInit` of type `offer`).
    Offer {
        /// The SDP text.
        sdp: String,
    },
    /// An SDP answer (`RTCSessionDescriptionInit` of type `answer`).
    Answer {
        /// The SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate(IceCandidateInit),
    /// End-of-candidates: the sender's gathering is complete.
    EndOfCandidates,
}

/// A message to send: a signal and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The target peer's id as the protocol names it; `None` = every other peer of the room.
    pub to: Option<String>,
    /// What to send.
    pub signal: Signal,
}

impl Outgoing {
    /// `signal` to every other peer of the room.
    pub fn to_room(signal: Signal) -> Self {
        Self { to: None, signal }
    }
}

/// What a session receives: room events, signals from other peers, errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalingEvent {
    /// This session is in the room: the id the protocol gave it (if it gives ids) and the
    /// peers already there, in join order.
    Joined {
        /// This session's peer id, if the protocol assigns one.
        peer_id: Option<String>,
        /// Ids of the peers already in the room.
        peers: Vec<String>,
    },
    /// The room is complete: negotiation may start (the offerer sends its offer).
    Ready {
        /// Ids of all peers in the room, in join order.
        peers: Vec<String>,
    },
    /// Another peer entered the room.
    PeerJoined {
        /// Its id.
        peer_id: String,
    },
    /// Another peer left the room.
    PeerLeft {
        /// Its id.
        peer_id: String,
    },
    /// A signal from another peer.
    Signal {
        /// The sender's id, if the protocol says.
        from: Option<String>,
        /// What it sent.
        signal: Signal,
    },
    /// Something went wrong but the session goes on (a message the server refused, an
    /// unreadable message).
    Error(SignalingError),
}

/// Errors of signaling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalingError {
    /// The connection to the signaling service could not be made.
    #[error("signaling connect to {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The session's connection is gone.
    #[error("the signaling connection closed")]
    Closed,
    /// The signaling service refused a message (the session stays open).
    #[error("signaling server: {code}: {message}")]
    Refused {
        /// The protocol's reason code, e.g. `room_full`.
        code: String,
        /// Its human-readable detail.
        message: String,
    },
    /// The app's protocol, as the scenario maps it, cannot carry a message.
    #[error("app signaling: {0}")]
    Protocol(String),
    /// A message arrived that the protocol cannot read.
    #[error("unreadable signaling message {text:?}: {reason}")]
    Unreadable {
        /// The message as received.
        text: String,
        /// Why it cannot be read.
        reason: String,
    },
}

/// Joins rooms of one signaling service.
#[async_trait]
pub trait SignalingConnector: Send + Sync {
    /// Connects and asks to join `room`. Returns once the join request is sent; whether the
    /// room took this session arrives as [`SignalingEvent::Joined`] or
    /// [`SignalingEvent::Error`].
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError>;
}

/// One joined room: send signals, receive events. Dropping it leaves the room.
#[async_trait]
pub trait SignalingSession: Send {
    /// Queues a message for sending, in order; never blocks. Fails only when the connection is
    /// gone.
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError>;
    /// The next event, in the order received; `None` once the connection is closed. Must be
    /// cancel-safe (it is awaited in a `select!`): an event is never lost by dropping the
    /// future.
    async fn recv(&mut self) -> Option<SignalingEvent>;
}

/// A bot in an app's own signaling: the protocol, as the scenario maps it, and who the bot is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppJoin {
    /// The protocol and its message templates, `{run}`, `{app}` and `{token}` filled in.
    pub plan: crate::scenario::AppSignalingPlan,
    /// The bot's own name in the app (`{name}`).
    pub name: String,
    /// The user the bot calls (`{peer}`); an answerer learns it from the offer.
    pub peer: Option<String>,
}

/// The connector a [`crate::peer::ConnectRequest`] asks for: the app's own protocol when it
/// carries one (`join_app` steps), else `rtc-signaling` at its `signaling_url`.
pub fn connector_for(req: &crate::peer::ConnectRequest) -> Box<dyn SignalingConnector> {
    match &req.app_signaling {
        Some(join) => match join.plan.protocol {
            crate::scenario::AppProtocol::SocketIo => Box::new(socket_io::SocketIoConnector::new(
                &req.signaling_url,
                join.clone(),
            )),
            crate::scenario::AppProtocol::WebSocket => Box::new(
                websocket::WebSocketConnector::new(&req.signaling_url, join.clone()),
            ),
        },
        None => Box::new(rtc_signaling::RtcSignalingConnector::new(
            req.signaling_url.clone(),
        )),
    }
}
