//! The axum router, the per-connection tasks and the embeddable [`Server`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::hub::{Hub, Outbox};
use crate::protocol::ServerMessage;

/// Messages that may wait in one connection's outbox before the client is
/// considered too slow and disconnected.
pub(crate) const OUTBOX_CAPACITY: usize = 256;

/// Smallest WebSocket-layer message/frame limit, in bytes (1 MiB).
pub(crate) const MIN_WS_LIMIT_BYTES: usize = 1 << 20;

/// How long a closing connection may take to flush its outbox.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// How long [`Server::shutdown`] waits for the HTTP server to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Peers a room holds; `ready` is sent when it is reached and further
    /// joiners get `room_full`. Default 2.
    pub room_capacity: usize,
    /// Largest accepted client message, in bytes (UTF-8 length of a text
    /// frame). Longer messages get a `too_large` error. Default 65536.
    pub max_message_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            room_capacity: 2,
            max_message_bytes: 65536,
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

fn router_for(hub: Arc<Hub>) -> Router {
    Router::new().route("/ws", get(ws_handler)).with_state(hub)
}

async fn ws_handler(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    let limit = hub.config().ws_limit_bytes();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_connection(socket, hub))
}

/// Runs one connection: this task reads, a spawned task writes.
async fn serve_connection(socket: WebSocket, hub: Arc<Hub>) {
    let (sink, mut stream) = socket.split();
    let (outbox, rx, kick) = Outbox::new(OUTBOX_CAPACITY);
    let peer = hub.register(outbox);
    let mut writer = tokio::spawn(write_loop(peer.clone(), sink, rx));
    let mut shutdown = hub.subscribe_shutdown();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => hub.handle_text(&peer, text.as_str()),
                Some(Ok(Message::Binary(data))) => hub.handle_binary(&peer, data.len()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(err)) => {
                    debug!(peer, "receive error: {err}");
                    break;
                }
            },
            () = kick.notified() => break,
            () = stopping(&mut shutdown) => break,
        }
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

/// Completes once the server is shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The hub is gone, so no shutdown can be signalled any more.
        std::future::pending::<()>().await;
    }
}

/// Sends queued messages to the client, then closes the socket.
async fn write_loop(
    peer: String,
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<ServerMessage>,
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
