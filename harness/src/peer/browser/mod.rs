//! Browser peers: a real browser started by its WebDriver server, driven with fantoccini.
//!
//! What differs between browsers (which driver and binary, which flags or prefs) is a
//! [`Flavor`]: [`chromium::Chromium`], [`firefox::Firefox`]. Everything else is shared: the
//! driver runs in its own process group (so the browser tree dies with it), a WebDriver session
//! loads the peer page (`page.js`) from the harness's server, and the page connects back on a
//! control WebSocket over which every command and event travels (a WebDriver `execute` round
//! trip costs 4-13 ms and runs on the page's main thread, so it is kept off the timed path).
//!
//! **Reuse.** Within one run a browser instance serves one scenario after another. Between two
//! scenarios the page is replaced by `about:blank`, which destroys the document and every
//! `RTCPeerConnection` in it, and the next page is loaded from a *new origin* (a fresh
//! ephemeral port), so no permission or storage granted to the previous page applies. Two peers
//! never share an instance. A peer with `fresh_browser = true`, or a run with
//! `--no-browser-reuse`, gets a new instance. An instance that fails to load the next page
//! (crashed or hung) is killed and replaced; one that dies mid-scenario fails that scenario
//! ("peer page went away") and is not reused.
//!
//! **Network lab.** A browser placed in a lab namespace runs with its driver inside it
//! (`ip netns exec`); the harness reaches the driver through a connection opened in the
//! namespace, and serves the page, control socket and signaling on a listener in the
//! namespace's loopback. Such an instance serves one scenario only (its namespace goes with it).

mod bidi;
pub mod chromium;
pub mod firefox;
mod page_peer;
pub mod remote;

use super::{
    ConnectRequest, EventSink, Launcher, Peer, PeerError, PeerInfo, ProcessGroup, SendRequest,
};
use crate::clock::{ClockOffset, SyncSample, estimate_offset};
use crate::scenario::PeerPlan;
use crate::server::{HarnessServer, Origin};
use crate::timeline::EventKind;
use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const DRIVER_START_DEADLINE: Duration = Duration::from_secs(20);
const SESSION_DEADLINE: Duration = Duration::from_secs(60);
const PAGE_DEADLINE: Duration = Duration::from_secs(20);
const RELEASE_DEADLINE: Duration = Duration::from_secs(5);
const CLOCK_SYNC_PINGS: u64 = 8;

/// The programs a browser kind needs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The WebDriver server (chromedriver, geckodriver).
    pub driver: PathBuf,
    /// The browser binary.
    pub browser: PathBuf,
}

/// What is specific to one browser.
pub trait Flavor: Send + Sync + 'static {
    /// Kind name, as in scenario files.
    fn kind(&self) -> &'static str;
    /// Finds the driver and browser; a missing one is a [`PeerError::Missing`] naming the
    /// program and how to install it.
    fn programs(&self) -> Result<Programs, PeerError>;
    /// The driver's command line, listening on `port` (loopback only).
    fn driver_command(&self, programs: &Programs, port: u16) -> Command;
    /// WebDriver capabilities for a new session: the browser binary to start (`None`: the
    /// driver's own choice, as on a remote WebDriver node) and a fresh profile directory
    /// (`None`: the driver makes one).
    fn capabilities(
        &self,
        browser: Option<&Path>,
        profile: Option<&Path>,
    ) -> fantoccini::wd::Capabilities;
    /// The browser binary the user named (`--chromium PATH`, `--firefox PATH`), if any: what a
    /// remote session asks the node for.
    fn binary(&self) -> Option<&Path>;
}

/// Finds a program: the given path, else the first of `names` that exists as a path or on PATH.
pub fn find_program(
    given: Option<&Path>,
    names: &[&str],
    program: &str,
    hint: &str,
) -> Result<PathBuf, PeerError> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(PeerError::Missing {
                program: format!("{program} at {}", p.display()),
                hint: hint.into(),
            })
        };
    }
    names
        .iter()
        .find_map(|n| {
            let p = Path::new(n);
            if p.is_absolute() {
                p.is_file().then(|| p.to_owned())
            } else {
                which::which(n).ok()
            }
        })
        .ok_or_else(|| PeerError::Missing {
            program: program.into(),
            hint: hint.into(),
        })
}

