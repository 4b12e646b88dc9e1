//! Browsers on a remote WebDriver endpoint (`--webdriver-url`): a Selenium Grid 4 hub or
//! standalone server, or any W3C WebDriver server the harness did not start.
//!
//! The session asks for the same capabilities as a local one (Chromium's fake-media and
//! loopback-ICE flags, Firefox's prefs: [`super::chromium::ARGS`], [`super::firefox::prefs`]),
//! without the local profile directory, and with a browser binary only when one was named
//! (`--chromium PATH`, `--firefox PATH`): a Grid node knows where its browsers are.
//!
//! Sessions are ended on every exit path, once: [`super::Instance::close`] ends them; an
//! instance dropped without it (an aborted or interrupted run) ends its session on a task of
//! its own; and [`close_all`], called before the runtime goes (the end of every command,
//! Ctrl-C and SIGTERM included), ends what is left and waits for those tasks.

use super::Flavor;
use crate::peer::PeerError;
use fantoccini::error::NewSessionError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Sessions opened on remote endpoints and not yet ended: serial -> (endpoint, session id).
static OPEN: Mutex<Option<HashMap<u64, (String, String)>>> = Mutex::new(None);

/// Ends of sessions whose instance was dropped without being closed, still in flight.
static ENDING: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::new(Vec::new());

/// How long one `DELETE /session/{id}` may take.
const END_DEADLINE: Duration = Duration::from_secs(5);

/// A remote session the harness must end. [`Self::ended`] says it was; dropped without that
/// (an instance dropped without being closed: an aborted or interrupted run), it ends the
/// session itself with a `DELETE` on a task of the runtime that [`close_all`] waits for. (The
/// client is marked persistent, so fantoccini does not send a second one.)
pub(super) struct Registration {
    serial: u64,
    /// The endpoint, as given.
    pub endpoint: String,
}

impl Registration {
    /// The session was ended (`DELETE /session/{id}` answered): nothing left to do.
    pub fn ended(self) {
        // Out of the open set first: the drop that follows finds nothing to end.
        take_open(self.serial);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to carry the request: `close_all` finds it still open.
            return;
        };
        // Nothing when `ended` took it out already.
        if let Some((endpoint, id)) = take_open(self.serial) {
            let task = runtime.spawn(async move {
                end_session(endpoint, id).await;
            });
            if let Ok(mut ending) = ENDING.lock() {
                ending.retain(|t| !t.is_finished());
                ending.push(task);
            }
        }
    }
}

fn take_open(serial: u64) -> Option<(String, String)> {
    OPEN.lock().ok()?.as_mut()?.remove(&serial)
}

