//! The network lab: every peer of a scenario with a `[network]` table runs in a network
//! namespace of its own, behind the NAT and firewall the scenario chose, on a private
//! "internet" segment where the scenario's STUN/TURN server (coturn) sits. See
//! [`topology`] for the layout and addresses.
//!
//! - Bots open their sockets inside their namespace ([`netns::NsRuntime`]); browsers' drivers
//!   are started in it with `ip netns exec`, so the browser is there too.
//! - Signaling, the peer page and WebDriver do not cross the lab: the harness serves the page
//!   and signaling on a listener opened inside the peer's namespace (its loopback), and
//!   reaches the WebDriver server through a connection opened there. So NAT, loss and rate
//!   limits act on ICE, STUN/TURN and media only, and setup times are not skewed by a lossy
//!   signaling path.
//! - Namespaces are named `rtch-<pid>-<run token>-…`. [`Lab::create`] first removes those whose
//!   harness process is gone (a crashed run), killing what still runs in them, and name files
//!   older than two hours that a run in a private mount namespace (ci/netns-run) left behind
//!   (a younger one may belong to a run still going in another mount namespace); a lab removes
//!   its own namespaces when dropped (end of scenario, failure, panic, or a Ctrl-C that drops
//!   the run). Removing a namespace removes its links, addresses, qdiscs and nftables rules.
//! - Needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (root, or root in a user namespace) and the
//!   `ip`, `tc` (iproute2), `nft` (nftables) and `sysctl` (procps) programs; [`available`]
//!   checks the programs and makes (and removes) one probe namespace, and says why not.

pub mod netns;
pub mod topology;

use crate::scenario::NetworkPlan;
pub use netns::Netns;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
pub use topology::{SERVER_IP, Topology};

const COMMAND_DEADLINE: Duration = Duration::from_secs(10);
const PREFIX: &str = "rtch";
/// Age after which a lab namespace name without a namespace behind it is removed.
const STALE_NAME_AGE: Duration = Duration::from_secs(2 * 3600);

/// Why the lab cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A program is missing or the process lacks privileges.
    #[error("the network lab is not available here: {0}")]
    Unavailable(String),
    /// A command failed.
    #[error("building the network lab: `{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        message: String,
    },
    /// Anything else.
    #[error("network lab: {0}")]
    Other(String),
}

/// Whether this process can build a lab; the error says what is missing. The answer is
/// worked out once per process.
pub fn available() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    for (program, package) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nft", "nftables"),
        ("sysctl", "procps"),
    ] {
        if which::which(program).is_err() {
            return Err(format!(
                "`{program}` not found on PATH (Debian: `apt-get install {package}`; ci/install \
                 does)"
            ));
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "needs root, or root in a user namespace (run it under ci/netns-run, which adds \
             `unshare -r` for non-root users)"
                .into(),
        );
    }
    // Root is not enough everywhere (a container without CAP_NET_ADMIN, a read-only /run):
    // make one namespace with a link in it, and remove it.
    let name = format!("{PREFIX}-{}-{:x}0-probe", std::process::id(), run_token());
    let out = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running ip: {e}"))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "`ip {}` failed: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            })
    };
    let works = out(&["netns", "add", &name])
        .and_then(|_| out(&["-n", &name, "link", "add", "probe0", "type", "bridge"]));
    remove_namespace(&name);
    works
}

/// A peer's place in a running lab.
#[derive(Debug, Clone)]
pub struct LabHost {
    /// Its namespace.
    pub ns: Arc<Netns>,
    /// Its address (bound by bots, the browser's host candidate).
    pub ip: Ipv4Addr,
}

/// A running lab; removed when dropped.
pub struct Lab {
    hosts: HashMap<String, LabHost>,
    /// Each peer's link: where its firewall acts and its UDP policy (`set_link` rebuilds the
    /// firewall from them).
    links: HashMap<String, PeerLink>,
    internet: Arc<Netns>,
    // Last: the namespaces go after every handle into them is closed.
    _namespaces: Namespaces,
}

/// The far end of a peer's link, where its firewall and loss act
/// ([`topology::link_ruleset`]), and its UDP policy.
struct PeerLink {
    ns: String,
    dev: String,
    /// The rules in force now: UDP policy and loss, percent (`set_link` changes them).
    now: std::sync::Mutex<(crate::scenario::UdpPolicy, u8)>,
}

/// Namespaces made so far; removed (in reverse order) when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            remove_namespace(ns);
        }
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

