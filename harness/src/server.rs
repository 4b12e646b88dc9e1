//! The harness's own HTTP server, on an ephemeral port of 127.0.0.1 (or of the address given with
//! `--advertise-addr`, for browsers on other machines): the signaling server
//! (`/ws`, from the `rtc-signaling` crate), the browser peer page (`/peer.html`, `/peer.js`) and
//! the control sockets the pages connect back on (`/control/{token}`).

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

const PAGE_HTML: &str = "<!doctype html><meta charset=utf-8><title>rtc-harness peer</title>\
<body>rtc-harness peer page<script src=\"/peer.js\"></script>";
const PAGE_JS: &str = include_str!("peer/browser/page.js");

/// The embedded signaling server's settings: the defaults, without the idle timeout. The
/// harness's peers (bots and browser pages) keep their signaling socket open for a whole
/// scenario and send nothing (not even pings) while it is quiet, which may last longer than the
/// standalone server's 60 s default.
fn signaling_config() -> rtc_signaling::Config {
    rtc_signaling::Config {
        idle_timeout: None,
        ..rtc_signaling::Config::default()
    }
}

/// A listener of its own for one page (`base` is `http://ADDR:PORT`).
pub struct Origin {
    /// Base URL.
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hands each page's control socket to the peer that waits for it.
#[derive(Clone, Default)]
pub struct ControlHub {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<WebSocket>>>>,
}

impl ControlHub {
    /// Registers interest in the control socket of the page opened with `token`.
    pub fn expect(&self, token: &str) -> oneshot::Receiver<WebSocket> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(token.to_string(), tx);
        }
        rx
    }

    fn take(&self, token: &str) -> Option<oneshot::Sender<WebSocket>> {
        self.waiting.lock().ok()?.remove(token)
    }
}

/// The running server. Besides its main listener it can open more, each on a fresh
/// ephemeral port, so that every browser page load gets an origin of its own.
pub struct HarnessServer {
    addr: SocketAddr,
    /// The address every listener binds and every URL names.
    ip: IpAddr,
    hub: ControlHub,
    admin: rtc_signaling::Admin,
    app: Router,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl HarnessServer {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(IpAddr::from([127, 0, 0, 1])).await
    }

    /// Binds `ip` (an address of this machine that browsers elsewhere can reach: the page,
    /// control sockets and signaling are served there) on ephemeral ports and starts serving.
    pub async fn start_on(ip: IpAddr) -> std::io::Result<Self> {
        let hub = ControlHub::default();
        let (signaling, admin) = rtc_signaling::router_with_admin(signaling_config());
        let app = Router::new()
            .route("/peer.html", get(|| async { Html(PAGE_HTML) }))
            .route(
                "/peer.js",
                get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], PAGE_JS) }),
            )
            .route("/control/{token}", get(control))
            .with_state(hub.clone())
            .merge(signaling);
        let mut server = Self {
            addr: SocketAddr::from((ip, 0)),
            ip,
            hub,
            admin,
            app,
            tasks: Mutex::new(Vec::new()),
        };
        server.addr = server.listen().await?;
        Ok(server)
    }

    async fn serve(&self) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((self.ip, 0))).await?;
        self.serve_on(listener)
    }

    fn serve_on(
        &self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let addr = listener.local_addr()?;
        let app = self.app.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("harness server on {addr} stopped: {e}");
            }
        });
        Ok((addr, task))
    }

    async fn listen(&self) -> std::io::Result<SocketAddr> {
        let (addr, task) = self.serve().await?;
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
        Ok(addr)
    }

    /// Operator actions on the embedded signaling server's rooms (the `drop_signaling` step).
    pub fn signaling_admin(&self) -> rtc_signaling::Admin {
        self.admin.clone()
    }

    /// Signaling WebSocket URL.
    pub fn signaling_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Opens one more listener, a new origin, for one page; it closes when the [`Origin`] is
    /// dropped.
    pub async fn new_origin(&self) -> std::io::Result<Origin> {
        let (addr, task) = self.serve().await?;
        Ok(Origin {
            base: format!("http://{addr}"),
            task,
        })
    }

    /// Like [`Self::new_origin`], but listening on the loopback of a network-lab namespace, so
    /// a browser inside it loads the page, opens its control socket and reaches signaling
    /// (`/ws` of the same origin) without crossing the lab network.
    pub async fn new_origin_in(&self, ns: &crate::lab::Netns) -> std::io::Result<Origin> {
        let listener = ns.bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let (addr, task) = self.serve_on(listener)?;
        Ok(Origin {
            base: format!("http://{addr}"),
            task,
        })
    }

    /// The control-socket hub.
    pub fn hub(&self) -> ControlHub {
        self.hub.clone()
    }
}

impl Drop for HarnessServer {
    fn drop(&mut self) {
        if let Ok(t) = self.tasks.lock() {
            for task in t.iter() {
                task.abort();
            }
        }
    }
}

async fn control(
    ws: WebSocketUpgrade,
    Path(token): Path<String>,
    State(hub): State<ControlHub>,
) -> Response {
    match hub.take(&token) {
        Some(tx) => ws.on_upgrade(move |socket| async move {
            let _ = tx.send(socket);
        }),
        None => (
            StatusCode::NOT_FOUND,
            "no peer waits for this control token",
        )
            .into_response(),
    }
}
