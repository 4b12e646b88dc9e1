//! One stream of events for every output, as nextest's reporter: the terminal display and every
//! report file (JSON, JUnit, Markdown, HTML, baseline) consume the same [`Event`]s, for `run` and
//! `matrix` alike. A writer keeps what it needs and writes its file when the run finishes.

use super::{JsonReport, MetricSummary, Totals};
use crate::engine::{RunResult, Verdict};
use crate::matrix::Matrix;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// What happens during a run of the harness, in order.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The run begins: how many scenario runs it will make.
    RunStarted {
        /// Scenario runs in all (scenarios × repetitions, or cells × repetitions).
        total: u64,
    },
    /// One scenario run begins.
    ScenarioStarted {
        /// 1-based position among all runs.
        n: u64,
        /// What the terminal calls it (name, with `(run k/N)` when repeated).
        label: &'a str,
    },
    /// A step of the current scenario run begins.
    StepStarted {
        /// What the terminal calls the scenario run.
        label: &'a str,
        /// 0-based step index.
        index: usize,
        /// The step's one-line description.
        description: &'a str,
    },
    /// One scenario run is over.
    ScenarioFinished {
        /// What the terminal called it at [`Event::ScenarioStarted`].
        label: &'a str,
        /// Its result.
        result: &'a RunResult,
    },
    /// Every run is over.
    RunFinished {
        /// Every result, in order.
        results: &'a [RunResult],
        /// Percentiles over repetitions (runs that passed).
        summaries: &'a [MetricSummary],
        /// Counts.
        totals: Totals,
        /// The interop matrix, for `rtc-harness matrix`.
        matrix: Option<&'a Matrix>,
    },
}

/// A report file that could not be made or written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {message}", path.display())]
pub struct ReportError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Something that consumes the event stream.
pub trait Reporter: Send {
    /// Takes one event.
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReportError>;
}

/// Sends every event to each reporter in turn; the first error is kept, the others still run.
#[derive(Default)]
pub struct Fanout {
    reporters: Vec<Box<dyn Reporter>>,
}

impl Fanout {
    /// Adds a reporter.
    pub fn with(mut self, r: impl Reporter + 'static) -> Self {
        self.reporters.push(Box::new(r));
        self
    }

