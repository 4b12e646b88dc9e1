//! The scenario engine: plan → peers → timeline → verdict and metrics.
//!
//! It launches the peers a plan names (through [`Launchers`], never by kind), runs the steps in
//! order, each under a deadline, collects every peer's events into one [`Timeline`], and judges
//! the result. Deciding whether a step is done, or why it is stuck, is done by pure functions
//! over the timeline ([`step_done`], [`diagnose`]).

use crate::clock::Clock;
use crate::lab::Lab;
use crate::metrics::{self, PeerMetrics};
use crate::peer::{
    ConnectRequest, EventSink, Launchers, Peer, PeerError, PeerInfo, RawEvent, Role, SendRequest,
};
use crate::scenario::{ConnectOutcome, Plan, Step};
use crate::timeline::{Event, EventKind, StateMachine, Timeline};
use crate::turn::EmbeddedTurn;
use crate::verdict::{self, Failure};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// How long a peer may take to start (a browser: driver, session, page, clock sync).
pub const LAUNCH_DEADLINE: Duration = Duration::from_secs(90);
/// How long events stamped before the end of the last step may still arrive (browser events
/// travel over a WebSocket).
const EVENT_GRACE: Duration = Duration::from_millis(100);
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
const DIAGNOSIS_EVENTS: usize = 8;

/// The outcome of one scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Where each peer sat, when the scenario used the network lab.
    pub network: Option<crate::scenario::NetworkPlan>,
    /// Stats samples of every peer: every `stats_interval_ms` and at the end of each step.
    pub stats: Vec<StatsSample>,
    /// Media received, by peer id (connections with `media` only), at the end of the steps.
    pub media: BTreeMap<String, crate::peer::media::MediaCounters>,
    /// All events.
    pub timeline: Timeline,
    /// Library log lines captured during the run: files and counts (None when no capture
    /// is installed, e.g. in `cargo test`).
    pub logs: Option<crate::logs::RunLogs>,
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
}

/// What the steps of one run share: the ICE configuration every connect step hands to its
/// peers, the TURN server, and the network lab (for `set_network`).
struct RunIce<'a> {
    servers: Vec<crate::scenario::IceServerEntry>,
    policy: crate::scenario::IcePolicy,
    turn: Option<&'a EmbeddedTurn>,
    lab: Option<&'a Lab>,
}

