//! The verdict of a run, from what it observed (pure): every expectation checked, the first
//! failure as the reason, and a must-fail scenario's expected failure turned into a pass.

use super::{StatsSample, Verdict};
use crate::metrics::PeerMetrics;
use crate::peer::media::MediaCounters;
use crate::scenario::Plan;
use crate::timeline::Timeline;
use crate::verdict::{self, Failure};
use std::collections::BTreeMap;

/// What a run observed, as the judge sees it.
pub struct Observed<'a> {
    /// The failed step's error text, if a step failed.
    pub step_error: Option<String>,
    /// Every event that happened while the steps ran.
    pub timeline: &'a Timeline,
    /// Metrics by peer id.
    pub metrics: &'a BTreeMap<String, PeerMetrics>,
    /// Media received by peer id.
    pub media: &'a BTreeMap<String, MediaCounters>,
    /// Every stats sample.
    pub stats: &'a [StatsSample],
    /// A load run's report.
    pub load: Option<&'a crate::load::LoadReport>,
}

/// The judge's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Pass or fail.
    pub verdict: Verdict,
    /// The first failure (or, for an expected failure, what it failed with).
    pub reason: Option<String>,
    /// Every unmet expectation.
    pub failures: Vec<Failure>,
}

/// A load run's own bounds: the share of pairs connected, the p95 of their setup times.
fn load_failures(want: &crate::scenario::LoadPlan, got: &crate::load::LoadReport) -> Vec<Failure> {
    let mut out = Vec::new();
    if got.connected_pct < want.min_connected_pct {
        out.push(Failure {
            peer: "load".into(),
            key: "min_connected_pct".into(),
            expected: format!(
                "at least {}% of {} pairs connected",
                want.min_connected_pct, want.pairs
            ),
            observed: format!("{} connected ({:.1}%)", got.connected, got.connected_pct),
        });
    }
    if let Some(max) = want.setup_ms_p95_max {
        match got.setup_ms {
            Some(p) if p.p95 <= max => {}
            Some(p) => out.push(Failure {
                peer: "load".into(),
                key: "setup_ms_p95_max".into(),
                expected: format!("p95 setup_ms at most {max} ms"),
                observed: format!("p95 {:.1} ms over {} pairs", p.p95, p.n),
            }),
            None => out.push(Failure {
                peer: "load".into(),
                key: "setup_ms_p95_max".into(),
                expected: format!("p95 setup_ms at most {max} ms"),
                observed: "no pair connected".into(),
            }),
        }
    }
    out
}

/// Checks every expectation of `plan` against what was observed, then applies the plan's
/// `expected_failure`: a run that fails with a diagnostic containing it passes, any other
/// outcome fails and says why.
pub fn judge(plan: &Plan, seen: &Observed<'_>) -> Judgement {
    let mut failures = Vec::new();
    for exp in &plan.expectations {
        let key = match &exp.connection {
            Some(c) => super::metrics_key(plan, &exp.peer, c),
            None => exp.peer.clone(),
        };
        let mut m = seen.metrics.get(&key).cloned().unwrap_or_default();
        let page = plan.peers.iter().any(|p| p.id == exp.peer && p.is_page());
        let mut exp = exp.clone();
        if page {
            let made = seen.timeline.connections_of(&exp.peer);
            if let Some(n) = exp.pc_count
                && made.len() as u64 != n
            {
                failures.push(Failure {
                    peer: exp.peer.clone(),
                    key: "pc_count".into(),
                    expected: format!("{n} RTCPeerConnection(s)"),
                    observed: format!("{} ({})", made.len(), made.join(", ")),
                });
            }
            if !exp.about_connection() {
                continue;
            }
            let named = exp.connection.clone().unwrap_or_default();
            match seen.timeline.page_connection(&exp.peer, &named) {
                Ok(Some(c)) => {
                    m = crate::metrics::paired_peer_metrics(
                        seen.timeline,
                        crate::timeline::Endpoint::new(&exp.peer, &c),
                    );
                    exp.connection = Some(c);
                }
                Ok(None) => {
                    failures.push(Failure {
                        peer: exp.peer.clone(),
                        key: "connection".into(),
                        expected: if named.is_empty() {
                            "an RTCPeerConnection made by the page".into()
                        } else {
                            named.clone()
                        },
                        observed: format!(
                            "the page created {} ({})",
                            made.len(),
                            if made.is_empty() {
                                "none".into()
                            } else {
                                made.join(", ")
                            }
                        ),
                    });
                    continue;
                }
                Err(why) => {
                    failures.push(Failure {
                        peer: exp.peer.clone(),
                        key: "connection".into(),
                        expected: "the page's only RTCPeerConnection".into(),
                        observed: why,
                    });
                    continue;
                }
            }
        }
        let exp = &exp;
        let last = seen
            .stats
            .iter()
            .rev()
            .find(|s| s.peer == exp.peer && exp.connection.as_deref() == Some(&s.connection))
            .map(|s| s.stats.as_slice());
        failures.extend(verdict::check(
            exp,
            seen.timeline,
            &m,
            seen.media.get(&exp.peer),
            last,
        ));
    }
    if let (Some(want), Some(got)) = (&plan.load, seen.load) {
        failures.extend(load_failures(want, got));
    }
    let failed = seen.step_error.is_some() || !failures.is_empty();
    let reason = seen
        .step_error
        .clone()
        .or_else(|| failures.first().map(|f| f.to_string()));
    let verdict = if failed { Verdict::Fail } else { Verdict::Pass };
    let Some(want) = &plan.expected_failure else {
        return Judgement {
            verdict,
            reason,
            failures,
        };
    };
    let mut diag = reason.clone().unwrap_or_default();
    for f in &failures {
        diag.push('\n');
        diag.push_str(&f.to_string());
    }
    let (verdict, reason) = match verdict {
        Verdict::Fail if diag.contains(want.as_str()) => (
            Verdict::Pass,
            format!("failed as expected: {}", first_line_with(&diag, want)),
        ),
        Verdict::Fail => (
            Verdict::Fail,
            format!("expected a failure containing {want:?}, but it failed with: {diag}"),
        ),
        _ => (
            Verdict::Fail,
            format!("expected a failure containing {want:?}, but the scenario passed"),
        ),
    };
    Judgement {
        verdict,
        reason: Some(reason),
        failures,
    }
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Event, EventKind, StateMachine};

    const SCENARIO: &str = r#"
