//! What one run holds: the set-up (lab, TURN server, peers) behind a guard that tears it down in
//! order, and the context every step runs in.

use super::error::{SetupError, StepError};
use super::{Engine, LAUNCH_DEADLINE, StatsSample};
use crate::clock::Clock;
use crate::lab::Lab;
use crate::peer::{EventSink, Peer, PeerError, PeerInfo, RawEvent};
use crate::scenario::{IcePolicy, IceServerEntry, Plan};
use crate::timeline::{Event, EventKind, Timeline};
use crate::turn::EmbeddedTurn;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
const STATS_DEADLINE: Duration = Duration::from_secs(2);

/// One started peer.
pub(crate) struct Running {
    pub id: String,
    pub peer: Box<dyn Peer>,
}

/// The ICE configuration every connect step hands its peers.
#[derive(Debug, Clone, Default)]
pub struct RunIce {
    /// `RTCConfiguration.iceServers`: the file's, plus the embedded STUN/TURN server's.
    pub servers: Vec<IceServerEntry>,
    /// `RTCConfiguration.iceTransportPolicy`.
    pub policy: IcePolicy,
}

/// Everything a run set up. Dropping it releases everything in order (peers, then the TURN
/// server, then the lab: the fields' order); [`RunSetup::teardown`] does the same, waiting for
/// each peer to shut down cleanly first.
pub(crate) struct RunSetup {
    pub peers: Vec<Running>,
    pub ice: RunIce,
    /// The app under test (`[app]`): killed after the peers.
    pub app: Option<crate::app::App>,
    /// The app's signaling protocol, `{run}` replaced in its `auth` (for `join_app`).
    pub app_signaling: Option<crate::scenario::AppSignalingPlan>,
    /// Where the run keeps files (screenshots).
    pub artifacts: std::path::PathBuf,
    /// What `{run}` stands for: a token unique to this run of this process.
    pub run_token: String,
    pub turn: Option<EmbeddedTurn>,
    pub lab: Option<Lab>,
}

/// A set-up that failed part-way, and what it had learnt.
pub(crate) struct SetupFailed {
    pub error: SetupError,
    pub peers: Vec<PeerInfo>,
    pub turn_log: Option<String>,
    pub app_log: Option<String>,
}

