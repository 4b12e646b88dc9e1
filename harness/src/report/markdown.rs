//! A Markdown summary of a run (`--markdown FILE`), fit for a CI job summary: verdicts,
//! setup-time percentiles, and failures with their reasons.

use super::{MetricSummary, Totals};
use crate::engine::{RunResult, Verdict};

fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The summary.
pub fn render(runs: &[RunResult], summaries: &[MetricSummary], totals: Totals) -> String {
    let mut out = format!(
        "### rtc-harness: {} passed, {} failed, {} setup errors\n\n",
        totals.passed, totals.failed, totals.setup_errors
    );
    out.push_str(
        "| scenario | run | verdict | setup_ms by peer | wall (s) |\n|---|---|---|---|---|\n",
    );
    for r in runs {
        let icon = match r.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Fail => "❌ fail",
            Verdict::SetupError => "⚠️ setup error",
        };
        let rows = super::metric_rows(r);
        let setup: Vec<String> = r
            .peers
            .iter()
            .flat_map(|p| {
                let mine: Vec<String> = rows
                    .iter()
                    .filter(|(q, _, _)| q.id == p.id)
                    .map(|(_, key, m)| {
                        let v = m
                            .setup_ms
                            .map(|v| format!("{v:.1}"))
                            .unwrap_or_else(|| "-".into());
                        format!("{key} {v}")
                    })
                    .collect();
                if mine.is_empty() {
                    vec![format!("{} -", p.id)]
                } else {
                    mine
                }
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} | {icon} | {} | {:.1} |\n",
            esc(&r.name),
            r.repetition,
            esc(&setup.join(", ")),
            r.wall_ms / 1000.0
        ));
    }
    let setup: Vec<&MetricSummary> = summaries
        .iter()
        .filter(|s| s.metric == "setup_ms")
        .collect();
    if !setup.is_empty() {
        out.push_str("\n#### setup_ms percentiles (ms)\n\n| scenario | peer | n | min | median | p95 | max |\n|---|---|---|---|---|---|---|\n");
        for s in setup {
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                esc(&s.scenario),
                s.peer,
                s.summary.n,
                s.summary.min,
                s.summary.median,
                s.summary.p95,
                s.summary.max
            ));
        }
    }
    let failed: Vec<&RunResult> = runs.iter().filter(|r| r.verdict != Verdict::Pass).collect();
    if !failed.is_empty() {
        out.push_str("\n#### Failures\n\n");
        for r in failed {
            out.push_str(&format!(
                "- **{}** (`{}`, run {}): {}\n",
                esc(&r.name),
                r.file,
                r.repetition,
                esc(r.reason.as_deref().unwrap_or("failed"))
            ));
        }
    }
    out
}
