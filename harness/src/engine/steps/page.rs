//! The page steps, for page peers (browsers with `url`): act on the app's page as a user would,
//! or look into it. They share one module because they share their checks, their failure path
//! and their shape (a peer plus one or two keys):
//!
//! | action | keys | done when |
//! |---|---|---|
//! | `open` | `peer`, `url` | the page has loaded (WebDriver Navigate To) |
//! | `click` | `peer`, `selector` | the first element matching the CSS selector was clicked |
//! | `fill` | `peer`, `selector`, `text` | that element was cleared and `text` typed into it |
//! | `wait_for` | `peer`, `selector` or `js` | an element matching it is displayed, or the JavaScript expression is truthy (polled every 100 ms) |
//! | `eval` | `peer`, `js` | the JavaScript expression (it may use `await`) has a value: recorded on the timeline as an `eval` event (JSON) |
//!
//! `{app}` (the app's base URL) and `{run}` (a token unique to the run) are replaced in `url`,
//! `text` and `js`. When a page step fails or runs out of time, a screenshot of the page is
//! kept with the results (a `screenshot` event on the timeline names the PNG file) and the
//! error says what was missing.

use super::{BuildCx, Immediate, Kind, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::peer::{PageAction, PeerError};
use crate::scenario::ScenarioError;
use crate::timeline::{Endpoint, EventKind};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const POLL_EVERY: Duration = Duration::from_millis(100);

pub(super) const OPEN: Kind = Kind {
    action: "open",
    summary: "Page peers: load a URL in the peer's page ({app} and {run} are replaced).",
    build: build_open,
    schema: super::schema_of::<OpenEntry>,
};
pub(super) const CLICK: Kind = Kind {
    action: "click",
    summary: "Page peers: click the first element matching a CSS selector.",
    build: build_click,
    schema: super::schema_of::<ClickEntry>,
};
pub(super) const FILL: Kind = Kind {
    action: "fill",
    summary: "Page peers: clear the first element matching a CSS selector and type text into it.",
    build: build_fill,
    schema: super::schema_of::<FillEntry>,
};
pub(super) const WAIT_FOR: Kind = Kind {
    action: "wait_for",
    summary: "Page peers: wait until an element matching a CSS selector is displayed, or a JavaScript expression is truthy.",
    build: build_wait_for,
    schema: super::schema_of::<WaitForEntry>,
};
pub(super) const EVAL: Kind = Kind {
    action: "eval",
    summary: "Page peers: evaluate a JavaScript expression in the page and record its JSON value on the timeline.",
    build: build_eval,
    schema: super::schema_of::<EvalEntry>,
};

/// The keys of an `open` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OpenEntry {
    /// The page peer.
    peer: String,
    /// The URL (`{app}`: the app's base URL).
    url: String,
}

/// The keys of a `click` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClickEntry {
    /// The page peer.
    peer: String,
    /// A CSS selector.
    selector: String,
}

/// The keys of a `fill` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FillEntry {
    /// The page peer.
    peer: String,
    /// A CSS selector of an input element.
    selector: String,
    /// The text to type.
    text: String,
}

/// The keys of a `wait_for` step: exactly one of `selector` and `js`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitForEntry {
    /// The page peer.
    peer: String,
    /// A CSS selector: done once a matching element is displayed.
    selector: Option<String>,
    /// A JavaScript expression: done once it is truthy.
    js: Option<String>,
}

/// The keys of an `eval` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EvalEntry {
    /// The page peer.
    peer: String,
    /// A JavaScript expression (it may use `await`); its value must be JSON-serializable.
    js: String,
}

/// What a checked page step does.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStep {
    /// Load a URL.
    Open(String),
    /// Click an element.
    Click(String),
    /// Type into an element.
    Fill(String, String),
    /// Wait until an element is displayed.
    WaitSelector(String),
    /// Wait until an expression is truthy.
    WaitJs(String),
    /// Evaluate an expression and record its value.
    Eval(String),
}

