//! Every file in `scenarios/` is one test; files in `scenarios/must-fail/` must carry an
//! `expected_failure` and pass only by failing with it. Then the interop matrix: the built-in
//! template for every ordered pair of bot, chromium and firefox, one test per cell.
//!
//! Browser scenarios need Chromium and chromedriver (Firefox and geckodriver, coturn), network-lab
//! scenarios root and `ip`/`tc`/`nft`. Without them the test is reported as ignored, with the
//! reason printed, unless `CI=true`: then what is missing fails the test.
//! Tests run one at a time (browsers and timing figures do not share 2 cores well).

use libtest_mimic::{Arguments, Failed, Trial};
use rtc_harness::engine::Verdict;
use rtc_harness::peer::browser::chromium::Chromium;
use rtc_harness::peer::browser::{Flavor, Instance};
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario;
use rtc_harness::scenario::{PeerKind, Plan};
use rtc_harness::{matrix, report};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

struct Shared {
    rt: tokio::runtime::Runtime,
    harness: Harness,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let harness = rt
            .block_on(Harness::start(Options::default()))
            .expect("harness server");
        Shared { rt, harness }
    })
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = scenario::discover(std::slice::from_ref(&root)).expect("scenarios/ is readable");
    assert!(
        !files.is_empty(),
        "no scenario files under {}",
        root.display()
    );
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut trials: Vec<Trial> = files
        .into_iter()
        .map(|file| trial(&root, file, ci))
        .collect();
    let template = matrix::load_template(None).expect("built-in matrix template");
    let kinds = [PeerKind::Bot, PeerKind::Chromium, PeerKind::Firefox];
    for (o, a) in matrix::pairs(&kinds) {
        let plan = matrix::instantiate(&template, o, a);
        let name = format!("matrix/{}->{}", o.as_str(), a.as_str());
        trials.push(plan_trial(name, plan, ci));
    }
    trials.push(html_report_trial(ci));
    let conclusion = libtest_mimic::run(&args, trials);
    // Statics are never dropped: close the reused browsers explicitly.
    if let Some(s) = SHARED.get() {
        s.rt.block_on(s.harness.shutdown());
    }
    conclusion.exit();
}

fn plan_trial(name: String, plan: Plan, ci: bool) -> Trial {
    let ignored = match shared().harness.engine.check_kinds(&plan) {
        Err(reason) if !ci => {
            eprintln!("skipping {name}: {reason}");
            true
        }
        _ => false,
    };
    Trial::test(name, move || run_plan(&plan)).with_ignored_flag(ignored)
}

fn trial(root: &Path, file: PathBuf, ci: bool) -> Trial {
    let name = file
        .strip_prefix(root)
        .unwrap_or(&file)
        .display()
        .to_string();
    let must_fail = file.parent().is_some_and(|p| p.ends_with("must-fail"));
    // Decide about skipping before running: a plan that cannot load fails its test.
    let skip = scenario::load(&file)
        .ok()
        .and_then(|plan| shared().harness.engine.check_kinds(&plan).err());
    let ignored = match &skip {
        Some(reason) if !ci => {
            eprintln!("skipping {name}: {reason}");
            true
        }
        _ => false,
    };
    let file = Arc::new(file);
    Trial::test(name, move || run_one(&file, must_fail)).with_ignored_flag(ignored)
}

fn run_one(file: &Path, must_fail: bool) -> Result<(), Failed> {
    let plan = scenario::load(file).map_err(|e| Failed::from(e.to_string()))?;
    if must_fail && plan.expected_failure.is_none() {
        return Err("a must-fail scenario needs `expected_failure` naming its diagnostic".into());
    }
    if !must_fail && plan.expected_failure.is_some() {
        return Err("only scenarios under must-fail/ may set `expected_failure`".into());
    }
    run_plan(&plan)
}

fn run_plan(plan: &Plan) -> Result<(), Failed> {
    let s = shared();
    s.harness
        .engine
        .check_kinds(plan)
        .map_err(|e| Failed::from(format!("{e} (CI=true: what is missing is a failure)")))?;
    let r = s.rt.block_on(s.harness.engine.run(plan, 1, &|_, _| {}));
    match r.verdict {
        Verdict::Pass => {
            print!("{}", report::render_run(&r));
            Ok(())
        }
        _ => Err(report::render_run(&r).into()),
    }
}

/// The HTML report, opened in headless Chromium: the elements a person looks for exist.
fn html_report_trial(ci: bool) -> Trial {
    let chromium = Chromium::default();
    let ignored = match chromium.programs() {
        Err(reason) if !ci => {
            eprintln!("skipping reports/html-in-chromium: {reason}");
            true
        }
        _ => false,
    };
    Trial::test("reports/html-in-chromium", move || {
        let s = shared();
        let template = matrix::load_template(None).map_err(Failed::from)?;
        let plan = matrix::instantiate(&template, PeerKind::Bot, PeerKind::Bot);
        let runs: Vec<_> = (1..=2)
            .map(|rep| s.rt.block_on(s.harness.engine.run(&plan, rep, &|_, _| {})))
            .collect();
        let m = matrix::Matrix {
            template: template.name.clone(),
            kinds: vec![PeerKind::Bot],
            cells: vec![matrix::cell(PeerKind::Bot, PeerKind::Bot, &runs)],
        };
        let html = report::html::render("test report", &runs, &report::summaries(&runs), Some(&m))
            .map_err(Failed::from)?;
        // Nothing fetched from anywhere (an SVG's xmlns is a name, not a fetch).
        for banned in [
            "<script",
            "<link",
            "src=\"http",
            "href=\"http",
            "url(http",
            "@import",
        ] {
            if html.contains(banned) {
                return Err(format!("the report must be self-contained, found {banned:?}").into());
            }
        }
        let dir = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
        let file = dir.path().join("report.html");
        std::fs::write(&file, &html).map_err(|e| Failed::from(e.to_string()))?;
        s.rt.block_on(async {
            let browser = Instance::start(&chromium, dir.path(), "report")
                .await
                .map_err(|e| Failed::from(e.to_string()))?;
            let checked = tokio::time::timeout(std::time::Duration::from_secs(60), async {
                let c = browser.client();
                c.goto(&format!("file://{}", file.display()))
                    .await
                    .map_err(|e| e.to_string())?;
                for css in [
                    "section.scenario h2 .pass",
                    "div.chart.timeline svg",
                    "table.metrics",
                    "div.chart.distribution svg",
                    "table.percentiles",
                    "div.chart.matrix svg",
                    "div.legend",
                ] {
                    c.find(fantoccini::Locator::Css(css))
                        .await
                        .map_err(|e| format!("{css}: {e}"))?;
                }
                let lanes = c
                    .find_all(fantoccini::Locator::Css("div.chart.timeline svg rect"))
                    .await
                    .map_err(|e| e.to_string())?;
                if lanes.len() < 8 {
                    return Err(format!("timeline has only {} shapes", lanes.len()));
                }
                Ok::<(), String>(())
            })
            .await
            .unwrap_or_else(|_| Err("the report page did not answer within 60 s".into()));
            browser.close().await;
            checked.map_err(Failed::from)
        })
    })
    .with_ignored_flag(ignored)
}