impl RunSetup {
    /// The lab first (the TURN server and the peers are placed in it), then the TURN server,
    /// then every peer at once, each under [`LAUNCH_DEADLINE`]. A failure tears down what was
    /// started before returning.
    pub async fn start(
        engine: &Engine,
        plan: &Plan,
        serial: u64,
        tx: &mpsc::UnboundedSender<RawEvent>,
    ) -> Result<RunSetup, SetupFailed> {
        let fail = |error, setup: &RunSetup| SetupFailed {
            error,
            peers: setup.peers.iter().map(|p| p.peer.info()).collect(),
            turn_log: setup.turn.as_ref().map(|t| t.log().display().to_string()),
            app_log: setup
                .app
                .as_ref()
                .and_then(|a| a.log())
                .map(|l| l.display().to_string()),
        };
        let mut setup = RunSetup {
            peers: Vec::new(),
            ice: RunIce {
                servers: plan.ice.servers.clone(),
                policy: plan.ice.policy,
            },
            app: None,
            app_signaling: None,
            artifacts: engine.log_dir.clone(),
            run_token: format!("p{}r{serial}", std::process::id()),
            turn: None,
            lab: None,
        };
        let label = plan
            .source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(l) = &plan.load
            && let Some(why) = crate::load::fd_shortfall(l.pairs, crate::load::raise_fd_limit())
        {
            return Err(fail(SetupError::DescriptorLimit(why), &setup));
        }
        if let Some(a) = &plan.app {
            match crate::app::App::start(a, &engine.log_dir, &label).await {
                Ok(app) => setup.app = Some(app),
                Err(e) => return Err(fail(SetupError::App(e), &setup)),
            }
            if let Some(mut sig) = a.signaling.clone() {
                let token = match &sig.token {
                    Some(t) => match crate::app::token(t, |x| setup.expand(x)).await {
                        Ok(t) => Some(t),
                        Err(e) => return Err(fail(SetupError::App(e), &setup)),
                    },
                    None => None,
                };
                let fill = |x: &str| {
                    let x = setup.expand(x);
                    match &token {
                        Some(t) => x.replace("{token}", t),
                        None => x,
                    }
                };
                sig.map_strings(&fill);
                setup.app_signaling = Some(sig);
            }
        }
        if let Some(n) = &plan.network {
            match Lab::create(n).await {
                Ok(l) => setup.lab = Some(l),
                Err(e) => return Err(fail(e.into(), &setup)),
            }
        }
        if plan.ice.needs_coturn() {
            let server = setup.lab.as_ref().map(Lab::server);
            match EmbeddedTurn::start(&engine.log_dir, &label, server.as_ref()).await {
                Ok(t) => {
                    if plan.ice.embedded_stun {
                        setup.ice.servers.push(t.stun_server());
                    }
                    if let Some(p) = &plan.ice.embedded_turn {
                        setup.ice.servers.push(t.ice_server(p));
                    }
                    setup.turn = Some(t);
                }
                Err(e) => {
                    let f = fail(SetupError::Turn(e), &setup);
                    setup.teardown().await;
                    return Err(f);
                }
            }
        }
        let resolved: Vec<crate::scenario::PeerPlan> = plan
            .peers
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.url = p.url.as_deref().map(|u| setup.expand(u));
                p
            })
            .collect();
        let launches = resolved.iter().map(|p| {
            let sink = EventSink::new(engine.clock, p.id.clone(), tx.clone());
            let launcher = engine.launchers.get(&p.kind).cloned();
            let host = setup.lab.as_ref().and_then(|l| l.host(&p.id));
            let kinds = engine.launchers.names();
            async move {
                let launcher = launcher.ok_or_else(|| {
                    PeerError::failed(format!(
                        "no launcher for peer kind {:?} (kinds: {kinds})",
                        p.kind.as_str()
                    ))
                })?;
                tokio::time::timeout(LAUNCH_DEADLINE, launcher.launch(p, sink, host.as_ref()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(PeerError::Timeout(format!("starting peer {:?}", p.id)))
                    })
            }
        });
        let launched = futures::future::join_all(launches).await;
        let mut error = None;
        for (p, r) in plan.peers.iter().zip(launched) {
            match r {
                Ok(peer) => setup.peers.push(Running {
                    id: p.id.clone(),
                    peer,
                }),
                Err(source) => {
                    error.get_or_insert(SetupError::Launch {
                        peer: p.id.clone(),
                        kind: p.kind.as_str().to_string(),
                        source,
                    });
                }
            }
        }
        match error {
            None => Ok(setup),
            Some(e) => {
                let f = fail(e, &setup);
                setup.teardown().await;
                Err(f)
            }
        }
    }

    /// Shuts every peer down (each under a deadline, all at once), then stops the TURN server,
    /// then removes the lab.
    pub async fn teardown(mut self) {
        let all = self.peers.iter().map(|p| async move {
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
        self.peers.clear();
        if let Some(a) = &self.app {
            a.stop();
        }
        if let Some(t) = &mut self.turn {
            t.stop();
        }
        self.turn = None;
        self.lab = None;
    }

    /// When the app under test has exited: how, and the last lines of its log.
    pub fn app_exited(&self) -> Option<String> {
        let a = self.app.as_ref()?;
        let status = a.exited()?;
        Some(format!(
            "the app under test exited ({status}); last lines of {}:\n{}",
            a.log().map(|l| l.display().to_string()).unwrap_or_default(),
            a.tail()
        ))
    }

    /// `text` with `{app}` (the app's base URL) and `{run}` (the run's token) replaced.
    pub fn expand(&self, text: &str) -> String {
        let mut out = text.replace("{run}", &self.run_token);
        if let Some(a) = &self.app {
            out = out.replace("{app}", a.base());
        }
        out
    }

    /// What the embedded TURN server logged as errors (wrong credentials show as 401), if any.
    pub fn turn_errors(&self) -> String {
        let Some(t) = &self.turn else {
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
}

/// A step's deadline and how to name it in a diagnosis.
#[derive(Debug, Clone)]
pub struct Deadline {
    /// When it passes.
    pub at: Instant,
    /// Its name, e.g. `its timeout_ms = 150`.
    pub what: String,
}

/// What a step runs in: the run's peers, timeline, clock, ICE configuration and lab, and the
/// step's deadline.
pub struct RunCx<'a> {
    pub(crate) setup: &'a RunSetup,
    pub(crate) timeline: &'a mut Timeline,
    pub(crate) events: &'a mut mpsc::UnboundedReceiver<RawEvent>,
    pub(crate) clock: Clock,
    pub(crate) origin: f64,
    pub(crate) deadline: Deadline,
    pub(crate) signaling_url: &'a str,
    pub(crate) signaling_admin: Option<&'a rtc_signaling::Admin>,
    pub(crate) serial: u64,
    pub(crate) sampler: &'a mut Sampler,
    pub(crate) stage: &'a Stage,
}

/// What a run is doing now: a stage (a step, teardown) and what it waits on inside it. Only
/// read when a run overran every deadline ([`super::RUN_OVERRUN`]): then it says where.
#[derive(Debug, Default)]
pub struct Stage(std::sync::Mutex<(String, String)>);

impl Stage {
    /// A new stage; clears the detail.
    pub(crate) fn set(&self, stage: impl Into<String>) {
        let stage = stage.into();
        tracing::debug!("run stage: {stage}");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (stage, String::new());
    }

    /// What the current stage waits on.
    pub(crate) fn detail(&self, what: impl Into<String>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1 = what.into();
    }

    /// The stage and, after a comma, what it waits on (empty before the run began).
    pub fn get(&self) -> String {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.is_empty() {
            g.0.clone()
        } else {
            format!("{}, {}", g.0, g.1)
        }
    }
}

impl RunCx<'_> {
    /// A peer by id.
    pub fn peer(&self, id: &str) -> Result<&dyn Peer, StepError> {
        self.setup
            .peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.peer.as_ref())
            .ok_or_else(|| StepError::Impossible(format!("no peer {id:?}")))
    }

    /// The timeline so far.
    pub fn timeline(&self) -> &Timeline {
        self.timeline
    }

    /// Now, in ms on the timeline.
    pub fn now_ms(&self) -> f64 {
        self.clock.now_unix_ms() - self.origin
    }

    /// Puts an event observed by the harness itself on the timeline, stamped now.
    pub fn record(&mut self, peer: &str, connection: &str, event: EventKind) {
        let t_ms = self.now_ms();
        self.timeline.push(Event {
            t_ms,
            peer: peer.to_string(),
            connection: connection.to_string(),
            event,
        });
    }

    /// The step's deadline.
    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// The ICE configuration for connect steps.
    pub fn ice(&self) -> &RunIce {
        &self.setup.ice
    }

    /// The embedded TURN server, when the scenario has one.
    pub fn turn(&self) -> Option<&EmbeddedTurn> {
        self.setup.turn.as_ref()
    }

    /// The network lab, when the scenario has one.
    pub fn lab(&self) -> Option<&Lab> {
        self.setup.lab.as_ref()
    }

    /// The signaling server's WebSocket URL.
    pub fn signaling_url(&self) -> &str {
        self.signaling_url
    }

    /// The embedded signaling server's operator handle, if the run uses that server.
    pub fn signaling_admin(&self) -> Option<&rtc_signaling::Admin> {
        self.signaling_admin
    }

    /// The signaling room of a connection in this run (unique across runs of one engine).
    pub fn room(&self, connection: &str) -> String {
        format!("{connection}-run{}", self.serial)
    }

    /// Awaits a peer command under the step's deadline; `what` names it in errors.
    pub async fn bounded<T>(
        &self,
        what: impl Into<String>,
        fut: impl std::future::Future<Output = Result<T, PeerError>>,
    ) -> Result<T, StepError> {
        let what = what.into();
        self.stage.detail(format!("waiting for {what}"));
        match tokio::time::timeout_at(self.deadline.at, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(StepError::Peer { what, source }),
            Err(_) => Err(StepError::CommandDeadline {
                what,
                limit: self.deadline.what.clone(),
            }),
        }
    }

    /// Sleeps until `until`, taking interval stats samples when they fall due.
    pub async fn sleep_until(&mut self, until: Instant) {
        loop {
            let wake = self.sampler.next.map_or(until, |n| n.min(until));
            tokio::time::sleep_until(wake).await;
            if Instant::now() >= until {
                return;
            }
            self.sample_interval().await;
        }
    }

    /// Moves every event that has arrived onto the timeline.
    pub(crate) fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.timeline.push(place(ev, self.origin));
        }
    }

    pub(crate) async fn sample_interval(&mut self) {
        let step = self.sampler.step;
        self.sample(step, "interval").await;
    }

    /// One stats sample of every live connection of every peer.
    pub(crate) async fn sample(&mut self, step: usize, reason: &'static str) {
        self.sampler.step = step;
        self.sampler.next = self.sampler.interval.map(|i| Instant::now() + i);
        for p in &self.setup.peers {
            if self
                .timeline
                .of_peer(&p.id)
                .any(|e| matches!(e.event, EventKind::Killed | EventKind::Frozen))
            {
                continue;
            }
            // The peer's connections that exist and were not closed.
            let mut conns: Vec<&str> = self
                .timeline
                .of_peer(&p.id)
                .map(|e| e.connection.as_str())
                .filter(|c| !c.is_empty())
                .collect();
            conns.sort();
            conns.dedup();
            for c in conns {
                let closed = self
                    .timeline
                    .of_peer(&p.id)
                    .any(|e| e.connection == c && matches!(e.event, EventKind::Closed));
                if closed {
                    continue;
                }
                self.stage
                    .detail(format!("taking stats of {}'s connection {c}", p.id));
                if let Ok(Ok(stats)) = tokio::time::timeout(STATS_DEADLINE, p.peer.stats(c)).await {
                    self.sampler.samples.push(StatsSample {
                        t_ms: self.clock.now_unix_ms() - self.origin,
                        peer: p.id.clone(),
                        connection: c.to_string(),
                        step,
                        reason: reason.into(),
                        stats,
                    });
                }
            }
        }
    }
}

/// When stats samples fall due, and the samples taken.
pub(crate) struct Sampler {
    pub interval: Option<Duration>,
    pub next: Option<Instant>,
    pub step: usize,
    pub samples: Vec<StatsSample>,
}

impl Sampler {
    pub fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            next: interval.map(|i| Instant::now() + i),
            step: 0,
            samples: Vec::new(),
        }
    }
}

/// An event as reported, placed on the run's timeline.
pub(crate) fn place(ev: RawEvent, origin: f64) -> Event {
    Event {
        t_ms: ev.unix_ms - origin,
        peer: ev.peer,
        connection: ev.connection,
        event: ev.event,
    }
}