    /// Adds a reporter when `path` is given.
    pub fn with_file<R: Reporter + 'static>(
        self,
        path: Option<&Path>,
        make: impl FnOnce(PathBuf) -> R,
    ) -> Self {
        match path {
            Some(p) => self.with(make(p.to_owned())),
            None => self,
        }
    }

    /// Sends one event to every reporter.
    pub fn report(&mut self, event: &Event<'_>) -> Result<(), ReportError> {
        let mut first = None;
        for r in &mut self.reporters {
            if let Err(e) = r.report(event) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The terminal: a progress line on a terminal (plain lines otherwise), each run's verdict
/// block, the percentile table when repeated, the totals.
pub struct Terminal {
    bar: Option<ProgressBar>,
    total: u64,
    repeated: bool,
    matrix: bool,
    /// Labels of the runs started and not finished (several under `--jobs`).
    running: Vec<String>,
}

impl Terminal {
    /// A terminal display; `tty` chooses the progress line, `repeated` the percentile table;
    /// `matrix` prints only failed runs (the matrix table says the rest).
    pub fn new(tty: bool, repeated: bool, matrix: bool) -> Self {
        Self {
            bar: tty.then(|| {
                ProgressBar::hidden().with_style(
                    ProgressStyle::with_template("[{pos}/{len}] {elapsed_precise} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                )
            }),
            total: 0,
            repeated,
            matrix,
            running: Vec::new(),
        }
    }

    /// The progress line's message: the one running scenario's label and `detail`, or, with
    /// several running, how many and their labels.
    fn progress(&self, detail: Option<String>) -> String {
        match (self.running.as_slice(), detail) {
            ([one], Some(d)) => format!("{one}: {d}"),
            ([one], None) => one.clone(),
            (many, _) => format!("{} running: {}", many.len(), many.join(" | ")),
        }
    }

    fn print(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| print!("{text}")),
            None => print!("{text}"),
        }
    }
}

impl Reporter for Terminal {
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReportError> {
        match *event {
            Event::RunStarted { total } => {
                self.total = total;
                if let Some(b) = &self.bar {
                    b.set_length(total);
                    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    // The harness's own warnings are printed around the bar.
                    crate::logs::terminal::set_progress_bar(b);
                }
            }
            Event::ScenarioStarted { n, label } => {
                self.running.push(label.to_string());
                match &self.bar {
                    Some(b) => b.set_message(self.progress(None)),
                    None => eprintln!("[{n}/{}] {label}", self.total),
                }
            }
            Event::StepStarted {
                label,
                index,
                description,
            } => {
                let step = format!("step {}: {description}", index + 1);
                match &self.bar {
                    Some(b) => b.set_message(self.progress(Some(step))),
                    // Several at once: say whose step it is.
                    None if self.running.len() > 1 => eprintln!("    {label}: {step}"),
                    None => eprintln!("    {step}"),
                }
            }
            Event::ScenarioFinished { label, result } => {
                if let Some(i) = self.running.iter().position(|l| l == label) {
                    self.running.remove(i);
                }
                if !self.matrix || result.verdict != Verdict::Pass {
                    self.print(&super::render_run(result));
                }
                if let Some(b) = &self.bar {
                    b.inc(1);
                    b.set_message(self.progress(None));
                }
            }
            Event::RunFinished {
                summaries,
                totals,
                matrix,
                ..
            } => {
                if let Some(b) = &self.bar {
                    crate::logs::terminal::clear_progress_bar();
                    b.finish_and_clear();
                }
                if let Some(m) = matrix {
                    println!("\n{}", m.render_text());
                } else {
                    if self.repeated {
                        println!();
                        print!("{}", super::render_summaries(summaries));
                    }
                    if let Some(kib) = super::peak_rss_kib() {
                        eprintln!(
                            "harness peak RSS: {:.1} MiB (browsers not included)",
                            kib as f64 / 1024.0
                        );
                    }
                    println!(
                        "\n{} passed, {} failed, {} setup errors",
                        totals.passed, totals.failed, totals.setup_errors
                    );
                }
            }
        }
        Ok(())
    }
}

fn write(path: &Path, text: Result<String, String>) -> Result<(), ReportError> {
    text.and_then(|t| std::fs::write(path, t).map_err(|e| e.to_string()))
        .map_err(|message| ReportError {
            path: path.to_owned(),
            message,
        })
}

/// Writes a file from the final event only.
struct AtEnd<F> {
    path: PathBuf,
    make: F,
}

fn at_end<F>(path: PathBuf, make: F) -> AtEnd<F>
where
    F: FnMut(&[RunResult], &[MetricSummary], Totals, Option<&Matrix>) -> Result<String, String>
        + Send,
{
    AtEnd { path, make }
}

impl<F> Reporter for AtEnd<F>
where
    F: FnMut(&[RunResult], &[MetricSummary], Totals, Option<&Matrix>) -> Result<String, String>
        + Send,
{
    fn report(&mut self, event: &Event<'_>) -> Result<(), ReportError> {
        if let Event::RunFinished {
            results,
            summaries,
            totals,
            matrix,
        } = *event
        {
            write(&self.path, (self.make)(results, summaries, totals, matrix))?;
        }
        Ok(())
    }
}

/// `--json`: every run's verdict, timeline, metrics and versions (and the matrix, for `matrix`).
pub fn json(path: PathBuf) -> impl Reporter {
    at_end(path, |results, summaries, totals, matrix| {
        let doc = JsonReport {
            tool: super::TOOL,
            matrix,
            runs: results,
            summaries: summaries.to_vec(),
            totals,
            peak_rss_kib: super::peak_rss_kib(),
        };
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
    })
}

/// `--junit`: one test case per scenario run, or per matrix cell.
pub fn junit(path: PathBuf) -> impl Reporter {
    at_end(path, |results, _, _, matrix| {
        match matrix {
            Some(m) => super::junit::matrix(m, results),
            None => super::junit::runs(results),
        }
        .map_err(|e| e.to_string())
    })
}

/// `--markdown`: verdicts, percentiles and failures, or the matrix table.
pub fn markdown(path: PathBuf) -> impl Reporter {
    at_end(path, |results, summaries, totals, matrix| {
        Ok(match matrix {
            Some(m) => m.render_markdown(),
            None => super::markdown::render(results, summaries, totals),
        })
    })
}

/// `--html`: the self-contained HTML report.
pub fn html(path: PathBuf) -> impl Reporter {
    at_end(path, |results, summaries, _, matrix| {
        let title = match matrix {
            Some(m) => format!("rtc-harness matrix: {}", m.template),
            None => "rtc-harness run".to_string(),
        };
        super::html::render(&title, results, summaries, matrix)
    })
}

/// `--save-baseline`: this run's medians and p95s.
pub fn baseline(path: PathBuf) -> impl Reporter {
    at_end(path, |_, summaries, _, _| {
        serde_json::to_string_pretty(&super::baseline::Baseline::from_summaries(summaries))
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what it sees.
    #[derive(Default)]
    struct Count(Vec<&'static str>);

    impl Reporter for std::sync::Arc<std::sync::Mutex<Count>> {
        fn report(&mut self, event: &Event<'_>) -> Result<(), ReportError> {
            let name = match event {
                Event::RunStarted { .. } => "run-started",
                Event::ScenarioStarted { .. } => "scenario-started",
                Event::StepStarted { .. } => "step-started",
                Event::ScenarioFinished { .. } => "scenario-finished",
                Event::RunFinished { .. } => "run-finished",
            };
            self.lock().unwrap().0.push(name);
            Ok(())
        }
    }

    #[test]
    fn every_reporter_sees_every_event_and_a_failed_write_is_an_error_naming_the_file() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Count::default()));
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("r.json");
        let bad = dir.path().join("no-such-dir").join("r.xml");
        let mut out = Fanout::default()
            .with(seen.clone())
            .with_file(Some(&good), json)
            .with_file(Some(&bad), junit)
            .with_file(None, markdown);
        out.report(&Event::RunStarted { total: 0 }).unwrap();
        let err = out
            .report(&Event::RunFinished {
                results: &[],
                summaries: &[],
                totals: Totals::default(),
                matrix: None,
            })
            .unwrap_err();
        assert_eq!(err.path, bad);
        assert!(err.to_string().starts_with("writing "), "{err}");
        // The other writers still ran.
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
        assert_eq!(doc["totals"]["passed"], 0);
        assert_eq!(seen.lock().unwrap().0, ["run-started", "run-finished"]);
    }
}