/// Checks an endpoint given on the command line: an `http://` URL with a host. (The harness's
/// WebDriver client speaks plain HTTP: an `https://` Grid needs a plain-HTTP address.)
pub fn parse_endpoint(url: &str) -> Result<String, String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: https is not supported (the WebDriver client speaks plain HTTP); give the \
             Grid's http:// address"
        ));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?} is not a WebDriver URL: expected http://HOST:PORT[/PATH]")
    })?;
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{url:?}: a WebDriver endpoint has no query or fragment: http://HOST:PORT[/PATH]"
        ));
    }
    if rest
        .split('/')
        .next()
        .is_some_and(|authority| authority.contains('@'))
    {
        return Err(format!(
            "{url:?}: credentials in the URL are not supported (they would show in logs and \
             reports); put the Grid behind an address that needs none"
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Opens a session for `flavor` on `endpoint`, within `deadline`. Every failure is a setup
/// error that names the endpoint and what the Grid said.
pub(super) async fn connect(
    flavor: &dyn Flavor,
    endpoint: &str,
    serial: u64,
    deadline: Duration,
) -> Result<(fantoccini::Client, Registration), PeerError> {
    let capabilities = flavor.capabilities(flavor.binary(), None);
    let browser = capabilities
        .get("browserName")
        .and_then(|b| b.as_str())
        .unwrap_or(flavor.kind())
        .to_string();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = tokio::time::timeout(
        deadline,
        // With the trailing slash, fantoccini's URL joins keep the endpoint's path
        // (`http://grid/wd/hub/` + `session`).
        fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("{endpoint}/")),
    )
    .await
    .map_err(|_| {
        PeerError::Timeout(format!(
            "a {browser} session from the WebDriver endpoint {endpoint} within {} s (a Grid \
             with no free slot queues the request: add nodes or slots, or run fewer browser \
             peers at once)",
            deadline.as_secs()
        ))
    })?
    .map_err(|e| session_error(&e, endpoint, &browser))?;
    // Ended by the harness only (Instance::close, or the registration's drop), never twice.
    let _ = client.persist().await;
    let id = client.session_id().await.ok().flatten().unwrap_or_default();
    if let Ok(mut open) = OPEN.lock() {
        open.get_or_insert_with(HashMap::new)
            .insert(serial, (endpoint.to_string(), id));
    }
    Ok((
        client,
        Registration {
            serial,
            endpoint: endpoint.to_string(),
        },
    ))
}

/// Why a remote endpoint refused a session, in words that say what to do.
fn session_error(e: &NewSessionError, endpoint: &str, browser: &str) -> PeerError {
    let text = match e {
        NewSessionError::SessionNotCreated(wd) => wd.message.to_string(),
        other => other.to_string(),
    };
    let lower = text.to_lowercase();
    let unreachable = matches!(
        e,
        NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_)
    );
    let why = if unreachable {
        format!(
            "no WebDriver endpoint answers at {endpoint} ({text}); is the Grid running and \
             reachable from here?"
        )
    } else if lower.contains("timed out") || lower.contains("timeout") {
        format!(
            "the Grid at {endpoint} had no free {browser} slot before its session request \
             timeout ({text})"
        )
    } else if lower.contains("no nodes support") || lower.contains("unable to find") {
        format!("no node of the Grid at {endpoint} offers {browser} ({text})")
    } else {
        format!("the WebDriver endpoint {endpoint} refused a {browser} session: {text}")
    };
    PeerError::failed(why)
}

/// Waits until the Grid at `endpoint` says it is ready (`GET /status`, `value.ready`, W3C
/// WebDriver §8.3), polling every 250 ms; the last answer (or error) when `deadline` passes.
pub async fn wait_ready(endpoint: &str, deadline: Duration) -> Result<(), String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let uri: hyper::Uri = format!("{endpoint}/status")
        .parse()
        .map_err(|e| format!("{endpoint}/status: {e}"))?;
    let give_up = tokio::time::Instant::now() + deadline;
    let mut last = String::from("no answer yet");
    loop {
        let ask = async {
            let response = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let status: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
            if status["value"]["ready"] == true {
                Ok(())
            } else {
                Err(format!(
                    "not ready: {}",
                    status["value"]["message"]
                        .as_str()
                        .unwrap_or("(no message)")
                ))
            }
        };
        match tokio::time::timeout_at(give_up, ask).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(format!(
                "{endpoint} was not ready within {} s ({last})",
                deadline.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The driver's version, from a session's capabilities (`chrome.chromedriverVersion`,
/// `moz:geckodriverVersion`), as "chromedriver 156.0.8078.73".
pub(super) fn driver_version(caps: &fantoccini::wd::Capabilities) -> Option<String> {
    if let Some(v) = caps
        .get("chrome")
        .and_then(|c| c.get("chromedriverVersion"))
        .and_then(|v| v.as_str())
    {
        // "156.0.8078.73 (0b1c...-refs/branch-heads/...)" -> the version alone.
        return v
            .split_whitespace()
            .next()
            .map(|v| format!("chromedriver {v}"));
    }
    caps.get("moz:geckodriverVersion")
        .and_then(|v| v.as_str())
        .map(|v| format!("geckodriver {v}"))
}

/// Ends the session of `registration` (`DELETE /session/{id}`); only an answer of 2xx takes it
/// out of the open set, so that [`close_all`] tries again otherwise.
pub(super) async fn end(registration: Registration) {
    let open = OPEN
        .lock()
        .ok()
        .and_then(|o| o.as_ref()?.get(&registration.serial).cloned());
    if let Some((endpoint, id)) = open
        && end_session(endpoint, id).await
    {
        registration.ended();
    } else {
        // Still open: dropped without `ended`, it tries once more on a task of its own.
        drop(registration);
    }
}

/// `DELETE {endpoint}/session/{id}` (W3C WebDriver §8.2), within [`END_DEADLINE`]; whether it
/// answered 2xx.
async fn end_session(endpoint: String, id: String) -> bool {
    if id.is_empty() {
        return false;
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let uri = format!("{endpoint}/session/{id}");
    let Ok(request) = hyper::Request::delete(&uri).body(http_body_util::Empty::new()) else {
        return false;
    };
    match tokio::time::timeout(END_DEADLINE, client.request(request)).await {
        Ok(Ok(r)) if r.status().is_success() => {
            tracing::info!("ended the remote WebDriver session {uri}");
            true
        }
        Ok(Ok(r)) => {
            tracing::warn!(
                "ending the remote WebDriver session {uri}: HTTP {}",
                r.status()
            );
            false
        }
        Ok(Err(e)) => {
            tracing::warn!("ending the remote WebDriver session {uri}: {e}");
            false
        }
        Err(_) => {
            tracing::warn!(
                "ending the remote WebDriver session {uri}: no answer within {END_DEADLINE:?}"
            );
            false
        }
    }
}

/// Ends every remote session not known to be ended, and waits for the ends already under way
/// (an interrupted run's dropped instances): call before the runtime goes.
pub async fn close_all() {
    let open: Vec<(String, String)> = OPEN
        .lock()
        .ok()
        .and_then(|mut o| o.take())
        .map(|o| o.into_values().collect())
        .unwrap_or_default();
    let ending: Vec<_> = ENDING
        .lock()
        .map(|mut e| e.drain(..).collect())
        .unwrap_or_default();
    let now = open
        .into_iter()
        .map(|(endpoint, id)| end_session(endpoint, id));
    futures::future::join(
        futures::future::join_all(now),
        futures::future::join_all(ending),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_http_url_with_a_host() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4444/").as_deref(),
            Ok("http://127.0.0.1:4444")
        );
        assert_eq!(
            parse_endpoint("http://grid.example:4444/wd/hub").as_deref(),
            Ok("http://grid.example:4444/wd/hub")
        );
        assert!(parse_endpoint("https://grid.example/wd/hub").is_err());
        assert!(parse_endpoint("http://grid:4444/wd?a=b").is_err());
        assert!(parse_endpoint("http://user:pass@grid:4444").is_err());
        // An `@` in the path is not a credential.
        assert!(parse_endpoint("http://grid:4444/a@b").is_ok());
        assert!(parse_endpoint("127.0.0.1:4444").is_err());
        assert!(parse_endpoint("ws://127.0.0.1:4444").is_err());
        assert!(parse_endpoint("http://").is_err());
        assert!(parse_endpoint("http:///wd/hub").is_err());
    }
}
