//! Scenario folders as `cargo test`, in this repository or in a crate of your own.
//!
//! A [`Suite`] turns every scenario file under a folder into one test of a `harness = false`
//! test target (built on `libtest-mimic`, so `cargo test` filters, `--list`, `--ignored` and
//! `--exact` work as usual):
//!
//! - the test's name is the file's path under the folder, e.g. `must-fail/wrong-count.toml`;
//! - a file under a folder named `must-fail` must set `expected_failure` and passes only by
//!   failing with that diagnostic; no other file may set it;
//! - a file whose peers, coturn or network lab are not installed here is reported as ignored,
//!   with the reason printed, unless the environment has `CI=true`: then it fails;
//! - a file naming a peer kind that no launcher is registered for fails, with the file, line,
//!   column and the kinds there are.
//!
//! Kinds of your own plug in with [`Suite::with_launcher`]: any [`Launcher`] (and its
//! [`crate::peer::Peer`]s), named as scenario files name it (`kind = "my-endpoint"`). Tests run
//! one at a time, on one harness (signaling server, launchers, engine) shared by all of them.
//!
//! In `tests/scenarios.rs` of your crate, with `[[test]] name = "scenarios", harness = false`
//! in its `Cargo.toml` (here the built-in bot stands in for a launcher of your own):
//!
//! ```no_run
//! use rtc_harness::peer::bot::BotLauncher;
//! use std::sync::Arc;
//!
//! fn main() {
//!     rtc_harness::testing::Suite::new("scenarios")
//!         .with_launcher("my-endpoint", Arc::new(BotLauncher::default()))
//!         .run()
//! }
//! ```

use crate::engine::Verdict;
use crate::peer::{Launcher, Launchers};
use crate::report;
use crate::runner::{Harness, Options};
use crate::scenario::{self, LoadError, PeerKind, Plan};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use libtest_mimic;

/// Why a suite could not be set up (before any test ran).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A name given to [`Suite::with_launcher`] is not a kind name.
    #[error("with_launcher({name:?}): {reason}")]
    KindName {
        /// The name given.
        name: String,
        /// Why it is not a kind name.
        reason: String,
    },
    /// The tokio runtime could not be made.
    #[error("cannot start a tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// The harness server could not start.
    #[error("cannot start the harness server: {0}")]
    Start(std::io::Error),
    /// The scenario folder could not be read.
    #[error(transparent)]
    Discover(LoadError),
    /// The scenario folder has no `*.toml` file.
    #[error("no scenario files under {}", .0.display())]
    Empty(PathBuf),
}

/// What every test of a suite shares: the runtime and the started harness.
pub struct Context {
    rt: tokio::runtime::Runtime,
    harness: Harness,
    ci: bool,
}

impl Context {
    /// The harness the suite's tests run on.
    pub fn harness(&self) -> &Harness {
        &self.harness
    }

    /// Runs a future to completion on the suite's runtime (from a test's body).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Whether the environment has `CI=true` (then nothing is skipped).
    pub fn ci(&self) -> bool {
        self.ci
    }

    /// Whether a test should be reported as ignored because of `missing` (what is not
    /// installed here, if anything); prints the reason when it is. Never under `CI=true`.
    pub fn skip(&self, name: &str, missing: Option<impl std::fmt::Display>) -> bool {
        match missing {
            Some(reason) if !self.ci => {
                eprintln!("skipping {name}: {reason}");
                true
            }
            _ => false,
        }
    }

    /// Runs a plan once: `Ok` with the run's report printed when its verdict is pass, else the
    /// report as the failure. What the plan needs must be installed (under `CI=true` a missing
    /// program is this failure).
    pub fn run_plan(&self, plan: &Plan) -> Result<(), Failed> {
        self.harness
            .engine
            .check_kinds(plan)
            .map_err(|e| Failed::from(format!("{e} (CI=true: what is missing is a failure)")))?;
        let r = self
            .rt
            .block_on(self.harness.engine.run(plan, 1, &|_, _| {}));
        match r.verdict {
            Verdict::Pass => {
                print!("{}", report::render_run(&r));
                Ok(())
            }
            _ => Err(report::render_run(&r).into()),
        }
    }

    /// A test that runs `plan` once ([`Context::run_plan`]), ignored when what it needs is
    /// not installed ([`Context::skip`]).
    pub fn plan_trial(self: &Arc<Self>, name: String, plan: Plan) -> Trial {
        let ignored = self.skip(&name, self.harness.engine.check_kinds(&plan).err());
        let cx = self.clone();
        Trial::test(name, move || cx.run_plan(&plan)).with_ignored_flag(ignored)
    }

