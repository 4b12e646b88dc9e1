//! The scenario engine: plan → peers → timeline → verdict and metrics.
//!
//! One run of a scenario goes through named stages:
//! 1. `RunSetup::start` (in [`context`]): the network lab, the TURN server, every peer (through
//!    [`Launchers`], never by kind), behind a guard that tears them down in order on every path;
//! 2. the steps, in order, each under its deadline: a step kind's module
//!    ([`steps`]) starts it and decides from the timeline when it is done;
//! 3. the events still in flight are flushed peer by peer, media counters and console output
//!    are collected, and the set-up is torn down;
//! 4. metrics ([`crate::metrics`]), explanations ([`crate::explain`]) and the verdict
//!    ([`judge`], pure) are worked out from the timeline.

pub mod context;
pub mod error;
pub mod judge;
pub mod steps;

use crate::clock::Clock;
use crate::metrics::{self, PeerMetrics};
use crate::peer::{Launchers, PeerError, PeerInfo, RawEvent};
use crate::scenario::Plan;
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use crate::verdict::Failure;
pub use context::Stage;
use context::{Deadline, RunCx, RunSetup, Sampler};
pub use error::{SetupError, StepError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use steps::{Progress, Step};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// How long a peer may take to start (a browser: driver, session, page, clock sync).
pub const LAUNCH_DEADLINE: Duration = Duration::from_secs(90);
/// How long each peer may take to confirm that every event it observed has been delivered.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
const MEDIA_DEADLINE: Duration = Duration::from_secs(5);
const DIAGNOSIS_EVENTS: usize = 8;
/// How often a waiting step looks at the app under test's process.
const APP_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a run may go on past its scenario's `timeout_s` before the engine gives up on it
/// (see [`Engine::run`]): every peer may take [`LAUNCH_DEADLINE`] to start, and flushing,
/// media counters and teardown have deadlines of their own, which this covers with room to
/// spare. Reaching it is a harness bug: some wait had no deadline.
pub const RUN_OVERRUN: Duration = Duration::from_secs(LAUNCH_DEADLINE.as_secs() + 60);

/// The outcome of one scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every step finished and every expectation held (or it failed as `expected_failure` said).
    Pass,
    /// A step got stuck or an expectation did not hold.
    Fail,
    /// The scenario could not run: a peer could not be started (missing browser or driver).
    SetupError,
}

/// Everything known about one scenario run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub name: String,
    /// Scenario file.
    pub file: String,
    /// 1-based repetition number.
    pub repetition: u32,
    /// Outcome.
    pub verdict: Verdict,
    /// Why it failed (first failure), or for an expected failure, what it failed with.
    pub reason: Option<String>,
    /// Unmet expectations.
    pub failures: Vec<Failure>,
    /// Steps completed.
    pub steps_completed: usize,
    /// Time of the end of the last step, ms on the timeline.
    pub end_of_steps_ms: f64,
    /// Wall time of the whole run including peer start-up and teardown, ms.
    pub wall_ms: f64,
    /// Peers, with versions.
    pub peers: Vec<PeerInfo>,
    /// Metrics by peer id.
    pub metrics: BTreeMap<String, PeerMetrics>,
    /// Where each peer's setup time went (see [`crate::explain`]).
    pub explanations: BTreeMap<String, Vec<String>>,
    /// Console output by peer id (browsers), up to the end of the run.
    pub console: BTreeMap<String, Vec<String>>,
    /// The embedded TURN server's log, when the scenario had one.
    pub turn_log: Option<String>,
    /// The app under test's log, when the harness started it (`[app] command`).
    pub app_log: Option<String>,
    /// Where each peer sat, when the scenario used the network lab.
    pub network: Option<crate::scenario::NetworkPlan>,
    /// Stats samples of every peer: every `stats_interval_ms` and at the end of each step.
    pub stats: Vec<StatsSample>,
    /// Media received, by peer id (connections with `media` only), at the end of the steps.
    pub media: BTreeMap<String, crate::peer::media::MediaCounters>,
    /// The `mark` steps' markers: name and time, ms on the timeline.
    pub marks: Vec<Mark>,
    /// All events.
    pub timeline: Timeline,
    /// Library log files and counts of this run (`None` when nothing captured them, e.g. under
    /// `cargo test`).
    pub logs: Option<crate::logs::RunLogs>,
    /// A `[load]` run's pairs connected, setup-time percentiles and process samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::load::LoadReport>,
    /// Intervals steps define (a mesh step's `mesh_complete_ms`), in step order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_metrics: Vec<StepMetric>,
}

