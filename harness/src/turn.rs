//! The embedded TURN server: a real coturn (`turnserver`, Debian package `coturn`) started for
//! one scenario and stopped after it.
//!
//! It listens on 127.0.0.1 on a free port (UDP and TCP), relays on 127.0.0.1, uses long-term
//! credentials generated for the run, and allows loopback peers (without
//! `--allow-loopback-peers` coturn answers 403 to CHANNEL_BIND and ICE hangs in checking). Its
//! pid file and user database live in a temporary directory of its own; its log is kept with the
//! results.

use crate::peer::{PeerError, ProcessGroup};
use crate::scenario::{EmbeddedTurnPlan, IceServerEntry, TurnTransport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(10);
const REALM: &str = "rtc-harness";

/// A running coturn.
pub struct EmbeddedTurn {
    group: ProcessGroup,
    port: u16,
    username: String,
    password: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Finds `turnserver`.
pub fn find() -> Result<PathBuf, PeerError> {
    which::which("turnserver").map_err(|_| PeerError::Missing {
        program: "turnserver".into(),
        hint: "install coturn (Debian: `apt-get install coturn`; ci/install does)".into(),
    })
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> Result<u16, PeerError> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| PeerError::failed(format!("finding a free port: {e}")))?;
        let port = tcp
            .local_addr()
            .map_err(|e| PeerError::failed(e.to_string()))?
            .port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(PeerError::failed("no port free for both UDP and TCP"))
}

impl EmbeddedTurn {
    /// Starts coturn and waits until it accepts TCP connections.
    pub async fn start(log_dir: &Path, label: &str) -> Result<Self, PeerError> {
        let program = find()?;
        let dir = tempfile::Builder::new()
            .prefix("rtc-harness-turn-")
            .tempdir()
            .map_err(|e| PeerError::failed(format!("turn dir: {e}")))?;
        std::fs::create_dir_all(log_dir)
            .map_err(|e| PeerError::failed(format!("log dir {}: {e}", log_dir.display())))?;
        let port = free_port()?;
        let username = "harness".to_string();
        let password = format!("pw{}", port.wrapping_mul(7919));
        let log = log_dir.join(format!("coturn-{label}-{port}.log"));
        let mut cmd = std::process::Command::new(&program);
        cmd.args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--lt-cred-mech",
            &format!("--user={username}:{password}"),
            &format!("--realm={REALM}"),
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            "--log-file=stdout",
            "--simple-log",
            &format!("--pidfile={}", dir.path().join("turnserver.pid").display()),
            &format!("--userdb={}", dir.path().join("turndb").display()),
        ]);
        let mut group = ProcessGroup::spawn(cmd, "turnserver", &log)
            .map_err(|e| PeerError::failed(format!("starting {}: {e}", program.display())))?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = group.try_exit_status() {
                return Err(PeerError::failed(format!(
                    "turnserver exited ({status}) before listening; log: {}",
                    tail(&log, 5)
                )));
            }
            if Instant::now() > deadline {
                return Err(PeerError::Timeout(format!(
                    "turnserver listening on port {port} (log: {})",
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            group,
            port,
            username,
            password,
            log,
            _dir: dir,
        })
    }

    /// The `RTCIceServer` the peers get: `turn:` URLs for the chosen transports, with the right
    /// credentials or the plan's wrong password.
    pub fn ice_server(&self, plan: &EmbeddedTurnPlan) -> IceServerEntry {
        let urls = plan
            .transports
            .iter()
            .map(|t| {
                let t = match t {
                    TurnTransport::Udp => "udp",
                    TurnTransport::Tcp => "tcp",
                };
                format!("turn:127.0.0.1:{}?transport={t}", self.port)
            })
            .collect();
        IceServerEntry {
            urls,
            username: Some(self.username.clone()),
            credential: Some(
                plan.wrong_credential
                    .clone()
                    .unwrap_or_else(|| self.password.clone()),
            ),
        }
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log that mention an error (wrong credentials show as
    /// "check_stun_auth: user ... credentials are incorrect", answered with 401).
    pub fn error_lines(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("error") || l.contains("401") || l.contains("unauthorized")
            })
            .map(|l| l.trim().to_string())
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// Stops coturn.
    pub fn stop(&mut self) {
        self.group.kill();
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
