//! The axum router, the per-connection tasks and the embeddable [`Server`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::auth::JwtSecret;
use crate::hub::{Hub, Outbox, Refusal};
use crate::limit::{RateGuard, Verdict};
use crate::protocol::ServerMessage;

/// Smallest WebSocket-layer message/frame limit, in bytes (1 MiB).
pub(crate) const MIN_WS_LIMIT_BYTES: usize = 1 << 20;

/// Bytes the WebSocket layer reads from the socket at a time (and the
/// capacity of each connection's read buffer, which grows for larger
/// messages). With tungstenite's default of 128 KiB an idle client cost
/// 137 KB of server RSS, with 4 KiB 10 KB (`tests/figures.rs`).
const READ_BUFFER_BYTES: usize = 4096;

/// How long a closing connection may take to flush its outbox.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// How long [`Server::shutdown`] waits for the HTTP server to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Server settings. Every limit is per connection unless it says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Peers a room holds unless its first joiner asks for another capacity
    /// (`join` with `capacity`); `ready` is sent when it is reached and further
    /// joiners get `room_full`. Default 2.
    pub room_capacity: usize,
    /// Largest capacity a `join` may ask for (a mesh call of that many peers);
    /// more gets `bad_capacity`. Default 16.
    pub max_room_capacity: usize,
    /// Largest accepted client message, in bytes (UTF-8 length of a text
    /// frame). Longer messages get a `too_large` error. Default 65536.
    pub max_message_bytes: usize,
    /// Messages the server may have queued for a client that it has not
    /// yet written to the client's socket; one more disconnects the client
    /// as too slow (logged once). Default 256.
    pub outbox_capacity: usize,
    /// Sustained client messages (text or binary frames; pings excluded) a
    /// second; a message over the limit is dropped, and the first of a run
    /// of dropped messages is answered with `rate_limited` (the rest of the
    /// run silently). 0 disables the limit. Default 50.
    pub rate_limit_per_second: u32,
    /// Messages a client may send at once (the size of its token bucket,
    /// refilled at the sustained rate). Keep it below `outbox_capacity`.
    /// Default 100.
    pub rate_limit_burst: u32,
    /// Dropped (over the rate limit) messages after which a client is
    /// disconnected with close code 1008 (policy violation); counted over
    /// the connection's life. 0 never disconnects. Default 500.
    pub rate_limit_disconnect_after: u32,
    /// A connection that receives nothing from its client (no message, no
    /// ping, no pong) for this long is closed with close code 1000 and the
    /// reason `idle timeout`. `None` (or zero) disables it. Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// With a secret, `join` needs an HS256 JSON Web Token for that room on
    /// the WebSocket URL (`/ws?token=<JWT>`); see [`crate::auth`].
    /// Default `None`: no authentication.
    pub jwt_secret: Option<JwtSecret>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            room_capacity: 2,
            max_room_capacity: 16,
            max_message_bytes: 65536,
            outbox_capacity: 256,
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            rate_limit_disconnect_after: 500,
            idle_timeout: Some(Duration::from_secs(60)),
            jwt_secret: None,
        }
    }
}

impl Config {
    /// The WebSocket layer's own limit, in bytes: well above
    /// `max_message_bytes`, so oversized messages reach the server's check
    /// and get a `too_large` reply instead of a dropped connection.
    pub(crate) fn ws_limit_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_mul(2)
            .max(MIN_WS_LIMIT_BYTES)
    }

    /// The idle timeout, if enabled.
    fn idle(&self) -> Option<Duration> {
        self.idle_timeout.filter(|idle| !idle.is_zero())
    }

    /// A fresh rate limit for one connection, if enabled.
    fn rate_guard(&self, now: std::time::Instant) -> Option<RateGuard> {
        (self.rate_limit_per_second > 0).then(|| {
            RateGuard::new(
                self.rate_limit_per_second,
                self.rate_limit_burst,
                self.rate_limit_disconnect_after,
                now,
            )
        })
    }
}

/// Builds the axum router serving the signaling WebSocket at `/ws`.
///
/// Each call creates an independent set of rooms. The WebSockets it
/// accepts live on their own tasks and stay open until their client leaves,
/// even across a graceful shutdown of the axum server serving the router;
/// [`Server`] closes them for you on [`Server::shutdown`].
pub fn router(config: Config) -> Router {
    router_for(Arc::new(Hub::new(config)))
}

/// [`router`], and an [`Admin`] handle on its rooms.
pub fn router_with_admin(config: Config) -> (Router, Admin) {
    let hub = Arc::new(Hub::new(config));
    (router_for(Arc::clone(&hub)), Admin { hub })
}

/// Operator actions on a running server's rooms, e.g. for fault injection in tests.
#[derive(Debug, Clone)]
pub struct Admin {
    hub: Arc<Hub>,
}

