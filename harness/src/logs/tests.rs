//! The capture layer without peers: routing by span, counting, files, filters.

use super::*;
use tracing::Instrument;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

/// A subscriber with only the capture layer, filtered as `init` does for `rust_log`.
fn subscriber(hub: &Arc<Hub>, rust_log: &str) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(
        hub.layer()
            .with_filter(EnvFilter::new(capture_directives(rust_log))),
    )
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn lines_are_routed_by_run_and_peer_span_and_counted_by_level() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(Some(dir.path().join("outside.log")));
    let logs = tracing::subscriber::with_default(subscriber(&hub, ""), || {
        let capture = hub.begin(dir.path(), "lab-x.r1", "# header\n");
        capture.span().in_scope(|| {
            peer_span("alice").in_scope(|| {
                tracing::warn!(target: "rtc_ice::agent", "alice warns");
                tracing::info!(target: "rtc_ice::agent", "below the default level");
            });
            peer_span("bob").in_scope(|| {
                tracing::error!(target: "rtc_turn::client", code = 403, "CreatePermission");
                tracing::warn!(target: "rtc_harness::engine", "the harness's own: not captured");
            });
            tracing::warn!(target: "hyper", "no peer span");
        });
        capture.finish().unwrap()
    });
    assert_eq!(logs.lines, 3);
    assert_eq!(
        logs.counts,
        LevelCounts {
            error: 1,
            warn: 2,
            ..Default::default()
        }
    );
    assert_eq!(logs.by_peer["alice"].warn, 1);
    assert_eq!(logs.by_peer["bob"].error, 1);
    assert_eq!(logs.by_peer[UNATTRIBUTED].warn, 1);
    assert_eq!(
        logs.peer_files.keys().collect::<Vec<_>>(),
        ["alice", "bob"],
        "no file of its own for unattributed lines"
    );
    let run = read(&logs.file);
    assert!(logs.file.ends_with("lab-x.r1.log"), "{}", logs.file);
    assert!(run.starts_with("# header\n"));
    assert_eq!(run.lines().count(), 4, "{run}");
    assert!(
        run.contains("WARN  alice        rtc_ice::agent: alice warns"),
        "{run}"
    );
    assert!(
        run.contains("ERROR bob          rtc_turn::client: CreatePermission code=403"),
        "{run}"
    );
    assert!(run.contains(&format!("WARN  {UNATTRIBUTED}")), "{run}");
    assert!(!run.contains("below the default level") && !run.contains("the harness's own"));
    let bob = read(&logs.peer_files["bob"]);
    assert!(logs.peer_files["bob"].ends_with("lab-x.r1.bob.log"));
    assert_eq!(bob.lines().count(), 1);
    assert!(bob.contains("CreatePermission"));
    assert_eq!(logs.last["bob"].len(), 1);
    assert!(logs.last["bob"][0].contains("ERROR rtc_turn::client: CreatePermission code=403"));
    assert_eq!(hub.outside().0.total(), 0);
}

#[test]
fn log_crate_records_keep_their_target_and_span() {
    // webrtc-rs logs through the `log` crate; `init` converts its records (tracing-log).
    let _ = tracing_log::LogTracer::init();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(None);
    let logs = tracing::subscriber::with_default(subscriber(&hub, "rtc_sctp=debug"), || {
        let capture = hub.begin(dir.path(), "s.r1", "");
        capture.span().in_scope(|| {
            peer_span("a").in_scope(|| {
                log::warn!(target: "rtc_dtls::conn", "udp send: Operation not permitted");
                log::debug!(target: "rtc_sctp::association", "more with RUST_LOG");
                log::debug!(target: "rtc_dtls::conn", "not asked for");
            });
        });
        capture.finish().unwrap()
    });
    assert_eq!(logs.by_peer["a"].warn, 1, "{logs:?}");
    assert_eq!(logs.by_peer["a"].debug, 1, "{logs:?}");
    let run = read(&logs.file);
    assert!(
        run.contains("rtc_dtls::conn: udp send: Operation not permitted"),
        "{run}"
    );
    assert!(
        run.contains("rtc_sctp::association: more with RUST_LOG"),
        "{run}"
    );
    assert!(!run.contains("log.target"), "{run}");
}

#[test]
fn tasks_spawned_through_the_span_runtime_carry_the_peer_span() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(None);
    let logs = tracing::subscriber::with_default(subscriber(&hub, ""), || {
        let capture = hub.begin(dir.path(), "rt.r1", "");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(
            async {
                let span = peer_span("bot");
                let runtime = runtime::SpanRuntime::new(
                    Arc::new(webrtc::runtime::TokioRuntime),
                    span.clone(),
                );
                let (tx, rx) = tokio::sync::oneshot::channel();
                // Spawned outside the peer's span, as webrtc-rs spawns its driver.
                webrtc::runtime::Runtime::spawn(
                    &runtime,
                    Box::pin(async move {
                        tracing::error!(target: "webrtc::peer_connection", "driver line");
                        let _ = tx.send(());
                    }),
                )
                .detach();
                let (tx2, rx2) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tracing::warn!(target: "webrtc::peer_connection", "plain tokio task");
                    let _ = tx2.send(());
                });
                rx.await.unwrap();
                rx2.await.unwrap();
            }
            .instrument(capture.span().clone()),
        );
        capture.finish().unwrap()
    });
    assert_eq!(logs.by_peer["bot"].error, 1, "{logs:?}");
    // A task spawned without the span is still the run's (the only one), unattributed.
    assert_eq!(logs.by_peer[UNATTRIBUTED].warn, 1, "{logs:?}");
}