/// A checked page step.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page peer.
    pub peer: String,
    /// What to do.
    pub step: PageStep,
}

fn page_peer(cx: &BuildCx<'_>, peer: &str) -> Result<(), ScenarioError> {
    cx.peer("peer", peer)?;
    if !cx.page(peer) {
        return Err(cx.err(
            "peer",
            format!(
                "peer {peer:?} has no app page: action {:?} is for page peers (a browser peer with `url`)",
                cx.action
            ),
        ));
    }
    cx.live("peer", peer)
}

fn not_blank(cx: &BuildCx<'_>, key: &str, v: &str) -> Result<(), ScenarioError> {
    if v.trim().is_empty() {
        return Err(cx.err(key, "must not be empty"));
    }
    Ok(())
}

fn build_open(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: OpenEntry = cx.parse(table)?;
    page_peer(cx, &e.peer)?;
    let probe = e.url.replace("{app}", "http://app").replace("{run}", "r");
    if !(probe.starts_with("http://") || probe.starts_with("https://")) {
        return Err(cx.err(
            "url",
            format!(
                "{:?} is not an http:// or https:// URL (or one starting with {{app}})",
                e.url
            ),
        ));
    }
    Ok(Arc::new(Page {
        peer: e.peer,
        step: PageStep::Open(e.url),
    }))
}

fn build_click(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: ClickEntry = cx.parse(table)?;
    page_peer(cx, &e.peer)?;
    not_blank(cx, "selector", &e.selector)?;
    Ok(Arc::new(Page {
        peer: e.peer,
        step: PageStep::Click(e.selector),
    }))
}

fn build_fill(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: FillEntry = cx.parse(table)?;
    page_peer(cx, &e.peer)?;
    not_blank(cx, "selector", &e.selector)?;
    Ok(Arc::new(Page {
        peer: e.peer,
        step: PageStep::Fill(e.selector, e.text),
    }))
}

fn build_wait_for(
    cx: &mut BuildCx<'_>,
    table: toml::Table,
) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: WaitForEntry = cx.parse(table)?;
    page_peer(cx, &e.peer)?;
    let step = match (e.selector, e.js) {
        (Some(s), None) => {
            not_blank(cx, "selector", &s)?;
            PageStep::WaitSelector(s)
        }
        (None, Some(js)) => {
            not_blank(cx, "js", &js)?;
            PageStep::WaitJs(js)
        }
        _ => {
            return Err(cx.err(
                "",
                "wait_for needs exactly one of `selector` (a CSS selector) and `js` (an expression)",
            ));
        }
    };
    Ok(Arc::new(Page { peer: e.peer, step }))
}

fn build_eval(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    let e: EvalEntry = cx.parse(table)?;
    page_peer(cx, &e.peer)?;
    not_blank(cx, "js", &e.js)?;
    Ok(Arc::new(Page {
        peer: e.peer,
        step: PageStep::Eval(e.js),
    }))
}