impl Admin {
    /// Closes the WebSocket of peer `peer_id` (the id its `joined` message gave it) if it is
    /// in `room`, with close code 1012 (service restart, RFC 6455 section 7.4 registry) and
    /// reason `disconnected by the server`; the rest of the room gets `peer-left`. Returns
    /// whether such a peer was found.
    pub fn disconnect(&self, room: &str, peer_id: &str) -> bool {
        self.hub.disconnect(room, Some(peer_id)) > 0
    }

    /// Closes every WebSocket in `room` the same way; returns how many.
    pub fn disconnect_room(&self, room: &str) -> usize {
        self.hub.disconnect(room, None)
    }

    /// Restarts the server as a crash and a new start would, without giving up its address:
    /// new WebSocket requests get HTTP 503 (Service Unavailable) from now on; every open
    /// connection is closed with code 1012 (service restart) and leaves its room, so every
    /// room is forgotten; after `down` the server accepts connections again. Peer ids keep
    /// counting, so none is reused. Returns once the server is up again, with how many
    /// connections were closed.
    ///
    /// # Errors
    /// [`RestartError`] if some connection was still open 5 s after it was asked to close (the server then accepts connections again all the same).
    pub async fn restart(&self, down: Duration) -> Result<usize, RestartError> {
        self.hub.set_accepting(false);
        let deadline = Instant::now() + WRITER_GRACE;
        let mut closed = 0;
        let drained = loop {
            // A request that passed the 503 check just before it was set registers late: ask
            // again until nothing is open.
            let open = self.hub.connection_count();
            if open == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            closed = closed.max(self.hub.disconnect_all());
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if drained {
            tokio::time::sleep(down).await;
        }
        self.hub.set_accepting(true);
        info!(closed, ?down, "signaling server restarted");
        if drained {
            Ok(closed)
        } else {
            Err(RestartError {
                open: self.hub.connection_count(),
            })
        }
    }
}

/// [`Admin::restart`] could not close every connection in time.
#[derive(Debug, thiserror::Error)]
#[error("{open} connection(s) still open {WRITER_GRACE:?} after the restart closed them")]
pub struct RestartError {
    /// Connections still open.
    pub open: usize,
}

fn router_for(hub: Arc<Hub>) -> Router {
    Router::new().route("/ws", get(ws_handler)).with_state(hub)
}

/// The query of the WebSocket URL.
#[derive(Debug, Deserialize)]
struct ConnectParams {
    /// A JSON Web Token, checked on `join` when the server has a secret.
    token: Option<String>,
}

async fn ws_handler(
    ws: WebSocketUpgrade,
    Query(params): Query<ConnectParams>,
    State(hub): State<Arc<Hub>>,
) -> Response {
    if !hub.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the signaling server is restarting",
        )
            .into_response();
    }
    let limit = hub.config().ws_limit_bytes();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each message at once: signaling is latency-sensitive.
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve_connection(socket, hub, params.token))
}

/// Why the server ends a connection, as the close frame it sends.
fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Runs one connection: this task reads, a spawned task writes.
async fn serve_connection(socket: WebSocket, hub: Arc<Hub>, token: Option<String>) {
    let config = hub.config().clone();
    let (sink, mut stream) = socket.split();
    let (outbox, rx, kick) = Outbox::new(config.outbox_capacity);
    let disconnect = outbox.disconnect_signal();
    let peer = hub.register(outbox, token);
    let (close_tx, close_rx) = oneshot::channel();
    let mut writer = tokio::spawn(write_loop(peer.clone(), sink, rx, close_rx));
    let mut shutdown = hub.subscribe_shutdown();
    let mut rate = config.rate_guard(std::time::Instant::now());
    let idle = config.idle();
    // Without an idle timeout this sleep is never polled.
    let idle_deadline = tokio::time::sleep(idle.unwrap_or(Duration::ZERO));
    tokio::pin!(idle_deadline);
    let close = loop {
        tokio::select! {
            frame = stream.next() => {
                if let Some(idle) = idle {
                    idle_deadline.as_mut().reset(Instant::now() + idle);
                }
                let data = match frame {
                    Some(Ok(Message::Text(text))) => Ok(text),
                    Some(Ok(Message::Binary(data))) => Err(data.len()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(err)) => break receive_error(&hub, &peer, &err),
                };
                if let Some(rate) = &mut rate {
                    match rate.check(std::time::Instant::now()) {
                        Verdict::Pass => {}
                        Verdict::Refuse(None) => continue,
                        Verdict::Refuse(Some(retry)) => {
                            hub.refuse(&peer, Refusal::RateLimited {
                                per_second: config.rate_limit_per_second,
                                burst: config.rate_limit_burst,
                                retry_after_ms: retry.as_millis().max(1),
                            });
                            continue;
                        }
                        Verdict::Disconnect => {
                            warn!(
                                peer,
                                refused = rate.refused(),
                                "client keeps flooding past its rate limit, disconnecting it"
                            );
                            break Some(close_frame(close_code::POLICY, "rate limit exceeded"));
                        }
                    }
                }
                match data {
                    Ok(text) => hub.handle_text(&peer, text.as_str()),
                    Err(len) => hub.handle_binary(&peer, len),
                }
            }
            () = &mut idle_deadline, if idle.is_some() => {
                info!(peer, "no message from the client for {idle:?}, closing its connection");
                break Some(close_frame(close_code::NORMAL, "idle timeout"));
            }
            // The hub logged it; the client reads too little to see a close.
            () = kick.notified() => break Some(close_frame(close_code::POLICY, "too slow")),
            () = disconnect.notified() => {
                break Some(close_frame(close_code::RESTART, "disconnected by the server"));
            }
            () = stopping(&mut shutdown) => {
                break Some(close_frame(close_code::AWAY, "server shutting down"));
            }
        }
    };
    if let Some(frame) = close {
        // The writer sends it after the queued messages.
        let _ = close_tx.send(frame);
    }
    // Dropping the hub's outbox handle ends the writer after it flushed.
    hub.unregister(&peer);
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        debug!(peer, "writer did not finish in time, aborting it");
        writer.abort();
    }
}

