//! `rtc-harness`: run and check scenario files.
//!
//! Exit codes: 0 every scenario passed; 1 at least one failed; 2 usage error or invalid
//! scenario file; 3 a peer could not be set up (missing browser or driver); 4 every scenario
//! passed but setup time regressed against `--baseline`; 130 interrupted.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rtc_harness::engine::{RunResult, Verdict};
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario::{self, PeerKind, Plan};
use rtc_harness::{matrix, report};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: a scenario failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or an invalid scenario file.
const EXIT_USAGE: u8 = 2;
/// Exit code: a peer could not be set up.
const EXIT_SETUP: u8 = 3;
/// Exit code: setup time regressed against the baseline.
const EXIT_REGRESSION: u8 = 4;
/// Exit code: interrupted (Ctrl-C).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "rtc-harness",
    version,
    about = "Headless WebRTC test and interop harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (files or folders; default `scenarios/`).
    Run(RunArgs),
    /// Run a template scenario for every ordered pair of peer kinds and print the matrix.
    Matrix(MatrixArgs),
    /// Validate scenario files without running anything.
    Check {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Files or folders of scenarios (`*.toml`, searched recursively).
    paths: Vec<PathBuf>,
    /// Only scenarios whose name or file path contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Run each scenario N times and print min/median/p95/max of each metric.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    repeat: u32,
    /// Write every run's verdict, timeline, metrics and versions to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Write a Markdown summary (verdicts, setup-time percentiles, failures) to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Compare each scenario's median and p95 of every phase with this saved results file.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// With --baseline: largest allowed increase, percent.
    #[arg(long, value_name = "PCT", default_value_t = 20.0)]
    max_regression: f64,
    /// With --baseline: an increase must also exceed this many ms to count.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    regression_floor_ms: f64,
    /// Save this run's medians and p95s as a baseline file.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    #[command(flatten)]
    browsers: BrowserArgs,
}

#[derive(clap::Args)]
struct OutputArgs {
    /// Write JUnit XML (one test case per scenario run, or per matrix cell) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report (timelines, metrics, charts) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MatrixArgs {
    /// Peer kinds, comma-separated: every ordered (offerer, answerer) pair is one cell.
    #[arg(long, value_delimiter = ',', default_value = "bot,chromium,firefox", value_parser = built_in_kind)]
    peers: Vec<PeerKind>,
    /// Template scenario with peers `offerer` and `answerer` (default: the built-in one).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Runs per cell; the cell shows the median time to both connected.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    repeat: u32,
    /// Also write the table as Markdown (for a CI job summary).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write the matrix and every run to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    #[command(flatten)]
    browsers: BrowserArgs,
}

/// A kind the command line has a launcher for: one of [`PeerKind::BUILT_IN`].
fn built_in_kind(s: &str) -> Result<PeerKind, String> {
    let kind: PeerKind = s.parse()?;
    if PeerKind::BUILT_IN.contains(&kind) {
        Ok(kind)
    } else {
        Err(format!(
            "no launcher for peer kind {s:?} here (kinds: bot, chromium, firefox; a crate's own \
             kinds run through rtc_harness::testing)"
        ))
    }
}

#[derive(clap::Args, Clone)]
struct BrowserArgs {
    /// chromedriver binary (default: `chromedriver` on PATH).
    #[arg(long, value_name = "PATH")]
    chromedriver: Option<PathBuf>,
    /// Chromium binary (default: Debian's /usr/lib/chromium/chromium, else PATH).
    #[arg(long, value_name = "PATH")]
    chromium: Option<PathBuf>,
    /// geckodriver binary (default: `geckodriver` on PATH).
    #[arg(long, value_name = "PATH")]
    geckodriver: Option<PathBuf>,
    /// Firefox binary (default: `firefox-esr`, else `firefox`, on PATH).
    #[arg(long, value_name = "PATH")]
    firefox: Option<PathBuf>,
    /// Folder for driver logs.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Start a new browser for every browser peer instead of reusing instances across scenarios.
    #[arg(long)]
    no_browser_reuse: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_sctp=error,webrtc=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { paths } => match load_all(&paths, None) {
            Ok(plans) => {
                for p in &plans {
                    println!("ok    {}  ({})", p.name, p.source.display());
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run(args) => with_runtime(run(args)),
        Command::Matrix(args) => with_runtime(matrix(args)),
    }
}

/// Runs `job` on a new runtime; Ctrl-C (SIGINT) or SIGTERM drops it, which kills every browser
/// and driver and removes the network lab.
fn with_runtime(job: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let code = rt.block_on(async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            code = job => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping every peer, browser and driver");
                ExitCode::from(EXIT_INTERRUPTED)
            }
            _ = terminate => {
                eprintln!("terminated: stopping every peer, browser and driver");
                ExitCode::from(EXIT_INTERRUPTED)
            }
        }
    });
    // Dropping the runtime drops the run: every process group is killed on drop.
    drop(rt);
    code
}

