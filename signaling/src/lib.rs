//! A WebSocket signaling server with rooms, for WebRTC tests.
//!
//! ```
//! use rtc_signaling::{Config, Server};
//! use rtc_signaling::protocol::{ClientMessage, ServerMessage};
//! use futures::{SinkExt, StreamExt};
//! use tokio_tungstenite::tungstenite::Message;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let server = Server::bind("127.0.0.1:0".parse()?, Config::default()).await?;
//! let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
//!
//! let join = ClientMessage::Join { room: "r1".into() };
//! ws.send(Message::text(serde_json::to_string(&join)?)).await?;
//! let Some(Ok(Message::Text(reply))) = ws.next().await else { panic!("no reply") };
//! let reply: ServerMessage = serde_json::from_str(&reply)?;
//! assert!(matches!(reply, ServerMessage::Joined { peers, .. } if peers.is_empty()));
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A caller connects to `ws://HOST:PORT/ws` and joins a room; a callee joins
//! the same room. When the room reaches its capacity the server sends
//! `ready` to everyone in it, and from then on relays `offer`, `answer` and
//! `candidate` messages between the peers of that room (never across rooms).
//! Embed it with [`Server::bind`] or mount [`router`] in your own axum app;
//! the `rtc-signaling` binary runs it standalone
//! (`rtc-signaling --listen 127.0.0.1:8080 --room-capacity 2 --max-message-bytes 65536`).
//!
//! # Messages
//!
//! Every message is one JSON text frame holding an object whose `type` field
//! names the kind. The Rust types are in [`protocol`].
//!
//! Client to server ([`protocol::ClientMessage`]):
//!
//! | message | meaning |
//! | --- | --- |
//! | `{"type":"join","room":"r1"}` | enter room `r1`, creating it if needed |
//! | `{"type":"offer","sdp":"...","to":"p2"}` | relay an SDP offer |
//! | `{"type":"answer","sdp":"...","to":"p1"}` | relay an SDP answer |
//! | `{"type":"candidate","candidate":{...},"to":"p2"}` | relay an ICE candidate (an `RTCIceCandidateInit` object), or `null` for end-of-candidates |
//! | `{"type":"leave"}` | leave the room; the socket stays open and may join again |
//!
//! `to` is optional: with it the message goes to that one peer of the
//! sender's room, without it (or with `null`) to every other peer of the room.
//! Unknown extra fields are ignored.
//!
//! Server to client ([`protocol::ServerMessage`]):
//!
//! | message | when |
//! | --- | --- |
//! | `{"type":"joined","peer_id":"p3","peers":["p1"]}` | to the joiner; `peers` are the ids already in the room, in join order |
//! | `{"type":"ready","peers":["p1","p3"]}` | to every peer of a room that just became full |
//! | `{"type":"offer","sdp":"...","from":"p1"}` | a relayed offer; `answer` and `candidate` likewise (`to` is not echoed, `from` is set by the server, a `null` candidate stays `null`) |
//! | `{"type":"peer-left","peer_id":"p1"}` | to the remaining peers when a peer leaves or its socket closes |
//! | `{"type":"error","code":"room_full","message":"..."}` | the last client message was refused |
//!
//! Peer ids (`"p1"`, `"p2"`, ...) are assigned by the server when a socket
//! connects and are unique for the life of the server.
//!
//! # Error codes
//!
//! An `error` reply goes only to the sender; its connection stays open and
//! nothing else happens (no other client or room is affected).
//!
//! | code | cause |
//! | --- | --- |
//! | `bad_message` | not JSON, not an object, unknown `type`, a missing or mistyped field (including a `candidate` that is neither an object nor `null`), or a binary frame |
//! | `too_large` | the message is longer than [`Config::max_message_bytes`] |
//! | `not_in_room` | `offer`, `answer`, `candidate` or `leave` before `join` |
//! | `already_joined` | `join` while already in a room |
//! | `room_full` | the room already holds [`Config::room_capacity`] peers |
//! | `unknown_peer` | `to` names no other peer of the sender's room (naming yourself counts as unknown) |
//!
//! # Limits
//!
//! * Room capacity: [`Config::room_capacity`] peers, default 2.
//! * Message size: [`Config::max_message_bytes`] bytes, default 65536
//!   (64 KiB), counted as the UTF-8 length of a text frame (or the length of
//!   a binary frame). Longer messages get `too_large` and the connection stays
//!   open. The WebSocket layer itself accepts messages up to twice that limit
//!   or 1 MiB (1,048,576 bytes), whichever is larger; a message beyond
//!   that closes the connection.
//! * Outgoing queue: 256 messages per connection. A client that does not read
//!   its socket until its queue overflows is disconnected (its room gets
//!   `peer-left`); it never slows down other clients.
//! * Empty rooms are removed.
#![deny(missing_docs)]

mod hub;
pub mod protocol;
mod server;

pub use server::{Config, Server, router};