struct Running {
    id: String,
    peer: Box<dyn Peer>,
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
        }
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
            match self.launchers.get(kind) {
                Some(l) => l.check()?,
                None => {
                    return Err(PeerError::failed(format!(
                        "no launcher for peer kind {:?}",
                        kind.as_str()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs one scenario once. `on_step` is told `(index, description)` as each step starts.
    pub async fn run(
        &self,
        plan: &Plan,
        repetition: u32,
        on_step: &(dyn Fn(usize, &str) + Sync),
    ) -> RunResult {
        // Library log lines of this run go to files of its own (see `crate::logs`).
        let capture = crate::logs::begin(&self.log_dir, plan, repetition);
        let mut result = self
            .run_captured(plan, repetition, on_step)
            .instrument(capture.span().clone())
            .await;
        capture.finish_into(&mut result, plan);
        result
    }

    async fn run_captured(
        &self,
        plan: &Plan,
        repetition: u32,
        on_step: &(dyn Fn(usize, &str) + Sync),
    ) -> RunResult {
        let wall = Instant::now();
        self.run_serial.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel::<RawEvent>();
        let mut result = RunResult {
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
            network: plan.network.clone(),
            media: BTreeMap::new(),
            stats: Vec::new(),
            timeline: Timeline::new(),
            logs: None,
        };

        // The network lab first: the TURN server and the peers are placed in it.
        let lab = match &plan.network {
            None => None,
            Some(n) => match Lab::create(n).await {
                Ok(l) => Some(l),
                Err(e) => {
                    // The machine, not the scenario: missing programs or privileges, or a
                    // command of iproute2/nftables refused.
                    result.verdict = Verdict::SetupError;
                    result.reason = Some(e.to_string());
                    result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
                    return result;
                }
            },
        };
        // The scenario's own TURN server comes next: peers get its URLs when they connect.
        let mut turn = None;
        if plan.ice.needs_coturn() {
            let server = lab.as_ref().map(Lab::server);
            let label = plan
                .source
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match EmbeddedTurn::start(&self.log_dir, &label, server.as_ref()).await {
                Ok(t) => {
                    result.turn_log = Some(t.log().display().to_string());
                    turn = Some(t);
                }
                Err(e) => {
                    result.verdict = if matches!(e, PeerError::Missing { .. }) {
                        Verdict::SetupError
                    } else {
                        Verdict::Fail
                    };
                    result.reason = Some(format!("the embedded TURN server could not start: {e}"));
                    result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
                    return result;
                }
            }
        }
        let mut ice = RunIce {
            servers: plan.ice.servers.clone(),
            policy: plan.ice.policy,
            turn: turn.as_ref(),
            lab: lab.as_ref(),
        };
        if let Some(t) = &turn
            && plan.ice.embedded_stun
        {
            ice.servers.push(t.stun_server());
        }
        if let (Some(t), Some(p)) = (&turn, &plan.ice.embedded_turn) {
            ice.servers.push(t.ice_server(p));
        }

        // Launch every peer, concurrently, each under a deadline.
        let launches = plan.peers.iter().map(|p| {
            let sink = EventSink::new(self.clock, p.id.clone(), tx.clone());
            let launcher = self.launchers.get(p.kind).cloned();
            let host = lab.as_ref().and_then(|l| l.host(&p.id));
            async move {
                let Some(launcher) = launcher else {
                    return Err(PeerError::failed(format!(
                        "no launcher for kind {:?}",
                        p.kind.as_str()
                    )));
                };
                match tokio::time::timeout(LAUNCH_DEADLINE, launcher.launch(p, sink, host.as_ref()))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(PeerError::Timeout(format!("starting peer {:?}", p.id))),
                }
            }
        });
        let launched = futures::future::join_all(launches).await;
        let mut peers = Vec::new();
        let mut launch_error = None;
        for (p, r) in plan.peers.iter().zip(launched) {
            match r {
                Ok(peer) => peers.push(Running {
                    id: p.id.clone(),
                    peer,
                }),
                Err(e) => {
                    launch_error.get_or_insert(format!(
                        "peer {:?} ({}) could not start: {e}",
                        p.id,
                        p.kind.as_str()
                    ));
                }
            }
        }
        result.peers = peers.iter().map(|p| p.peer.info()).collect();
        let origin = self.clock.now_unix_ms();

        if let Some(reason) = launch_error {
            shutdown(&peers).await;
            result.verdict = Verdict::SetupError;
            result.reason = Some(reason);
            result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
            return result;
        }

        let scenario_deadline = Instant::now() + plan.timeout;
        let mut sampler = Sampler::new(plan.stats_interval);
        let mut timeline = Timeline::new();
        let mut step_error = None;
        for (i, sp) in plan.steps.iter().enumerate() {
            let desc = sp.step.describe();
            on_step(i, &desc);
            let deadline = match sp.timeout {
                Some(t) => (Instant::now() + t).min(scenario_deadline),
                None => scenario_deadline,
            };
            let limit = if deadline == scenario_deadline {
                format!("the scenario's timeout_s = {}", plan.timeout.as_secs())
            } else {
                format!(
                    "its timeout_ms = {}",
                    sp.timeout.map(|t| t.as_millis()).unwrap_or(0)
                )
            };
            let bound = Deadline {
                at: deadline,
                what: &limit,
            };
            let r = self
                .step(
                    &sp.step,
                    &peers,
                    bound,
                    &mut rx,
                    &mut timeline,
                    origin,
                    &ice,
                    &mut sampler,
                )
                .await;
            sampler
                .sample(&peers, &timeline, self.clock, origin, i, "end-of-step")
                .await;
            if let Err(e) = r {
                step_error = Some(format!("step {} ({desc}) failed: {e}", i + 1));
                break;
            }
            result.steps_completed += 1;
        }
        let end = self.clock.now_unix_ms() - origin;
        result.stats = std::mem::take(&mut sampler.samples);
        // What is judged: every event that arrived while the steps ran (a browser's stamp may
        // map a little past `end`: its clock offset has an error and Firefox's timer is coarse),
        // plus events still in flight that were stamped before `end`. Anything else is teardown.
        let mut judged = timeline.clone();
        let grace = Instant::now() + EVENT_GRACE;
        while let Ok(Some(ev)) = tokio::time::timeout_at(grace, rx.recv()).await {
            let ev = place(ev, origin);
            if ev.t_ms <= end {
                judged.push(ev.clone());
            }
            timeline.push(ev);
        }
        // What media arrived, asked of each peer while it is still up.
        for sp in &plan.steps {
            if let Step::Connect {
                connection,
                offerer,
                answerer,
                media,
                ..
            } = &sp.step
                && !media.is_empty()
            {
                for id in [offerer, answerer] {
                    let Some(p) = peers.iter().find(|p| p.id == *id) else {
                        continue;
                    };
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        p.peer.media_counters(connection),
                    )
                    .await
                    {
                        Ok(Ok(c)) => {
                            result.media.insert(id.clone(), c);
                        }
                        Ok(Err(e)) => tracing::warn!("{id}: media counters: {e}"),
                        Err(_) => tracing::warn!("{id}: media counters: no answer within 5 s"),
                    }
                }
            }
        }
        for p in &peers {
            let lines = p.peer.console();
            if !lines.is_empty() {
                result.console.insert(p.id.clone(), lines);
            }
        }
        shutdown(&peers).await;
        // Everything that holds a handle into the lab goes before the lab itself.
        drop(peers);
        drop(ice);
        if let Some(mut t) = turn {
            t.stop();
        }
        drop(lab);
        while let Ok(ev) = rx.try_recv() {
            timeline.push(place(ev, origin));
        }

        for sp in &plan.steps {
            if let Step::Connect {
                connection,
                offerer,
                answerer,
                ..
            } = &sp.step
            {
                for p in [offerer, answerer] {
                    let m = metrics::peer_metrics(&judged, p, connection);
                    let selected = judged.of_peer(p).find_map(|e| match &e.event {
                        EventKind::SelectedCandidatePair { local, remote } => {
                            Some((local.as_str(), remote.as_str()))
                        }
                        _ => None,
                    });
                    if let Some(pp) = plan.peers.iter().find(|x| x.id == *p) {
                        let subject = crate::explain::Subject {
                            kind: pp.kind,
                            timers: pp.timers,
                            offerer: p == offerer,
                            selected,
                        };
                        result
                            .explanations
                            .insert(p.clone(), crate::explain::explain(&subject, &m));
                    }
                    result.metrics.insert(p.clone(), m);
                }
            }
        }
        for exp in &plan.expectations {
            let m = result.metrics.get(&exp.peer).cloned().unwrap_or_default();
            let last = result
                .stats
                .iter()
                .rev()
                .find(|s| s.peer == exp.peer)
                .map(|s| s.stats.as_slice());
            result.failures.extend(verdict::check(
                exp,
                &judged,
                &m,
                result.media.get(&exp.peer),
                last,
            ));
        }
        let failed = step_error.is_some() || !result.failures.is_empty();
        result.reason = step_error.or_else(|| result.failures.first().map(|f| f.to_string()));
        result.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
        result.end_of_steps_ms = end;
        result.timeline = timeline;
        if let Some(want) = &plan.expected_failure {
            let diag = result.diagnostic();
            match result.verdict {
                Verdict::Fail if diag.contains(want.as_str()) => {
                    result.verdict = Verdict::Pass;
                    result.reason = Some(format!(
                        "failed as expected: {}",
                        first_line_with(&diag, want)
                    ));
                }
                Verdict::Fail => {
                    result.reason = Some(format!(
                        "expected a failure containing {want:?}, but it failed with: {diag}"
                    ));
                }
                _ => {
                    result.verdict = Verdict::Fail;
                    result.reason = Some(format!(
                        "expected a failure containing {want:?}, but the scenario passed"
                    ));
                }
            }
        }
        result.wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
        result
    }

    // The run's state is threaded through explicitly (peers, deadline, event stream, timeline,
    // origin, ICE servers) rather than bundled, so each step sees exactly what it uses.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        step: &Step,
        peers: &[Running],
        deadline: Deadline<'_>,
        rx: &mut mpsc::UnboundedReceiver<RawEvent>,
        timeline: &mut Timeline,
        origin: f64,
        ice: &RunIce<'_>,
        sampler: &mut Sampler,
    ) -> Result<(), String> {
        let start = StepStart::of(step, timeline);
        let get = |id: &str| {
            peers
                .iter()
                .find(|p| p.id == id)
                .map(|p| &p.peer)
                .ok_or_else(|| format!("no peer {id:?}"))
        };
        match step {
            Step::Connect {
                connection,
                offerer,
                answerer,
                data_channel,
                trickle,
                media,
                directions,
                ..
            } => {
                for (id, role) in [(answerer, Role::Answerer), (offerer, Role::Offerer)] {
                    let direction = if role == Role::Offerer {
                        directions.0
                    } else {
                        directions.1
                    };
                    let req = ConnectRequest {
                        connection: connection.clone(),
                        room: format!(
                            "{connection}-run{}",
                            self.run_serial.load(Ordering::Relaxed)
                        ),
                        role,
                        data_channel: data_channel.clone(),
                        trickle: *trickle,
                        signaling_url: self.signaling_url.clone(),
                        ice_servers: ice.servers.clone(),
                        ice_transport_policy: ice.policy,
                        media: media.clone(),
                        direction,
                    };
                    bounded(deadline, &format!("{id}: connect"), get(id)?.connect(&req)).await?;
                }
            }
            Step::Send {
                from,
                connection,
                channel,
                messages,
                bytes,
                ..
            } => {
                let req = SendRequest {
                    connection: connection.clone(),
                    channel: channel.clone(),
                    messages: *messages,
                    bytes: *bytes,
                };
                bounded(deadline, &format!("{from}: send"), get(from)?.send(&req)).await?;
            }
            Step::Wait { ms } => {
                let until = Instant::now() + Duration::from_millis(*ms);
                if until > deadline.at {
                    return Err(format!(
                        "waiting {ms} ms would pass the deadline ({})",
                        deadline.what
                    ));
                }
                // Sleep, taking stats samples when they fall due.
                loop {
                    let wake = sampler.next.map_or(until, |n| n.min(until));
                    tokio::time::sleep_until(wake).await;
                    if Instant::now() >= until {
                        break;
                    }
                    sampler
                        .sample_interval(peers, timeline, self.clock, origin)
                        .await;
                }
            }
            Step::AddTrack {
                peer,
                connection,
                kind,
                ..
            } => {
                bounded(
                    deadline,
                    &format!("{peer}: add_track"),
                    get(peer)?.add_track(connection, *kind),
                )
                .await?;
            }
            Step::RestartIce {
                peer, connection, ..
            } => {
                bounded(
                    deadline,
                    &format!("{peer}: restart_ice"),
                    get(peer)?.restart_ice(connection),
                )
                .await?;
            }
            Step::SetNetwork { peer, loss_pct } => {
                let lab = ice.lab.ok_or("set_network needs the network lab")?;
                bounded(deadline, &format!("{peer}: set_network"), async {
                    lab.set_loss(peer, *loss_pct)
                        .await
                        .map_err(|e| PeerError::failed(e.to_string()))
                })
                .await?;
            }
            Step::Close { peer } => {
                let conns: Vec<String> = timeline
                    .of_peer(peer)
                    .map(|e| e.connection.clone())
                    .filter(|c| !c.is_empty())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                for c in conns {
                    bounded(deadline, &format!("{peer}: close"), get(peer)?.close(&c)).await?;
                }
            }
        }
        // Wait on the timeline until the step is done or stuck.
        loop {
            while let Ok(ev) = rx.try_recv() {
                timeline.push(place(ev, origin));
            }
            match step_done(step, timeline, &start) {
                Progress::Done => break,
                Progress::Failed(why) => {
                    return Err(format!(
                        "{why}{}\n{}",
                        turn_errors(ice.turn),
                        diagnose(step, timeline)
                    ));
                }
                Progress::Waiting => {}
            }
            // No interval samples while a connect step runs: getStats on a browser's main thread
            // during the timed setup would skew what is measured (the step's end sample follows).
            let next = match step {
                Step::Connect { .. } => None,
                _ => sampler.next,
            };
            let wake = next.map_or(deadline.at, |n| n.min(deadline.at));
            match tokio::time::timeout_at(wake, rx.recv()).await {
                Ok(Some(ev)) => timeline.push(place(ev, origin)),
                Ok(None) => return Err("event channel closed".into()),
                Err(_) if Instant::now() < deadline.at => {
                    sampler
                        .sample_interval(peers, timeline, self.clock, origin)
                        .await;
                }
                Err(_) => {
                    return Err(format!(
                        "deadline ({}) passed while waiting for {}{}\n{}",
                        deadline.what,
                        waiting_for(step, timeline, &start),
                        turn_errors(ice.turn),
                        diagnose(step, timeline)
                    ));
                }
            }
        }
        // A connected pair: record which candidate pair each side selected.
        if let Step::Connect {
            connection,
            offerer,
            answerer,
            ..
        } = step
        {
            for id in [offerer, answerer] {
                let what = format!("{id}: selected candidate pair");
                if let Some((local, remote)) =
                    bounded(deadline, &what, get(id)?.selected_pair(connection)).await?
                {
                    timeline.push(Event {
                        t_ms: self.clock.now_unix_ms() - origin,
                        peer: id.clone(),
                        connection: connection.clone(),
                        event: EventKind::SelectedCandidatePair { local, remote },
                    });
                }
            }
        }
        Ok(())
    }
}

/// What the embedded TURN server logged as errors (wrong credentials show as 401), if any.
fn turn_errors(turn: Option<&EmbeddedTurn>) -> String {
    let Some(t) = turn else {
        return String::new();
    };
    let lines = t.error_lines(3);
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "\n  TURN server ({}) reported: {}",
            t.log().display(),
            lines.join(" | ")
        )
    }
}

