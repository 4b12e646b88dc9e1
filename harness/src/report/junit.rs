//! JUnit XML (`--junit FILE`), written with `quick-junit`: one test case per scenario run (per
//! cell for `matrix`). A failed case's message is the first failed expectation or error; every
//! peer's timeline goes into its `system-out`; times are in seconds.

use crate::engine::{RunResult, Verdict};
use crate::matrix::Matrix;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

fn timelines(r: &RunResult) -> String {
    let mut out = String::new();
    for p in &r.peers {
        out.push_str(&format!("timeline of {} ({}):\n", p.id, p.product));
        out.push_str(&r.timeline.render_peer(&p.id));
    }
    out
}

fn case(name: String, classname: &str, r: &RunResult) -> TestCase {
    let status = match r.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail | Verdict::SetupError => {
            let kind = if r.verdict == Verdict::Fail {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut s = TestCaseStatus::non_success(kind);
            let diag = r.diagnostic();
            s.set_message(diag.lines().next().unwrap_or("failed").to_string());
            s.set_description(diag);
            s
        }
    };
    let mut c = TestCase::new(name, status);
    c.set_classname(classname.to_string());
    c.set_time(Duration::from_secs_f64(r.wall_ms.max(0.0) / 1000.0));
    c.set_system_out(timelines(r));
    if let Some(logs) = &r.logs {
        c.set_system_err(library_logs(logs));
    }
    c
}

/// The run's library log: counts, files, and each peer's last ERROR/WARN lines.
fn library_logs(logs: &crate::logs::RunLogs) -> String {
    let mut out = format!(
        "{}
",
        logs.summary_line()
    );
    for (peer, file) in &logs.peer_files {
        let counts = logs.by_peer.get(peer).copied().unwrap_or_default();
        out.push_str(&format!("{peer}: {} -> {file}\n", counts.describe()));
    }
    for (peer, lines) in &logs.last {
        out.push_str(&format!("last ERROR/WARN lines of {peer}:\n"));
        for l in lines {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

/// A report with one suite, one case per run.
pub fn runs(runs: &[RunResult]) -> Result<String, quick_junit::SerializeError> {
    let many = runs.iter().any(|r| r.repetition > 1);
    let mut suite = TestSuite::new("rtc-harness scenarios");
    for r in runs {
        let name = if many {
            format!("{} #{}", r.name, r.repetition)
        } else {
            r.name.clone()
        };
        suite.add_test_case(case(name, &r.file, r));
    }
    let mut report = Report::new("rtc-harness");
    report.add_test_suite(suite);
    report.to_string()
}

/// A report with one case per matrix cell; the cell's first failed run gives its message.
pub fn matrix(m: &Matrix, runs: &[RunResult]) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(format!("rtc-harness matrix: {}", m.template));
    for cell in &m.cells {
        let tag = format!("[{} -> {}]", cell.offerer.as_str(), cell.answerer.as_str());
        let mine: Vec<&RunResult> = runs.iter().filter(|r| r.name.ends_with(&tag)).collect();
        let name = format!("{} -> {}", cell.offerer.as_str(), cell.answerer.as_str());
        let representative = mine
            .iter()
            .find(|r| r.verdict != Verdict::Pass)
            .or(mine.first());
        let Some(r) = representative else { continue };
        let mut c = case(name, &m.template, r);
        let total: f64 = mine.iter().map(|r| r.wall_ms).sum();
        c.set_time(Duration::from_secs_f64(total.max(0.0) / 1000.0));
        suite.add_test_case(c);
    }
    let mut report = Report::new("rtc-harness");
    report.add_test_suite(suite);
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunResult;
    use crate::timeline::{Event, EventKind, Timeline};

    fn run(name: &str, verdict: Verdict, reason: Option<&str>) -> RunResult {
        let mut timeline = Timeline::new();
        timeline.push(Event {
            t_ms: 1.5,
            peer: "a".into(),
            connection: "c".into(),
            event: EventKind::CreateOffer,
        });
        RunResult {
            name: name.into(),
            file: format!("scenarios/{name}.toml"),
            repetition: 1,
            verdict,
            reason: reason.map(String::from),
            failures: vec![],
            steps_completed: 1,
            end_of_steps_ms: 2.0,
            wall_ms: 1250.0,
            peers: vec![crate::peer::PeerInfo {
                id: "a".into(),
                kind: "bot".into(),
                product: "webrtc-rs 0.21.1".into(),
                ..Default::default()
            }],
            metrics: Default::default(),
            explanations: Default::default(),
            console: Default::default(),
            turn_log: None,
            app_log: None,
            network: None,
            media: Default::default(),
            stats: Default::default(),
            marks: Vec::new(),
            timeline,
            logs: None,
            load: None,
            step_metrics: Vec::new(),
        }
    }

    #[test]
    fn junit_parses_back_with_one_case_per_run() {
        let xml = runs(&[
            run("good", Verdict::Pass, None),
            run(
                "bad",
                Verdict::Fail,
                Some("peer a: connection_state: expected [new], observed [new, failed]\nmore"),
            ),
            run(
                "nobrowser",
                Verdict::SetupError,
                Some("chromium not found: install it"),
            ),
        ])
        .unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].attribute("name"), Some("good"));
        assert_eq!(cases[0].attribute("time"), Some("1.250"));
        assert_eq!(cases[1].attribute("classname"), Some("scenarios/bad.toml"));
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            failure.attribute("message"),
            Some("peer a: connection_state: expected [new], observed [new, failed]")
        );
        assert!(cases[2].children().any(|n| n.has_tag_name("error")));
        let out = cases[0]
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .unwrap();
        assert!(out.text().unwrap().contains("createOffer"));
        let suites = doc.root_element();
        assert_eq!(suites.attribute("failures"), Some("1"));
        assert_eq!(suites.attribute("errors"), Some("1"));
    }
}
