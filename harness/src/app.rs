//! The web app under test (a scenario's `[app]` table): started for each run, or reached at a
//! URL the user gives.
//!
//! A started app runs in its own process group inside the run's network namespace (the
//! harness's own: `[app]` and the network lab do not combine yet), in the `dir` the scenario
//! names, with `{port}` in its command, environment and URLs replaced by a free TCP port the
//! harness picked. Its stdout and stderr go to a log file kept with the results. It counts as
//! ready once an HTTP GET of `ready` gets any response (any status) within `ready_timeout_ms`;
//! an app that exits before that, or never answers, is a setup error quoting the last lines of
//! its log. Its process group is killed when the run ends, whatever way it ends (the
//! [`ProcessGroup`] is killed on drop).

use crate::peer::ProcessGroup;
use crate::scenario::AppPlan;
use http_body_util::Empty;
use hyper::body::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How many log lines an error quotes.
pub const LOG_TAIL_LINES: usize = 20;
const POLL_EVERY: Duration = Duration::from_millis(100);
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a killed app's port may stay taken before a restart gives up.
const PORT_FREE_DEADLINE: Duration = Duration::from_secs(5);

/// Errors starting the app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The program could not be started at all.
    #[error("app: cannot start {program:?} in {dir}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Its working directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited before answering `ready`.
    #[error(
        "app: {program:?} exited ({status}) before {ready} answered; last lines of {log}:\n{tail}"
    )]
    Exited {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The URL polled.
        ready: String,
        /// Its log file.
        log: String,
        /// The last lines of it.
        tail: String,
    },
    /// It did not answer `ready` in time.
    #[error(
        "app: {ready} did not answer within {timeout_ms} ms (last attempt: {last}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// The URL polled.
        ready: String,
        /// The deadline, ms.
        timeout_ms: u128,
        /// What the last attempt got.
        last: String,
        /// Its log file.
        log: String,
        /// The last lines of it.
        tail: String,
    },
    /// Anything else (a free port, the log file).
    #[error("app: {0}")]
    Other(String),
}

/// The app of one run.
#[derive(Debug)]
pub struct App {
    base: String,
    log: Option<PathBuf>,
    process: std::sync::Mutex<Option<ProcessGroup>>,
    /// What started it and on which port, to start it again (`restart_app`).
    started: Option<(AppPlan, u16)>,
}

impl App {
    /// Starts the app (or, without `command`, only notes its URL) and waits until it is ready.
    pub async fn start(plan: &AppPlan, log_dir: &Path, label: &str) -> Result<App, AppError> {
        if plan.command.is_none() {
            return Ok(App {
                base: plan.url.clone(),
                log: None,
                process: std::sync::Mutex::new(None),
                started: None,
            });
        }
        let port = free_port().map_err(|e| AppError::Other(format!("a free port: {e}")))?;
        std::fs::create_dir_all(log_dir)
            .map_err(|e| AppError::Other(format!("log dir {}: {e}", log_dir.display())))?;
        let log = log_dir.join(format!("app-{label}-{port}.log"));
        let process = launch(plan, port, &log, false).await?;
        Ok(App {
            base: plan.url.replace("{port}", &port.to_string()),
            log: Some(log),
            process: std::sync::Mutex::new(Some(process)),
            started: Some((plan.clone(), port)),
        })
    }