#[test]
fn lines_outside_runs_go_to_the_outside_file_unless_one_run_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.log");
    let hub = Hub::new(Some(outside.clone()));
    tracing::subscriber::with_default(subscriber(&hub, ""), || {
        tracing::warn!(target: "hyper", "before any run");
        let one = hub.begin(dir.path(), "one.r1", "");
        tracing::warn!(target: "hyper", "while one run is captured");
        let two = hub.begin(dir.path(), "two.r1", "");
        tracing::warn!(target: "hyper", "while two are");
        let two = two.finish().unwrap();
        let one = one.finish().unwrap();
        assert_eq!(one.lines, 1);
        assert_eq!(two.lines, 0);
        assert!(read(&one.file).contains("while one run is captured"));
    });
    let (counts, path) = hub.outside();
    assert_eq!(counts.warn, 2);
    assert_eq!(path.as_deref(), Some(outside.as_path()));
    let text = std::fs::read_to_string(&outside).unwrap();
    assert!(
        text.contains("before any run") && text.contains("while two are"),
        "{text}"
    );
}

#[test]
fn a_reused_base_name_gets_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(None);
    let a = hub
        .begin(dir.path(), "templates-matrix.r1", "")
        .finish()
        .unwrap();
    let b = hub
        .begin(dir.path(), "templates-matrix.r1", "")
        .finish()
        .unwrap();
    assert!(a.file.ends_with("templates-matrix.r1.log"), "{}", a.file);
    assert!(b.file.ends_with("templates-matrix.r1-2.log"), "{}", b.file);
}

#[test]
fn base_names_come_from_the_folder_the_file_and_the_repetition() {
    assert_eq!(
        base_name(Path::new("scenarios/lab/relay-bot-bot.toml"), 2),
        "lab-relay-bot-bot.r2"
    );
    assert_eq!(base_name(Path::new("x y.toml"), 1), "x_y.r1");
}

#[test]
fn rust_log_directives_come_after_the_default_and_win() {
    let f = |rust_log: &str, target: &str, level: Level| {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(None);
        tracing::subscriber::with_default(subscriber(&hub, rust_log), || {
            let c = hub.begin(dir.path(), "f.r1", "");
            c.span().in_scope(|| match level {
                Level::WARN => tracing::warn!(target: "rtc_ice", "w"),
                Level::INFO => tracing::info!(target: "rtc_ice", "i"),
                _ => tracing::warn!(target: "rtc_dtls", "w"),
            });
            let _ = target;
            c.finish().unwrap().lines
        })
    };
    assert_eq!(f("", "rtc_ice", Level::WARN), 1);
    assert_eq!(f("", "rtc_ice", Level::INFO), 0);
    assert_eq!(f("rtc_ice=info", "rtc_ice", Level::INFO), 1);
    assert_eq!(
        f("error", "rtc_ice", Level::WARN),
        0,
        "a bare level replaces the default"
    );
    // Attribution spans stay on whatever RUST_LOG says.
    assert_eq!(f("off,rtc_ice=warn", "rtc_ice", Level::WARN), 1);
}

#[test]
fn the_diagnosis_tail_shows_the_last_lines_of_the_peers_involved() {
    let mut logs = RunLogs {
        file: "/l/x.r1.log".into(),
        ..RunLogs::default()
    };
    logs.last.insert(
        "a".into(),
        (1..=5)
            .map(|i| format!("{i}.0 ms WARN rtc_ice: w{i}"))
            .collect(),
    );
    logs.last
        .insert("b".into(), vec!["9.0 ms ERROR rtc_turn: 403".into()]);
    logs.by_peer.insert(
        "a".into(),
        LevelCounts {
            warn: 5,
            ..Default::default()
        },
    );
    logs.peer_files.insert("a".into(), "/l/x.r1.a.log".into());
    let tail = logs.diagnosis(&["a".into()]).unwrap();
    assert_eq!(
        tail,
        "\nlast library lines of a (5 WARN; /l/x.r1.a.log):\n  3.0 ms WARN rtc_ice: w3\n  4.0 ms WARN rtc_ice: w4\n  5.0 ms WARN rtc_ice: w5"
    );
    assert!(logs.diagnosis(&["c".into()]).is_none());
    logs.lines = 6;
    logs.counts = LevelCounts {
        error: 1,
        warn: 5,
        ..Default::default()
    };
    assert_eq!(
        logs.summary_line(),
        "logs: 6 library lines (1 ERROR, 5 WARN) -> /l/x.r1.log"
    );
}
