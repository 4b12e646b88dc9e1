//! `rtc-harness`: run and check scenario files.
//!
//! Exit codes: 0 every scenario passed; 1 at least one failed; 2 usage error or invalid
//! scenario file; 3 a peer could not be set up (missing browser or driver); 4 every scenario
//! passed but setup time regressed against `--baseline`; 5 a report file could not be written;
//! 130 interrupted.

use clap::{Parser, Subcommand};
use rtc_harness::engine::{RunResult, Stage, Verdict};
use rtc_harness::report::reporter;
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario::{self, PeerKind, Plan};
use rtc_harness::{matrix, report};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: a scenario failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or an invalid scenario file.
const EXIT_USAGE: u8 = 2;
/// Exit code: a peer could not be set up.
const EXIT_SETUP: u8 = 3;
/// Exit code: setup time regressed against the baseline.
const EXIT_REGRESSION: u8 = 4;
/// Exit code: every run finished, but a report file (`--json`, `--junit`, `--markdown`,
/// `--html`, `--save-baseline`) could not be written.
const EXIT_REPORT: u8 = 5;
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
    /// Print the JSON Schema of scenario files (for editors; see the README).
    Schema,
    /// Merge the `--json` reports of several shards (`--partition`) into one set of reports
    /// and one regression gate.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The shards' JSON reports (`run --json` or `matrix --json`), from the same harness
    /// version.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the merged JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Write a Markdown summary of the merged runs to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    gate: GateArgs,
}

#[derive(clap::Args)]
struct GateArgs {
    /// Compare each scenario's median and p95 of every phase with this saved results file.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// With --baseline: largest allowed increase, percent.
    #[arg(long, value_name = "PCT", default_value_t = 20.0)]
    max_regression: f64,
    /// With --baseline: an increase must also exceed this many ms to count.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    regression_floor_ms: f64,
    /// Save these runs' medians and p95s as a baseline file.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
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
    /// Run up to N scenario runs at the same time (see the README, "Parallel runs").
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Run only shard K of N: `hash:K/N` (by a hash of each file's path: stable as scenarios
    /// are added) or `slice:K/N` (round-robin over the files in order), as cargo-nextest's.
    #[arg(long, value_name = "METHOD:K/N")]
    partition: Option<rtc_harness::partition::Partition>,
    /// Write every run's verdict, timeline, metrics and versions to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Write a Markdown summary (verdicts, setup-time percentiles, failures) to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    gate: GateArgs,
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
    /// Run up to N cell runs at the same time (see the README, "Parallel runs").
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Run only shard K of N of the cells: `hash:K/N` (by `offerer->answerer`) or `slice:K/N`
    /// (round-robin, row by row).
    #[arg(long, value_name = "METHOD:K/N")]
    partition: Option<rtc_harness::partition::Partition>,
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
    /// Take browser sessions from a remote WebDriver endpoint, such as a Selenium Grid 4 hub
    /// (`http://HOST:4444`), instead of starting local drivers. `KIND=URL` (kind `chromium` or
    /// `firefox`) sets it for one kind; a bare URL for both. Repeatable.
    #[arg(long, value_name = "[KIND=]URL", value_parser = parse_webdriver_url)]
    webdriver_url: Vec<(Option<PeerKind>, String)>,
    /// Serve the peer page, control sockets and signaling on this address of this machine
    /// (default 127.0.0.1): one that browsers on remote WebDriver nodes can reach.
    #[arg(long, value_name = "IP", value_parser = parse_advertise_addr)]
    advertise_addr: Option<std::net::IpAddr>,
}

/// `--advertise-addr IP`: an address URLs can name (not 0.0.0.0 or ::).
fn parse_advertise_addr(arg: &str) -> Result<std::net::IpAddr, String> {
    let ip: std::net::IpAddr = arg.parse().map_err(|e| format!("{arg:?}: {e}"))?;
    if ip.is_unspecified() {
        return Err(format!(
            "{ip} is not an address a browser can reach: give one of this machine's addresses"
        ));
    }
    Ok(ip)
}

/// `--webdriver-url [KIND=]URL`.
fn parse_webdriver_url(arg: &str) -> Result<(Option<PeerKind>, String), String> {
    use rtc_harness::peer::browser::remote::parse_endpoint;
    match arg.split_once('=') {
        Some((kind, url)) if !kind.contains('/') => {
            let kind = match kind {
                "chromium" => PeerKind::Chromium,
                "firefox" => PeerKind::Firefox,
                other => {
                    return Err(format!(
                        "{other:?} is not a browser kind (expected chromium=URL or firefox=URL)"
                    ));
                }
            };
            Ok((Some(kind), parse_endpoint(url)?))
        }
        _ => Ok((None, parse_endpoint(arg)?)),
    }
}

impl BrowserArgs {
    /// The remote endpoint for `kind`: its own `KIND=URL`, else a bare URL (the last given).
    fn webdriver_for(&self, kind: PeerKind) -> Option<String> {
        let own = self
            .webdriver_url
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == Some(&kind));
        let any = self.webdriver_url.iter().rev().find(|(k, _)| k.is_none());
        own.or(any).map(|(_, url)| url.clone())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The harness's own warnings on stderr; library lines (webrtc-rs, ...) into files under the
    // log folder, per scenario run and peer (see `rtc_harness::logs`).
    let log_dir = match &cli.command {
        Command::Run(a) => a.browsers.log_dir.clone(),
        Command::Matrix(a) => a.browsers.log_dir.clone(),
        Command::Check { .. } | Command::Schema | Command::Merge(_) => None,
    }
    .unwrap_or_else(rtc_harness::runner::default_log_dir);
    rtc_harness::logs::init(Some(log_dir.join("outside-runs.log")));
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
        Command::Merge(args) => merge(args),
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&scenario::scenario_schema())
                .expect("a JSON value serializes");
            println!("{schema}");
            ExitCode::SUCCESS
        }
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
    // Sessions on remote WebDriver endpoints need requests to end: sent while the runtime is
    // still here (an interrupted run dropped its peers without closing them).
    rt.block_on(rtc_harness::peer::browser::remote::close_all());
    // Dropping the runtime drops the run: every process group is killed on drop.
    drop(rt);
    code
}