impl Lab {
    /// Builds the lab for `plan` (removing leftovers of crashed runs first).
    pub async fn create(plan: &NetworkPlan) -> Result<Lab, LabError> {
        available().map_err(LabError::Unavailable)?;
        remove_leftovers().await;
        // The pid alone is not unique: under ci/netns-run the harness is often pid 1.
        let prefix = format!(
            "{PREFIX}-{}-{:x}{}",
            std::process::id(),
            run_token(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let topo = Topology::build(&prefix, plan).map_err(LabError::Other)?;
        // From here on, a failure removes what was made.
        let mut made = Namespaces(Vec::new());
        for ns in &topo.namespaces {
            // Recorded first: if this is cancelled after `ip` made it, it is still removed.
            made.0.push(ns.clone());
            run(&topology::Cmd {
                argv: vec!["ip".into(), "netns".into(), "add".into(), ns.clone()],
                stdin: None,
            })
            .await?;
        }
        for c in &topo.commands {
            run(c).await?;
        }
        let open = |name: &str| {
            Netns::open(name)
                .map(Arc::new)
                .map_err(|e| LabError::Other(format!("opening namespace {name}: {e}")))
        };
        let mut hosts = HashMap::new();
        let mut links = HashMap::new();
        for (h, p) in topo.hosts.iter().zip(&plan.peers) {
            links.insert(
                h.peer.clone(),
                PeerLink {
                    ns: h.link_ns.clone(),
                    dev: h.link_if.clone(),
                    now: std::sync::Mutex::new((p.udp, p.loss_pct)),
                },
            );
            hosts.insert(
                h.peer.clone(),
                LabHost {
                    ns: open(&h.ns)?,
                    ip: h.ip,
                },
            );
        }
        tracing::debug!(
            "network lab {prefix} up: {} namespaces",
            topo.namespaces.len()
        );
        Ok(Lab {
            hosts,
            links,
            internet: open(&topo.internet)?,
            _namespaces: made,
        })
    }

    /// Where `peer` sits.
    pub fn host(&self, peer: &str) -> Option<LabHost> {
        self.hosts.get(peer).cloned()
    }

    /// A peer's link rules now: UDP policy and loss, percent.
    pub fn link_now(&self, peer: &str) -> Option<(crate::scenario::UdpPolicy, u8)> {
        self.links.get(peer)?.now.lock().ok().map(|n| *n)
    }

    /// Changes a peer's link while the scenario runs: its UDP policy and/or its loss (what is
    /// `None` stays as it is). The firewall table of its link, on the far end (its router's
    /// `lan` or its port on the internet segment, never in the peer's own namespace, so the
    /// peer sees no send error), is replaced in one nftables transaction.
    pub async fn set_link(
        &self,
        peer: &str,
        udp: Option<crate::scenario::UdpPolicy>,
        loss_pct: Option<u8>,
    ) -> Result<(), LabError> {
        let Some(link) = self.links.get(peer) else {
            return Err(LabError::Other(format!("peer {peer:?} is not in the lab")));
        };
        let (udp, loss) = {
            let now = link
                .now
                .lock()
                .map_err(|_| LabError::Other("lab state poisoned".into()))?;
            (udp.unwrap_or(now.0), loss_pct.unwrap_or(now.1))
        };
        run(&topology::replace_link_ruleset(
            &link.ns, &link.dev, udp, loss,
        ))
        .await?;
        if let Ok(mut now) = link.now.lock() {
            *now = (udp, loss);
        }
        Ok(())
    }

    /// The internet segment, where the STUN/TURN server runs, and its address there.
    pub fn server(&self) -> LabHost {
        LabHost {
            ns: self.internet.clone(),
            ip: SERVER_IP,
        }
    }
}

async fn run(c: &topology::Cmd) -> Result<(), LabError> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(&c.argv[0]);
    cmd.args(&c.argv[1..])
        .stdin(if c.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let fail = |message: String| LabError::Command {
        command: c.to_string(),
        message,
    };
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (&c.stdin, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("no exit within {COMMAND_DEADLINE:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(())
}

/// Runs `ip ARGS` and waits for it at most [`COMMAND_DEADLINE`] (synchronous: also used
/// from `Drop`, where nothing can be awaited).
fn ip_blocking(args: &[&str]) -> Result<String, String> {
    let mut child = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running ip: {e}"))?;
    let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`ip {}`: no exit within {COMMAND_DEADLINE:?}",
                    args.join(" ")
                ));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Kills whatever still runs in a namespace, then deletes it (synchronous: also used from
/// `Drop`; each command has a deadline).
fn remove_namespace(ns: &str) {
    if let Ok(pids) = ip_blocking(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    if let Err(e) = ip_blocking(&["netns", "delete", ns]) {
        tracing::warn!("removing namespace {ns}: {e}");
    }
}

/// A number fixed for this process, different between processes (its start time).
fn run_token() -> u32 {
    static TOKEN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0)
    })
}

/// Whether `path` is a namespace bound there (not a bare name file whose mount was private to
/// a mount namespace that is gone).
fn is_namespace_mount(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Removes lab namespaces whose harness process no longer exists, and stale name files.
async fn remove_leftovers() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = leftover_owner(&name) else {
            continue;
        };
        let path = entry.path();
        let stale = if is_namespace_mount(&path) {
            // A namespace of this mount namespace: its owner is in this PID namespace too.
            pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        } else {
            // A bare name file: its mount was private to another mount namespace, which may
            // still be running a lab. Only an old one is surely stale (no scenario lasts longer
            // than its timeout_s, at most an hour).
            std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_NAME_AGE)
        };
        if stale {
            tracing::info!("removing namespace {name} left by a harness run that is gone");
            let _ = tokio::task::spawn_blocking(move || remove_namespace(&name)).await;
        }
    }
}

/// The harness pid in a lab namespace name (`rtch-<pid>-<run token and serial, hex>-…`).
fn leftover_owner(name: &str) -> Option<u32> {
    let mut parts = name.splitn(4, '-');
    (parts.next()? == PREFIX).then_some(())?;
    let pid = parts.next()?.parse().ok()?;
    u128::from_str_radix(parts.next()?, 16).ok()?;
    parts.next()?;
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names_carry_the_owner_pid() {
        assert_eq!(leftover_owner("rtch-4242-3-inet"), Some(4242));
        assert_eq!(leftover_owner("rtch-4242-3-p1"), Some(4242));
        assert_eq!(leftover_owner("rtch-x-3-p1"), None);
        assert_eq!(leftover_owner("other-4242-3-p1"), None);
        assert_eq!(leftover_owner("rtch-4242"), None);
    }
}
