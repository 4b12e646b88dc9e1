//! The interop matrix: one template scenario run for every ordered (offerer, answerer) pair of
//! peer kinds.
//!
//! A template is an ordinary scenario file with two peers whose ids are `offerer` and
//! `answerer`; each cell replaces their kinds. ICE timers set on a template peer apply only in
//! cells where that peer is a bot, and `fresh_browser` only where it is a browser. The
//! default template ([`DEFAULT_TEMPLATE`]) connects with a data channel and sends 20 messages
//! each way.
//!
//! A cell's `setup_ms` is the time from the offerer's createOffer to the later of the two
//! peers' `connectionState` `connected` (both connected); the cell shows its median over the
//! repetitions.

use crate::engine::{RunResult, Verdict};
use crate::metrics;
use crate::scenario::{PeerKind, Plan, ScenarioError};
use serde::Serialize;
use std::path::Path;

/// The default template, `harness/templates/matrix.toml`.
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/matrix.toml");

/// Reads a template: the default one when `path` is `None`.
pub fn load_template(path: Option<&Path>) -> Result<Plan, String> {
    let plan = match path {
        Some(p) => crate::scenario::load(p).map_err(|e| e.to_string())?,
        None => crate::scenario::parse(Path::new("<default matrix template>"), DEFAULT_TEMPLATE)
            .map_err(|e: ScenarioError| e.to_string())?,
    };
    for role in ["offerer", "answerer"] {
        if !plan.peers.iter().any(|p| p.id == role) {
            return Err(format!(
                "{}: a matrix template needs a peer with id {role:?} (its kind is replaced per cell)",
                plan.source.display()
            ));
        }
    }
    Ok(plan)
}

/// The template with the two roles' kinds replaced.
pub fn instantiate(template: &Plan, offerer: PeerKind, answerer: PeerKind) -> Plan {
    let mut plan = template.clone();
    plan.name = format!(
        "{} [{} -> {}]",
        template.name,
        offerer.as_str(),
        answerer.as_str()
    );
    for p in &mut plan.peers {
        let kind = match p.id.as_str() {
            "offerer" => offerer.clone(),
            "answerer" => answerer.clone(),
            _ => continue,
        };
        if kind != PeerKind::Bot {
            p.timers = Default::default();
        }
        if !kind.is_browser() {
            p.fresh_browser = false;
        }
        p.kind = kind;
    }
    plan
}

/// Every ordered pair, offerer-major.
pub fn pairs(kinds: &[PeerKind]) -> Vec<(PeerKind, PeerKind)> {
    kinds
        .iter()
        .flat_map(|o| kinds.iter().map(move |a| (o.clone(), a.clone())))
        .collect()
}

/// One cell's outcome.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Cell {
    /// Offerer kind.
    pub offerer: PeerKind,
    /// Answerer kind.
    pub answerer: PeerKind,
    /// Repetitions run.
    pub runs: usize,
    /// Repetitions passed.
    pub passed: usize,
    /// Median time to both connected, ms.
    pub median_setup_ms: Option<f64>,
    /// First failure's reason.
    pub reason: Option<String>,
}

