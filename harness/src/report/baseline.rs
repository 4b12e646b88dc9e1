//! Setup-time baselines and the regression gate (`--save-baseline`, `--baseline`).
//!
//! A baseline file is JSON: `{ "tool": ..., "scenarios": { NAME: { PEER: { METRIC: { "n",
//! "median", "p95" } } } } }` with times in ms. A metric regresses when its median or its p95
//! exceeds the baseline's by more than `max_regression_pct` percent **and** by more than
//! `floor_ms` (so that a 0.2 ms phase going to 0.3 ms is not a "50% regression").

use super::MetricSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One metric's reference figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Samples.
    pub n: usize,
    /// Median, ms.
    pub median: f64,
    /// 95th percentile, ms.
    pub p95: f64,
}

/// The saved file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Tool that wrote it.
    pub tool: String,
    /// scenario → peer → metric → figures.
    pub scenarios: BTreeMap<String, BTreeMap<String, BTreeMap<String, Reference>>>,
}

impl Baseline {
    /// From the summaries of a run.
    pub fn from_summaries(s: &[MetricSummary]) -> Self {
        let mut b = Baseline {
            tool: super::TOOL.to_string(),
            ..Default::default()
        };
        for m in s {
            b.scenarios
                .entry(m.scenario.clone())
                .or_default()
                .entry(m.peer.clone())
                .or_default()
                .insert(
                    m.metric.clone(),
                    Reference {
                        n: m.summary.n,
                        median: m.summary.median,
                        p95: m.summary.p95,
                    },
                );
        }
        b
    }
}

/// One regression found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    /// Scenario name.
    pub scenario: String,
    /// Peer id.
    pub peer: String,
    /// Metric name.
    pub metric: String,
    /// `median` or `p95`.
    pub statistic: &'static str,
    /// Baseline value, ms.
    pub baseline_ms: f64,
    /// Current value, ms.
    pub current_ms: f64,
    /// Change, percent.
    pub change_pct: f64,
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: peer {}: {} {} regressed {:+.1}% ({:.1} ms -> {:.1} ms)",
            self.scenario,
            self.peer,
            self.metric,
            self.statistic,
            self.change_pct,
            self.baseline_ms,
            self.current_ms
        )
    }
}

/// Compares current summaries with a baseline. Metrics missing on either side are skipped.
pub fn compare(
    baseline: &Baseline,
    current: &[MetricSummary],
    max_regression_pct: f64,
    floor_ms: f64,
) -> Vec<Regression> {
    let mut out = Vec::new();
    for m in current {
        let Some(r) = baseline
            .scenarios
            .get(&m.scenario)
            .and_then(|p| p.get(&m.peer))
            .and_then(|x| x.get(&m.metric))
        else {
            continue;
        };
        for (statistic, base, now) in [
            ("median", r.median, m.summary.median),
            ("p95", r.p95, m.summary.p95),
        ] {
            let limit = base * (1.0 + max_regression_pct / 100.0);
            if now > limit && now - base > floor_ms {
                out.push(Regression {
                    scenario: m.scenario.clone(),
                    peer: m.peer.clone(),
                    metric: m.metric.clone(),
                    statistic,
                    baseline_ms: base,
                    current_ms: now,
                    change_pct: if base > 0.0 {
                        (now - base) / base * 100.0
                    } else {
                        f64::INFINITY
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Summary;

    fn summary(metric: &str, median: f64, p95: f64) -> MetricSummary {
        MetricSummary {
            scenario: "s".into(),
            peer: "a".into(),
            metric: metric.into(),
            summary: Summary {
                n: 20,
                min: median / 2.0,
                median,
                p95,
                max: p95 * 1.1,
            },
        }
    }

    #[test]
    fn a_baseline_from_the_same_run_passes() {
        let now = vec![
            summary("setup_ms", 400.0, 410.0),
            summary("ice_ms", 200.0, 205.0),
        ];
        let b = Baseline::from_summaries(&now);
        assert!(compare(&b, &now, 20.0, 1.0).is_empty());
    }

    #[test]
    fn a_synthetic_faster_baseline_fails_naming_scenario_and_metric() {
        let now = vec![summary("setup_ms", 400.0, 410.0)];
        let b = Baseline::from_summaries(&[summary("setup_ms", 44.0, 46.0)]);
        let r = compare(&b, &now, 20.0, 1.0);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].to_string(),
            "s: peer a: setup_ms median regressed +809.1% (44.0 ms -> 400.0 ms)"
        );
        assert_eq!(r[1].statistic, "p95");
    }

    #[test]
    fn the_threshold_is_exclusive_and_the_floor_absorbs_tiny_phases() {
        let b = Baseline::from_summaries(&[summary("x", 100.0, 100.0), summary("tiny", 0.2, 0.2)]);
        // +20% exactly is allowed; +21% is not.
        assert!(compare(&b, &[summary("x", 120.0, 120.0)], 20.0, 1.0).is_empty());
        assert_eq!(
            compare(&b, &[summary("x", 121.0, 100.0)], 20.0, 1.0).len(),
            1
        );
        // 0.2 -> 0.9 ms is +350% but under the 1 ms floor.
        assert!(compare(&b, &[summary("tiny", 0.9, 0.9)], 20.0, 1.0).is_empty());
    }

    #[test]
    fn unknown_scenarios_and_metrics_are_skipped_and_the_file_round_trips() {
        let b = Baseline::from_summaries(&[summary("setup_ms", 10.0, 10.0)]);
        let json = serde_json::to_string(&b).unwrap();
        let back: Baseline = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        assert!(compare(&b, &[summary("other_ms", 999.0, 999.0)], 20.0, 1.0).is_empty());
    }
}