type Pool = Arc<Mutex<Vec<Instance>>>;

/// Starts browser peers of one flavor, reusing idle instances when allowed.
#[derive(Clone)]
pub struct BrowserLauncher {
    flavor: Arc<dyn Flavor>,
    server: Arc<HarnessServer>,
    log_dir: PathBuf,
    reuse: bool,
    pool: Pool,
    /// Sessions come from this remote WebDriver endpoint instead of a local driver.
    remote: Option<String>,
    /// New local instances starting at once (driver, browser, first page load), at most one
    /// per core (shared by the Chromium and Firefox launchers, [`Self::with_start_limit`]): 20 Chromium instances started together on 2 cores left one page unloaded
    /// after 20 s (`harness/benches/load/chromium-10.toml`).
    starts: Arc<tokio::sync::Semaphore>,
}

impl BrowserLauncher {
    /// A launcher; `reuse = false` gives every peer a new browser instance.
    pub fn new(
        flavor: Arc<dyn Flavor>,
        server: Arc<HarnessServer>,
        log_dir: PathBuf,
        reuse: bool,
    ) -> Self {
        Self {
            flavor,
            server,
            log_dir,
            reuse,
            pool: Arc::default(),
            remote: None,
            starts: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        }
    }

    /// Shares the limit on local browser starts with other launchers (one per core in all).
    pub fn with_start_limit(mut self, starts: Arc<tokio::sync::Semaphore>) -> Self {
        self.starts = starts;
        self
    }

    /// Takes sessions from a remote WebDriver endpoint (a Selenium Grid hub) instead of
    /// starting a local driver ([`remote`]).
    pub fn with_remote(mut self, endpoint: Option<String>) -> Self {
        self.remote = endpoint;
        self
    }

    /// A new instance: a session on the remote endpoint, or a local driver (in `ns` if given).
    async fn start_instance(
        &self,
        plan: &PeerPlan,
        ns: Option<Arc<crate::lab::Netns>>,
    ) -> Result<Instance, PeerError> {
        match &self.remote {
            Some(endpoint) => Instance::start_remote(self.flavor.as_ref(), endpoint).await,
            None => {
                Instance::start_with(
                    self.flavor.as_ref(),
                    &self.log_dir,
                    &plan.id,
                    ns,
                    plan.instrument,
                )
                .await
            }
        }
    }

    /// Closes every idle instance (end of a run).
    pub async fn close_idle(&self) {
        let idle: Vec<Instance> = self
            .pool
            .lock()
            .map(|mut p| p.drain(..).collect())
            .unwrap_or_default();
        futures::future::join_all(idle.into_iter().map(Instance::close)).await;
    }

    fn take_idle(&self) -> Option<Instance> {
        self.pool.lock().ok()?.pop()
    }

    async fn open_page(
        &self,
        instance: &Instance,
        plan: &PeerPlan,
        sink: &EventSink,
        ns: Option<&crate::lab::Netns>,
    ) -> Result<
        (
            Control,
            ClockOffset,
            Arc<Mutex<Option<ClockOffset>>>,
            Origin,
        ),
        PeerError,
    > {
        // A new origin for every page: nothing granted to an earlier page applies.
        let origin = match ns {
            Some(ns) => self.server.new_origin_in(ns).await,
            None => self.server.new_origin().await,
        }
        .map_err(|e| PeerError::failed(format!("serving the peer page: {e}")))?;
        let base = origin.base.clone();
        let token = format!("{}-{}", plan.id, instance.serial);
        let socket_rx = self.server.hub().expect(&token);
        let url = format!("{base}/peer.html?control=ws{}/control/{token}", &base[4..]);
        tokio::time::timeout(PAGE_DEADLINE, instance.client.goto(&url))
            .await
            .map_err(|_| PeerError::Timeout(format!("loading {url}")))?
            .map_err(|e| PeerError::failed(format!("loading {url}: {e}")))?;
        let socket = tokio::time::timeout(PAGE_DEADLINE, socket_rx)
            .await
            .map_err(|_| PeerError::Timeout("peer page control socket".into()))?
            .map_err(|_| PeerError::failed("control socket dropped"))?;
        let offset_cell: Arc<Mutex<Option<ClockOffset>>> = Arc::default();
        let control = Control::start(socket, sink.clone(), offset_cell.clone());
        control.wait_hello().await?;
        let offset = control.sync_clock().await?;
        if let Ok(mut o) = offset_cell.lock() {
            *o = Some(offset);
        }
        Ok((control, offset, offset_cell, origin))
    }
}