/// Library lines that no scenario run caught (start-up, shutdown), if any.
fn print_outside_logs() {
    if let Some(hub) = rtc_harness::logs::global() {
        let (counts, path) = hub.outside();
        if counts.total() > 0 {
            eprintln!(
                "logs: {} library lines outside scenario runs ({}){}",
                counts.total(),
                counts.describe(),
                path.map(|p| format!(" -> {}", p.display()))
                    .unwrap_or_default()
            );
        }
    }
}

async fn start_harness(b: &BrowserArgs) -> Result<Harness, ExitCode> {
    Harness::start(Options {
        chromedriver: b.chromedriver.clone(),
        chromium: b.chromium.clone(),
        geckodriver: b.geckodriver.clone(),
        firefox: b.firefox.clone(),
        log_dir: b.log_dir.clone(),
        browser_reuse: !b.no_browser_reuse,
        chromium_webdriver: b.webdriver_for(PeerKind::Chromium),
        firefox_webdriver: b.webdriver_for(PeerKind::Firefox),
        advertise_addr: b.advertise_addr,
        ..Options::default()
    })
    .await
    .map_err(|e| {
        eprintln!("error: cannot start the harness server: {e}");
        ExitCode::from(EXIT_SETUP)
    })
}

/// The reporters both `run` and `matrix` feed: the terminal and every report file asked for.
fn reporters(tty: bool, repeated: bool, matrix: bool, files: &ReportFiles<'_>) -> reporter::Fanout {
    reporter::Fanout::default()
        .with(reporter::Terminal::new(tty, repeated, matrix))
        .with_file(files.json, reporter::json)
        .with_file(files.junit, reporter::junit)
        .with_file(files.markdown, reporter::markdown)
        .with_file(files.html, reporter::html)
        .with_file(files.baseline, reporter::baseline)
}

/// Where the report files go (any may be absent).
struct ReportFiles<'a> {
    json: Option<&'a std::path::Path>,
    junit: Option<&'a std::path::Path>,
    markdown: Option<&'a std::path::Path>,
    html: Option<&'a std::path::Path>,
    baseline: Option<&'a std::path::Path>,
}

/// What every run task shares: the harness and the reporters.
type Shared = (Arc<Harness>, Arc<std::sync::Mutex<reporter::Fanout>>);

/// One scenario run, told to the reporters as it starts, step by step, and when it ends.
async fn run_reported(
    (harness, out): &Shared,
    plan: &Plan,
    rep: u32,
    n: u64,
    label: &str,
    stage: &Stage,
) -> RunResult {
    report(out, &reporter::Event::ScenarioStarted { n, label });
    let on_step = |index: usize, description: &str| {
        report(
            out,
            &reporter::Event::StepStarted {
                label,
                index,
                description,
            },
        )
    };
    let r = harness.engine.run_staged(plan, rep, &on_step, stage).await;
    report(
        out,
        &reporter::Event::ScenarioFinished { label, result: &r },
    );
    r
}