async fn start_harness(b: &BrowserArgs) -> Result<Harness, ExitCode> {
    Harness::start(Options {
        chromedriver: b.chromedriver.clone(),
        chromium: b.chromium.clone(),
        geckodriver: b.geckodriver.clone(),
        firefox: b.firefox.clone(),
        log_dir: b.log_dir.clone(),
        browser_reuse: !b.no_browser_reuse,
        ..Options::default()
    })
    .await
    .map_err(|e| {
        eprintln!("error: cannot start the harness server: {e}");
        ExitCode::from(EXIT_SETUP)
    })
}

fn write_text(path: &std::path::Path, text: Result<String, String>) -> Result<(), ExitCode> {
    text.and_then(|t| std::fs::write(path, t).map_err(|e| e.to_string()))
        .map_err(|e| {
            eprintln!("error: writing {}: {e}", path.display());
            ExitCode::from(EXIT_SETUP)
        })
}

fn write_json(path: &std::path::Path, doc: &impl serde::Serialize) -> Result<(), ExitCode> {
    serde_json::to_vec_pretty(doc)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()))
        .map_err(|e| {
            eprintln!("error: writing {}: {e}", path.display());
            ExitCode::from(EXIT_SETUP)
        })
}

async fn matrix(args: MatrixArgs) -> ExitCode {
    let template = match matrix::load_template(args.scenario.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut kinds = args.peers.clone();
    kinds.dedup();
    let harness = match start_harness(&args.browsers).await {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut runs: Vec<RunResult> = Vec::new();
    let mut cells = Vec::new();
    let pairs = matrix::pairs(&kinds);
    for (i, (o, a)) in pairs.iter().enumerate() {
        let plan = matrix::instantiate(&template, o.clone(), a.clone());
        let mut cell_runs = Vec::new();
        for rep in 1..=args.repeat {
            eprintln!(
                "[{}/{}] {} (run {rep}/{})",
                i + 1,
                pairs.len(),
                plan.name,
                args.repeat
            );
            let r = harness.engine.run(&plan, rep, &|_, _| {}).await;
            if r.verdict != Verdict::Pass {
                print!("{}", report::render_run(&r));
            }
            cell_runs.push(r);
        }
        cells.push(matrix::cell(o.clone(), a.clone(), &cell_runs));
        runs.extend(cell_runs);
    }
    harness.shutdown().await;
    let m = matrix::Matrix {
        template: template.name.clone(),
        kinds,
        cells,
    };
    println!("\n{}", m.render_text());
    let totals = report::totals(&runs);
    if let Some(path) = &args.markdown
        && let Err(code) = write_text(path, Ok(m.render_markdown()))
    {
        return code;
    }
    if let Some(path) = &args.outputs.junit
        && let Err(code) = write_text(
            path,
            report::junit::matrix(&m, &runs).map_err(|e| e.to_string()),
        )
    {
        return code;
    }
    if let Some(path) = &args.outputs.html {
        let html = report::html::render(
            &format!("rtc-harness matrix: {}", m.template),
            &runs,
            &report::summaries(&runs),
            Some(&m),
        );
        if let Err(code) = write_text(path, html) {
            return code;
        }
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "tool": report::TOOL,
            "matrix": &m,
            "runs": &runs,
            "totals": totals,
            "peak_rss_kib": report::peak_rss_kib(),
        });
        if let Err(code) = write_json(path, &doc) {
            return code;
        }
    }
    if runs.iter().any(|r| r.verdict == Verdict::SetupError) {
        ExitCode::from(EXIT_SETUP)
    } else if m.cells.iter().all(|c| c.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn load_all(paths: &[PathBuf], filter: Option<&str>) -> Result<Vec<Plan>, ExitCode> {
    let files = scenario::discover(paths).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let mut plans = Vec::new();
    let mut bad = false;
    for f in files {
        match scenario::load(&f) {
            Ok(p) => {
                let keep = filter.is_none_or(|needle| {
                    p.name.contains(needle) || p.source.display().to_string().contains(needle)
                });
                if keep {
                    plans.push(p);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                bad = true;
            }
        }
    }
    if bad {
        return Err(ExitCode::from(EXIT_USAGE));
    }
    Ok(plans)
}

async fn run(args: RunArgs) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.paths.clone()
    };
    let plans = match load_all(&paths, args.filter.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if plans.is_empty() {
        eprintln!("error: no scenario matched");
        return ExitCode::from(EXIT_USAGE);
    }
    let harness = match start_harness(&args.browsers).await {
        Ok(h) => h,
        Err(code) => return code,
    };

    let total = plans.len() as u64 * u64::from(args.repeat);
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("[{pos}/{len}] {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut results: Vec<RunResult> = Vec::new();
    let mut n = 0;
    for plan in &plans {
        for rep in 1..=args.repeat {
            n += 1;
            let label = if args.repeat > 1 {
                format!("{} (run {rep}/{})", plan.name, args.repeat)
            } else {
                plan.name.clone()
            };
            match &bar {
                Some(b) => b.set_message(label.clone()),
                None => eprintln!("[{n}/{total}] {label}"),
            }
            let on_step = |i: usize, desc: &str| match &bar {
                Some(b) => b.set_message(format!("{label}: step {}: {desc}", i + 1)),
                None => eprintln!("    step {}: {desc}", i + 1),
            };
            let r = harness.engine.run(plan, rep, &on_step).await;
            let text = report::render_run(&r);
            match &bar {
                Some(b) => {
                    b.suspend(|| print!("{text}"));
                    b.inc(1);
                }
                None => print!("{text}"),
            }
            results.push(r);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    harness.shutdown().await;
    let summaries = report::summaries(&results);
    if args.repeat > 1 {
        println!();
        print!("{}", report::render_summaries(&summaries));
    }
    let totals = report::totals(&results);
    let peak = report::peak_rss_kib();
    if let Some(kib) = peak {
        eprintln!(
            "harness peak RSS: {:.1} MiB (browsers not included)",
            kib as f64 / 1024.0
        );
    }
    println!(
        "\n{} passed, {} failed, {} setup errors",
        totals.passed, totals.failed, totals.setup_errors
    );
    if let Some(path) = &args.json {
        let doc = report::JsonReport {
            tool: report::TOOL,
            runs: &results,
            summaries: summaries.clone(),
            totals,
            peak_rss_kib: peak,
        };
        if let Err(code) = write_json(path, &doc) {
            return code;
        }
    }
    if let Some(path) = &args.outputs.junit
        && let Err(code) = write_text(
            path,
            report::junit::runs(&results).map_err(|e| e.to_string()),
        )
    {
        return code;
    }
    if let Some(path) = &args.markdown
        && let Err(code) = write_text(
            path,
            Ok(report::markdown::render(&results, &summaries, totals)),
        )
    {
        return code;
    }
    if let Some(path) = &args.outputs.html
        && let Err(code) = write_text(
            path,
            report::html::render("rtc-harness run", &results, &summaries, None),
        )
    {
        return code;
    }
    if let Some(path) = &args.save_baseline
        && let Err(code) = write_json(
            path,
            &report::baseline::Baseline::from_summaries(&summaries),
        )
    {
        return code;
    }
    let mut regressed = false;
    if let Some(path) = &args.baseline {
        let base = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                serde_json::from_str::<report::baseline::Baseline>(&t).map_err(|e| e.to_string())
            });
        let base = match base {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: baseline {}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let found = report::baseline::compare(
            &base,
            &summaries,
            args.max_regression,
            args.regression_floor_ms,
        );
        for r in &found {
            println!("REGRESSION {r}");
        }
        println!(
            "baseline {}: {} regression(s) over {}% (and {} ms)",
            path.display(),
            found.len(),
            args.max_regression,
            args.regression_floor_ms
        );
        regressed = !found.is_empty();
    }
    if results.iter().any(|r| r.verdict == Verdict::SetupError) {
        ExitCode::from(EXIT_SETUP)
    } else if totals.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else if regressed {
        ExitCode::from(EXIT_REGRESSION)
    } else {
        ExitCode::SUCCESS
    }
}