name = "j"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[steps]]
action = "connect"
offerer = "a"
answerer = "b"
data_channel = "x"
[[expect]]
peer = "b"
connection_state = ["new", "connecting", "connected"]
"#;

    fn plan(extra: &str) -> Plan {
        let text = format!("{extra}\n{SCENARIO}");
        crate::scenario::parse(std::path::Path::new("j.toml"), &text).unwrap()
    }

    fn timeline(states: &[&str]) -> Timeline {
        let mut t = Timeline::new();
        for (i, s) in states.iter().enumerate() {
            t.push(Event {
                t_ms: i as f64,
                peer: "b".into(),
                connection: "a~b".into(),
                event: EventKind::State {
                    machine: StateMachine::Connection,
                    state: s.to_string(),
                },
            });
        }
        t
    }

    fn judge_with(plan: &Plan, t: &Timeline, step_error: Option<&str>) -> Judgement {
        judge(
            plan,
            &Observed {
                step_error: step_error.map(String::from),
                timeline: t,
                metrics: &BTreeMap::new(),
                media: &BTreeMap::new(),
                stats: &[],
                load: None,
            },
        )
    }

    #[test]
    fn expectations_met_pass_and_unmet_ones_fail_with_the_first_as_reason() {
        let p = plan("");
        let ok = judge_with(&p, &timeline(&["new", "connecting", "connected"]), None);
        assert_eq!(ok.verdict, Verdict::Pass);
        assert_eq!(ok.reason, None);
        let bad = judge_with(&p, &timeline(&["new", "connecting", "failed"]), None);
        assert_eq!(bad.verdict, Verdict::Fail);
        assert_eq!(bad.failures.len(), 1);
        assert_eq!(
            bad.reason.as_deref(),
            Some(
                "peer b: connection_state: expected [new, connecting, connected], observed [new, \
                 connecting, failed]"
            )
        );
    }

    #[test]
    fn a_step_error_is_the_reason_even_when_expectations_also_fail() {
        let p = plan("");
        let j = judge_with(
            &p,
            &timeline(&["new"]),
            Some("step 1 (connect a -> b) failed: x"),
        );
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(
            j.reason.as_deref(),
            Some("step 1 (connect a -> b) failed: x")
        );
        assert_eq!(j.failures.len(), 1);
    }

    #[test]
    fn an_expected_failure_passes_only_when_it_fails_that_way() {
        let p = plan("expected_failure = \"observed [new, connecting, failed]\"");
        let as_expected = judge_with(&p, &timeline(&["new", "connecting", "failed"]), None);
        assert_eq!(as_expected.verdict, Verdict::Pass);
        assert!(
            as_expected
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("failed as expected: peer b: connection_state")),
            "{as_expected:?}"
        );
        let otherwise = judge_with(&p, &timeline(&["new"]), None);
        assert_eq!(otherwise.verdict, Verdict::Fail);
        assert!(
            otherwise
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("but it failed with: peer b")),
            "{otherwise:?}"
        );
        let passed = judge_with(&p, &timeline(&["new", "connecting", "connected"]), None);
        assert_eq!(passed.verdict, Verdict::Fail);
        assert!(
            passed
                .reason
                .as_deref()
                .is_some_and(|r| r.ends_with("but the scenario passed"))
        );
    }
}
