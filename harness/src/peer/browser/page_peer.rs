//! Page peers: a browser that loads a page of the app under test (a peer with `url`) instead
//! of the harness's own peer page.
//!
//! The app's own script makes and drives its connections; the harness only watches and acts
//! as a user would. Before the page loads, `instrument.js` is installed with WebDriver BiDi
//! `script.addPreloadScript` (no sandbox: it must reach the page's own `RTCPeerConnection`), and
//! every observation it makes comes back as a BiDi `script.message` on the session's BiDi
//! socket, never through a request of the page (which its Content-Security-Policy could block).
//!
//! **Connections.** Each `RTCPeerConnection` the page creates becomes a connection named `pc1`,
//! `pc2`, ... in the order the harness first hears of it (the creation order within a document;
//! across documents and frames, the order their first events arrive). Stats, media counters
//! and the selected pair are read in the connection's own realm (`script.evaluate`).
//!
//! **Clock.** Observations are stamped with `performance.timeOrigin + performance.now()` in
//! the page and mapped onto the harness clock with an offset measured before the page loads
//! (eight `script.evaluate` round trips, as for the harness page's pings).
//!
//! **Page steps.** `open`, `click` and `fill` are classic WebDriver commands (fantoccini), as a
//! user's clicks and typing; `eval` and `wait_for` run JavaScript through WebDriver Execute
//! Script, which the page's CSP does not govern.
//!
//! A page peer always gets a browser instance of its own (never reused), since its session
//! carries a BiDi socket and the app's pages are not the harness's.

use super::bidi::{self, Bidi};
use super::{Flavor, Instance, PAGE_DEADLINE};
use crate::clock::{ClockOffset, SyncSample, estimate_offset};
use crate::peer::{EventSink, PageAction, Peer, PeerError, PeerInfo, PeerPlan};
use crate::timeline::EventKind;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The channel name the instrumentation posts on.
const CHANNEL: &str = "rtc-harness";
const INSTRUMENT_JS: &str = include_str!("instrument.js");
const CLOCK_SYNC_EVALS: usize = 8;

/// Which page-side connection each `pcN` is.
#[derive(Debug, Default)]
struct Names {
    /// (document realm id from the page, number in that document) -> `pcN`.
    by_page: HashMap<(String, u64), String>,
    /// `pcN` -> (BiDi realm id to evaluate in, number in that document).
    by_name: HashMap<String, (String, u64)>,
}

impl Names {
    fn name(&mut self, page_realm: &str, pc: u64, bidi_realm: &str) -> String {
        let key = (page_realm.to_string(), pc);
        if let Some(n) = self.by_page.get(&key) {
            return n.clone();
        }
        let n = format!("pc{}", self.by_page.len() + 1);
        self.by_page.insert(key, n.clone());
        self.by_name.insert(n.clone(), (bidi_realm.to_string(), pc));
        n
    }
}

/// Starts a page peer: a fresh browser instance with a BiDi socket, the instrumentation
/// installed, the clock measured, then `url` loaded.
pub(super) async fn launch(
    flavor: &dyn Flavor,
    log_dir: &Path,
    plan: &PeerPlan,
    url: &str,
    sink: EventSink,
) -> Result<Box<dyn Peer>, PeerError> {
    let instance = Instance::start_with(flavor, log_dir, &plan.id, None, true).await?;
    match open(flavor.kind(), instance, plan, url, sink).await {
        Ok(p) => Ok(Box::new(p)),
        Err((instance, e)) => {
            instance.close().await;
            Err(e)
        }
    }
}