    /// The test of one scenario file under `root` (see the module documentation).
    pub fn file_trial(self: &Arc<Self>, root: &Path, file: PathBuf) -> Trial {
        let name = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let must_fail = file.parent().is_some_and(|p| p.ends_with("must-fail"));
        let kinds = self.harness.engine.kinds();
        // Decide about skipping before running: a plan that cannot load fails its test.
        let missing = scenario::load_with_kinds(&file, &kinds)
            .ok()
            .and_then(|plan| self.harness.engine.check_kinds(&plan).err());
        let ignored = self.skip(&name, missing);
        let cx = self.clone();
        Trial::test(name, move || {
            let plan = scenario::load_with_kinds(&file, &kinds)
                .map_err(|e| Failed::from(e.to_string()))?;
            if must_fail && plan.expected_failure.is_none() {
                return Err(
                    "a must-fail scenario needs `expected_failure` naming its diagnostic".into(),
                );
            }
            if !must_fail && plan.expected_failure.is_some() {
                return Err("only scenarios under must-fail/ may set `expected_failure`".into());
            }
            cx.run_plan(&plan)
        })
        .with_ignored_flag(ignored)
    }
}

type ExtraTrials = Box<dyn FnOnce(&Arc<Context>) -> Vec<Trial>>;

/// A scenario folder as a test suite (see the module documentation).
pub struct Suite {
    root: PathBuf,
    options: Options,
    kinds: Vec<(String, Arc<dyn Launcher>)>,
    extra: Vec<ExtraTrials>,
}

impl Suite {
    /// Every `*.toml` under `root` (searched recursively) is one test. A relative `root` is
    /// taken from the current directory, which `cargo test` sets to the package's folder.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            options: Options::default(),
            kinds: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Registers `launcher` for peer kind `kind` (a name scenario files use as
    /// `kind = "..."`: lowercase ASCII letters, digits and `-`; a built-in name replaces that
    /// kind's launcher).
    pub fn with_launcher(mut self, kind: &str, launcher: Arc<dyn Launcher>) -> Self {
        self.kinds.push((kind.to_string(), launcher));
        self
    }

    /// Harness options (browser binaries, log folder, ...). Launchers in `options.launchers`
    /// are kept; those of [`Suite::with_launcher`] are added to them.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// More tests, made once the harness is up (they run after the files' tests).
    pub fn with_trials(mut self, f: impl FnOnce(&Arc<Context>) -> Vec<Trial> + 'static) -> Self {
        self.extra.push(Box::new(f));
        self
    }

    /// Starts the harness and makes every test, without running them.
    pub fn trials(self) -> Result<(Arc<Context>, Vec<Trial>), SuiteError> {
        let mut extra = Launchers::default();
        for (name, launcher) in self.kinds {
            let kind: PeerKind = name
                .parse()
                .map_err(|reason| SuiteError::KindName { name, reason })?;
            extra = extra.with(kind, launcher);
        }
        let mut options = self.options;
        options.launchers = options.launchers.extend(&extra);
        let files =
            scenario::discover(std::slice::from_ref(&self.root)).map_err(SuiteError::Discover)?;
        if files.is_empty() {
            return Err(SuiteError::Empty(self.root));
        }
        let rt = tokio::runtime::Runtime::new().map_err(SuiteError::Runtime)?;
        let harness = rt
            .block_on(Harness::start(options))
            .map_err(SuiteError::Start)?;
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let cx = Arc::new(Context { rt, harness, ci });
        let mut trials: Vec<Trial> = files
            .into_iter()
            .map(|f| cx.file_trial(&self.root, f))
            .collect();
        for f in self.extra {
            trials.extend(f(&cx));
        }
        Ok((cx, trials))
    }

    /// Runs the suite with the command line's arguments, one test at a time, closes the
    /// harness's browsers and exits with libtest's status (a setup error exits with 101).
    pub fn run(self) -> ! {
        let mut args = Arguments::from_args();
        args.test_threads = Some(1);
        let (cx, trials) = match self.trials() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(101);
            }
        };
        let conclusion = libtest_mimic::run(&args, trials);
        cx.block_on(cx.harness.shutdown());
        drop(cx);
        conclusion.exit()
    }
}