/// How long past its own limit ([`Engine::run_staged`]: `timeout_s` plus
/// [`rtc_harness::engine::RUN_OVERRUN`]) a run's task may go before it is aborted from
/// outside: only a task that is no longer polled gets here.
const TASK_MARGIN: Duration = Duration::from_secs(30);

/// A run in a task of its own, so that runs go on at once on every worker thread and one that
/// stops being polled cannot hold the others up: it is aborted once past its limit (dropping
/// it kills what it started) and reported as failed, naming the stage it was in.
async fn run_task(shared: &Shared, n: u64, job: &Job) -> RunResult {
    let stage = Arc::new(Stage::default());
    let task = tokio::spawn({
        let (shared, plan, stage) = (shared.clone(), job.plan.clone(), stage.clone());
        let (rep, label) = (job.rep, job.label.clone());
        async move { run_reported(&shared, &plan, rep, n, &label, &stage).await }
    });
    // Dropping this future (Ctrl-C drops the whole run) aborts the task too.
    let mut task = AbortOnDrop(task);
    let limit = job.plan.timeout + rtc_harness::engine::RUN_OVERRUN + TASK_MARGIN;
    let why = match tokio::time::timeout(limit, &mut task.0).await {
        Ok(Ok(r)) => return r,
        Ok(Err(e)) => format!("the run's task ended without a result: {e}"),
        Err(_) => format!(
            "the run's task was aborted after {} s: it stopped making progress in {} (a \
             harness bug: please report it with this run's logs)",
            limit.as_secs(),
            stage.get()
        ),
    };
    drop(task);
    let r = RunResult::unfinished(&job.plan, job.rep, why, limit);
    report(
        &shared.1,
        &reporter::Event::ScenarioFinished {
            label: &job.label,
            result: &r,
        },
    );
    r
}

/// A task handle that aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One scenario run to do.
struct Job {
    plan: Arc<Plan>,
    rep: u32,
    label: String,
}

/// Every plan `repeat` times, in plan order; `label` names each run on the terminal.
fn jobs_of(plans: &[Arc<Plan>], repeat: u32, label: impl Fn(&Plan, u32) -> String) -> Vec<Job> {
    plans
        .iter()
        .flat_map(|plan| {
            (1..=repeat).map(|rep| Job {
                plan: plan.clone(),
                rep,
                label: label(plan, rep),
            })
        })
        .collect()
}

/// Runs `jobs`, up to `parallel` at a time, with results in the order of `jobs`
/// ([`rtc_harness::runner::in_order`]); a plan with a step that acts on what every run shares
/// ([`Plan::exclusive`], e.g. `restart_signaling`) runs alone.
async fn run_jobs(shared: &Shared, jobs: Vec<Job>, parallel: usize) -> Vec<RunResult> {
    rtc_harness::runner::in_order(
        &jobs,
        parallel,
        |job| job.plan.exclusive(),
        |i, job| run_task(shared, i as u64 + 1, job),
    )
    .await
}

/// Progress events: a file writer only acts on the final event, so an error here is the
/// terminal's and is not fatal.
fn report(out: &std::sync::Mutex<reporter::Fanout>, event: &reporter::Event<'_>) {
    if let Ok(mut o) = out.lock()
        && let Err(e) = o.report(event)
    {
        eprintln!("warning: {e}");
    }
}