/// Handles an error from the WebSocket layer, which ends the connection's
/// incoming stream: an `invalid_frame` reply and a matching close frame
/// for what the client did wrong, nothing for I/O errors.
///
/// The WebSocket layer reports its errors only as text, so they are told
/// apart by tungstenite's wording.
fn receive_error(hub: &Hub, peer: &str, err: &axum::Error) -> Option<CloseFrame> {
    let text = err.to_string();
    let (code, reason, detail) = if text.starts_with("UTF-8 encoding error") {
        (
            close_code::INVALID,
            "invalid UTF-8",
            "a text frame is not valid UTF-8",
        )
    } else if text.starts_with("Space limit exceeded") {
        (
            close_code::SIZE,
            "message too big",
            "a message is over the WebSocket layer's limit",
        )
    } else if text.starts_with("WebSocket protocol error") {
        (
            close_code::PROTOCOL,
            "protocol error",
            "the frames break the WebSocket protocol",
        )
    } else {
        debug!(peer, "receive error: {text}");
        return None;
    };
    debug!(peer, "invalid frame, closing: {text}");
    hub.refuse(peer, Refusal::InvalidFrame(format!("{detail} ({text})")));
    Some(close_frame(code, reason))
}

/// Completes once the server is shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The hub is gone, so no shutdown can be signalled any more.
        std::future::pending::<()>().await;
    }
}

/// Sends queued messages to the client, then closes the socket (with the
/// close frame from `close`, if the reader sent one).
async fn write_loop(
    peer: String,
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<ServerMessage>,
    mut close: oneshot::Receiver<CloseFrame>,
) {
    while let Some(msg) = rx.recv().await {
        let text = match serde_json::to_string(&msg) {
            Ok(text) => text,
            Err(err) => {
                warn!(peer, "cannot encode {msg:?}: {err}");
                continue;
            }
        };
        if let Err(err) = sink.send(Message::Text(text.into())).await {
            debug!(peer, "send error: {err}");
            return;
        }
    }
    // Best effort: the client may already be gone.
    if let Ok(frame) = close.try_recv() {
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

/// A signaling server running on a tokio task.
///
/// Stop it with [`Server::shutdown`]; dropping it aborts the task instead.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    hub: Arc<Hub>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// An [`Admin`] handle on this server's rooms.
    pub fn admin(&self) -> Admin {
        Admin {
            hub: Arc::clone(&self.hub),
        }
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving.
    ///
    /// Must be called inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, config: Config) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        // Signaling messages are small and latency-sensitive.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                debug!("cannot set TCP_NODELAY: {err}");
            }
        });
        let hub = Arc::new(Hub::new(config));
        let app = router_for(Arc::clone(&hub));
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender also means stop.
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(err) = served {
                error!("signaling server failed: {err}");
            }
        });
        info!(%local_addr, "signaling server listening");
        Ok(Server {
            local_addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL clients connect to: `ws://{addr}/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.local_addr)
    }

    /// Stops accepting connections, closes every open WebSocket (after
    /// flushing queued messages) and waits for the server task to end.
    pub async fn shutdown(mut self) {
        self.hub.begin_shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            warn!("signaling server did not stop in time, aborting it");
            task.abort();
        }
        info!(local_addr = %self.local_addr, "signaling server stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.hub.begin_shutdown();
            task.abort();
        }
    }
}
