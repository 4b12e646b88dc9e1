//! Outputs: the verdict table for people, the JSON document for machines, JUnit XML for CI
//! systems, a Markdown summary, a self-contained HTML report, and setup-time baselines.

pub mod baseline;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod reporter;

use crate::engine::{RunResult, Verdict};
use crate::metrics::{self, Summary};
use serde::Serialize;
use std::collections::BTreeMap;

/// Versions of the tool, for the JSON output.
pub const TOOL: &str = concat!("rtc-harness ", env!("CARGO_PKG_VERSION"));

/// Summary of one metric of one peer of one scenario over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    /// Scenario name.
    pub scenario: String,
    /// Peer id.
    pub peer: String,
    /// Metric name (see [`crate::metrics`]).
    pub metric: String,
    /// The figures, ms.
    #[serde(flatten)]
    pub summary: Summary,
}

/// The whole `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct JsonReport<'a> {
    /// Tool name and version.
    pub tool: &'static str,
    /// The interop matrix (`rtc-harness matrix` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<&'a crate::matrix::Matrix>,
    /// Runs, in order (scenario by scenario, repetitions together).
    pub runs: &'a [RunResult],
    /// Percentiles per scenario, peer and metric (over repetitions).
    pub summaries: Vec<MetricSummary>,
    /// Counts.
    pub totals: Totals,
    /// Peak resident set size of the harness process (`VmHWM`), KiB; browsers are separate
    /// processes and not included.
    pub peak_rss_kib: Option<u64>,
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pass/fail counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Passed runs.
    pub passed: usize,
    /// Failed runs.
    pub failed: usize,
    /// Runs that could not start.
    pub setup_errors: usize,
}

/// Counts verdicts.
pub fn totals(runs: &[RunResult]) -> Totals {
    let mut t = Totals::default();
    for r in runs {
        match r.verdict {
            Verdict::Pass => t.passed += 1,
            Verdict::Fail => t.failed += 1,
            Verdict::SetupError => t.setup_errors += 1,
        }
    }
    t
}

/// min/median/p95/max per scenario, peer and metric, over the runs that passed (a failed run's
/// figures describe a failure, not the setup time to compare against).
pub fn summaries(runs: &[RunResult]) -> Vec<MetricSummary> {
    let mut values: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut add = |key: (String, String, String), v: f64| {
        if !values.contains_key(&key) {
            order.push(key.clone());
        }
        values.entry(key).or_default().push(v);
    };
    for r in runs.iter().filter(|r| r.verdict == Verdict::Pass) {
        for (peer, m) in &r.metrics {
            for name in metrics::NAMES {
                if let Some(v) = m.get(name) {
                    add((r.name.clone(), peer.clone(), name.to_string()), v);
                }
            }
        }
        // A step's own metrics (a mesh's mesh_complete_ms), under the "peer" `step N`.
        for sm in &r.step_metrics {
            add(
                (r.name.clone(), format!("step {}", sm.step), sm.name.clone()),
                sm.value_ms,
            );
        }
    }
    order
        .into_iter()
        .filter_map(|k| {
            let s = metrics::summarize(&values[&k])?;
            Some(MetricSummary {
                scenario: k.0,
                peer: k.1,
                metric: k.2.clone(),
                summary: s,
            })
        })
        .collect()
}