/// The final event: a report file that cannot be written is its own exit code.
fn finish(
    out: &std::sync::Mutex<reporter::Fanout>,
    results: &[RunResult],
    matrix: Option<&matrix::Matrix>,
) -> Result<(), ExitCode> {
    let summaries = report::summaries(results);
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    out.report(&reporter::Event::RunFinished {
        results,
        summaries: &summaries,
        totals: report::totals(results),
        matrix,
    })
    .map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_REPORT)
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
    let mut pairs = matrix::pairs(&kinds);
    if let Some(p) = args.partition {
        let all = pairs.len();
        pairs = p.select(pairs, |(o, a)| format!("{}->{}", o.as_str(), a.as_str()));
        eprintln!("partition {p}: {} of {all} cells", pairs.len());
    }
    let out = std::sync::Mutex::new(reporters(
        std::io::stderr().is_terminal(),
        args.repeat > 1,
        true,
        &ReportFiles {
            json: args.json.as_deref(),
            junit: args.outputs.junit.as_deref(),
            markdown: args.markdown.as_deref(),
            html: args.outputs.html.as_deref(),
            baseline: None,
        },
    ));
    report(
        &out,
        &reporter::Event::RunStarted {
            total: pairs.len() as u64 * u64::from(args.repeat),
        },
    );
    let plans: Vec<Arc<Plan>> = pairs
        .iter()
        .map(|(o, a)| Arc::new(matrix::instantiate(&template, o.clone(), a.clone())))
        .collect();
    let jobs = jobs_of(&plans, args.repeat, |plan, rep| {
        format!("{} (run {rep}/{})", plan.name, args.repeat)
    });
    let shared: Shared = (Arc::new(harness), Arc::new(out));
    let runs = run_jobs(&shared, jobs, args.jobs.into()).await;
    let (harness, out) = shared;
    let cells = pairs
        .iter()
        .zip(runs.chunks(args.repeat as usize))
        .map(|((o, a), cell_runs)| matrix::cell(o.clone(), a.clone(), cell_runs))
        .collect();
    harness.shutdown().await;
    print_outside_logs();
    let m = matrix::Matrix {
        template: template.name.clone(),
        kinds,
        cells,
    };
    if let Err(code) = finish(&out, &runs, Some(&m)) {
        return code;
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
    let plans = match args.partition {
        None => plans,
        Some(p) => {
            let all = plans.len();
            let mine = p.select(plans, |plan| plan.source.display().to_string());
            eprintln!("partition {p}: {} of {all} scenarios", mine.len());
            // An empty shard is not an error (more shards than scenarios): its reports are
            // written, empty, so a CI job that collects them finds them.
            mine
        }
    };
    // Read the baseline before running anything: a bad file is a usage error.
    let base = match read_baseline(&args.gate) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let harness = match start_harness(&args.browsers).await {
        Ok(h) => h,
        Err(code) => return code,
    };
    let out = std::sync::Mutex::new(reporters(
        std::io::stderr().is_terminal(),
        args.repeat > 1,
        false,
        &ReportFiles {
            json: args.json.as_deref(),
            junit: args.outputs.junit.as_deref(),
            markdown: args.markdown.as_deref(),
            html: args.outputs.html.as_deref(),
            baseline: args.gate.save_baseline.as_deref(),
        },
    ));
    report(
        &out,
        &reporter::Event::RunStarted {
            total: plans.len() as u64 * u64::from(args.repeat),
        },
    );
    let plans: Vec<Arc<Plan>> = plans.into_iter().map(Arc::new).collect();
    let jobs = jobs_of(&plans, args.repeat, |plan, rep| {
        if args.repeat > 1 {
            format!("{} (run {rep}/{})", plan.name, args.repeat)
        } else {
            plan.name.clone()
        }
    });
    let shared: Shared = (Arc::new(harness), Arc::new(out));
    let results = run_jobs(&shared, jobs, args.jobs.into()).await;
    let (harness, out) = shared;
    harness.shutdown().await;
    print_outside_logs();
    if let Err(code) = finish(&out, &results, None) {
        return code;
    }
    gate(&results, base.as_ref(), &args.gate)
}

type LoadedBaseline<'a> = (&'a PathBuf, report::baseline::Baseline);

fn read_baseline(g: &GateArgs) -> Result<Option<LoadedBaseline<'_>>, ExitCode> {
    let Some(path) = &g.baseline else {
        return Ok(None);
    };
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            serde_json::from_str::<report::baseline::Baseline>(&t).map_err(|e| e.to_string())
        })
        .map(|b| Some((path, b)))
        .map_err(|e| {
            eprintln!("error: baseline {}: {e}", path.display());
            ExitCode::from(EXIT_USAGE)
        })
}