impl Cell {
    /// Every repetition passed.
    pub fn ok(&self) -> bool {
        self.runs > 0 && self.passed == self.runs
    }
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Matrix {
    /// Template name.
    pub template: String,
    /// Kinds, in row and column order.
    pub kinds: Vec<PeerKind>,
    /// Cells, offerer-major.
    pub cells: Vec<Cell>,
}

/// Time to both connected for one run (ms).
pub fn both_connected_ms(r: &RunResult) -> Option<f64> {
    let a = r.metrics.get("offerer")?.setup_ms?;
    let b = r.metrics.get("answerer")?.setup_ms?;
    Some(a.max(b))
}

/// Builds a cell from its runs.
pub fn cell(offerer: PeerKind, answerer: PeerKind, runs: &[RunResult]) -> Cell {
    let times: Vec<f64> = runs
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .filter_map(both_connected_ms)
        .collect();
    Cell {
        offerer,
        answerer,
        runs: runs.len(),
        passed: runs.iter().filter(|r| r.verdict == Verdict::Pass).count(),
        median_setup_ms: metrics::summarize(&times).map(|s| s.median),
        reason: runs
            .iter()
            .find(|r| r.verdict != Verdict::Pass)
            .and_then(|r| r.reason.as_ref())
            .map(|s| s.lines().next().unwrap_or("").to_string()),
    }
}

impl Matrix {
    fn get(&self, o: &PeerKind, a: &PeerKind) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| &c.offerer == o && &c.answerer == a)
    }

    fn label(c: &Cell) -> String {
        let t = c
            .median_setup_ms
            .map(|m| format!(" {m:.1} ms"))
            .unwrap_or_default();
        if c.ok() {
            format!("pass{t}")
        } else {
            format!("FAIL {}/{}{t}", c.runs - c.passed, c.runs)
        }
    }

    /// Plain-text table: rows offerer, columns answerer.
    pub fn render_text(&self) -> String {
        let w = 18;
        let mut out = format!("{:<w$}", "offerer \\ answerer");
        for k in &self.kinds {
            out.push_str(&format!(" {:<w$}", k.as_str()));
        }
        out.push('\n');
        for o in &self.kinds {
            out.push_str(&format!("{:<w$}", o.as_str()));
            for a in &self.kinds {
                let l = self.get(o, a).map(Self::label).unwrap_or_default();
                out.push_str(&format!(" {l:<w$}"));
            }
            out.push('\n');
        }
        for c in self.cells.iter().filter(|c| !c.ok()) {
            out.push_str(&format!(
                "{} -> {}: {}\n",
                c.offerer.as_str(),
                c.answerer.as_str(),
                c.reason.as_deref().unwrap_or("failed")
            ));
        }
        out
    }

    /// Markdown (fit for a CI job summary): the table, then the failed cells' reasons.
    pub fn render_markdown(&self) -> String {
        let mut out = format!(
            "### Interop matrix: {}\n\nRows: offerer; columns: answerer; median ms from createOffer to both connected.\n\n| offerer \\ answerer |",
            self.template
        );
        for k in &self.kinds {
            out.push_str(&format!(" {} |", k.as_str()));
        }
        out.push_str("\n|---|");
        for _ in &self.kinds {
            out.push_str("---|");
        }
        out.push('\n');
        for o in &self.kinds {
            out.push_str(&format!("| **{}** |", o.as_str()));
            for a in &self.kinds {
                let l = self
                    .get(o, a)
                    .map(|c| {
                        let icon = if c.ok() { "✅" } else { "❌" };
                        format!("{icon} {}", Self::label(c))
                    })
                    .unwrap_or_default();
                out.push_str(&format!(" {l} |"));
            }
            out.push('\n');
        }
        let failed: Vec<&Cell> = self.cells.iter().filter(|c| !c.ok()).collect();
        if !failed.is_empty() {
            out.push_str("\n**Failures**\n\n");
            for c in failed {
                out.push_str(&format!(
                    "- {} → {}: {}\n",
                    c.offerer.as_str(),
                    c.answerer.as_str(),
                    c.reason.as_deref().unwrap_or("failed").replace('|', "\\|")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cover_both_directions_and_self_pairs() {
        let p = pairs(&[PeerKind::Bot, PeerKind::Chromium]);
        assert_eq!(
            p,
            vec![
                (PeerKind::Bot, PeerKind::Bot),
                (PeerKind::Bot, PeerKind::Chromium),
                (PeerKind::Chromium, PeerKind::Bot),
                (PeerKind::Chromium, PeerKind::Chromium),
            ]
        );
    }

    #[test]
    fn instantiating_replaces_kinds_and_drops_bot_timers_on_browsers() {
        let t = load_template(None).unwrap();
        let tuned = crate::scenario::parse(
            Path::new("t.toml"),
            include_str!("../templates/matrix-tuned.toml"),
        )
        .unwrap();
        let p = instantiate(&tuned, PeerKind::Firefox, PeerKind::Bot);
        assert_eq!(p.peers[0].kind, PeerKind::Firefox);
        assert_eq!(p.peers[0].timers, Default::default());
        assert_eq!(p.peers[1].timers.ice_check_interval_ms, Some(20));
        assert!(p.name.ends_with("[firefox -> bot]"));
        assert_eq!(t.steps.len(), 3);
    }

    #[test]
    fn a_template_needs_both_roles() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "name = \"x\"\n[[peers]]\nid = \"a\"\nkind = \"bot\"\n").unwrap();
        let e = load_template(Some(&f)).unwrap_err();
        assert!(e.contains("needs a peer with id \"offerer\""), "{e}");
    }

    #[test]
    fn markdown_marks_failed_cells_with_their_reason() {
        let m = Matrix {
            template: "t".into(),
            kinds: vec![PeerKind::Bot, PeerKind::Firefox],
            cells: vec![
                Cell {
                    offerer: PeerKind::Bot,
                    answerer: PeerKind::Firefox,
                    runs: 2,
                    passed: 1,
                    median_setup_ms: Some(12.0),
                    reason: Some("peer answerer: connection_state: expected a | b".into()),
                },
                Cell {
                    offerer: PeerKind::Bot,
                    answerer: PeerKind::Bot,
                    runs: 2,
                    passed: 2,
                    median_setup_ms: Some(44.25),
                    reason: None,
                },
            ],
        };
        let md = m.render_markdown();
        assert!(
            md.contains("| **bot** | ✅ pass 44.2 ms | ❌ FAIL 1/2 12.0 ms |"),
            "{md}"
        );
        assert!(
            md.contains("- bot → firefox: peer answerer: connection_state: expected a \\| b"),
            "{md}"
        );
        let text = m.render_text();
        assert!(text.contains("bot -> firefox: peer answerer"), "{text}");
    }
}