/// One stats sample of one peer's connection.
#[derive(Debug, Clone, Serialize)]
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
    pub reason: &'static str,
    /// The webrtc-stats dictionaries (see [`crate::peer::Peer::stats`]).
    pub stats: Vec<serde_json::Value>,
}

/// Takes stats samples of every live connection of every peer.
pub struct Sampler {
    interval: Option<Duration>,
    next: Option<Instant>,
    step: usize,
    samples: Vec<StatsSample>,
}

impl Sampler {
    fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            next: interval.map(|i| Instant::now() + i),
            step: 0,
            samples: Vec::new(),
        }
    }

    async fn sample_interval(
        &mut self,
        peers: &[Running],
        timeline: &Timeline,
        clock: Clock,
        origin: f64,
    ) {
        let step = self.step;
        self.sample(peers, timeline, clock, origin, step, "interval")
            .await;
    }

    async fn sample(
        &mut self,
        peers: &[Running],
        timeline: &Timeline,
        clock: Clock,
        origin: f64,
        step: usize,
        reason: &'static str,
    ) {
        self.step = step;
        self.next = self.interval.map(|i| Instant::now() + i);
        for p in peers {
            // The peer's connections that exist and were not closed.
            let mut conns: Vec<&str> = timeline
                .of_peer(&p.id)
                .map(|e| e.connection.as_str())
                .filter(|c| !c.is_empty())
                .collect();
            conns.sort();
            conns.dedup();
            for c in conns {
                let closed = timeline
                    .of_peer(&p.id)
                    .any(|e| e.connection == c && matches!(e.event, EventKind::Closed));
                if closed {
                    continue;
                }
                if let Ok(Ok(stats)) =
                    tokio::time::timeout(Duration::from_secs(2), p.peer.stats(c)).await
                {
                    self.samples.push(StatsSample {
                        t_ms: clock.now_unix_ms() - origin,
                        peer: p.id.clone(),
                        connection: c.to_string(),
                        step,
                        reason,
                        stats,
                    });
                }
            }
        }
    }
}

