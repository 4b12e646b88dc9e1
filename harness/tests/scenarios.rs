//! Every file in `scenarios/` is one test (see [`rtc_harness::testing`]: files in
//! `scenarios/must-fail/` must carry an `expected_failure` and pass only by failing with it).
//! Then the interop matrix: the built-in template for every ordered pair of bot, chromium and
//! firefox, one test per cell; and the HTML report opened in Chromium.
//!
//! Browser scenarios need Chromium and chromedriver (Firefox and geckodriver, coturn), network-lab
//! scenarios root and `ip`/`tc`/`nft`. Without them the test is reported as ignored, with the
//! reason printed, unless `CI=true`: then what is missing fails the test.
//! Tests run one at a time (browsers and timing figures do not share 2 cores well).

use libtest_mimic::{Failed, Trial};
use rtc_harness::matrix;
use rtc_harness::peer::browser::chromium::Chromium;
use rtc_harness::peer::browser::{Flavor, Instance};
use rtc_harness::report;
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
            trials.push(html_report_trial(cx));
            trials
        })
        .run()
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