    /// Kills the started app's process group (SIGKILL: a crash, not a shutdown), waits
    /// `down`, and starts it again on the same port, adding to the same log; returns once it
    /// answers `ready` again. While it is down, [`App::exited`] says nothing: the restart is
    /// the scenario's doing.
    pub async fn restart(&self, down: Duration) -> Result<(), AppError> {
        let (Some((plan, port)), Some(log)) = (&self.started, &self.log) else {
            return Err(AppError::Other(
                "the app was not started by the harness (no `command`): it cannot be restarted"
                    .into(),
            ));
        };
        let old = self.process.lock().ok().and_then(|mut p| p.take());
        if let Some(mut old) = old {
            old.kill();
        }
        // SIGKILL reached the whole group, but only the leader was waited for: a server under
        // a wrapper (`npm start`, `sh -c`) may hold the port a moment longer. Wait until
        // nothing accepts on it, so that the new one does not fail with EADDRINUSE.
        let free_by = Instant::now() + PORT_FREE_DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_ok()
        {
            if Instant::now() >= free_by {
                return Err(AppError::Other(format!(
                    "port {port} still accepts connections {PORT_FREE_DEADLINE:?} after the app \
                     was killed"
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        tokio::time::sleep(down).await;
        let new = launch(plan, *port, log, true).await?;
        if let Ok(mut p) = self.process.lock() {
            *p = Some(new);
        }
        Ok(())
    }

    /// The base URL (what `{app}` stands for), without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The app's log file, when the harness started it.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Whether a started app has exited (and how); `None` while it runs, or for an app
    /// elsewhere.
    pub fn exited(&self) -> Option<String> {
        self.process
            .lock()
            .ok()?
            .as_mut()
            .and_then(ProcessGroup::try_exit_status)
            .map(|s| s.to_string())
    }

    /// The last lines of its log (empty for an app elsewhere).
    pub fn tail(&self) -> String {
        self.log
            .as_deref()
            .map(|l| tail(l, LOG_TAIL_LINES))
            .unwrap_or_default()
    }

    /// Kills its process group (also done on drop).
    pub fn stop(&self) {
        if let Ok(mut p) = self.process.lock()
            && let Some(p) = p.as_mut()
        {
            p.kill();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the app's command on `port` (its `{port}` filled in), its output to `log`, and waits
/// until `ready` answers.
async fn launch(
    plan: &AppPlan,
    port: u16,
    log: &Path,
    append: bool,
) -> Result<ProcessGroup, AppError> {
    let Some(command) = &plan.command else {
        return Err(AppError::Other("no command".into()));
    };
    let fill = |s: &str| s.replace("{port}", &port.to_string());
    let mut cmd = std::process::Command::new(fill(&command[0]));
    cmd.args(command[1..].iter().map(|a| fill(a)))
        .current_dir(&plan.dir);
    for (k, v) in &plan.env {
        cmd.env(k, fill(v));
    }
    let program = command[0].clone();
    let mut process =
        ProcessGroup::spawn_logging(cmd, &program, log, append).map_err(|source| {
            AppError::Spawn {
                program: program.clone(),
                dir: plan.dir.display().to_string(),
                source,
            }
        })?;
    let ready = fill(&plan.ready);
    let deadline = Instant::now() + plan.ready_timeout;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = ready
        .parse()
        .map_err(|e| AppError::Other(format!("ready URL {ready:?}: {e}")))?;
    let mut last;
    loop {
        if let Some(status) = process.try_exit_status() {
            return Err(AppError::Exited {
                program,
                status: status.to_string(),
                ready,
                log: log.display().to_string(),
                tail: tail(log, LOG_TAIL_LINES),
            });
        }
        match tokio::time::timeout(REQUEST_DEADLINE, client.get(uri.clone())).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => last = error_chain(&e),
            Err(_) => last = format!("no response within {REQUEST_DEADLINE:?}"),
        }
        if Instant::now() + POLL_EVERY >= deadline {
            return Err(AppError::NotReady {
                ready,
                timeout_ms: plan.ready_timeout.as_millis(),
                last,
                log: log.display().to_string(),
                tail: tail(log, LOG_TAIL_LINES),
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(process)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The last `n` lines of a file (lossy UTF-8), or a note that it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            if lines.is_empty() {
                "(the log is empty)".into()
            } else {
                lines[from..].join("\n")
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `{token}` of a run: an HS256 JWT minted from the scenario's secret and claims (`exp` one hour
/// from now unless given), or the token the app's login endpoint answers with.
pub async fn token(
    plan: &crate::scenario::TokenPlan,
    expand: impl Fn(&str) -> String,
) -> Result<String, AppError> {
    use crate::scenario::TokenPlan;
    match plan {
        TokenPlan::Mint { secret, claims } => {
            let mut claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
                &expand(&serde_json::Value::Object(claims.clone()).to_string()),
            )
            .map_err(|e| AppError::Other(format!("token claims: {e}")))?;
            if !claims.contains_key("exp") {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                claims.insert("exp".into(), serde_json::json!(now + 3600));
            }
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())
                .map_err(|e| AppError::Other(format!("token secret: {e}")))?;
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &key,
            )
            .map_err(|e| AppError::Other(format!("minting the token: {e}")))
        }
        TokenPlan::Login { url, body, field } => {
            let url = expand(url);
            let body = expand(&body.to_string());
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<Bytes>>();
            let req = hyper::Request::post(&url)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(body)))
                .map_err(|e| AppError::Other(format!("login request to {url}: {e}")))?;
            let res = tokio::time::timeout(REQUEST_DEADLINE, client.request(req))
                .await
                .map_err(|_| {
                    AppError::Other(format!(
                        "login at {url}: no answer within {REQUEST_DEADLINE:?}"
                    ))
                })?
                .map_err(|e| AppError::Other(format!("login at {url}: {}", error_chain(&e))))?;
            let status = res.status();
            let bytes = http_body_util::BodyExt::collect(res.into_body())
                .await
                .map_err(|e| AppError::Other(format!("login at {url}: {e}")))?
                .to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                AppError::Other(format!(
                    "login at {url}: HTTP {status}, not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            v[field.as_str()]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    AppError::Other(format!(
                        "login at {url}: HTTP {status}, no string field {field:?} in {v}"
                    ))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        assert_eq!(tail(&p, 10), "a\nb\nc");
        std::fs::write(&p, "").unwrap();
        assert_eq!(tail(&p, 2), "(the log is empty)");
        assert!(tail(&dir.path().join("none"), 2).starts_with("(cannot read"));
    }
}
