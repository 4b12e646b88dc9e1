//! Criterion benchmarks of ICE setup time.
//!
//! **What one sample measures:** a full connect through the harness (real signaling server,
//! real peers, loopback host candidates), timed from the offerer's `createOffer()` call to the
//! moment *both* peers report `connectionState` `connected`, as read from the run's timeline
//! (the later of the two peers' `setup_ms`). Peer start-up (browser launch, page load) and
//! teardown are not in the sample. Each sample is one connect with a data channel `chat`.
//!
//! Benchmarks: `bot-bot/defaults` and `bot-bot/tuned` (20 ms check interval, no peer-reflexive
//! wait), `bot-chromium/defaults` and `bot-chromium/tuned` (bot offers). The Chromium ones are
//! skipped, with the reason printed, when Chromium or chromedriver is missing.
//!
//! Run: `ci/netns-run cargo bench -p rtc-harness --bench ice_setup`.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rtc_harness::engine::Verdict;
use rtc_harness::runner::{Harness, Options};
use rtc_harness::scenario::Plan;
use std::path::Path;
use std::time::Duration;

fn plan(answerer_kind: &str, tuned: bool) -> Plan {
    let timers = if tuned {
        "ice_check_interval_ms = 20\nprflx_acceptance_wait_ms = 0\n"
    } else {
        ""
    };
    let answerer_timers = if answerer_kind == "bot" { timers } else { "" };
    let text = format!(
        "name = \"bench\"\ntimeout_s = 20\n\
         [[peers]]\nid = \"offerer\"\nkind = \"bot\"\n{timers}\
         [[peers]]\nid = \"answerer\"\nkind = \"{answerer_kind}\"\n{answerer_timers}\
         [[steps]]\naction = \"connect\"\nofferer = \"offerer\"\nanswerer = \"answerer\"\ndata_channel = \"chat\"\n"
    );
    rtc_harness::scenario::parse(Path::new("bench.toml"), &text).expect("bench plan")
}

fn ice_setup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let harness = rt
        .block_on(Harness::start(Options::default()))
        .expect("harness");
    for (group, kind) in [("bot-bot", "bot"), ("bot-chromium", "chromium")] {
        let mut g = c.benchmark_group(group);
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for (name, tuned) in [("defaults", false), ("tuned", true)] {
            let p = plan(kind, tuned);
            if let Err(e) = harness.engine.check_kinds(&p) {
                println!("skipping {group}/{name}: {e}");
                continue;
            }
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let r = rt.block_on(harness.engine.run(&p, 1, &|_, _| {}));
                        assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reason);
                        let ms = rtc_harness::matrix::both_connected_ms(&r)
                            .expect("both peers connected");
                        total += Duration::from_secs_f64(ms / 1000.0);
                    }
                    total
                })
            });
        }
        g.finish();
    }
    rt.block_on(harness.shutdown());
}

criterion_group!(benches, ice_setup);
criterion_main!(benches);
