//! Load scenarios (`[load]`): many generated peer pairs connecting at once, what their setup
//! times look like under that load, and what the harness process costs meanwhile.
//!
//! A `[load]` table expands into `pairs` pairs of generated peers, `o001`/`a001`,
//! `o002`/`a002`, ... (offerer/answerer), each pair one connection `o001~a001`, and three
//! steps: connect every pair (started `ramp_per_s` a second), hold for `hold_ms`, close every
//! connection. The pair's setup time is the later of its two peers' `setup_ms` (offerer's
//! createOffer → that peer's connectionState `connected`, see [`crate::metrics`]).
//!
//! While it runs, the harness samples its own process from `/proc/self` (Linux `proc(5)`):
//! CPU (user + system time over the interval, in % of one core), resident memory (`VmRSS`,
//! bytes) and open file descriptors (entries of `/proc/self/fd`).

use crate::metrics::{PeerMetrics, percentile, sorted_finite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// File descriptors one bot pair holds while connected, measured here (see the README's load
/// figures): used to refuse, before anything starts, a load that the process's descriptor
/// limit cannot hold.
pub const FDS_PER_BOT_PAIR: u64 = 8;
/// Descriptors the harness holds besides its peers (its servers, logs, runtime).
pub const FDS_BASE: u64 = 256;

/// One sample of the harness process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Run time, ms (0 = the run's start, before any peer).
    pub t_ms: f64,
    /// CPU used since the previous sample, % of one core (user + system; 200 = both cores
    /// of this machine busy).
    pub cpu_pct: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (the run's own log files included: one per peer, open until the
    /// run ends).
    pub open_fds: u64,
    /// Of those, sockets (UDP, TCP, Unix): what connections hold.
    pub open_sockets: u64,
    /// The whole machine's memory in use, bytes: `MemTotal` − `MemAvailable` of
    /// `/proc/meminfo` (`proc(5)`). Browser peers' processes count here, not in `rss_bytes`.
    #[serde(default)]
    pub machine_used_bytes: u64,
}

/// What a load run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Pairs asked for.
    pub pairs: u32,
    /// Pairs whose two peers both reached connectionState `connected`.
    pub connected: u32,
    /// `connected` / `pairs`, %.
    pub connected_pct: f64,
    /// Distribution of pair setup times (the later peer's `setup_ms`) over connected pairs,
    /// ms; `None` when none connected.
    pub setup_ms: Option<Percentiles>,
    /// The process before any peer started.
    pub before: Option<ResourceSample>,
    /// The sample of highest RSS while every pair was up (between the end of the connect step
    /// and the start of the close step).
    pub peak: Option<ResourceSample>,
    /// After every connection was closed, every peer torn down, and [`SETTLE`] more.
    pub after: Option<ResourceSample>,
    /// `(peak.rss - before.rss) / connected`, bytes: what one connected pair costs.
    pub rss_per_pair_bytes: Option<f64>,
    /// Every sample, in time order.
    pub samples: Vec<ResourceSample>,
}

/// p50/p95/p99/max of a sample (percentiles as [`percentile`] defines them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of values.
    pub n: usize,
    /// 50th percentile.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Self> {
        let v = sorted_finite(values)?;
        Some(Self {
            n: v.len(),
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        })
    }
}

/// The generated peer ids of pair `i` (from 1).
pub fn pair_ids(i: u32) -> (String, String) {
    (format!("o{i:03}"), format!("a{i:03}"))
}

/// Which samples are "before", "peak" and "after": the run's marks, ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    /// The connect step ended (every pair settled).
    pub connected_ms: Option<f64>,
    /// The close step began.
    pub closing_ms: Option<f64>,
}

/// The load report from per-peer metrics and the resource samples (pure).
pub fn report(
    pairs: u32,
    metrics: &BTreeMap<String, PeerMetrics>,
    connected: impl Fn(&str) -> bool,
    samples: Vec<ResourceSample>,
    marks: Marks,
) -> LoadReport {
    let mut setups = Vec::new();
    let mut n_connected = 0;
    for i in 1..=pairs {
        let (o, a) = pair_ids(i);
        if !(connected(&o) && connected(&a)) {
            continue;
        }
        n_connected += 1;
        let s = |p: &str| metrics.get(p).and_then(|m| m.setup_ms);
        if let (Some(x), Some(y)) = (s(&o), s(&a)) {
            setups.push(x.max(y));
        }
    }
    let before = samples.first().copied();
    let after = if samples.len() > 1 {
        samples.last().copied()
    } else {
        None
    };
    // While every pair was held: from the end of the connect step to the start of closing.
    let peak = samples
        .iter()
        .filter(|s| {
            marks.connected_ms.is_none_or(|c| s.t_ms >= c)
                && marks.closing_ms.is_none_or(|c| s.t_ms <= c)
        })
        .max_by_key(|s| s.rss_bytes)
        .copied();
    let rss_per_pair_bytes = match (before, peak) {
        (Some(b), Some(p)) if n_connected > 0 => {
            Some((p.rss_bytes as f64 - b.rss_bytes as f64) / f64::from(n_connected))
        }
        _ => None,
    };
    LoadReport {
        pairs,
        connected: n_connected,
        connected_pct: if pairs == 0 {
            0.0
        } else {
            f64::from(n_connected) * 100.0 / f64::from(pairs)
        },
        setup_ms: Percentiles::of(&setups),
        before,
        peak,
        after,
        rss_per_pair_bytes,
        samples,
    }
}