/// An interval a step defines ([`crate::engine::steps::Step::metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StepMetric {
    /// The step, 1-based as in the progress lines.
    pub step: usize,
    /// The metric's name, e.g. `mesh_complete_ms`.
    pub name: String,
    /// Its value, ms.
    pub value_ms: f64,
}

/// A named point on the timeline (a `mark` step).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Mark {
    /// Its name.
    pub name: String,
    /// When, ms on the timeline.
    pub t_ms: f64,
}

impl RunResult {
    /// The full diagnostic text (reason and every failure), for matching `expected_failure`.
    pub fn diagnostic(&self) -> String {
        let mut s = self.reason.clone().unwrap_or_default();
        for f in &self.failures {
            s.push('\n');
            s.push_str(&f.to_string());
        }
        s
    }
}

/// Runs scenarios.
pub struct Engine {
    launchers: Launchers,
    signaling_url: String,
    clock: Clock,
    log_dir: std::path::PathBuf,
    /// Counts runs, so that signaling rooms never repeat across runs.
    run_serial: AtomicU64,
    /// The embedded signaling server's operator handle, when the engine's signaling is it.
    signaling_admin: Option<rtc_signaling::Admin>,
}

impl Engine {
    /// An engine whose peers use the signaling server at `signaling_url`; servers it starts
    /// (TURN) log into `log_dir`.
    pub fn new(
        launchers: Launchers,
        signaling_url: String,
        clock: Clock,
        log_dir: std::path::PathBuf,
    ) -> Self {
        Self {
            launchers,
            signaling_url,
            clock,
            log_dir,
            run_serial: AtomicU64::new(0),
            signaling_admin: None,
        }
    }

    /// Lets `drop_signaling` steps close peers' sockets on the signaling server at
    /// `signaling_url` (without it they fail: the harness cannot reach into another server).
    pub fn with_signaling_admin(mut self, admin: rtc_signaling::Admin) -> Self {
        self.signaling_admin = Some(admin);
        self
    }

    /// The peer kinds this engine has launchers for, sorted by name (load scenarios for it
    /// with [`crate::scenario::load_with_kinds`]).
    pub fn kinds(&self) -> Vec<crate::scenario::PeerKind> {
        self.launchers.kinds()
    }