async fn open(
    kind: &'static str,
    instance: Instance,
    plan: &PeerPlan,
    url: &str,
    sink: EventSink,
) -> Result<PagePeer, (Instance, PeerError)> {
    let names: Arc<Mutex<Names>> = Arc::default();
    let console: Arc<Mutex<Vec<String>>> = Arc::default();
    let offset: Arc<Mutex<Option<ClockOffset>>> = Arc::default();
    let on_event = {
        let names = names.clone();
        let console = console.clone();
        let offset = offset.clone();
        let sink = sink.clone();
        move |method: &str, params: &Value| match method {
            "script.message" if params["channel"] == CHANNEL => {
                on_message(params, &sink, &names, &offset);
            }
            "log.entryAdded" => {
                if let Ok(mut c) = console.lock()
                    && c.len() < 10_000
                {
                    c.push(format!(
                        "{} {}",
                        params["level"].as_str().unwrap_or("info"),
                        params["text"].as_str().unwrap_or("")
                    ));
                }
            }
            _ => {}
        }
    };
    let socket = match install(&instance, on_event, &["script.message", "log.entryAdded"]).await {
        Ok(b) => b,
        Err(e) => return Err((instance, e)),
    };
    let setup = async {
        let tree = socket.command("browsingContext.getTree", json!({})).await?;
        tree["contexts"][0]["context"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("browsingContext.getTree: no top-level context in {tree}"))
    };
    let context = match setup.await {
        Ok(c) => c,
        Err(e) => return Err((instance, PeerError::failed(format!("WebDriver BiDi: {e}")))),
    };
    let measured = match sync_clock(&socket, &context, sink.clock()).await {
        Ok(o) => o,
        Err(e) => return Err((instance, e)),
    };
    if let Ok(mut o) = offset.lock() {
        *o = Some(measured);
    }
    if let Err(e) = navigate(&socket, &context, url).await {
        return Err((instance, e));
    }
    Ok(PagePeer {
        id: plan.id.clone(),
        kind,
        product: instance.product.clone(),
        driver: instance.driver_version.clone(),
        driver_log: instance.log.display().to_string(),
        client: instance.client.clone(),
        instance: tokio::sync::Mutex::new(Some(instance)),
        socket,
        context,
        names,
        console,
        offset: measured,
        sink,
        frozen: AtomicBool::new(false),
    })
}

/// Loads `url` in the top-level context and waits for its load event (BiDi
/// `browsingContext.navigate`, `wait: "complete"`). Unlike classic Navigate To, which
/// Chromium answers with success on its own error page, a URL that cannot be loaded (refused,
/// unknown host) is an error here.
async fn navigate(socket: &Bidi, context: &str, url: &str) -> Result<(), PeerError> {
    let nav = socket.command(
        "browsingContext.navigate",
        json!({"context": context, "url": url, "wait": "complete"}),
    );
    match tokio::time::timeout(PAGE_DEADLINE, nav).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(PeerError::failed(format!("loading {url}: {e}"))),
        Err(_) => Err(PeerError::Timeout(format!(
            "loading {url} (within {PAGE_DEADLINE:?})"
        ))),
    }
}

/// Installs the instrumentation on an instance started with a BiDi socket, for a page that is
/// not a page peer's (a measurement of its cost): observations are received and dropped.
pub(super) async fn instrument_only(instance: &Instance) -> Result<Bidi, PeerError> {
    install(instance, |_, _| {}, &["script.message"]).await
}

/// Opens the session's WebDriver BiDi socket, subscribes to `events` (handed to `on_event`)
/// and installs `instrument.js` as a preload script, so that it runs before any script of every
/// page the session loads from now on.
async fn install(
    instance: &Instance,
    on_event: impl Fn(&str, &Value) + Send + 'static,
    events: &[&str],
) -> Result<Bidi, PeerError> {
    let ws_url = instance
        .client
        .capabilities()
        .and_then(|c| c.get("webSocketUrl"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            PeerError::failed(
                "the WebDriver session has no webSocketUrl: the driver does not speak WebDriver \
                 BiDi (page peers need chromedriver >= 115 or geckodriver >= 0.31)",
            )
        })?;
    let socket = Bidi::connect(&ws_url, on_event)
        .await
        .map_err(PeerError::failed)?;
    let bidi = |e: String| PeerError::failed(format!("WebDriver BiDi: {e}"));
    socket
        .command("session.subscribe", json!({ "events": events }))
        .await
        .map_err(bidi)?;
    socket
        .command(
            "script.addPreloadScript",
            json!({
                "functionDeclaration": INSTRUMENT_JS,
                "arguments": [{"type": "channel", "value": {"channel": CHANNEL}}],
            }),
        )
        .await
        .map_err(bidi)?;
    Ok(socket)
}

/// A batch of observations from the instrumentation: `[{t, realm, pc, event}, ...]` as JSON
/// text.
fn on_message(
    params: &Value,
    sink: &EventSink,
    names: &Mutex<Names>,
    offset: &Mutex<Option<ClockOffset>>,
) {
    let Some(text) = params["data"]["value"].as_str() else {
        return;
    };
    let Ok(Value::Array(batch)) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("unreadable page observations: {text}");
        return;
    };
    for v in &batch {
        on_observation(v, params, sink, names, offset);
    }
}

fn on_observation(
    v: &Value,
    params: &Value,
    sink: &EventSink,
    names: &Mutex<Names>,
    offset: &Mutex<Option<ClockOffset>>,
) {
    let page_realm = v["realm"].as_str().unwrap_or("");
    let bidi_realm = params["source"]["realm"].as_str().unwrap_or("");
    let Some(pc) = v["pc"].as_u64() else { return };
    let name = match names.lock() {
        Ok(mut n) => n.name(page_realm, pc, bidi_realm),
        Err(_) => return,
    };
    let t = v["t"].as_f64().unwrap_or(f64::NAN);
    let unix = offset
        .lock()
        .ok()
        .and_then(|o| *o)
        .map(|o| o.to_harness(t))
        .unwrap_or(t);
    match serde_json::from_value::<EventKind>(v["event"].clone()) {
        Ok(kind) => sink.emit_at(unix, &name, kind),
        Err(e) => sink.emit(
            &name,
            EventKind::Error {
                message: format!("unreadable page observation {}: {e}", v["event"]),
            },
        ),
    }
}