/// A step's deadline and how to name it in a diagnosis.
#[derive(Clone, Copy)]
struct Deadline<'a> {
    at: Instant,
    what: &'a str,
}

async fn bounded<T>(
    deadline: Deadline<'_>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline.at, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: deadline ({}) passed", deadline.what)),
    }
}

async fn shutdown(peers: &[Running]) {
    let all = peers.iter().map(|p| async move {
        if tokio::time::timeout(SHUTDOWN_DEADLINE, p.peer.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "peer {} did not shut down within {SHUTDOWN_DEADLINE:?}",
                p.id
            );
        }
    });
    futures::future::join_all(all).await;
}

fn place(ev: RawEvent, origin: f64) -> Event {
    Event {
        t_ms: ev.unix_ms - origin,
        peer: ev.peer,
        connection: ev.connection,
        event: ev.event,
    }
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or(text)
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Finished.
    Done,
    /// Not yet.
    Waiting,
    /// Cannot finish any more.
    Failed(String),
}

/// Decides from the timeline whether a step has finished (pure).
pub fn step_done(step: &Step, timeline: &Timeline, start: &StepStart) -> Progress {
    // Any peer reporting an error since the step began fails it (a dead browser, a closed
    // signaling socket, a rejected API call), whatever the step waits for.
    if let Some(e) = timeline
        .events()
        .iter()
        .filter(|e| matches!(e.event, EventKind::Error { .. }))
        .nth(start.errors_before)
    {
        return Progress::Failed(format!("peer {} reported an {}", e.peer, e.event));
    }
    match step {
        Step::Connect {
            connection,
            offerer,
            answerer,
            data_channel,
            outcome,
            ..
        } => {
            let expect_failed = *outcome == ConnectOutcome::Failed;
            for p in [offerer, answerer] {
                for e in timeline.of_peer(p) {
                    // Errors of this connection, or of the peer as a whole (no connection).
                    if (e.connection == *connection || e.connection.is_empty())
                        && let EventKind::Error { message } = &e.event
                    {
                        return Progress::Failed(format!("peer {p} reported an error: {message}"));
                    }
                }
                match timeline.current_state(p, StateMachine::Connection) {
                    Some("failed") if !expect_failed => {
                        return Progress::Failed(format!("peer {p}: connectionState failed"));
                    }
                    Some("connected") if expect_failed => {
                        return Progress::Failed(format!(
                            "peer {p}: connectionState connected, but this step expects ICE to \
                             fail (outcome = \"failed\")"
                        ));
                    }
                    _ => {}
                }
                // Gathering finished without a single candidate: nothing can ever connect.
                let mine = |e: &&Event| e.connection == *connection;
                let gathered = timeline
                    .of_peer(p)
                    .filter(mine)
                    .any(|e| matches!(e.event, EventKind::LocalCandidate { .. }));
                let complete = timeline.of_peer(p).filter(mine).any(|e| {
                    matches!(&e.event, EventKind::State { machine: StateMachine::IceGathering, state } if state == "complete")
                });
                if complete && !gathered {
                    let errors: Vec<String> = timeline
                        .of_peer(p)
                        .filter(mine)
                        .filter_map(|e| match &e.event {
                            EventKind::IceCandidateError { .. } => Some(e.event.to_string()),
                            _ => None,
                        })
                        .collect();
                    return Progress::Failed(format!(
                        "peer {p} gathered no ICE candidates{}",
                        if errors.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", errors.join("; "))
                        }
                    ));
                }
            }
            if expect_failed {
                let failed = [offerer, answerer]
                    .iter()
                    .all(|p| timeline.current_state(p, StateMachine::Connection) == Some("failed"));
                return if failed {
                    Progress::Done
                } else {
                    Progress::Waiting
                };
            }
            let connected = [offerer, answerer]
                .iter()
                .all(|p| timeline.current_state(p, StateMachine::Connection) == Some("connected"));
            let channels_open = data_channel.as_ref().is_none_or(|label| {
                [offerer, answerer].iter().all(|p| {
                    timeline
                        .first_time(
                            p,
                            |k| matches!(k, EventKind::DataChannelOpen { label: l } if l == label),
                        )
                        .is_some()
                })
            });
            if connected && channels_open {
                Progress::Done
            } else {
                Progress::Waiting
            }
        }
        Step::Send {
            to,
            channel,
            messages,
            ..
        } => {
            let now = timeline.messages_received(to, Some(channel)).len();
            if now.saturating_sub(start.received_before) as u64 >= *messages {
                Progress::Done
            } else {
                Progress::Waiting
            }
        }
        Step::RestartIce {
            peer,
            other,
            connection,
        } => {
            let answered = answers_applied(timeline, connection) > start.answers_before;
            let connected = [peer, other].iter().all(|p| {
                timeline.current_state(p, StateMachine::Connection) == Some("connected")
                    && matches!(
                        timeline.current_state(p, StateMachine::IceConnection),
                        Some("connected") | Some("completed")
                    )
            });
            if answered && connected {
                Progress::Done
            } else {
                Progress::Waiting
            }
        }
        Step::AddTrack {
            other, connection, ..
        } => {
            if answers_applied(timeline, connection) > start.answers_before
                && tracks_received(timeline, other) > start.tracks_before
            {
                Progress::Done
            } else {
                Progress::Waiting
            }
        }
        Step::Wait { .. } | Step::Close { .. } | Step::SetNetwork { .. } => Progress::Done,
    }
}