/// The regression gate and the exit code of a set of runs.
fn gate(results: &[RunResult], base: Option<&LoadedBaseline<'_>>, g: &GateArgs) -> ExitCode {
    let mut regressed = false;
    if let Some((path, base)) = base {
        let found = report::baseline::compare(
            base,
            &report::summaries(results),
            g.max_regression,
            g.regression_floor_ms,
        );
        for r in &found {
            println!("REGRESSION {r}");
        }
        println!(
            "baseline {}: {} regression(s) over {}% (and {} ms)",
            path.display(),
            found.len(),
            g.max_regression,
            g.regression_floor_ms
        );
        regressed = !found.is_empty();
    }
    let totals = report::totals(results);
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

/// One shard's `--json` document, as much of it as a merge needs.
#[derive(serde::Deserialize)]
struct ShardReport {
    tool: String,
    #[serde(default)]
    matrix: Option<matrix::Matrix>,
    runs: Vec<RunResult>,
}

fn merge(args: MergeArgs) -> ExitCode {
    let base = match read_baseline(&args.gate) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut runs = Vec::new();
    let mut merged: Option<matrix::Matrix> = None;
    let mut kinds_of: Option<(PathBuf, bool)> = None;
    let mut seen = std::collections::HashSet::new();
    for f in &args.files {
        if !seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())) {
            eprintln!(
                "error: {} is given twice: its runs would count twice",
                f.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
        let shard = match std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<ShardReport>(&t).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "error: {}: not a JSON report of rtc-harness (`run --json` or `matrix --json`): {e}",
                    f.display()
                );
                return ExitCode::from(EXIT_USAGE);
            }
        };
        if shard.tool != report::TOOL {
            eprintln!(
                "error: {} was written by {}, this is {}: merge shards of one harness version",
                f.display(),
                shard.tool,
                report::TOOL
            );
            return ExitCode::from(EXIT_USAGE);
        }
        let is_matrix = shard.matrix.is_some();
        match &kinds_of {
            Some((first, m)) if *m != is_matrix => {
                eprintln!(
                    "error: {} is a {} report and {} a {} one: merge shards of one command",
                    f.display(),
                    if is_matrix { "matrix" } else { "run" },
                    first.display(),
                    if *m { "matrix" } else { "run" }
                );
                return ExitCode::from(EXIT_USAGE);
            }
            Some(_) => {}
            None => kinds_of = Some((f.clone(), is_matrix)),
        }
        if let Some(m) = shard.matrix {
            match &mut merged {
                None => merged = Some(m),
                Some(all) => all.cells.extend(m.cells),
            }
        }
        runs.extend(shard.runs);
    }
    eprintln!(
        "merged {} runs from {} reports",
        runs.len(),
        args.files.len()
    );
    let out = std::sync::Mutex::new(
        reporter::Fanout::default()
            .with_file(args.json.as_deref(), reporter::json)
            .with_file(args.outputs.junit.as_deref(), reporter::junit)
            .with_file(args.markdown.as_deref(), reporter::markdown)
            .with_file(args.outputs.html.as_deref(), reporter::html)
            .with_file(args.gate.save_baseline.as_deref(), reporter::baseline),
    );
    if let Some(m) = &merged {
        print!("{}", m.render_text());
    } else {
        let t = report::totals(&runs);
        println!(
            "{} passed, {} failed, {} setup errors",
            t.passed, t.failed, t.setup_errors
        );
    }
    if let Err(code) = finish(&out, &runs, merged.as_ref()) {
        return code;
    }
    // The codes `matrix` and `run` give: a setup error first, then a failed cell or run.
    match &merged {
        Some(m)
            if !m.cells.iter().all(|c| c.ok())
                && !runs.iter().any(|r| r.verdict == Verdict::SetupError) =>
        {
            ExitCode::from(EXIT_FAILED)
        }
        _ => gate(&runs, base.as_ref(), &args.gate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webdriver_url_is_bare_or_for_one_browser_kind() {
        assert_eq!(
            parse_webdriver_url("http://127.0.0.1:4444"),
            Ok((None, "http://127.0.0.1:4444".to_string()))
        );
        assert_eq!(
            parse_webdriver_url("firefox=http://grid:4444/wd/hub/"),
            Ok((
                Some(PeerKind::Firefox),
                "http://grid:4444/wd/hub".to_string()
            ))
        );
        // An `=` inside the URL is not a kind.
        assert_eq!(
            parse_webdriver_url("http://grid:4444/a=b"),
            Ok((None, "http://grid:4444/a=b".to_string()))
        );
        assert!(parse_webdriver_url("safari=http://grid:4444").is_err());
        assert!(parse_webdriver_url("bot=http://grid:4444").is_err());
        assert!(parse_webdriver_url("chromium=grid:4444").is_err());
    }

    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        browsers: BrowserArgs,
    }

    #[test]
    fn a_kind_of_its_own_wins_over_a_bare_url() {
        let args = Only::try_parse_from([
            "x",
            "--webdriver-url",
            "http://all:4444",
            "--webdriver-url",
            "chromium=http://chrome-only:4444",
        ])
        .expect("parses")
        .browsers;
        assert_eq!(
            args.webdriver_for(PeerKind::Chromium).as_deref(),
            Some("http://chrome-only:4444")
        );
        assert_eq!(
            args.webdriver_for(PeerKind::Firefox).as_deref(),
            Some("http://all:4444")
        );
        let none = Only::try_parse_from(["x"]).expect("parses").browsers;
        assert_eq!(none.webdriver_for(PeerKind::Chromium), None);
        assert!(Only::try_parse_from(["x", "--advertise-addr", "0.0.0.0"]).is_err());
        assert!(Only::try_parse_from(["x", "--advertise-addr", "10.0.0.2"]).is_ok());
    }
}