/// Reads the harness's own CPU time (ticks), RSS and descriptors from `/proc/self`.
#[derive(Debug, Default)]
pub struct ProcessProbe {
    last: Option<(std::time::Instant, u64)>,
}

impl ProcessProbe {
    /// One sample at run time `t_ms`; `None` where `/proc` cannot be read (not Linux).
    pub fn sample(&mut self, t_ms: f64) -> Option<ResourceSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let ticks = cpu_ticks(&stat)?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_bytes = vm_rss_kib(&status)? * 1024;
        let (mut open_fds, mut open_sockets) = (0, 0);
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            open_fds += 1;
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("socket:") {
                open_sockets += 1;
            }
        }
        let machine_used_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_used_kib(&m))
            .unwrap_or(0)
            * 1024;
        let now = std::time::Instant::now();
        let cpu_pct = match self.last {
            Some((t, before)) => {
                let secs = now.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    (ticks.saturating_sub(before) as f64 / clock_ticks_per_s()) / secs * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        Some(ResourceSample {
            t_ms,
            cpu_pct,
            rss_bytes,
            open_fds,
            open_sockets,
            machine_used_bytes,
        })
    }
}

/// `MemTotal` − `MemAvailable` of `/proc/meminfo`, KiB.
pub fn mem_used_kib(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    field("MemTotal:")?.checked_sub(field("MemAvailable:")?)
}

/// `USER_HZ`, the unit of `/proc/<pid>/stat` times: 100 on every Linux architecture the
/// harness runs on (`proc(5)`, `sysconf(_SC_CLK_TCK)`).
fn clock_ticks_per_s() -> f64 {
    100.0
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`, `proc(5)`), in clock ticks. The
/// command name (field 2) is in parentheses and may hold spaces: fields are counted after
/// its closing parenthesis.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, so index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/<pid>/status`, KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft limit of open files to its hard limit (Linux's default soft
/// limit, 1024, holds about 100 bot pairs); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|_| {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024)
    })
}

/// The error for a load of `pairs` bot pairs that a soft descriptor limit of `limit` cannot
/// hold, if so.
pub fn fd_shortfall(pairs: u32, limit: u64) -> Option<String> {
    let need = FDS_BASE + u64::from(pairs) * FDS_PER_BOT_PAIR;
    (need > limit).then(|| {
        format!(
            "[load] pairs = {pairs} needs about {need} open file descriptors ({FDS_PER_BOT_PAIR} \
             a pair plus {FDS_BASE}), but this process may open {limit} (its hard limit): raise \
             it (`ulimit -Hn`, or LimitNOFILE in a systemd unit) or ask for fewer pairs"
        )
    })
}

/// How long the process is still sampled after the teardown, for the "after" sample: closed
/// connections release their sockets and tasks asynchronously.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How often the process is sampled by default during a load run.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (rtc harness (x)) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(200));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\trtc-harness\nVmPeak:\t  999 kB\nVmRSS:\t   37252 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(37252));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v).unwrap();
        assert_eq!(p.n, 100);
        assert!((p.p50 - 50.5).abs() < 1e-9);
        assert!((p.p95 - 95.05).abs() < 1e-9);
        assert!((p.p99 - 99.01).abs() < 1e-9);
        assert_eq!(p.max, 100.0);
        assert_eq!(Percentiles::of(&[]), None);
    }

    fn sample(t_ms: f64, rss_mb: u64) -> ResourceSample {
        ResourceSample {
            t_ms,
            cpu_pct: 0.0,
            rss_bytes: rss_mb << 20,
            open_fds: 10,
            open_sockets: 4,
            machine_used_bytes: 0,
        }
    }

    #[test]
    fn machine_memory_in_use_is_total_less_available() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        20000000 kB\n\
                       MemAvailable:   22000000 kB\n";
        assert_eq!(mem_used_kib(meminfo), Some(2_576_000));
        assert_eq!(mem_used_kib("MemTotal: 10 kB\n"), None);
    }

    #[test]
    fn a_pair_counts_when_both_peers_connected_and_its_setup_is_the_later_peer() {
        let mut metrics = BTreeMap::new();
        for (id, setup) in [("o001", 100.0), ("a001", 120.0), ("o002", 90.0)] {
            metrics.insert(
                id.to_string(),
                PeerMetrics {
                    setup_ms: Some(setup),
                    ..PeerMetrics::default()
                },
            );
        }
        let samples = vec![
            sample(0.0, 40),
            sample(500.0, 50),
            sample(1000.0, 60),
            sample(1500.0, 70),
            sample(2000.0, 41),
        ];
        let r = report(
            2,
            &metrics,
            |p| p != "a002",
            samples,
            Marks {
                connected_ms: Some(400.0),
                closing_ms: Some(1200.0),
            },
        );
        assert_eq!(r.connected, 1, "pair 2's answerer never connected");
        assert_eq!(r.connected_pct, 50.0);
        assert_eq!(r.setup_ms.unwrap().max, 120.0);
        assert_eq!(r.before.unwrap().rss_bytes, 40 << 20);
        // The peak is taken while the pairs were held, not during closing.
        assert_eq!(r.peak.unwrap().rss_bytes, 60 << 20);
        assert_eq!(r.after.unwrap().rss_bytes, 41 << 20);
        assert_eq!(r.rss_per_pair_bytes, Some((20u64 << 20) as f64));
    }

    #[test]
    fn a_small_limit_is_refused_with_what_to_do() {
        assert!(fd_shortfall(10, 1 << 20).is_none());
        let e = fd_shortfall(200, 1024).unwrap();
        assert!(e.contains("pairs = 200") && e.contains("1024") && e.contains("ulimit"));
    }
}