fn tracks_received(timeline: &Timeline, peer: &str) -> usize {
    timeline
        .of_peer(peer)
        .filter(|e| matches!(e.event, EventKind::TrackReceived { .. }))
        .count()
}

fn answers_applied(timeline: &Timeline, connection: &str) -> usize {
    timeline
        .events()
        .iter()
        .filter(|e| e.connection == connection && matches!(e.event, EventKind::AnswerApplied))
        .count()
}

/// What the timeline held when a step began (pure input to [`step_done`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStart {
    /// Messages the step's receiver had already received on its channel.
    pub received_before: usize,
    /// Answers already applied in the step's connection (`restart_ice`, `add_track`).
    pub answers_before: usize,
    /// Tracks the other peer had received (`add_track`).
    pub tracks_before: usize,
    /// Error events already on the timeline.
    pub errors_before: usize,
}

impl StepStart {
    /// Takes the figures for `step` from the timeline as it is now.
    pub fn of(step: &Step, timeline: &Timeline) -> Self {
        Self {
            received_before: match step {
                Step::Send { to, channel, .. } => {
                    timeline.messages_received(to, Some(channel)).len()
                }
                _ => 0,
            },
            answers_before: match step {
                Step::RestartIce { connection, .. } | Step::AddTrack { connection, .. } => {
                    answers_applied(timeline, connection)
                }
                _ => 0,
            },
            tracks_before: match step {
                Step::AddTrack { other, .. } => tracks_received(timeline, other),
                _ => 0,
            },
            errors_before: timeline
                .events()
                .iter()
                .filter(|e| matches!(e.event, EventKind::Error { .. }))
                .count(),
        }
    }
}