/// The rows of a run's metrics, in peer order: `(peer, key, metrics)`, the key being the peer
/// id, or `peer@connection` for each connection of a peer in several (a mesh; see
/// [`crate::engine::metrics_key`]).
pub fn metric_rows(r: &RunResult) -> Vec<(&crate::peer::PeerInfo, &String, &metrics::PeerMetrics)> {
    r.peers
        .iter()
        .flat_map(|p| {
            r.metrics
                .iter()
                .filter(|(k, _)| {
                    *k == &p.id
                        || k.strip_prefix(p.id.as_str())
                            .is_some_and(|t| t.starts_with('@'))
                })
                .map(move |(k, m)| (p, k, m))
        })
        .collect()
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// The verdict line and metrics table of one run.
pub fn render_run(r: &RunResult) -> String {
    let tag = match r.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::SetupError => "SETUP",
    };
    let mut out = format!(
        "{tag:<5} {}  ({}, {:.1} s)\n",
        r.name,
        r.file,
        r.wall_ms / 1000.0
    );
    if let Some(reason) = &r.reason {
        for line in reason.lines() {
            out.push_str(&format!("      {line}\n"));
        }
    }
    if let Some(l) = &r.load {
        out.push_str(&render_load(l));
    } else if !r.metrics.is_empty() {
        let rows = metric_rows(r);
        let w = rows
            .iter()
            .map(|(_, k, _)| k.len())
            .max()
            .unwrap_or(0)
            .max(10);
        out.push_str(&format!(
            "      {:<w$} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "peer", "product", "signaling", "gathering", "ice", "dtls", "setup", "first_msg"
        ));
        for (p, key, m) in rows {
            out.push_str(&format!(
                "      {:<w$} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                key,
                truncate(&p.product, 22),
                fmt_ms(m.signaling_ms),
                fmt_ms(m.gathering_ms),
                fmt_ms(m.ice_ms),
                fmt_ms(m.dtls_ms),
                fmt_ms(m.setup_ms),
                fmt_ms(m.first_message_ms),
            ));
        }
        out.push_str("      (all times ms)\n");
        for sm in &r.step_metrics {
            out.push_str(&format!(
                "      step {} {}: {:.1}\n",
                sm.step, sm.name, sm.value_ms
            ));
        }
        for (_, key, m) in metric_rows(r) {
            let parts: Vec<String> = [
                ("fault -> disconnected", m.fault_to_disconnected_ms),
                ("fault -> failed", m.fault_to_failed_ms),
                ("restore -> connected", m.restore_to_connected_ms),
            ]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name} {v:.1} ms")))
            .collect();
            if !parts.is_empty() {
                out.push_str(&format!("      fault {key}: {}\n", parts.join(", ")));
            }
        }
        for (peer, lines) in &r.explanations {
            for l in lines.iter().skip(1) {
                out.push_str(&format!("      why {peer}: {l}\n"));
            }
        }
    }
    if let Some(logs) = r.logs.as_ref().filter(|l| l.lines > 0 || l.error.is_some()) {
        out.push_str(&format!("      {}\n", logs.summary_line()));
    }
    if r.verdict == Verdict::Fail && !r.failures.is_empty() {
        for f in &r.failures {
            out.push_str(&format!("      expected vs observed: {f}\n"));
        }
        let peers: std::collections::BTreeSet<&str> =
            r.failures.iter().map(|f| f.peer.as_str()).collect();
        for p in peers {
            out.push_str(&format!("      timeline of {p}:\n"));
            out.push_str(&r.timeline.render_peer(p));
        }
    }
    out
}

/// A load run's lines: pairs connected, setup-time percentiles, the process before, at its
/// peak and after.
pub fn render_load(l: &crate::load::LoadReport) -> String {
    let mut out = format!(
        "      load: {} of {} pairs connected ({:.1}%)\n",
        l.connected, l.pairs, l.connected_pct
    );
    if let Some(p) = &l.setup_ms {
        out.push_str(&format!(
            "      pair setup_ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  (n = {})\n",
            p.p50, p.p95, p.p99, p.max, p.n
        ));
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (name, s) in [("before", l.before), ("peak", l.peak), ("after", l.after)] {
        if let Some(s) = s {
            out.push_str(&format!(
                "      process {name:<6} at {:>8.0} ms: RSS {:>7.1} MiB, {:>5} open fds ({:>5} sockets), CPU {:>5.1}%; machine memory in use {:>7.1} MiB\n",
                s.t_ms,
                mib(s.rss_bytes),
                s.open_fds,
                s.open_sockets,
                s.cpu_pct,
                mib(s.machine_used_bytes)
            ));
        }
    }
    if let Some(b) = l.rss_per_pair_bytes {
        out.push_str(&format!(
            "      RSS per connected pair: {:.1} KiB\n",
            b / 1024.0
        ));
    }
    if let Some(peak_cpu) = l.samples.iter().map(|s| s.cpu_pct).reduce(f64::max) {
        out.push_str(&format!(
            "      CPU peak {peak_cpu:.1}% of one core over {} samples\n",
            l.samples.len()
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// The percentile table for `--repeat`.
pub fn render_summaries(s: &[MetricSummary]) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<24} {:>4} {:>9} {:>9} {:>9} {:>9}\n",
        "scenario", "peer", "metric (ms)", "n", "min", "median", "p95", "max"
    );
    for m in s {
        out.push_str(&format!(
            "{:<40} {:<10} {:<24} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            truncate(&m.scenario, 40),
            m.peer,
            m.metric,
            m.summary.n,
            m.summary.min,
            m.summary.median,
            m.summary.p95,
            m.summary.max
        ));
    }
    out
}
