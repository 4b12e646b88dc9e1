//! Child processes owned by the harness: each runs in its own process group, and the whole
//! group is killed when the owner is dropped (success, failure, timeout, panic, or a Ctrl-C
//! that drops the run). Killing only chromedriver would leave Chromium running, because the
//! browser tree does not die with its driver; killing the group takes the browser with it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A spawned process and its process group.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    name: String,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group, stdout and stderr to `log`.
    pub fn spawn(cmd: Command, name: &str, log: &Path) -> std::io::Result<Self> {
        Self::spawn_logging(cmd, name, log, false)
    }

    /// [`ProcessGroup::spawn`]; with `append`, adding to `log` instead of starting it afresh.
    pub fn spawn_logging(
        mut cmd: Command,
        name: &str,
        log: &Path,
        append: bool,
    ) -> std::io::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn()?;
        Ok(Self {
            child,
            name: name.to_string(),
        })
    }

    /// Whether the leader has exited (and its status).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the whole group (SIGSTOP): its processes hang until killed. [`ProcessGroup::kill`]
    /// still ends them (SIGKILL acts on stopped processes).
    pub fn stop(&self) -> nix::Result<()> {
        killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGSTOP)
    }

    /// SIGKILL to the leader alone (the rest of the group goes on, as after a crash of the
    /// leader); [`ProcessGroup::kill`] still ends the rest, since they keep the group id.
    pub fn kill_leader(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        let _ = self.child.wait();
        Ok(())
    }

    /// Kills the whole group (SIGKILL) and reaps the leader.
    pub fn kill(&mut self) {
        let pgid = Pid::from_raw(self.child.id() as i32);
        if let Err(e) = killpg(pgid, Signal::SIGKILL)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!("killing process group of {} ({pgid}): {e}", self.name);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // The grandchild outlives its parent shell unless the group is killed.
        cmd.arg("-c")
            .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()));
        let group = ProcessGroup::spawn(cmd, "sh", &dir.path().join("log")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let grandchild: i32 = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile)
                && let Ok(p) = s.trim().parse()
            {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        drop(group);
        // Signal 0 probes for existence; the reaped-or-gone grandchild must not be alive.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let alive = nix::sys::signal::kill(Pid::from_raw(grandchild), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ");
            if !alive {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