fn waiting_for(step: &Step, timeline: &Timeline, start: &StepStart) -> String {
    match step {
        Step::Connect {
            offerer,
            answerer,
            data_channel,
            ..
        } => {
            let mut parts = Vec::new();
            for p in [offerer, answerer] {
                let now = timeline
                    .current_state(p, StateMachine::Connection)
                    .unwrap_or("(no peer connection yet)");
                if now != "connected" {
                    parts.push(format!("{p} connectionState connected (now {now})"));
                }
                if let Some(label) = data_channel
                    && timeline
                        .first_time(
                            p,
                            |k| matches!(k, EventKind::DataChannelOpen { label: l } if l == label),
                        )
                        .is_none()
                {
                    parts.push(format!("data channel '{label}' open on {p}"));
                }
            }
            parts.join(", ")
        }
        Step::Send {
            to,
            channel,
            messages,
            ..
        } => format!(
            "{to} to receive {messages} messages on '{channel}' (has {})",
            timeline
                .messages_received(to, Some(channel))
                .len()
                .saturating_sub(start.received_before)
        ),
        Step::AddTrack {
            peer, other, kind, ..
        } => format!(
            "the answer to {peer}'s new offer and a new {} track at {other}",
            format!("{kind:?}").to_lowercase()
        ),
        Step::RestartIce { peer, other, .. } => format!(
            "the restart's answer to be applied at {peer} and both {peer} and {other} to be connected again"
        ),
        _ => "the step".into(),
    }
}