/// The page clock's offset: a few `script.evaluate` round trips reading
/// `performance.timeOrigin + performance.now()` (see [`crate::clock`]).
async fn sync_clock(
    socket: &Bidi,
    context: &str,
    clock: crate::clock::Clock,
) -> Result<ClockOffset, PeerError> {
    let mut samples = Vec::new();
    for _ in 0..CLOCK_SYNC_EVALS {
        let sent = clock.now_unix_ms();
        let r = socket
            .command(
                "script.evaluate",
                json!({
                    "expression": "performance.timeOrigin + performance.now()",
                    "target": {"context": context},
                    "awaitPromise": false,
                }),
            )
            .await
            .map_err(|e| PeerError::failed(format!("clock sync: {e}")))?;
        let received = clock.now_unix_ms();
        if let Some(remote_ms) = r["result"]["value"].as_f64() {
            samples.push(SyncSample {
                sent_ms: sent,
                remote_ms,
                received_ms: received,
            });
        }
    }
    estimate_offset(&samples).ok_or_else(|| PeerError::failed("clock sync: no usable sample"))
}

struct PagePeer {
    id: String,
    kind: &'static str,
    product: String,
    driver: Option<String>,
    driver_log: String,
    client: fantoccini::Client,
    instance: tokio::sync::Mutex<Option<Instance>>,
    socket: Bidi,
    /// The top-level browsing context.
    context: String,
    names: Arc<Mutex<Names>>,
    console: Arc<Mutex<Vec<String>>>,
    offset: ClockOffset,
    sink: EventSink,
    frozen: AtomicBool,
}

impl PagePeer {
    /// Calls `__rtcHarness.<method>(n)` in the realm of connection `connection`; its result is
    /// JSON text.
    async fn ask(&self, connection: &str, method: &str) -> Result<Value, PeerError> {
        let (realm, pc) = self
            .names
            .lock()
            .ok()
            .and_then(|n| n.by_name.get(connection).cloned())
            .ok_or_else(|| {
                PeerError::failed(format!(
                    "{}: the page has no connection {connection}",
                    self.id
                ))
            })?;
        let r = self
            .socket
            .command(
                "script.evaluate",
                json!({
                    "expression": format!("window.__rtcHarness.{method}({pc})"),
                    "target": {"realm": realm},
                    "awaitPromise": true,
                }),
            )
            .await
            .map_err(|e| {
                PeerError::failed(format!("{}: {method} of {connection}: {e}", self.id))
            })?;
        if r["type"] == "exception" {
            return Err(PeerError::failed(format!(
                "{}: {method} of {connection}: {}",
                self.id, r["exceptionDetails"]["text"]
            )));
        }
        let text = r["result"]["value"].as_str().unwrap_or("null");
        serde_json::from_str(text)
            .map_err(|e| PeerError::failed(format!("{}: {method}: {e}", self.id)))
    }

    /// The first element matching a CSS selector.
    async fn element(&self, selector: &str) -> Result<fantoccini::elements::Element, PeerError> {
        self.client
            .find(fantoccini::Locator::Css(selector))
            .await
            .map_err(|e| no_element(selector, e))
    }

    fn not_driven(&self, what: &str) -> PeerError {
        PeerError::failed(format!(
            "{}: {what}: a page peer's connections are the app's (use page steps)",
            self.id
        ))
    }
}

