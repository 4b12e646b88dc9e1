//! `rtc-harness`: run and check scenario files.
//!
//! Exit codes: 0 every scenario passed; 1 at least one failed; 2 usage error or invalid
//! scenario file; 3 a peer could not be set up (missing browser or driver); 130 interrupted.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rtc_harness::engine::{RunResult, Verdict};
use rtc_harness::report;
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario::{self, Plan};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: a scenario failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or an invalid scenario file.
const EXIT_USAGE: u8 = 2;
/// Exit code: a peer could not be set up.
const EXIT_SETUP: u8 = 3;
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
    /// chromedriver binary (default: `chromedriver` on PATH).
    #[arg(long, value_name = "PATH")]
    chromedriver: Option<PathBuf>,
    /// Chromium binary (default: Debian's /usr/lib/chromium/chromium, else PATH).
    #[arg(long, value_name = "PATH")]
    chromium: Option<PathBuf>,
    /// Folder for driver logs.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
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
        Command::Run(args) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_SETUP);
                }
            };
            let code = rt.block_on(async {
                tokio::select! {
                    code = run(args) => code,
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("interrupted: stopping every peer, browser and driver");
                        ExitCode::from(EXIT_INTERRUPTED)
                    }
                }
            });
            // Dropping the runtime drops the run: every process group is killed on drop.
            drop(rt);
            code
        }
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
    let harness = match Harness::start(Options {
        chromedriver: args.chromedriver.clone(),
        chromium: args.chromium.clone(),
        log_dir: args.log_dir.clone(),
    })
    .await
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the harness server: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
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
            summaries,
            totals,
            peak_rss_kib: peak,
        };
        let written = serde_json::to_vec_pretty(&doc)
            .map_err(|e| e.to_string())
            .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(EXIT_SETUP);
        }
    }
    if results.iter().any(|r| r.verdict == Verdict::SetupError) {
        ExitCode::from(EXIT_SETUP)
    } else if totals.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
