//! `chromium`: headless Chromium, started by chromedriver, driven over WebDriver (fantoccini).
//!
//! Per peer: a chromedriver on a free loopback port in its own process group (so the browser
//! tree dies with it), a fresh `--user-data-dir`, and one WebDriver session that loads the peer
//! page from the harness's server. The page then connects back on a control WebSocket; every
//! command and event goes over that socket (a WebDriver `execute` round trip costs 4-13 ms and
//! runs on the page's main thread, so it is kept off the timed path).

use super::{
    ConnectRequest, EventSink, Launcher, Peer, PeerError, PeerInfo, ProcessGroup, SendRequest,
};
use crate::clock::{ClockOffset, SyncSample, estimate_offset};
use crate::scenario::PeerPlan;
use crate::server::ControlHub;
use crate::timeline::EventKind;
use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Chromium flags: headless as root in a closed network, fake media devices, loopback ICE.
/// See FIELD-NOTES: without the background-networking flags Chromium keeps dialling out; it
/// gathers a 127.0.0.1 candidate only with `--allow-loopback-in-peer-connection` plus a granted
/// getUserMedia; mDNS host-name obfuscation is turned off so host candidates carry IPs.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

const DRIVER_START_DEADLINE: Duration = Duration::from_secs(20);
const SESSION_DEADLINE: Duration = Duration::from_secs(60);
const PAGE_DEADLINE: Duration = Duration::from_secs(20);
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
const CLOCK_SYNC_PINGS: u64 = 8;

/// Where the harness serves the peer page.
#[derive(Clone)]
pub struct PageHost {
    /// Control sockets.
    pub hub: ControlHub,
    /// Builds the page URL for a control token.
    pub page_url: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

/// Starts Chromium peers.
#[derive(Clone)]
pub struct ChromiumLauncher {
    chromedriver: Option<PathBuf>,
    chromium: Option<PathBuf>,
    host: PageHost,
    /// Where per-peer logs go.
    log_dir: PathBuf,
}

impl ChromiumLauncher {
    /// `chromedriver`/`chromium`: explicit paths, or `None` to search.
    pub fn new(
        chromedriver: Option<PathBuf>,
        chromium: Option<PathBuf>,
        host: PageHost,
        log_dir: PathBuf,
    ) -> Self {
        Self {
            chromedriver,
            chromium,
            host,
            log_dir,
        }
    }

    fn programs(&self) -> Result<(PathBuf, PathBuf), PeerError> {
        Ok((
            find_chromedriver(self.chromedriver.as_deref())?,
            find_chromium(self.chromium.as_deref())?,
        ))
    }
}

/// Finds chromedriver: the given path, else `chromedriver` on PATH.
pub fn find_chromedriver(given: Option<&Path>) -> Result<PathBuf, PeerError> {
    let hint = "install it (Debian: `apt-get install chromium-driver`) or pass --chromedriver PATH";
    match given {
        Some(p) if p.is_file() => Ok(p.to_owned()),
        Some(p) => Err(PeerError::Missing {
            program: format!("chromedriver at {}", p.display()),
            hint: hint.into(),
        }),
        None => which::which("chromedriver").map_err(|_| PeerError::Missing {
            program: "chromedriver".into(),
            hint: hint.into(),
        }),
    }
}

/// Finds the Chromium binary: the given path, else Debian's real binary behind the
/// `/usr/bin/chromium` wrapper script, else `chromium`/`chromium-browser`/`google-chrome` on PATH.
pub fn find_chromium(given: Option<&Path>) -> Result<PathBuf, PeerError> {
    let hint = "install it (Debian: `apt-get install chromium`) or pass --chromium PATH";
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(PeerError::Missing {
                program: format!("chromium at {}", p.display()),
                hint: hint.into(),
            })
        };
    }
    let debian = Path::new("/usr/lib/chromium/chromium");
    if debian.is_file() {
        return Ok(debian.to_owned());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which::which(n).ok())
        .ok_or_else(|| PeerError::Missing {
            program: "chromium".into(),
            hint: hint.into(),
        })
}

