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
//!   harness process is gone (a crashed run), killing what still runs in them, and the stale
//!   name files a run in a private mount namespace (ci/netns-run) leaves behind; a lab removes
//!   its own namespaces when dropped (end of scenario, failure, panic, or a Ctrl-C that drops
//!   the run). Removing a namespace removes its links, addresses, qdiscs and nftables rules.
//! - Needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (root, or root in a user namespace) and the
//!   `ip`, `tc` (iproute2) and `nft` (nftables) programs; [`available`] says why not.

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

/// Whether this process can build a lab; the error says what is missing.
pub fn available() -> Result<(), String> {
    for (program, package) in [("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")] {
        if which::which(program).is_err()
            && !std::path::Path::new(&format!("/usr/sbin/{program}")).exists()
        {
            return Err(format!(
                "`{program}` not found (Debian: `apt-get install {package}`; ci/install does)"
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
    Ok(())
}

fn program(name: &str) -> String {
    which::which(name)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("/usr/sbin/{name}"))
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
    internet: Arc<Netns>,
    // Last: the namespaces go after every handle into them is closed.
    _namespaces: Namespaces,
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
            run(&topology::Cmd {
                argv: vec!["ip".into(), "netns".into(), "add".into(), ns.clone()],
                stdin: None,
            })
            .await?;
            made.0.push(ns.clone());
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
        for h in &topo.hosts {
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
            internet: open(&topo.internet)?,
            _namespaces: made,
        })
    }

    /// Where `peer` sits.
    pub fn host(&self, peer: &str) -> Option<LabHost> {
        self.hosts.get(peer).cloned()
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
    let mut cmd = tokio::process::Command::new(program(&c.argv[0]));
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
        command: c.argv.join(" "),
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

/// Kills whatever still runs in a namespace, then deletes it (synchronous: also used from
/// `Drop`).
fn remove_namespace(ns: &str) {
    let ip = program("ip");
    if let Ok(out) = std::process::Command::new(&ip)
        .args(["netns", "pids", ns])
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    match std::process::Command::new(&ip)
        .args(["netns", "delete", ns])
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => tracing::warn!(
            "removing namespace {ns}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => tracing::warn!("removing namespace {ns}: {e}"),
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
        let gone = pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if gone || !is_namespace_mount(&entry.path()) {
            tracing::info!("removing namespace {name} left by a harness run that is gone");
            let _ = tokio::task::spawn_blocking(move || remove_namespace(&name)).await;
        }
    }
}

/// The harness pid in a lab namespace name (`rtch-<pid>-<serial>-…`).
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