/// A stuck step's diagnosis: each involved peer's four states and last events (pure).
pub fn diagnose(step: &Step, timeline: &Timeline) -> String {
    let peers: Vec<&String> = match step {
        Step::Connect {
            offerer, answerer, ..
        } => vec![offerer, answerer],
        Step::Send { from, to, .. } => vec![from, to],
        Step::Close { peer } | Step::SetNetwork { peer, .. } => vec![peer],
        Step::RestartIce { peer, other, .. } | Step::AddTrack { peer, other, .. } => {
            vec![peer, other]
        }
        Step::Wait { .. } => vec![],
    };
    let mut out = String::new();
    for p in peers {
        let states: Vec<String> = StateMachine::ALL
            .iter()
            .map(|m| format!("{m} {}", timeline.current_state(p, *m).unwrap_or("-")))
            .collect();
        out.push_str(&format!("  peer {p}: {}\n", states.join(", ")));
        out.push_str(&format!("    last events of {p}:\n"));
        for e in timeline.last_of_peer(p, DIAGNOSIS_EVENTS) {
            out.push_str(&format!("      {:>9.1} ms  {}\n", e.t_ms, e.event));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> Step {
        Step::Connect {
            connection: "c".into(),
            offerer: "a".into(),
            answerer: "b".into(),
            data_channel: Some("chat".into()),
            trickle: true,
            media: vec![],
            directions: Default::default(),
            outcome: ConnectOutcome::Connected,
        }
    }

    fn push(t: &mut Timeline, peer: &str, kind: EventKind) {
        let at = t.events().len() as f64;
        t.push(Event {
            t_ms: at,
            peer: peer.into(),
            connection: "c".into(),
            event: kind,
        });
    }

    fn state(s: &str) -> EventKind {
        EventKind::State {
            machine: StateMachine::Connection,
            state: s.into(),
        }
    }

    #[test]
    fn connect_needs_both_connected_and_channels_open() {
        let mut t = Timeline::new();
        push(&mut t, "a", state("connected"));
        assert_eq!(
            step_done(&connect(), &t, &StepStart::default()),
            Progress::Waiting
        );
        push(&mut t, "b", state("connected"));
        assert_eq!(
            step_done(&connect(), &t, &StepStart::default()),
            Progress::Waiting
        );
        push(
            &mut t,
            "a",
            EventKind::DataChannelOpen {
                label: "chat".into(),
            },
        );
        push(
            &mut t,
            "b",
            EventKind::DataChannelOpen {
                label: "chat".into(),
            },
        );
        assert_eq!(
            step_done(&connect(), &t, &StepStart::default()),
            Progress::Done
        );
    }

    #[test]
    fn connect_fails_fast_on_failed_state_and_names_the_peer() {
        let mut t = Timeline::new();
        push(&mut t, "b", state("connecting"));
        push(&mut t, "b", state("failed"));
        match step_done(&connect(), &t, &StepStart::default()) {
            Progress::Failed(why) => assert!(why.contains("peer b"), "{why}"),
            other => panic!("{other:?}"),
        }
        let d = diagnose(&connect(), &t);
        assert!(d.contains("peer b: connectionState failed"), "{d}");
        assert!(d.contains("peer a: connectionState -"), "{d}");
    }

    #[test]
    fn a_connect_expected_to_fail_waits_for_both_failed_and_rejects_connected() {
        let mut step = connect();
        if let Step::Connect { outcome, .. } = &mut step {
            *outcome = ConnectOutcome::Failed;
        }
        let mut t = Timeline::new();
        push(&mut t, "a", state("connecting"));
        push(&mut t, "a", state("failed"));
        assert_eq!(
            step_done(&step, &t, &StepStart::default()),
            Progress::Waiting
        );
        push(&mut t, "b", state("failed"));
        assert_eq!(step_done(&step, &t, &StepStart::default()), Progress::Done);

        let mut t = Timeline::new();
        push(&mut t, "b", state("connected"));
        match step_done(&step, &t, &StepStart::default()) {
            Progress::Failed(why) => assert!(
                why.contains("peer b") && why.contains("expects ICE to fail"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn send_waits_for_every_message() {
        let step = Step::Send {
            from: "a".into(),
            to: "b".into(),
            connection: "c".into(),
            channel: "chat".into(),
            messages: 2,
            bytes: 100,
        };
        let mut t = Timeline::new();
        let msg = |seq| EventKind::MessageReceived {
            label: "chat".into(),
            seq,
            intact: true,
            in_order: true,
        };
        push(&mut t, "b", msg(0));
        assert_eq!(
            step_done(&step, &t, &StepStart::default()),
            Progress::Waiting
        );
        assert!(waiting_for(&step, &t, &StepStart::default()).contains("has 1"));
        push(&mut t, "b", msg(1));
        assert_eq!(step_done(&step, &t, &StepStart::default()), Progress::Done);
        // A second send of 2 on the same channel needs 2 more, not 2 in all.
        let start = StepStart::of(&step, &t);
        assert_eq!(step_done(&step, &t, &start), Progress::Waiting);
        push(&mut t, "b", msg(2));
        push(&mut t, "b", msg(3));
        assert_eq!(step_done(&step, &t, &start), Progress::Done);
    }

    #[test]
    fn an_error_during_any_step_fails_it_and_older_errors_do_not() {
        let mut t = Timeline::new();
        push(
            &mut t,
            "a",
            EventKind::Error {
                message: "old".into(),
            },
        );
        let wait = Step::Wait { ms: 10 };
        let start = StepStart::of(&wait, &t);
        assert_eq!(step_done(&wait, &t, &start), Progress::Done);
        push(
            &mut t,
            "b",
            EventKind::Error {
                message: "the browser page went away".into(),
            },
        );
        match step_done(&wait, &t, &start) {
            Progress::Failed(why) => {
                assert_eq!(why, "peer b reported an error: the browser page went away")
            }
            other => panic!("{other:?}"),
        }
    }
}