#[async_trait]
impl Launcher for ChromiumLauncher {
    fn check(&self) -> Result<(), PeerError> {
        self.programs().map(|_| ())
    }

    async fn launch(&self, plan: &PeerPlan, sink: EventSink) -> Result<Box<dyn Peer>, PeerError> {
        let (driver_path, browser_path) = self.programs()?;
        let profile = tempfile::Builder::new()
            .prefix("rtc-harness-chromium-")
            .tempdir()
            .map_err(|e| PeerError::failed(format!("profile dir: {e}")))?;
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| PeerError::failed(format!("log dir {}: {e}", self.log_dir.display())))?;
        let port = free_port()?;
        let log = self
            .log_dir
            .join(format!("chromedriver-{}-{port}.log", plan.id));
        let mut cmd = std::process::Command::new(&driver_path);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        let mut group = ProcessGroup::spawn(cmd, "chromedriver", &log)
            .map_err(|e| PeerError::failed(format!("starting {}: {e}", driver_path.display())))?;
        let started = Instant::now();
        wait_for_port(port, &mut group, &log).await?;
        tracing::debug!(peer = %plan.id, "chromedriver listening after {:?}", started.elapsed());
        let driver_version = program_version(&driver_path).await;

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": browser_path, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            SESSION_DEADLINE,
            fantoccini::ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .map_err(|_| PeerError::Timeout("WebDriver session start".into()))?
        .map_err(|e| {
            PeerError::failed(format!(
                "WebDriver session with {}: {e} (driver log: {})",
                browser_path.display(),
                log.display()
            ))
        })?;
        tracing::debug!(peer = %plan.id, "WebDriver session after {:?}", started.elapsed());
        let browser_version = client
            .capabilities()
            .and_then(|c| {
                Some(format!(
                    "{} {}",
                    c.get("browserName")?.as_str()?,
                    c.get("browserVersion")?.as_str()?
                ))
            })
            .unwrap_or_else(|| "chromium (version unknown)".into());

        let token = format!("{}-{port}", plan.id);
        let socket_rx = self.host.hub.expect(&token);
        let url = (self.host.page_url)(&token);
        let mut peer = ChromiumPeer {
            id: plan.id.clone(),
            product: browser_version,
            driver: driver_version,
            client: tokio::sync::Mutex::new(Some(client)),
            control: None,
            offset: Arc::new(Mutex::new(None)),
            _profile: profile,
            group: Mutex::new(Some(group)),
        };
        let goto = async {
            let guard = peer.client.lock().await;
            match guard.as_ref() {
                Some(c) => c
                    .goto(&url)
                    .await
                    .map_err(|e| PeerError::failed(format!("loading {url}: {e}"))),
                None => Err(PeerError::failed("no session")),
            }
        };
        tokio::time::timeout(PAGE_DEADLINE, goto)
            .await
            .map_err(|_| PeerError::Timeout(format!("loading {url}")))??;
        let socket = tokio::time::timeout(PAGE_DEADLINE, socket_rx)
            .await
            .map_err(|_| PeerError::Timeout("peer page control socket".into()))?
            .map_err(|_| PeerError::failed("control socket dropped"))?;
        tracing::debug!(peer = %plan.id, "page connected after {:?}", started.elapsed());
        let control = Control::start(socket, sink, peer.offset.clone());
        control.wait_hello().await?;
        let offset = control.sync_clock().await?;
        tracing::debug!(peer = %plan.id, "ready after {:?}, clock offset {offset:?}", started.elapsed());
        if let Ok(mut o) = peer.offset.lock() {
            *o = Some(offset);
        }
        peer.control = Some(control);
        Ok(Box::new(peer))
    }
}