    /// Whether every kind the plan needs is installed; the error names what is missing.
    pub fn check_kinds(&self, plan: &Plan) -> Result<(), PeerError> {
        if plan.ice.needs_coturn() {
            crate::turn::find()?;
        }
        if plan.network.is_some() {
            crate::lab::available().map_err(|why| {
                PeerError::failed(format!("the network lab is not available here: {why}"))
            })?;
        }
        for kind in plan.kinds() {
            match self.launchers.get(&kind) {
                Some(l) => l.check()?,
                None => {
                    return Err(PeerError::failed(format!(
                        "no launcher for peer kind {:?} (kinds: {})",
                        kind.as_str(),
                        self.launchers.names()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs one scenario once. `on_step` is told `(index, description)` as each step starts.
    /// Library log lines of the run go to files of its own (see [`crate::logs`]).
    pub async fn run(
        &self,
        plan: &Plan,
        repetition: u32,
        on_step: &(dyn Fn(usize, &str) + Sync),
    ) -> RunResult {
        self.run_staged(plan, repetition, on_step, &Stage::default())
            .await
    }

    /// [`Engine::run`], telling `stage` what the run is doing as it goes (a caller that runs
    /// it in a task of its own reads it if that task stops answering).
    pub async fn run_staged(
        &self,
        plan: &Plan,
        repetition: u32,
        on_step: &(dyn Fn(usize, &str) + Sync),
        stage: &Stage,
    ) -> RunResult {
        let capture = crate::logs::begin(&self.log_dir, plan, repetition);
        let limit = plan.timeout + RUN_OVERRUN;
        let run = self
            .run_captured(plan, repetition, on_step, stage)
            .instrument(capture.span().clone());
        let mut result = match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => {
                // The run's future is dropped here: its peers with it (browsers and apps are
                // killed on drop), so the next run starts clean.
                let r = RunResult::unfinished(
                    plan,
                    repetition,
                    format!(
                        "the run did not finish within {} s (timeout_s = {} plus {} s for \
                         start-up and teardown): it was stuck in {}; this is a harness bug (a \
                         wait without a deadline), please report it with this run's logs",
                        limit.as_secs(),
                        plan.timeout.as_secs(),
                        RUN_OVERRUN.as_secs(),
                        stage.get()
                    ),
                    limit,
                );
                tracing::error!("{}: {}", plan.name, r.reason.as_deref().unwrap_or_default());
                r
            }
        };
        capture.finish_into(&mut result, plan);
        result
    }

    async fn run_captured(
        &self,
        plan: &Plan,
        repetition: u32,
        on_step: &(dyn Fn(usize, &str) + Sync),
        stage: &Stage,
    ) -> RunResult {
        let wall = Instant::now();
        let sampler_task = plan
            .load
            .as_ref()
            .map(|l| ProcessSampler::start(l.sample_every, wall));
        let load_marks = std::sync::Mutex::new(crate::load::Marks::default());
        stage.set("starting the set-up (network lab, TURN server, app, peers)");
        // Each run its own serial (and so its own signaling rooms), even when runs overlap.
        let serial = self.run_serial.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel::<RawEvent>();
        let mut result = RunResult::new(plan, repetition);

        let setup = match RunSetup::start(self, plan, serial, &tx).await {
            Ok(s) => s,
            Err(f) => {
                result.verdict = f.error.verdict();
                result.reason = Some(f.error.to_string());
                result.peers = f.peers;
                result.turn_log = f.turn_log;
                result.app_log = f.app_log;
                result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
                return result;
            }
        };
        // Only the peers hold senders from here on.
        drop(tx);
        result.peers = setup.peers.iter().map(|p| p.peer.info()).collect();
        result.turn_log = setup.turn.as_ref().map(|t| t.log().display().to_string());
        result.app_log = setup
            .app
            .as_ref()
            .and_then(|a| a.log())
            .map(|l| l.display().to_string());
        let origin = self.clock.now_unix_ms();
        let mut timeline = Timeline::new();
        let mut sampler = Sampler::new(plan.stats_interval);
        let mut cx = RunCx {
            setup: &setup,
            timeline: &mut timeline,
            events: &mut rx,
            clock: self.clock,
            origin,
            deadline: Deadline {
                at: Instant::now() + plan.timeout,
                what: String::new(),
            },
            signaling_url: &self.signaling_url,
            signaling_admin: self.signaling_admin.as_ref(),
            serial,
            sampler: &mut sampler,
            stage,
        };
        let step_error = run_steps(
            plan,
            &mut cx,
            &|i, desc| {
                stage.set(format!("step {} ({desc})", i + 1));
                if plan.load.is_some() {
                    // A load plan's steps: connect every pair, hold, close every peer.
                    let now = Some(wall.elapsed().as_secs_f64() * 1000.0);
                    let mut m = load_marks.lock().unwrap_or_else(|e| e.into_inner());
                    match i {
                        1 => m.connected_ms = now,
                        2 => m.closing_ms = now,
                        _ => {}
                    }
                }
                on_step(i, desc)
            },
            &mut result.steps_completed,
        )
        .await;
        let end = cx.now_ms();
        stage.set("flushing the peers' events");
        // What is judged: every event that arrived while the steps ran (a browser's stamp may
        // map a little past `end`: its clock offset has an error and Firefox's timer is coarse),
        // plus events in flight that were stamped before `end`. Anything later is teardown.
        let in_flight = flush(&setup, &mut cx).await;
        let mut judged = cx.timeline.clone();
        for ev in in_flight {
            if ev.t_ms <= end {
                judged.push(ev.clone());
            }
            cx.timeline.push(ev);
        }
        stage.set("collecting media counters");
        result.media = collect_media(plan, &setup, &judged).await;
        for p in &setup.peers {
            let lines = p.peer.console();
            if !lines.is_empty() {
                result.console.insert(p.id.clone(), lines);
            }
        }
        stage.set("teardown");
        setup.teardown().await;
        stage.set("judging");
        while let Ok(ev) = rx.try_recv() {
            timeline.push(context::place(ev, origin));
        }
        result.stats = std::mem::take(&mut sampler.samples);
        result.metrics = peer_metrics(plan, &judged);
        result.step_metrics = plan
            .steps
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.step
                    .metrics(&judged)
                    .into_iter()
                    .map(move |(name, value_ms)| StepMetric {
                        step: i + 1,
                        name,
                        value_ms,
                    })
            })
            .collect();
        if let (Some(l), Some(task)) = (&plan.load, sampler_task) {
            let samples = task.stop().await;
            let connected = |p: &str| {
                judged
                    .peer_states(p, StateMachine::Connection)
                    .iter()
                    .any(|(_, s)| *s == "connected")
            };
            let marks = *load_marks.lock().unwrap_or_else(|e| e.into_inner());
            result.load = Some(crate::load::report(
                l.pairs,
                &result.metrics,
                connected,
                samples,
                marks,
            ));
        }
        result.explanations = explanations(plan, &judged, &result.metrics, &result.stats);
        result.marks = judged
            .marks()
            .map(|(t_ms, name)| Mark {
                name: name.to_string(),
                t_ms,
            })
            .collect();
        let j = judge::judge(
            plan,
            &judge::Observed {
                step_error,
                timeline: &judged,
                metrics: &result.metrics,
                media: &result.media,
                stats: &result.stats,
                load: result.load.as_ref(),
            },
        );
        result.verdict = j.verdict;
        result.reason = j.reason;
        result.failures = j.failures;
        result.end_of_steps_ms = end;
        result.timeline = timeline;
        result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
        result
    }
}

impl RunResult {
    /// A failed run that never came to a verdict (it overran every deadline, or its task
    /// panicked): `reason` says why, `wall` how long it was given.
    pub fn unfinished(plan: &Plan, repetition: u32, reason: String, wall: Duration) -> Self {
        let mut r = RunResult::new(plan, repetition);
        r.reason = Some(reason);
        r.wall_ms = wall.as_secs_f64() * 1000.0;
        r
    }

    fn new(plan: &Plan, repetition: u32) -> Self {
        RunResult {
            name: plan.name.clone(),
            file: plan.source.display().to_string(),
            repetition,
            verdict: Verdict::Fail,
            reason: None,
            failures: Vec::new(),
            steps_completed: 0,
            end_of_steps_ms: 0.0,
            wall_ms: 0.0,
            peers: Vec::new(),
            metrics: BTreeMap::new(),
            explanations: BTreeMap::new(),
            console: BTreeMap::new(),
            turn_log: None,
            app_log: None,
            network: plan.network.clone(),
            media: BTreeMap::new(),
            stats: Vec::new(),
            marks: Vec::new(),
            timeline: Timeline::new(),
            logs: None,
            load: None,
            step_metrics: Vec::new(),
        }
    }
}

/// Samples the harness process every `every` in a task of its own (see [`crate::load`]),
/// from before the set-up until [`crate::load::SETTLE`] after the teardown; sample times are
/// ms since `t0`, the run's start, as the load marks are.
struct ProcessSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<crate::load::ResourceSample>>,
}

impl ProcessSampler {
    fn start(every: Duration, t0: Instant) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut probe = crate::load::ProcessProbe::default();
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            // An interval's first tick is at once.
            tick.tick().await;
            let mut settle_until: Option<Instant> = None;
            loop {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                out.extend(probe.sample(ms));
                if settle_until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                tokio::select! {
                    _ = &mut stopped, if settle_until.is_none() => {
                        settle_until = Some(Instant::now() + crate::load::SETTLE);
                    }
                    _ = tick.tick() => {}
                }
            }
            out
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<crate::load::ResourceSample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Runs the steps in order, each under its deadline (cut to the scenario's), with a stats
/// sample at the end of each; the failed step's error text, if one failed.
async fn run_steps(
    plan: &Plan,
    cx: &mut RunCx<'_>,
    on_step: &(dyn Fn(usize, &str) + Sync),
    completed: &mut usize,
) -> Option<String> {
    let scenario_deadline = cx.deadline.at;
    for (i, sp) in plan.steps.iter().enumerate() {
        let desc = sp.step.describe();
        on_step(i, &desc);
        let own = sp.timeout.map(|t| Instant::now() + t);
        cx.deadline = match own {
            Some(at) if at < scenario_deadline => Deadline {
                at,
                what: format!(
                    "its timeout_ms = {}",
                    sp.timeout.map(|t| t.as_millis()).unwrap_or(0)
                ),
            },
            _ => Deadline {
                at: scenario_deadline,
                what: format!("the scenario's timeout_s = {}", plan.timeout.as_secs()),
            },
        };
        let r = run_step(sp.step.as_ref(), cx).await;
        cx.sample(i, "end-of-step").await;
        if let Err(e) = r {
            return Some(format!("step {} ({desc}) failed: {e}", i + 1));
        }
        *completed += 1;
    }
    None
}

/// One step: start it, then wait on the timeline until it is done, stuck, or out of time.
async fn run_step(step: &dyn Step, cx: &mut RunCx<'_>) -> Result<(), StepError> {
    let errors_before = errors(cx.timeline);
    cx.stage.detail("starting");
    let watch = step.start(cx).await?;
    cx.stage.detail("waiting on the timeline");
    let mut next_app_check = Instant::now();
    loop {
        cx.drain();
        // The app's process is looked at every APP_CHECK_EVERY, not on every event.
        let app_exited = if cx.setup.app.is_some() && Instant::now() >= next_app_check {
            next_app_check = Instant::now() + APP_CHECK_EVERY;
            cx.setup.app_exited()
        } else {
            None
        };
        let progress = match (errors_since(cx.timeline, errors_before), app_exited) {
            (Some(failed), _) => failed,
            (None, Some(app)) => Progress::Failed(app),
            (None, None) => watch.progress(cx.timeline),
        };
        match progress {
            Progress::Done => break,
            Progress::Failed(why) => {
                return Err(StepError::Stuck {
                    why,
                    context: cx.setup.turn_errors(),
                    diagnosis: diagnose(step, cx.timeline),
                });
            }
            Progress::Waiting => {}
        }
        let next = if step.samples_while_waiting() {
            cx.sampler.next
        } else {
            None
        };
        let at = cx.deadline.at;
        let mut wake = next.map_or(at, |n| n.min(at));
        if cx.setup.app.is_some() {
            // Wake for the next look at the app process: one that dies fails the step at once.
            wake = wake.min(next_app_check);
        }
        match tokio::time::timeout_at(wake, cx.events.recv()).await {
            Ok(Some(ev)) => cx.timeline.push(context::place(ev, cx.origin)),
            Ok(None) => return Err(StepError::EventsClosed),
            Err(_) if Instant::now() < at => {
                if next.is_some_and(|n| Instant::now() >= n) {
                    cx.sample_interval().await;
                }
            }
            Err(_) => {
                return Err(StepError::Deadline {
                    limit: cx.deadline.what.clone(),
                    waiting_for: watch.waiting_for(cx.timeline),
                    context: cx.setup.turn_errors(),
                    diagnosis: diagnose(step, cx.timeline),
                });
            }
        }
    }
    cx.stage.detail("finishing");
    step.finish(cx).await
}

fn errors(timeline: &Timeline) -> usize {
    timeline
        .events()
        .iter()
        .filter(|e| matches!(e.event, EventKind::Error { .. }))
        .count()
}

/// Any peer reporting an error since the step began fails it (a dead browser, a closed
/// signaling socket, a rejected API call), whatever the step waits for; errors from before the
/// step do not (pure).
pub fn errors_since(timeline: &Timeline, errors_before: usize) -> Option<Progress> {
    timeline
        .events()
        .iter()
        .filter(|e| matches!(e.event, EventKind::Error { .. }))
        .nth(errors_before)
        .map(|e| Progress::Failed(format!("peer {} reported an {}", e.peer, e.event)))
}

/// Asks every peer to confirm that each event it observed so far has been handed over (a
/// browser: one ping round trip on its ordered control socket), then returns every event that
/// arrived since the last step ended. No fixed grace period.
async fn flush(setup: &RunSetup, cx: &mut RunCx<'_>) -> Vec<crate::timeline::Event> {
    let all = setup.peers.iter().map(|p| async move {
        match tokio::time::timeout(FLUSH_DEADLINE, p.peer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("{}: flushing events: {e}", p.id),
            Err(_) => tracing::debug!("{}: flushing events: no answer in {FLUSH_DEADLINE:?}", p.id),
        }
    });
    futures::future::join_all(all).await;
    let mut out = Vec::new();
    while let Ok(ev) = cx.events.try_recv() {
        out.push(context::place(ev, cx.origin));
    }
    out
}

/// What media each peer received, asked of it while it is still up.
async fn collect_media(
    plan: &Plan,
    setup: &RunSetup,
    timeline: &Timeline,
) -> BTreeMap<String, crate::peer::media::MediaCounters> {
    let mut out = BTreeMap::new();
    for (peer, c) in page_connections(plan, timeline) {
        let Some(p) = setup.peers.iter().find(|p| p.id == peer) else {
            continue;
        };
        match tokio::time::timeout(MEDIA_DEADLINE, p.peer.media_counters(&c)).await {
            Ok(Ok(m)) => {
                out.insert(peer, m);
            }
            Ok(Err(e)) => tracing::warn!("{peer}: media counters: {e}"),
            Err(_) => tracing::warn!("{peer}: media counters: no answer within {MEDIA_DEADLINE:?}"),
        }
    }
    for c in plan.connections.iter().filter(|c| !c.media.is_empty()) {
        for id in [&c.offerer, &c.answerer]
            .into_iter()
            .filter(|p| !p.is_empty())
        {
            let Some(p) = setup.peers.iter().find(|p| p.id == *id) else {
                continue;
            };
            match tokio::time::timeout(MEDIA_DEADLINE, p.peer.media_counters(&c.id)).await {
                Ok(Ok(m)) => {
                    out.insert(id.clone(), m);
                }
                Ok(Err(e)) => tracing::warn!("{id}: media counters: {e}"),
                Err(_) => {
                    tracing::warn!("{id}: media counters: no answer within {MEDIA_DEADLINE:?}")
                }
            }
        }
    }
    out
}

/// The connection each page peer's metrics and media are about: the one its first expectation
/// names, else its only one, else the first that reached `connected`, else its first.
pub fn page_connections(plan: &Plan, timeline: &Timeline) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in plan.peers.iter().filter(|p| p.is_page()) {
        let made = timeline.connections_of(&p.id);
        let named = plan
            .expectations
            .iter()
            .filter(|e| e.peer == p.id)
            .find_map(|e| e.connection.clone().filter(|c| !c.is_empty()))
            .filter(|c| made.contains(&c.as_str()));
        let connected = made.iter().find(|c| {
            timeline
                .first_state_time(
                    Endpoint::new(&p.id, c),
                    StateMachine::Connection,
                    "connected",
                )
                .is_some()
        });
        if let Some(c) = named
            .or_else(|| connected.map(|c| c.to_string()))
            .or_else(|| made.first().map(|c| c.to_string()))
        {
            out.push((p.id.clone(), c));
        }
    }
    out
}

/// Each peer's metrics in its connection.
/// The key of a peer's metrics in [`RunResult::metrics`]: the peer id, or `peer@connection`
/// for a peer in several connections (a mesh), one entry per connection.
pub fn metrics_key(plan: &Plan, peer: &str, connection: &str) -> String {
    if plan.connections.iter().filter(|c| c.has(peer)).count() > 1 {
        format!("{peer}@{connection}")
    } else {
        peer.to_string()
    }
}

fn peer_metrics(plan: &Plan, judged: &Timeline) -> BTreeMap<String, PeerMetrics> {
    let mut out = BTreeMap::new();
    for (p, c) in page_connections(plan, judged) {
        let m = metrics::paired_peer_metrics(judged, Endpoint::new(&p, &c));
        out.insert(p, m);
    }
    for c in &plan.connections {
        // A join_app connection has one end in the plan; the other is the app's.
        let paired = c.offerer.is_empty() || c.answerer.is_empty();
        for p in [&c.offerer, &c.answerer]
            .into_iter()
            .filter(|p| !p.is_empty())
        {
            let ep = Endpoint::new(p, &c.id);
            let m = if paired {
                metrics::paired_peer_metrics(judged, ep)
            } else {
                metrics::peer_metrics(judged, ep)
            };
            out.insert(metrics_key(plan, p, &c.id), m);
        }
    }
    out
}

/// Where each peer's setup time went, from the timeline, the first stats sample of its
/// connection (the end of the connect step) and the network plan.
fn explanations(
    plan: &Plan,
    judged: &Timeline,
    metrics: &BTreeMap<String, PeerMetrics>,
    stats: &[StatsSample],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for c in &plan.connections {
        for p in [&c.offerer, &c.answerer]
            .into_iter()
            .filter(|p| !p.is_empty())
        {
            let key = metrics_key(plan, p, &c.id);
            let (Some(pp), Some(m)) = (plan.peers.iter().find(|x| x.id == *p), metrics.get(&key))
            else {
                continue;
            };
            let sample = stats
                .iter()
                .find(|s| s.peer == *p && s.connection == c.id)
                .map(|s| s.stats.as_slice());
            let subject = crate::explain::Subject {
                peer: p,
                remote: c.other(p).unwrap_or_default(),
                connection: &c.id,
                kind: pp.kind.clone(),
                timers: pp.timers,
                offerer: *p == c.offerer,
                timeline: judged,
                stats: sample,
                network: plan.network.as_ref(),
            };
            out.insert(key, crate::explain::explain(&subject, m));
        }
    }
    out
}

/// One stats sample of one peer's connection.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StatsSample {
    /// When it was taken, ms on the timeline.
    pub t_ms: f64,
    /// Peer id.
    pub peer: String,
    /// Connection id.
    pub connection: String,
    /// Index of the step it was taken in (or at the end of).
    pub step: usize,
    /// `interval` or `end-of-step`.
    pub reason: std::borrow::Cow<'static, str>,
    /// The webrtc-stats dictionaries (see [`crate::peer::Peer::stats`]).
    pub stats: Vec<serde_json::Value>,
}

/// A stuck step's diagnosis: each involved endpoint's four states and its peer's last events
/// (pure).
pub fn diagnose(step: &dyn Step, timeline: &Timeline) -> String {
    let mut out = String::new();
    for ep in step.endpoints() {
        // A page peer's "only connection" (`""`): every connection its page made.
        let connections = match ep.connection {
            "" => timeline.connections_of(ep.peer),
            c => vec![c],
        };
        for c in connections {
            let here = Endpoint::new(ep.peer, c);
            let states: Vec<String> = StateMachine::ALL
                .iter()
                .map(|m| format!("{m} {}", timeline.current_state(here, *m).unwrap_or("-")))
                .collect();
            out.push_str(&format!(
                "  peer {} ({c}): {}\n",
                ep.peer,
                states.join(", ")
            ));
        }
        out.push_str(&format!("    last events of {}:\n", ep.peer));
        for e in timeline.last_of_peer(ep.peer, DIAGNOSIS_EVENTS) {
            out.push_str(&format!("      {:>9.1} ms  {}\n", e.t_ms, e.event));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;
    use steps::Watch;

    fn push(t: &mut Timeline, peer: &str, kind: EventKind) {
        let at = t.events().len() as f64;
        t.push(Event {
            t_ms: at,
            peer: peer.into(),
            connection: "a~b".into(),
            event: kind,
        });
    }

    fn plan_with(steps: &str) -> Plan {
        let text = format!(
            "name = \"t\"\n[[peers]]\nid = \"a\"\nkind = \"bot\"\n[[peers]]\nid = \"b\"\nkind = \"bot\"\n{steps}"
        );
        crate::scenario::parse(std::path::Path::new("t.toml"), &text).unwrap()
    }

    const CONNECT: &str = "[[steps]]\naction = \"connect\"\nofferer = \"a\"\nanswerer = \"b\"\ndata_channel = \"chat\"\n";

    #[test]
    fn an_error_during_a_step_fails_it_and_older_errors_do_not() {
        let mut t = Timeline::new();
        push(
            &mut t,
            "a",
            EventKind::Error {
                message: "old".into(),
            },
        );
        let before = errors(&t);
        assert_eq!(errors_since(&t, before), None);
        push(
            &mut t,
            "b",
            EventKind::Error {
                message: "the browser page went away".into(),
            },
        );
        assert_eq!(
            errors_since(&t, before),
            Some(Progress::Failed(
                "peer b reported an error: the browser page went away".into()
            ))
        );
    }

    #[test]
    fn a_connect_step_is_not_failed_by_an_error_from_before_it_began() {
        // Defect: the connect step used to fail on any error its peers had ever reported.
        let plan = plan_with(CONNECT);
        let step = plan.steps[0].step.clone();
        let mut t = Timeline::new();
        push(
            &mut t,
            "a",
            EventKind::Error {
                message: "from an earlier step".into(),
            },
        );
        let before = errors(&t);
        let connect = step_watch(&plan);
        for p in ["a", "b"] {
            push(
                &mut t,
                p,
                EventKind::State {
                    machine: StateMachine::Connection,
                    state: "connected".into(),
                },
            );
            push(
                &mut t,
                p,
                EventKind::DataChannelOpen {
                    label: "chat".into(),
                },
            );
        }
        assert_eq!(errors_since(&t, before), None);
        assert_eq!(connect.progress(&t), Progress::Done);
        let d = diagnose(step.as_ref(), &t);
        assert!(d.contains("peer a (a~b): connectionState connected"), "{d}");
    }

    fn step_watch(plan: &Plan) -> steps::Connect {
        let any: &dyn std::any::Any = plan.steps[0].step.as_ref();
        any.downcast_ref::<steps::Connect>()
            .expect("a connect step")
            .clone()
    }
}