#[async_trait]
impl Launcher for BrowserLauncher {
    fn check(&self) -> Result<(), PeerError> {
        if self.remote.is_some() {
            // The remote endpoint's node has the programs; it is asked at session start.
            return Ok(());
        }
        self.flavor.programs().map(|_| ())
    }

    async fn launch(
        &self,
        plan: &PeerPlan,
        sink: EventSink,
        lab: Option<&crate::lab::LabHost>,
    ) -> Result<Box<dyn Peer>, PeerError> {
        if let Some(endpoint) = &self.remote {
            let unsupported = if plan.url.is_some() {
                Some("a page peer (`url`)")
            } else if lab.is_some() {
                Some("a peer in the network lab (its namespace is on this machine)")
            } else if plan.instrument {
                Some("an instrumented peer (`instrument = true`)")
            } else {
                None
            };
            if let Some(what) = unsupported {
                return Err(PeerError::failed(format!(
                    "{what} needs a local {kind} driver; the {kind} peers of this run come from \
                     the remote WebDriver endpoint {endpoint}",
                    kind = self.flavor.kind()
                )));
            }
        }
        if let Some(url) = &plan.url {
            if lab.is_some() {
                return Err(PeerError::failed(
                    "page peers cannot be placed in the network lab yet",
                ));
            }
            return page_peer::launch(self.flavor.as_ref(), &self.log_dir, plan, url, sink).await;
        }
        let started = Instant::now();
        let ns = lab.map(|h| h.ns.clone());
        // A lab instance lives in the scenario's namespace, an instrumented one carries a BiDi
        // socket: neither is reused.
        let reuse = self.reuse && ns.is_none() && !plan.instrument;
        let reused = if reuse && !plan.fresh_browser {
            self.take_idle()
        } else {
            None
        };
        let was_reused = reused.is_some();
        // Held until the first page is up: starting a browser is the costly part.
        let start_permit = match (&reused, &self.remote) {
            (None, None) => self.starts.acquire().await.ok(),
            _ => None,
        };
        let mut instance = match reused {
            Some(i) => i,
            None => self.start_instance(plan, ns.clone()).await?,
        };
        let instrumentation = if plan.instrument {
            match page_peer::instrument_only(&instance).await {
                Ok(b) => Some(b),
                Err(e) => {
                    instance.close().await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        let opened = match self.open_page(&instance, plan, &sink, ns.as_deref()).await {
            Ok(o) => o,
            Err(e) if was_reused => {
                // A reused instance that cannot load a page has crashed or hung: replace it.
                tracing::warn!(
                    "{} instance could not be reused ({e}); starting a new one",
                    self.flavor.kind()
                );
                instance.close().await;
                let _permit = match &self.remote {
                    None => self.starts.acquire().await.ok(),
                    Some(_) => None,
                };
                instance = self.start_instance(plan, None).await?;
                self.open_page(&instance, plan, &sink, None).await?
            }
            Err(e) => {
                instance.close().await;
                return Err(e);
            }
        };
        drop(start_permit);
        let (control, offset, offset_cell, origin) = opened;
        tracing::debug!(
            peer = %plan.id,
            reused = was_reused,
            "{} ready after {:?}, clock offset {offset:?}",
            self.flavor.kind(),
            started.elapsed()
        );
        Ok(Box::new(BrowserPeer {
            id: plan.id.clone(),
            kind: self.flavor.kind(),
            product: instance.product.clone(),
            driver: instance.driver_version.clone(),
            reused: was_reused,
            driver_log: instance.log.display().to_string(),
            instance: tokio::sync::Mutex::new(Some(instance)),
            control,
            offset: offset_cell,
            pool: reuse.then(|| self.pool.clone()),
            own_signaling: ns.is_some().then(|| format!("ws{}/ws", &origin.base[4..])),
            _origin: origin,
            sink,
            frozen: std::sync::atomic::AtomicBool::new(false),
            _instrumentation: instrumentation,
        }))
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// One browser: its driver process group, WebDriver session and profile directory. Peers use
/// it through [`BrowserLauncher`]; tests may open one directly to look at a page.
pub struct Instance {
    client: fantoccini::Client,
    /// The local driver's process group; `None` for a session on a remote endpoint.
    group: Option<ProcessGroup>,
    /// A session on a remote endpoint (`--webdriver-url`).
    remote: Option<remote::Registration>,
    product: String,
    driver_version: Option<String>,
    serial: u64,
    log: PathBuf,
    /// Lab instances: the connection into the namespace the driver listens in.
    forward: Option<AbortOnDrop>,
    /// The driver's program name (chromedriver, geckodriver).
    driver_name: String,
    /// Set once the driver alone was killed (the `kill` step's `process = "driver"`).
    driver_gone: bool,
    _profile: Option<tempfile::TempDir>,
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wraps a command so that it starts inside a network namespace.
fn in_namespace(cmd: &Command, ns: &crate::lab::Netns) -> Command {
    let mut wrapped = ns.command(cmd.get_program());
    wrapped.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

impl Instance {
    /// Starts the driver and a session.
    pub async fn start(
        flavor: &dyn Flavor,
        log_dir: &Path,
        label: &str,
    ) -> Result<Self, PeerError> {
        Self::start_in(flavor, log_dir, label, None).await
    }

    /// Starts the driver and a session, inside a lab namespace when `ns` is given.
    pub async fn start_in(
        flavor: &dyn Flavor,
        log_dir: &Path,
        label: &str,
        ns: Option<Arc<crate::lab::Netns>>,
    ) -> Result<Self, PeerError> {
        Self::start_with(flavor, log_dir, label, ns, false).await
    }

    /// [`Instance::start_in`]; with `bidi`, the session also opens a WebDriver BiDi socket
    /// (capability `webSocketUrl`, W3C WebDriver BiDi §7.2).
    async fn start_with(
        flavor: &dyn Flavor,
        log_dir: &Path,
        label: &str,
        ns: Option<Arc<crate::lab::Netns>>,
        bidi: bool,
    ) -> Result<Self, PeerError> {
        let programs = flavor.programs()?;
        let profile = tempfile::Builder::new()
            .prefix(&format!("rtc-harness-{}-", flavor.kind()))
            .tempdir()
            .map_err(|e| PeerError::failed(format!("profile dir: {e}")))?;
        std::fs::create_dir_all(log_dir)
            .map_err(|e| PeerError::failed(format!("log dir {}: {e}", log_dir.display())))?;
        // In the lab the driver listens on the namespace's loopback: the harness reaches it
        // through a local listener on the same port number (geckodriver checks the Host header)
        // whose connections are opened inside the namespace.
        let local = match &ns {
            Some(_) => Some(
                tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(|e| PeerError::failed(format!("WebDriver forward: {e}")))?,
            ),
            None => None,
        };
        let port = match &local {
            Some(l) => l
                .local_addr()
                .map_err(|e| PeerError::failed(e.to_string()))?
                .port(),
            None => free_port()?,
        };
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let log = log_dir.join(format!("{}-{label}-{serial}.log", flavor.kind()));
        let driver_name = programs
            .driver
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "driver".into());
        let mut command = flavor.driver_command(&programs, port);
        if let Some(ns) = &ns {
            command = in_namespace(&command, ns);
        }
        // The driver's and the browser's own temporary files (Chromium's
        // `org.chromium.Chromium.*` directories, which a killed browser never removes) go
        // inside the profile directory, which is removed with the instance.
        let tmp = profile.path().join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| PeerError::failed(format!("temp dir {}: {e}", tmp.display())))?;
        command.env("TMPDIR", &tmp);
        let mut group = ProcessGroup::spawn(command, &driver_name, &log).map_err(|e| {
            PeerError::failed(format!("starting {}: {e}", programs.driver.display()))
        })?;
        wait_for_port(port, ns.as_deref(), &mut group, &log, &driver_name).await?;
        let forward = match (local, &ns) {
            (Some(local), Some(ns)) => Some(AbortOnDrop(crate::lab::netns::forward_into(
                local,
                ns.clone(),
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            ))),
            _ => None,
        };
        let driver_version = program_version(&programs.driver).await;
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut capabilities = flavor.capabilities(Some(&programs.browser), Some(profile.path()));
        if bidi {
            capabilities.insert("webSocketUrl".into(), json!(true));
        }
        let client = tokio::time::timeout(
            SESSION_DEADLINE,
            fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .map_err(|_| {
            PeerError::Timeout(format!("WebDriver session start (log: {})", log.display()))
        })?
        .map_err(|e| {
            PeerError::failed(format!(
                "WebDriver session with {}: {e} (driver log: {})",
                programs.browser.display(),
                log.display()
            ))
        })?;
        Ok(Self {
            product: product_of(&client, flavor),
            client,
            group: Some(group),
            remote: None,
            driver_version,
            serial,
            log,
            forward,
            driver_name,
            driver_gone: false,
            _profile: Some(profile),
        })
    }

    /// Opens a session on a remote WebDriver endpoint (a Selenium Grid): no local driver, no
    /// local profile. See [`remote`].
    pub async fn start_remote(flavor: &dyn Flavor, endpoint: &str) -> Result<Self, PeerError> {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let (client, registration) =
            remote::connect(flavor, endpoint, serial, SESSION_DEADLINE).await?;
        let session = client.session_id().await.ok().flatten().unwrap_or_default();
        Ok(Self {
            product: product_of(&client, flavor),
            driver_version: client.capabilities().and_then(remote::driver_version),
            client,
            group: None,
            remote: Some(registration),
            serial,
            // Its log is the Grid's: where to look for it.
            log: PathBuf::from(format!("remote WebDriver {endpoint}, session {session}")),
            forward: None,
            driver_name: "remote WebDriver".into(),
            driver_gone: false,
            _profile: None,
        })
    }

    /// The remote endpoint this instance's session lives on, if it is remote.
    pub fn remote_endpoint(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.endpoint.as_str())
    }

    /// The local process group, or an error naming what cannot be done to a remote browser.
    fn local_group(&mut self, what: &str) -> Result<&mut ProcessGroup, PeerError> {
        match (&mut self.group, &self.remote) {
            (Some(g), _) => Ok(g),
            (None, Some(r)) => Err(PeerError::failed(format!(
                "{what} needs a browser on this machine; this one runs on the remote WebDriver \
                 endpoint {}",
                r.endpoint
            ))),
            (None, None) => Err(PeerError::failed(format!("{what}: no browser process"))),
        }
    }

    /// The WebDriver session.
    pub fn client(&self) -> &fantoccini::Client {
        &self.client
    }

    /// SIGKILL to the driver's process group, browser included, at once: no WebDriver
    /// session end, no page unload, so the browser sends nothing more.
    pub fn kill(self) {
        let Instance { group, forward, .. } = self;
        if let Some(mut group) = group {
            group.kill();
        }
        drop(forward);
    }

    /// Ends the session and kills the driver's process group (browser included).
    pub async fn close(self) {
        let Instance {
            client,
            group,
            forward,
            remote,
            ..
        } = self;
        match remote {
            // The client is persistent (it sends nothing when dropped): the harness ends the
            // session itself, and knows whether the Grid said yes.
            Some(remote) => {
                drop(client);
                remote::end(remote).await;
            }
            None => {
                let _ = tokio::time::timeout(RELEASE_DEADLINE, client.close()).await;
            }
        }
        if let Some(mut group) = group {
            group.kill();
        }
        drop(forward);
    }
}

/// "chrome 156.0.8078.73", from the session's capabilities.
fn product_of(client: &fantoccini::Client, flavor: &dyn Flavor) -> String {
    client
        .capabilities()
        .and_then(|c| {
            Some(format!(
                "{} {}",
                c.get("browserName")?.as_str()?,
                c.get("browserVersion")?.as_str()?
            ))
        })
        .unwrap_or_else(|| format!("{} (version unknown)", flavor.kind()))
}

fn free_port() -> Result<u16, PeerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| PeerError::failed(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| PeerError::failed(format!("finding a free port: {e}")))
}

async fn wait_for_port(
    port: u16,
    ns: Option<&crate::lab::Netns>,
    group: &mut ProcessGroup,
    log: &Path,
    name: &str,
) -> Result<(), PeerError> {
    let deadline = Instant::now() + DRIVER_START_DEADLINE;
    loop {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if crate::lab::netns::connect(ns, addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = group.try_exit_status() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(PeerError::failed(format!(
                "{name} exited ({status}) before listening: {}",
                tail.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(PeerError::Timeout(format!(
                "{name} listening on port {port} (log: {})",
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
    // "ChromeDriver 156.0.8078.73 (...)", "geckodriver 0.37.1 (...)" -> first two words.
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

struct BrowserPeer {
    id: String,
    kind: &'static str,
    product: String,
    driver: Option<String>,
    reused: bool,
    driver_log: String,
    instance: tokio::sync::Mutex<Option<Instance>>,
    control: Control,
    offset: Arc<Mutex<Option<ClockOffset>>>,
    pool: Option<Pool>,
    /// Lab peers: the signaling URL on the page's own origin (inside the namespace).
    own_signaling: Option<String>,
    /// The page's own listener; closed with the peer.
    _origin: Origin,
    /// Where harness-side events of this peer go (`kill`).
    sink: EventSink,
    /// Set by `freeze`: the browser answers nothing any more.
    frozen: std::sync::atomic::AtomicBool,
    /// `instrument = true`: the BiDi socket whose preload script wraps RTCPeerConnection.
    _instrumentation: Option<bidi::Bidi>,
}

#[async_trait]
impl Peer for BrowserPeer {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            kind: self.kind.into(),
            product: self.product.clone(),
            driver: self.driver.clone(),
            clock_error_ms: self
                .offset
                .lock()
                .ok()
                .and_then(|o| o.map(|o| o.error_ms))
                .unwrap_or(f64::NAN),
            reused_browser: Some(self.reused),
            driver_log: Some(self.driver_log.clone()),
        }
    }

    fn console(&self) -> Vec<String> {
        self.control
            .console
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError> {
        let mut cmd = serde_json::to_value(req).map_err(PeerError::failed)?;
        if let Some(url) = &self.own_signaling {
            cmd["signaling_url"] = json!(url);
        }
        cmd["cmd"] = json!("connect");
        self.control.command(cmd).await.map(|_| ())
    }

    async fn flush(&self) -> Result<(), PeerError> {
        if self.frozen.load(Ordering::Relaxed) {
            // A stopped browser hands over nothing more: no round trip to wait for.
            return Ok(());
        }
        self.control.flush().await
    }

    async fn send(&self, req: &SendRequest) -> Result<(), PeerError> {
        let mut cmd = serde_json::to_value(req).map_err(PeerError::failed)?;
        cmd["cmd"] = json!("send");
        self.control.command(cmd).await.map(|_| ())
    }

    async fn selected_pair(&self, connection: &str) -> Result<Option<(String, String)>, PeerError> {
        let v = self
            .control
            .command(json!({"cmd": "selected-pair", "connection": connection}))
            .await?;
        Ok(v["local"]
            .as_str()
            .zip(v["remote"].as_str())
            .map(|(l, r)| (l.to_string(), r.to_string())))
    }

    async fn stats(&self, connection: &str) -> Result<Vec<serde_json::Value>, PeerError> {
        let v = self
            .control
            .command(json!({"cmd": "stats", "connection": connection}))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    async fn media_counters(
        &self,
        connection: &str,
    ) -> Result<crate::peer::media::MediaCounters, PeerError> {
        let v = self
            .control
            .command(json!({"cmd": "media-counters", "connection": connection}))
            .await?;
        serde_json::from_value(v).map_err(|e| PeerError::failed(format!("media counters: {e}")))
    }

    async fn add_track(
        &self,
        connection: &str,
        kind: crate::scenario::MediaKind,
    ) -> Result<(), PeerError> {
        self.control
            .command(json!({"cmd": "add-track", "connection": connection, "kind": kind}))
            .await
            .map(|_| ())
    }

    async fn restart_ice(&self, connection: &str) -> Result<(), PeerError> {
        self.control
            .command(json!({"cmd": "restart-ice", "connection": connection}))
            .await
            .map(|_| ())
    }

    async fn close(&self, connection: &str) -> Result<(), PeerError> {
        self.control
            .command(json!({"cmd": "close", "connection": connection}))
            .await
            .map(|_| ())
    }

    async fn kill(&self) -> Result<(), PeerError> {
        // Stop reading first: the control socket's end is expected now, not a crash to report.
        self.control.stop();
        kill_instance(&self.instance, &self.id, &self.sink).await
    }

    async fn kill_driver(&self) -> Result<String, PeerError> {
        let mut instance = self.instance.lock().await;
        let Some(i) = instance.as_mut() else {
            return Err(PeerError::failed(format!(
                "{}: no browser whose driver to kill",
                self.id
            )));
        };
        i.local_group("killing the driver")?
            .kill_leader()
            .map_err(|e| PeerError::failed(format!("{}: SIGKILL to the driver: {e}", self.id)))?;
        // A session without its driver cannot be handed to the next scenario.
        i.driver_gone = true;
        Ok(i.driver_name.clone())
    }

    async fn freeze(&self) -> Result<(), PeerError> {
        freeze_instance(&self.instance, &self.id, &self.sink, &self.frozen).await
    }

    async fn shutdown(&self) {
        self.control.stop();
        let Some(instance) = self.instance.lock().await.take() else {
            return;
        };
        if self.frozen.load(Ordering::Relaxed) || instance.driver_gone {
            // A stopped browser would only run into the release deadlines; without its driver
            // the session cannot be ended or reused.
            return instance.kill();
        }
        let pool = match &self.pool {
            Some(p) if !self.control.page_gone() => p,
            _ => return instance.close().await,
        };
        // Leaving the page destroys it and every peer connection it holds.
        match tokio::time::timeout(RELEASE_DEADLINE, instance.client.goto("about:blank")).await {
            Ok(Ok(())) => {
                if let Ok(mut p) = pool.lock() {
                    p.push(instance);
                }
            }
            _ => {
                tracing::warn!("{} {}: not reusable, closing it", self.kind, self.id);
                instance.close().await;
            }
        }
    }
}

/// `Peer::kill` of a browser peer: SIGKILL to its instance's process group, a `killed` event.
async fn kill_instance(
    slot: &tokio::sync::Mutex<Option<Instance>>,
    id: &str,
    sink: &EventSink,
) -> Result<(), PeerError> {
    let mut slot = slot.lock().await;
    if let Some(i) = slot.as_mut() {
        i.local_group("SIGKILL")?;
    }
    let instance = slot.take();
    drop(slot);
    sink.emit("", EventKind::Killed);
    match instance {
        Some(i) => {
            i.kill();
            Ok(())
        }
        None => Err(PeerError::failed(format!("{id}: no browser to kill"))),
    }
}

/// `Peer::freeze` of a browser peer: SIGSTOP to its instance's process group, a `frozen` event.
async fn freeze_instance(
    slot: &tokio::sync::Mutex<Option<Instance>>,
    id: &str,
    sink: &EventSink,
    frozen: &std::sync::atomic::AtomicBool,
) -> Result<(), PeerError> {
    let mut instance = slot.lock().await;
    let Some(i) = instance.as_mut() else {
        return Err(PeerError::failed(format!("{id}: no browser to freeze")));
    };
    i.local_group("SIGSTOP")?
        .stop()
        .map_err(|e| PeerError::failed(format!("{id}: SIGSTOP: {e}")))?;
    frozen.store(true, Ordering::Relaxed);
    sink.emit("", EventKind::Frozen);
    Ok(())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// The control socket to one peer page.
struct Control {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    hello: Mutex<Option<oneshot::Receiver<Value>>>,
    next_id: AtomicU64,
    clock: crate::clock::Clock,
    gone: Arc<std::sync::atomic::AtomicBool>,
    console: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Control {
    fn start(socket: WebSocket, sink: EventSink, offset: Arc<Mutex<Option<ClockOffset>>>) -> Self {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let (hello_tx, hello_rx) = oneshot::channel();
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if ws_tx.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let clock = sink.clock();
        let reader_pending = pending.clone();
        let reader_gone = gone.clone();
        let console: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader_console = console.clone();
        let reader = tokio::spawn(async move {
            let mut hello_tx = Some(hello_tx);
            while let Some(Ok(msg)) = ws_rx.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!("unreadable page message: {text}");
                    continue;
                };
                match v["type"].as_str() {
                    Some("event") => on_event(&v, &sink, &offset),
                    Some("reply") | Some("pong") => {
                        let id = v["id"].as_u64().unwrap_or(u64::MAX);
                        let tx = reader_pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(tx) = tx {
                            let _ = tx.send(reply_value(&v));
                        }
                    }
                    Some("hello") => {
                        if let Some(tx) = hello_tx.take() {
                            let _ = tx.send(v);
                        }
                    }
                    Some("console") => {
                        if let Ok(mut c) = reader_console.lock()
                            && c.len() < 10_000
                        {
                            c.push(format!(
                                "{} {}",
                                v["level"].as_str().unwrap_or("log"),
                                v["text"].as_str().unwrap_or("")
                            ));
                        }
                    }
                    Some("page-error") => sink.emit(
                        "",
                        EventKind::Error {
                            message: format!("page: {}", v["message"]),
                        },
                    ),
                    _ => tracing::warn!("unexpected page message: {text}"),
                }
            }
            // Socket gone while in use (an intended stop aborts this task first): the browser
            // crashed, was killed, or closed the page. Say so at once instead of letting the
            // scenario wait for its deadline, and fail whatever still waits for a reply.
            reader_gone.store(true, Ordering::Relaxed);
            sink.emit(
                "",
                EventKind::Error {
                    message: "the browser page went away (browser crashed, killed, or page closed)"
                        .into(),
                },
            );
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
            gone,
            console,
            tasks: vec![writer, reader],
        }
    }

    fn page_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Sends a request and returns where its reply will arrive. The reply slot is registered
    /// before the page-gone check, so a page that dies in between cannot leave it waiting: the
    /// reader fails every registered slot when the socket ends.
    fn request(&self, mut msg: Value) -> oneshot::Receiver<Result<Value, String>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        msg["id"] = json!(id);
        let sent = self.out.send(msg.to_string()).is_ok();
        if !sent || self.page_gone() {
            let tx = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(tx) = tx {
                let _ = tx.send(Err("peer page went away".into()));
            }
        }
        rx
    }

    async fn command(&self, command: Value) -> Result<Value, PeerError> {
        let what = command["cmd"].as_str().unwrap_or("?").to_string();
        let rx = self.request(json!({"type": "command", "command": command}));
        rx.await
            .map_err(|_| PeerError::failed(format!("{what}: peer page went away")))?
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

    /// One ping round trip: the socket is ordered and the reader hands each event to the sink
    /// before it reads the next message, so once the pong is back every event the page sent
    /// before it is on the event channel.
    async fn flush(&self) -> Result<(), PeerError> {
        let rx = self.request(json!({"type": "ping"}));
        rx.await
            .map_err(|_| PeerError::failed("flush: peer page went away"))?
            .map_err(PeerError::failed)
            .map(|_| ())
    }

    /// Ping-pong a few times and estimate the page clock's offset (see [`crate::clock`]).
    async fn sync_clock(&self) -> Result<ClockOffset, PeerError> {
        let mut samples = Vec::new();
        for _ in 0..CLOCK_SYNC_PINGS {
            let sent = self.clock.now_unix_ms();
            let rx = self.request(json!({"type": "ping"}));
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

fn reply_value(v: &Value) -> Result<Value, String> {
    if v["type"] == "pong" {
        Ok(v["t"].clone())
    } else if v["ok"] == json!(true) {
        Ok(v["value"].clone())
    } else {
        Err(v["value"].as_str().unwrap_or("command failed").to_string())
    }
}

fn on_event(v: &Value, sink: &EventSink, offset: &Mutex<Option<ClockOffset>>) {
    let t = v["t"].as_f64().unwrap_or(f64::NAN);
    let conn = v["connection"].as_str().unwrap_or("");
    let off = offset.lock().ok().and_then(|o| *o);
    let unix = off.map(|o| o.to_harness(t)).unwrap_or(t);
    match serde_json::from_value::<EventKind>(v["event"].clone()) {
        Ok(kind) => sink.emit_at(unix, conn, kind),
        Err(e) => sink.emit(
            conn,
            EventKind::Error {
                message: format!("unreadable page event {}: {e}", v["event"]),
            },
        ),
    }
}
