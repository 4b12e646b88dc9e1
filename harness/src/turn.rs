//! The embedded TURN server: a real coturn (`turnserver`, Debian package `coturn`) started for
//! one scenario and stopped after it.
//!
//! It listens on 127.0.0.1 on a free port (UDP and TCP), relays on 127.0.0.1, uses long-term
//! credentials generated for the run, and allows loopback peers (without
//! `--allow-loopback-peers` coturn answers 403 to CHANNEL_BIND and ICE hangs in checking). Its
//! pid file and user database live in a temporary directory of its own; its log is kept with the
//! results.
//!
//! In the network lab it runs inside the lab's internet-segment namespace instead, on the
//! standard port 3478 (RFC 8489 §18.6) of [`crate::lab::SERVER_IP`], relaying from that address,
//! and refusing to relay to the private ranges behind the NATs (`--denied-peer-ip`): without
//! that, a relay towards a private host candidate fails with "Network is unreachable" and
//! coturn drops the whole allocation. It serves STUN Binding requests on the same port.

use crate::peer::{PeerError, ProcessGroup};
use crate::scenario::{EmbeddedTurnPlan, IceServerEntry, TurnTransport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(10);
const REALM: &str = "rtc-harness";

/// A running coturn.
pub struct EmbeddedTurn {
    /// The running process; replaced by [`EmbeddedTurn::restart`].
    group: std::sync::Mutex<ProcessGroup>,
    /// How to start it again: program, arguments, the lab namespace it runs in.
    program: PathBuf,
    args: Vec<String>,
    ns: Option<std::sync::Arc<crate::lab::Netns>>,
    host: std::net::IpAddr,
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
    /// Starts coturn and waits until it accepts TCP connections; inside the lab's internet
    /// segment when `lab` is given.
    pub async fn start(
        log_dir: &Path,
        label: &str,
        lab: Option<&crate::lab::LabHost>,
    ) -> Result<Self, PeerError> {
        let program = find()?;
        let dir = tempfile::Builder::new()
            .prefix("rtc-harness-turn-")
            .tempdir()
            .map_err(|e| PeerError::failed(format!("turn dir: {e}")))?;
        std::fs::create_dir_all(log_dir)
            .map_err(|e| PeerError::failed(format!("log dir {}: {e}", log_dir.display())))?;
        let (host, port) = match lab {
            Some(h) => (std::net::IpAddr::V4(h.ip), 3478),
            None => (std::net::IpAddr::from([127, 0, 0, 1]), free_port()?),
        };
        let username = "harness".to_string();
        let password = format!("pw{}", port.wrapping_mul(7919));
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = log_dir.join(format!("coturn-{label}-{serial}.log"));
        let mut args: Vec<String> = [
            "-n",
            &format!("--listening-ip={host}"),
            &format!("--relay-ip={host}"),
            &format!("--listening-port={port}"),
            "--lt-cred-mech",
            &format!("--user={username}:{password}"),
            &format!("--realm={REALM}"),
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
            &format!("--pidfile={}", dir.path().join("turnserver.pid").display()),
            &format!("--userdb={}", dir.path().join("turndb").display()),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if lab.is_some() {
            let (first, last) = crate::lab::topology::PRIVATE_RANGE;
            args.push(format!("--denied-peer-ip={first}-{last}"));
        } else {
            args.push("--allow-loopback-peers".into());
        }
        let ns = lab.map(|h| h.ns.clone());
        let group =
            spawn_listening(&program, &args, ns.as_deref(), host, port, &log, false).await?;
        Ok(Self {
            group: std::sync::Mutex::new(group),
            program,
            args,
            ns,
            host,
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
                format!("turn:{}:{}?transport={t}", self.host, self.port)
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

    /// The `RTCIceServer` of its STUN service.
    pub fn stun_server(&self) -> IceServerEntry {
        IceServerEntry {
            urls: vec![format!("stun:{}:{}", self.host, self.port)],
            username: None,
            credential: None,
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
        if let Ok(mut g) = self.group.lock() {
            g.kill();
        }
    }

    /// Kills coturn (every allocation, permission and channel binding is lost, as in a crash)
    /// and, after `down`, starts it again on the same address, port and credentials; returns
    /// once it listens. Its output goes on in the same log.
    pub async fn restart(&self, down: Duration) -> Result<(), PeerError> {
        if let Ok(mut g) = self.group.lock() {
            g.kill();
        }
        tokio::time::sleep(down).await;
        let group = spawn_listening(
            &self.program,
            &self.args,
            self.ns.as_deref(),
            self.host,
            self.port,
            &self.log,
            true,
        )
        .await?;
        if let Ok(mut g) = self.group.lock() {
            *g = group;
        }
        Ok(())
    }
}

/// Starts coturn with `args` (in `ns` if given) and waits until it accepts TCP connections on
/// `host:port`; `append`: add to `log` instead of starting it afresh.
async fn spawn_listening(
    program: &Path,
    args: &[String],
    ns: Option<&crate::lab::Netns>,
    host: std::net::IpAddr,
    port: u16,
    log: &Path,
    append: bool,
) -> Result<ProcessGroup, PeerError> {
    let mut cmd = match ns {
        Some(ns) => ns.command(program),
        None => std::process::Command::new(program),
    };
    cmd.args(args);
    let mut group = ProcessGroup::spawn_logging(cmd, "turnserver", log, append)
        .map_err(|e| PeerError::failed(format!("starting {}: {e}", program.display())))?;
    let deadline = Instant::now() + START_DEADLINE;
    let addr = std::net::SocketAddr::new(host, port);
    loop {
        if crate::lab::netns::connect(ns, addr).await.is_ok() {
            return Ok(group);
        }
        if let Some(status) = group.try_exit_status() {
            return Err(PeerError::failed(format!(
                "turnserver exited ({status}) before listening; log: {}",
                tail(log, 5)
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
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
