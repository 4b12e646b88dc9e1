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
//! let join = ClientMessage::Join { room: "r1".into(), capacity: None };
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
//! (`rtc-signaling --listen 127.0.0.1:8080 --room-capacity 2 --max-message-bytes 65536`;
//! `rtc-signaling --help` lists every limit below as a flag).
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
//! | `{"type":"join","room":"r1","capacity":4}` | the same for a room of 4 peers (a mesh call): the first joiner sets a room's capacity (default [`Config::room_capacity`], at most [`Config::max_room_capacity`]); a later joiner may leave it out or name the same one |
//! | `{"type":"offer","sdp":"...","to":"p2"}` | relay an SDP offer |
//! | `{"type":"answer","sdp":"...","to":"p1"}` | relay an SDP answer |
//! | `{"type":"candidate","candidate":{...},"to":"p2"}` | relay an ICE candidate (an `RTCIceCandidateInit` object), or `null` for end-of-candidates |
//! | `{"type":"leave"}` | leave the room; the socket stays open and may join again |
//!
//! `to` names the one peer of the sender's room the message is for. In a room
//! of two it is optional: without it (or with `null`) the message goes to the
//! other peer. In a room of more than two it is required (`target_required`
//! otherwise): a mesh call negotiates one connection per pair.
//! Unknown extra fields are ignored.
//!
//! Server to client ([`protocol::ServerMessage`]):
//!
//! | message | when |
//! | --- | --- |
//! | `{"type":"joined","peer_id":"p3","peers":["p1"]}` | to the joiner; `peers` are the ids already in the room, in join order |
//! | `{"type":"peer-joined","peer_id":"p3"}` | to the peers already in the room when another joins (before any `ready` it completes) |
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
//! | `bad_message` | not JSON, not an object, unknown `type`, a missing or mistyped field (including a `candidate` that is neither an object nor `null`), or a binary frame (the socket stays open) |
//! | `too_large` | the message is longer than [`Config::max_message_bytes`] |
//! | `not_in_room` | `offer`, `answer`, `candidate` or `leave` before `join` |
//! | `already_joined` | `join` while already in a room |
//! | `room_full` | the room already holds its capacity of peers ([`Config::room_capacity`] unless its first joiner named one) |
//! | `bad_capacity` | `join` with a `capacity` below 2 or above [`Config::max_room_capacity`], or other than the room's |
//! | `target_required` | `offer`, `answer` or `candidate` without `to` in a room of more than two peers |
//! | `unknown_peer` | `to` names no other peer of the sender's room (naming yourself counts as unknown) |
//! | `unauthorized` | `join` without a valid token for that room while the server requires one (see [Authentication](#authentication)); the client joins nothing |
//! | `rate_limited` | the client is over its rate limit; the message was dropped (see [Limits](#limits)) |
//! | `invalid_frame` | the WebSocket layer rejected a frame: a text frame that is not valid UTF-8 (close code 1007), a message over the WebSocket layer's limit (1009) or a protocol violation (1002). **The connection is then closed** (the one exception to "stays open") |
//!
//! Invalid UTF-8 cannot leave the socket open: the WebSocket layer under axum
//! (tungstenite) checks UTF-8 itself and ends the connection's incoming
//! stream on the first bad text frame, and RFC 6455 (section 8.1) requires
//! failing the connection anyway. The server still says why (`invalid_frame`)
//! before it closes; the room gets `peer-left` as for any close, and no other
//! client is affected.
//!
//! # Limits
//!
//! All per connection, all in [`Config`] (and as `rtc-signaling` flags).
//!
//! * Room capacity: [`Config::room_capacity`] peers, default 2; a room's first
//!   joiner may ask for up to [`Config::max_room_capacity`], default 16.
//! * Message size: [`Config::max_message_bytes`] bytes, default 65536
//!   (64 KiB), counted as the UTF-8 length of a text frame (or the length of
//!   a binary frame). Longer messages get `too_large` and the connection stays
//!   open. The WebSocket layer itself accepts messages up to twice that limit
//!   or 1 MiB (1,048,576 bytes), whichever is larger; a message beyond
//!   that gets `invalid_frame` and the connection is closed (1009).
//! * Rate: [`Config::rate_limit_per_second`] messages a second sustained
//!   (default 50) with bursts of [`Config::rate_limit_burst`] (default 100),
//!   a token bucket per connection. Every text or binary frame counts
//!   (`join` too); WebSocket pings and pongs do not. A message over the limit
//!   is dropped. The first dropped message of a run gets a `rate_limited`
//!   error (saying when a message will pass again); the rest of the run is
//!   dropped silently until a message passes again, so a flooder gets at most
//!   about one reply per message that passes and cannot make the server write
//!   faster than the limit. After [`Config::rate_limit_disconnect_after`]
//!   dropped messages over the connection's life (default 500) the client is
//!   disconnected: close code 1008, reason `rate limit exceeded`, one WARN
//!   line. `0` disables the limit (or the disconnection). Other clients are
//!   never affected: each connection has its own bucket.
//! * Idle timeout: a connection that receives nothing from its client (no
//!   message, no ping, no pong) for [`Config::idle_timeout`] (default 60 s)
//!   is closed with close code 1000, reason `idle timeout` (its room gets
//!   `peer-left`). A client keeps a quiet connection open by sending
//!   WebSocket pings. `None` (flag `--idle-timeout 0`) disables it; the
//!   rtc-harness embeds the server that way, since its peers keep their
//!   signaling socket quiet for a whole scenario.
//! * Outgoing queue: [`Config::outbox_capacity`] messages (default 256). A
//!   client that does not read its socket until its queue overflows is
//!   disconnected (its room gets `peer-left`; one WARN line per such client,
//!   whatever the number of messages dropped); it never slows down other
//!   clients. Keep the burst below this, or a legitimate burst to a peer that
//!   reads a little late may overflow it.
//! * Empty rooms are removed.
//!
//! Memory: about 10 KB of server RSS per idle connected client (measured,
//! see the README's figures); the WebSocket layer's read buffer is 4 KiB a
//! connection (tungstenite's default of 128 KiB made it about 137 KB).
//!
//! # Authentication
//!
//! Off by default. With [`Config::jwt_secret`] (flag `--jwt-secret`), a
//! client connects to `ws://HOST:PORT/ws?token=<JWT>` (a query parameter, so
//! a browser's `new WebSocket(url)` can pass it too): an HS256 JSON Web Token
//! (RFC 7519) signed with that secret whose claims hold `room` (the room it
//! admits to) and `exp` (required, seconds since the Unix epoch, checked
//! without leeway; `nbf` is checked if present). The token is checked on
//! every `join`: a missing, malformed, wrongly signed, expired or
//! other-room token gets `error {code: "unauthorized", message}` (the
//! message says which) and the client joins nothing; its socket stays open.
//! One connection's token admits to one room (it may `leave` and join that
//! room again). [`auth::encode_token`] makes a token. Without a secret any
//! `token` is ignored.
#![deny(missing_docs)]

pub mod auth;
mod hub;
mod limit;
pub mod protocol;
mod server;

pub use server::{Admin, Config, RestartError, Server, router, router_with_admin};