fn free_port() -> Result<u16, PeerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| PeerError::failed(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| PeerError::failed(format!("finding a free port: {e}")))
}

async fn wait_for_port(port: u16, group: &mut ProcessGroup, log: &Path) -> Result<(), PeerError> {
    let deadline = Instant::now() + DRIVER_START_DEADLINE;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(status) = group.try_exit_status() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(PeerError::failed(format!(
                "chromedriver exited ({status}) before listening: {}",
                tail.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(PeerError::Timeout(format!(
                "chromedriver listening on port {port} (log: {})",
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn program_version(path: &Path) -> Option<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::process::Command::new(path)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "ChromeDriver 156.0.8078.73 (hash-refs/...)" -> first two words.
    Some(
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

struct ChromiumPeer {
    id: String,
    product: String,
    driver: Option<String>,
    client: tokio::sync::Mutex<Option<fantoccini::Client>>,
    control: Option<Control>,
    offset: Arc<Mutex<Option<ClockOffset>>>,
    _profile: tempfile::TempDir,
    group: Mutex<Option<ProcessGroup>>,
}

impl ChromiumPeer {
    fn control(&self) -> Result<&Control, PeerError> {
        self.control
            .as_ref()
            .ok_or_else(|| PeerError::failed("page not connected"))
    }
}

#[async_trait]
impl Peer for ChromiumPeer {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            kind: "chromium".into(),
            product: self.product.clone(),
            driver: self.driver.clone(),
            clock_error_ms: self
                .offset
                .lock()
                .ok()
                .and_then(|o| o.map(|o| o.error_ms))
                .unwrap_or(f64::NAN),
        }
    }

    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError> {
        let mut cmd = serde_json::to_value(req).map_err(PeerError::failed)?;
        cmd["cmd"] = json!("connect");
        self.control()?.command(cmd).await.map(|_| ())
    }

    async fn send(&self, req: &SendRequest) -> Result<(), PeerError> {
        let mut cmd = serde_json::to_value(req).map_err(PeerError::failed)?;
        cmd["cmd"] = json!("send");
        self.control()?.command(cmd).await.map(|_| ())
    }

    async fn close(&self, connection: &str) -> Result<(), PeerError> {
        self.control()?
            .command(json!({"cmd": "close", "connection": connection}))
            .await
            .map(|_| ())
    }

    async fn shutdown(&self) {
        if let Some(c) = &self.control {
            c.stop();
        }
        let started = Instant::now();
        if let Some(client) = self.client.lock().await.take() {
            let _ = tokio::time::timeout(CLOSE_DEADLINE, client.close()).await;
        }
        tracing::debug!(peer = %self.id, "session closed after {:?}", started.elapsed());
        if let Ok(mut g) = self.group.lock()
            && let Some(mut g) = g.take()
        {
            g.kill();
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// The control socket to one peer page.
struct Control {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    hello: Mutex<Option<oneshot::Receiver<Value>>>,
    next_id: AtomicU64,
    clock: crate::clock::Clock,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Control {
    fn start(socket: WebSocket, sink: EventSink, offset: Arc<Mutex<Option<ClockOffset>>>) -> Self {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let (hello_tx, hello_rx) = oneshot::channel();
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if ws_tx.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let clock = sink.clock();
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            let mut hello_tx = Some(hello_tx);
            while let Some(Ok(msg)) = ws_rx.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!("unreadable page message: {text}");
                    continue;
                };
                match v["type"].as_str() {
                    Some("event") => {
                        let t = v["t"].as_f64().unwrap_or(f64::NAN);
                        let conn = v["connection"].as_str().unwrap_or("").to_string();
                        let off = offset.lock().ok().and_then(|o| *o);
                        let unix = off.map(|o| o.to_harness(t)).unwrap_or(t);
                        match serde_json::from_value::<EventKind>(v["event"].clone()) {
                            Ok(kind) => sink.emit_at(unix, &conn, kind),
                            Err(e) => sink.emit(
                                &conn,
                                EventKind::Error {
                                    message: format!("unreadable page event {}: {e}", v["event"]),
                                },
                            ),
                        }
                    }
                    Some("reply") | Some("pong") => {
                        let id = v["id"].as_u64().unwrap_or(u64::MAX);
                        let tx = reader_pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(tx) = tx {
                            let r = if v["type"] == "pong" || v["ok"] == json!(true) {
                                Ok(if v["type"] == "pong" {
                                    v["t"].clone()
                                } else {
                                    v["value"].clone()
                                })
                            } else {
                                Err(v["value"].as_str().unwrap_or("command failed").to_string())
                            };
                            let _ = tx.send(r);
                        }
                    }
                    Some("hello") => {
                        if let Some(tx) = hello_tx.take() {
                            let _ = tx.send(v);
                        }
                    }
                    Some("page-error") => {
                        sink.emit(
                            "",
                            EventKind::Error {
                                message: format!("page: {}", v["message"]),
                            },
                        );
                    }
                    _ => tracing::warn!("unexpected page message: {text}"),
                }
            }
            // Socket gone: fail whatever still waits.
            if let Ok(mut p) = reader_pending.lock() {
                for (_, tx) in p.drain() {
                    let _ = tx.send(Err("peer page went away".into()));
                }
            }
        });
        Self {
            out,
            pending,
            hello: Mutex::new(Some(hello_rx)),
            next_id: AtomicU64::new(1),
            clock,
            tasks: vec![writer, reader],
        }
    }

    fn request(&self, mut msg: Value) -> (u64, oneshot::Receiver<Result<Value, String>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        msg["id"] = json!(id);
        let _ = self.out.send(msg.to_string());
        (id, rx)
    }

    async fn command(&self, command: Value) -> Result<Value, PeerError> {
        let what = command["cmd"].as_str().unwrap_or("?").to_string();
        let (_, rx) = self.request(json!({"type": "command", "command": command}));
        rx.await
            .map_err(|_| PeerError::failed(format!("{what}: page gone")))?
            .map_err(|e| PeerError::failed(format!("{what}: {e}")))
    }

    async fn wait_hello(&self) -> Result<(), PeerError> {
        let rx = self
            .hello
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .ok_or_else(|| PeerError::failed("hello already taken"))?;
        let hello = tokio::time::timeout(PAGE_DEADLINE, rx)
            .await
            .map_err(|_| PeerError::Timeout("peer page hello".into()))?
            .map_err(|_| PeerError::failed("peer page closed before hello"))?;
        if hello["self_check"] != json!(true) {
            return Err(PeerError::failed(
                "peer page payload self-check failed: page.js and payload.rs disagree",
            ));
        }
        if hello["media"] != json!("granted") {
            tracing::warn!("getUserMedia in the peer page: {}", hello["media"]);
        }
        Ok(())
    }

    /// Ping-pong a few times and estimate the page clock's offset (see [`crate::clock`]).
    async fn sync_clock(&self) -> Result<ClockOffset, PeerError> {
        let mut samples = Vec::new();
        for _ in 0..CLOCK_SYNC_PINGS {
            let sent = self.clock.now_unix_ms();
            let (_, rx) = self.request(json!({"type": "ping"}));
            let remote = tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .map_err(|_| PeerError::Timeout("clock sync ping".into()))?
                .map_err(|_| PeerError::failed("page gone during clock sync"))?
                .map_err(PeerError::failed)?;
            let received = self.clock.now_unix_ms();
            if let Some(remote_ms) = remote.as_f64() {
                samples.push(SyncSample {
                    sent_ms: sent,
                    remote_ms,
                    received_ms: received,
                });
            }
        }
        estimate_offset(&samples).ok_or_else(|| PeerError::failed("no usable clock sample"))
    }

    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}