#[async_trait]
impl Peer for PagePeer {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            kind: self.kind.into(),
            product: self.product.clone(),
            driver: self.driver.clone(),
            clock_error_ms: self.offset.error_ms,
            reused_browser: Some(false),
            driver_log: Some(self.driver_log.clone()),
        }
    }

    fn console(&self) -> Vec<String> {
        self.console.lock().map(|c| c.clone()).unwrap_or_default()
    }

    async fn connect(&self, _req: &crate::peer::ConnectRequest) -> Result<(), PeerError> {
        Err(self.not_driven("connect"))
    }

    async fn send(&self, _req: &crate::peer::SendRequest) -> Result<(), PeerError> {
        Err(self.not_driven("send"))
    }

    async fn selected_pair(&self, connection: &str) -> Result<Option<(String, String)>, PeerError> {
        let v = self.ask(connection, "selectedPair").await?;
        Ok(v["local"]
            .as_str()
            .zip(v["remote"].as_str())
            .map(|(l, r)| (l.to_string(), r.to_string())))
    }

    async fn stats(&self, connection: &str) -> Result<Vec<Value>, PeerError> {
        Ok(self
            .ask(connection, "stats")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn media_counters(
        &self,
        connection: &str,
    ) -> Result<crate::peer::media::MediaCounters, PeerError> {
        let v = self.ask(connection, "media").await?;
        serde_json::from_value(v).map_err(|e| PeerError::failed(format!("media counters: {e}")))
    }

    async fn add_track(
        &self,
        _connection: &str,
        _kind: crate::scenario::MediaKind,
    ) -> Result<(), PeerError> {
        Err(self.not_driven("add_track"))
    }

    async fn restart_ice(&self, _connection: &str) -> Result<(), PeerError> {
        Err(self.not_driven("restart_ice"))
    }

    async fn close(&self, _connection: &str) -> Result<(), PeerError> {
        Err(self.not_driven("close"))
    }

    async fn page(&self, action: &PageAction) -> Result<Value, PeerError> {
        let failed = |e: fantoccini::error::CmdError| PeerError::failed(format!("{e}"));
        match action {
            PageAction::Open { url } => {
                navigate(&self.socket, &self.context, url).await?;
                Ok(Value::Null)
            }
            PageAction::Click { selector } => {
                self.element(selector)
                    .await?
                    .click()
                    .await
                    .map_err(failed)?;
                Ok(Value::Null)
            }
            PageAction::Fill { selector, text } => {
                let el = self.element(selector).await?;
                el.clear().await.map_err(failed)?;
                el.send_keys(text).await.map_err(failed)?;
                Ok(Value::Null)
            }
            PageAction::Visible { selector } => {
                let all = self
                    .client
                    .find_all(fantoccini::Locator::Css(selector))
                    .await
                    .map_err(failed)?;
                for el in all {
                    if el.is_displayed().await.unwrap_or(false) {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }
            PageAction::Eval { js } => {
                let script = format!(
                    "return (async () => {{ const v = await ({js}\n); return v === undefined ? null : v; }})();"
                );
                self.client
                    .execute(&script, Vec::new())
                    .await
                    .map_err(|e| PeerError::failed(format!("evaluating {js:?}: {e}")))
            }
        }
    }

    async fn screenshot(&self) -> Option<Vec<u8>> {
        if self.frozen.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::timeout(bidi::COMMAND_DEADLINE, self.client.screenshot())
            .await
            .ok()?
            .ok()
    }

    async fn flush(&self) -> Result<(), PeerError> {
        if self.frozen.load(Ordering::Relaxed) || self.socket.gone() {
            return Ok(());
        }
        // The page hands over what it has queued, then one round trip on the ordered BiDi
        // socket: observations posted before the answer are in.
        self.socket
            .command(
                "script.evaluate",
                json!({
                    "expression": "window.__rtcHarness ? window.__rtcHarness.flush() : 0",
                    "target": {"context": self.context},
                    "awaitPromise": false,
                }),
            )
            .await
            .map(|_| ())
            .map_err(PeerError::failed)
    }

    async fn kill(&self) -> Result<(), PeerError> {
        self.socket.stop();
        super::kill_instance(&self.instance, &self.id, &self.sink).await
    }

    async fn freeze(&self) -> Result<(), PeerError> {
        super::freeze_instance(&self.instance, &self.id, &self.sink, &self.frozen).await
    }

    async fn shutdown(&self) {
        self.socket.stop();
        let Some(instance) = self.instance.lock().await.take() else {
            return;
        };
        if self.frozen.load(Ordering::Relaxed) {
            return instance.kill();
        }
        instance.close().await;
    }
}

fn no_element(selector: &str, e: fantoccini::error::CmdError) -> PeerError {
    if let fantoccini::error::CmdError::Standard(w) = &e
        && w.error == fantoccini::error::ErrorStatus::NoSuchElement
    {
        return PeerError::failed(format!("no element matches {selector:?}"));
    }
    PeerError::failed(format!("finding {selector:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_named_in_the_order_they_are_first_heard_of() {
        let mut n = Names::default();
        assert_eq!(n.name("docA", 1, "r1"), "pc1");
        assert_eq!(n.name("docA", 2, "r1"), "pc2");
        assert_eq!(n.name("docA", 1, "r1"), "pc1");
        // A new document (after a navigation) numbers from 1 again; the harness does not.
        assert_eq!(n.name("docB", 1, "r2"), "pc3");
        assert_eq!(n.by_name["pc3"], ("r2".to_string(), 1));
    }
}