impl Page {
    /// Runs the step; a failure comes back as (what was missing, the peer error).
    async fn run(&self, cx: &mut RunCx<'_>) -> Result<(), (String, Option<PeerError>)> {
        let setup = cx.setup;
        let peer = setup
            .peers
            .iter()
            .find(|p| p.id == self.peer)
            .map(|p| p.peer.as_ref())
            .ok_or_else(|| (format!("no peer {}", self.peer), None))?;
        let at = cx.deadline().at;
        let limit = cx.deadline().what.clone();
        let expand = |s: &str| setup.expand(s);
        let bounded = async |fut: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<serde_json::Value, PeerError>> + Send + '_>,
        >| {
            match tokio::time::timeout_at(at, fut).await {
                Ok(r) => r.map_err(|e| (String::new(), Some(e))),
                Err(_) => Err((format!("deadline ({limit}) passed"), None)),
            }
        };
        match &self.step {
            PageStep::Open(url) => {
                let url = expand(url);
                bounded(peer.page(&PageAction::Open { url })).await?;
            }
            PageStep::Click(selector) => {
                let a = PageAction::Click {
                    selector: selector.clone(),
                };
                bounded(peer.page(&a)).await?;
            }
            PageStep::Fill(selector, text) => {
                let a = PageAction::Fill {
                    selector: selector.clone(),
                    text: expand(text),
                };
                bounded(peer.page(&a)).await?;
            }
            PageStep::WaitSelector(_) | PageStep::WaitJs(_) => {
                let (action, what) = match &self.step {
                    PageStep::WaitSelector(s) => (
                        PageAction::Visible {
                            selector: s.clone(),
                        },
                        format!("an element matching {s:?} to be displayed"),
                    ),
                    PageStep::WaitJs(js) => (
                        PageAction::Eval { js: expand(js) },
                        format!("{js:?} to be truthy"),
                    ),
                    _ => unreachable!("matched above"),
                };
                let mut last = String::from("never evaluated");
                loop {
                    match tokio::time::timeout_at(at, peer.page(&action)).await {
                        Ok(Ok(v)) if truthy(&v) => break,
                        Ok(Ok(v)) => last = format!("last value {v}"),
                        // A page between two documents, or a script error: try again.
                        Ok(Err(e)) => last = format!("last error: {e}"),
                        Err(_) => {}
                    }
                    if tokio::time::Instant::now() + POLL_EVERY >= at {
                        return Err((
                            format!("deadline ({limit}) passed while waiting for {what} ({last})"),
                            None,
                        ));
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
            PageStep::Eval(js) => {
                let a = PageAction::Eval { js: expand(js) };
                let v = bounded(peer.page(&a)).await?;
                cx.record(
                    &self.peer,
                    "",
                    EventKind::Eval {
                        value: v.to_string(),
                    },
                );
            }
        }
        Ok(())
    }
}

/// JavaScript truthiness of a JSON value.
fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[async_trait]
impl Step for Page {
    fn describe(&self) -> String {
        match &self.step {
            PageStep::Open(u) => format!("open {} {u}", self.peer),
            PageStep::Click(s) => format!("click {} {s}", self.peer),
            PageStep::Fill(s, _) => format!("fill {} {s}", self.peer),
            PageStep::WaitSelector(s) => format!("wait_for {} {s}", self.peer),
            PageStep::WaitJs(js) => format!("wait_for {} js {js}", self.peer),
            PageStep::Eval(js) => format!("eval {} {js}", self.peer),
        }
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        Vec::new()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let Err((missing, source)) = self.run(cx).await else {
            return Ok(Box::new(Immediate));
        };
        let shot = screenshot(cx, &self.peer).await;
        let what = format!(
            "{}{}",
            self.describe(),
            match &shot {
                Some(p) => format!(" (screenshot: {p})"),
                None => " (no screenshot could be taken)".into(),
            }
        );
        Err(match source {
            Some(source) => StepError::Peer { what, source },
            None => StepError::Impossible(format!("{what}: {missing}")),
        })
    }
}

/// Keeps a screenshot of the peer's page with the results; its path, and a `screenshot`
/// event on the timeline.
async fn screenshot(cx: &mut RunCx<'_>, peer: &str) -> Option<String> {
    let png = cx.peer(peer).ok()?.screenshot().await?;
    let dir = cx.setup.artifacts.clone();
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!(
        "screenshot-{peer}-{}-{:.0}.png",
        cx.setup.run_token,
        cx.now_ms()
    ));
    std::fs::write(&path, png).ok()?;
    let p = path.display().to_string();
    cx.record(peer, "", EventKind::Screenshot { path: p.clone() });
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_is_javascripts() {
        for v in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
            assert!(truthy(&v), "{v}");
        }
        for v in [json!(false), json!(0), json!(""), json!(null)] {
            assert!(!truthy(&v), "{v}");
        }
    }
}
