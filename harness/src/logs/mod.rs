//! Library log lines (webrtc-rs, hyper, fantoccini, ...) captured per scenario run and per
//! peer, into files under the log folder, never on the terminal.
//!
//! How a line finds its run and peer: [`Capture::span`] is a `scenario_run` span that the
//! engine's run future is instrumented with; every peer's calls run in a `peer` span (see
//! [`crate::peer::traced`]), and a bot hands webrtc-rs a [`runtime::SpanRuntime`], so every task
//! webrtc-rs spawns for its connection (the driver loop, TCP transports) carries that span too.
//! [`CaptureLayer`] reads the innermost `peer` and `run` span of each event.
//!
//! Lines that carry no `peer` span but a `scenario_run` span go to the run's file as
//! [`UNATTRIBUTED`]. Lines with no `scenario_run` span: while exactly one run is being
//! captured, the same; otherwise (between runs, at start-up and shutdown, or with several runs at
//! once) they go to the hub's "outside" file, if it has one, and are counted there.
//!
//! The harness's own lines (targets `rtc_harness`, `rtc_signaling`) are never captured: they
//! go to the terminal (see [`init`]).

pub mod runtime;
pub mod terminal;

use crate::engine::RunResult;
use crate::scenario::Plan;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Level, Span};
use tracing_log::NormalizeEvent;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Target of the `scenario_run` and `peer` spans.
pub const SPAN_TARGET: &str = "rtc_harness::logs";
const RUN_SPAN: &str = "scenario_run";
const PEER_SPAN: &str = "peer";
/// Peer name of a run's lines that no peer's span carries.
pub const UNATTRIBUTED: &str = "(unattributed)";
/// ERROR and WARN lines kept per peer for reports.
pub const LAST_LINES: usize = 5;
/// ERROR and WARN lines per peer appended to a failure's diagnosis.
pub const DIAGNOSIS_LINES: usize = 3;
/// Longest message kept in [`RunLogs::last`], characters.
const LAST_LINE_CHARS: usize = 300;
/// Library levels captured when `RUST_LOG` says nothing else.
pub const DEFAULT_LEVEL: &str = "warn";

/// Whether `target` is the harness's own (never captured; shown on the terminal).
pub fn is_own_target(target: &str) -> bool {
    ["rtc_harness", "rtc_signaling"].iter().any(|own| {
        target == *own
            || target
                .strip_prefix(own)
                .is_some_and(|r| r.starts_with("::"))
    })
}

/// The span a peer's calls and tasks run in.
pub fn peer_span(peer: &str) -> Span {
    // ERROR level: attribution must not depend on which levels a filter lets through.
    tracing::error_span!(target: SPAN_TARGET, PEER_SPAN, peer = %peer)
}

/// Lines by level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LevelCounts {
    /// ERROR lines.
    pub error: u64,
    /// WARN lines.
    pub warn: u64,
    /// INFO lines.
    pub info: u64,
    /// DEBUG lines.
    pub debug: u64,
    /// TRACE lines.
    pub trace: u64,
}

impl LevelCounts {
    fn add(&mut self, level: Level) {
        match level {
            Level::ERROR => self.error += 1,
            Level::WARN => self.warn += 1,
            Level::INFO => self.info += 1,
            Level::DEBUG => self.debug += 1,
            Level::TRACE => self.trace += 1,
        }
    }

    /// All lines.
    pub fn total(&self) -> u64 {
        self.error + self.warn + self.info + self.debug + self.trace
    }

    /// `3 ERROR, 9 WARN` (levels with no line left out).
    pub fn describe(&self) -> String {
        [
            (self.error, "ERROR"),
            (self.warn, "WARN"),
            (self.info, "INFO"),
            (self.debug, "DEBUG"),
            (self.trace, "TRACE"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, l)| format!("{n} {l}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What one run's capture holds, for reports (`logs` in the JSON `RunResult`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct RunLogs {
    /// The run's file: every captured line, with its peer.
    pub file: String,
    /// Per-peer files (only peers that had a line), by peer id.
    pub peer_files: BTreeMap<String, String>,
    /// Lines in the run's file.
    pub lines: u64,
    /// Lines by level.
    pub counts: LevelCounts,
    /// Lines by peer ([`UNATTRIBUTED`] for the run's lines no peer's span carries).
    pub by_peer: BTreeMap<String, LevelCounts>,
    /// The last ERROR and WARN lines of each peer (up to [`LAST_LINES`]), oldest first.
    pub last: BTreeMap<String, Vec<String>>,
    /// Why a file could not be written, if one could not.
    pub error: Option<String>,
}

impl RunLogs {
    /// The terminal line: `logs: 12 library lines (3 ERROR, 9 WARN) -> FILE`.
    pub fn summary_line(&self) -> String {
        let mut s = if self.lines == 0 {
            format!("logs: no library lines -> {}", self.file)
        } else {
            format!(
                "logs: {} library line{} ({}) -> {}",
                self.lines,
                if self.lines == 1 { "" } else { "s" },
                self.counts.describe(),
                self.file
            )
        };
        if let Some(e) = &self.error {
            let _ = write!(s, " (incomplete: {e})");
        }
        s
    }

    /// The diagnosis tail: the last ERROR/WARN lines of `peers` (and of [`UNATTRIBUTED`]).
    pub fn diagnosis(&self, peers: &[String]) -> Option<String> {
        let mut out = String::new();
        let mut shown: Vec<&str> = peers.iter().map(String::as_str).collect();
        shown.push(UNATTRIBUTED);
        for p in shown {
            let Some(lines) = self.last.get(p).filter(|l| !l.is_empty()) else {
                continue;
            };
            let counts = self.by_peer.get(p).copied().unwrap_or_default();
            let file = self.peer_files.get(p).unwrap_or(&self.file);
            let _ = write!(
                out,
                "\nlast library lines of {p} ({}; {file}):",
                counts.describe()
            );
            let skip = lines.len().saturating_sub(DIAGNOSIS_LINES);
            for l in &lines[skip..] {
                let _ = write!(out, "\n  {l}");
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

struct Sink {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Sink {
    fn create(path: PathBuf, header: &str, error: &mut Option<String>) -> Self {
        let file = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|_| File::create(&path))
            .map(BufWriter::new)
            .and_then(|mut f| f.write_all(header.as_bytes()).map(|_| f));
        match file {
            Ok(f) => Self {
                path,
                file: Some(f),
            },
            Err(e) => {
                error.get_or_insert_with(|| format!("{}: {e}", path.display()));
                Self { path, file: None }
            }
        }
    }

    fn write(&mut self, line: &str, error: &mut Option<String>) {
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(line.as_bytes())
        {
            error.get_or_insert_with(|| format!("{}: {e}", self.path.display()));
            self.file = None;
        }
    }

    fn flush(&mut self, error: &mut Option<String>) {
        if let Some(f) = &mut self.file
            && let Err(e) = f.flush()
        {
            error.get_or_insert_with(|| format!("{}: {e}", self.path.display()));
        }
    }
}

struct PeerState {
    sink: Option<Sink>,
    counts: LevelCounts,
    last: VecDeque<String>,
}

struct RunState {
    started: Instant,
    base: PathBuf,
    sink: Sink,
    peers: BTreeMap<String, PeerState>,
    counts: LevelCounts,
    error: Option<String>,
}

impl RunState {
    fn record(&mut self, peer: &str, level: Level, target: &str, message: &str) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let line = format_line(ms, level, peer, target, message);
        self.sink.write(&line, &mut self.error);
        self.counts.add(level);
        let base = &self.base;
        let error = &mut self.error;
        let state = self
            .peers
            .entry(peer.to_string())
            .or_insert_with(|| PeerState {
                sink: (peer != UNATTRIBUTED).then(|| {
                    let mut path = base.as_os_str().to_owned();
                    path.push(format!(".{}.log", file_safe(peer)));
                    Sink::create(PathBuf::from(path), "", error)
                }),
                counts: LevelCounts::default(),
                last: VecDeque::new(),
            });
        if let Some(s) = &mut state.sink {
            s.write(&line, error);
        }
        state.counts.add(level);
        if level <= Level::WARN {
            if state.last.len() == LAST_LINES {
                state.last.pop_front();
            }
            let short: String = message.chars().take(LAST_LINE_CHARS).collect();
            state
                .last
                .push_back(format!("{ms:.1} ms {level} {target}: {short}"));
        }
    }

    fn finish(mut self) -> RunLogs {
        self.sink.flush(&mut self.error);
        let mut logs = RunLogs {
            file: self.sink.path.display().to_string(),
            lines: self.counts.total(),
            counts: self.counts,
            ..RunLogs::default()
        };
        for (peer, mut st) in self.peers {
            if let Some(s) = &mut st.sink {
                s.flush(&mut self.error);
                logs.peer_files
                    .insert(peer.clone(), s.path.display().to_string());
            }
            logs.by_peer.insert(peer.clone(), st.counts);
            if !st.last.is_empty() {
                logs.last.insert(peer, st.last.into_iter().collect());
            }
        }
        logs.error = self.error;
        logs
    }
}

struct Outside {
    path: Option<PathBuf>,
    sink: Option<Sink>,
    started: Instant,
    counts: LevelCounts,
    error: Option<String>,
}

struct HubState {
    runs: HashMap<u64, RunState>,
    used: HashSet<PathBuf>,
    outside: Outside,
}

/// Where captured lines go: the runs being captured, and the "outside" file.
pub struct Hub {
    state: Mutex<HubState>,
    next_run: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("logs::Hub")
    }
}

impl Hub {
    /// A hub whose lines outside any run go to `outside` (created at the first such line), or
    /// are only counted.
    pub fn new(outside: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState {
                runs: HashMap::new(),
                used: HashSet::new(),
                outside: Outside {
                    path: outside,
                    sink: None,
                    started: Instant::now(),
                    counts: LevelCounts::default(),
                    error: None,
                },
            }),
            next_run: AtomicU64::new(1),
        })
    }

    /// The tracing layer that feeds this hub.
    pub fn layer(self: &Arc<Self>) -> CaptureLayer {
        CaptureLayer { hub: self.clone() }
    }

    /// Starts capturing one run into `dir`/`base`.log (and `base`.`peer`.log); `base` gets a
    /// `-2`, `-3`, ... suffix if this hub already used it.
    pub fn begin(self: &Arc<Self>, dir: &Path, base: &str, header: &str) -> Capture {
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        let span = tracing::error_span!(target: SPAN_TARGET, RUN_SPAN, run);
        let Ok(mut st) = self.state.lock() else {
            return Capture::inactive();
        };
        let mut stem = dir.join(base);
        let mut n = 1;
        while st.used.contains(&stem) {
            n += 1;
            stem = dir.join(format!("{base}-{n}"));
        }
        st.used.insert(stem.clone());
        let mut error = None;
        let mut path = stem.as_os_str().to_owned();
        path.push(".log");
        let sink = Sink::create(PathBuf::from(path), header, &mut error);
        st.runs.insert(
            run,
            RunState {
                started: Instant::now(),
                base: stem,
                sink,
                peers: BTreeMap::new(),
                counts: LevelCounts::default(),
                error,
            },
        );
        Capture {
            hub: Some(self.clone()),
            run,
            span,
        }
    }

    fn record(
        &self,
        run: Option<u64>,
        peer: Option<&str>,
        level: Level,
        target: &str,
        message: &str,
    ) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let st = &mut *st;
        let run = run.or_else(|| match st.runs.len() {
            1 => st.runs.keys().next().copied(),
            _ => None,
        });
        if let Some(r) = run.and_then(|r| st.runs.get_mut(&r)) {
            r.record(peer.unwrap_or(UNATTRIBUTED), level, target, message);
            return;
        }
        let o = &mut st.outside;
        o.counts.add(level);
        if o.sink.is_none()
            && let Some(p) = o.path.clone()
        {
            let header = "# rtc-harness: library log lines outside any scenario run\n";
            o.sink = Some(Sink::create(p, header, &mut o.error));
        }
        let ms = o.started.elapsed().as_secs_f64() * 1000.0;
        let line = format_line(ms, level, peer.unwrap_or("-"), target, message);
        if let Some(s) = &mut o.sink {
            s.write(&line, &mut o.error);
        }
    }

    fn finish(&self, run: u64) -> Option<RunLogs> {
        let state = self.state.lock().ok()?.runs.remove(&run)?;
        Some(state.finish())
    }

    /// Lines seen outside any run so far, and the file they went to.
    pub fn outside(&self) -> (LevelCounts, Option<PathBuf>) {
        match self.state.lock() {
            Ok(mut st) => {
                let o = &mut st.outside;
                if let Some(s) = &mut o.sink {
                    s.flush(&mut o.error);
                }
                (o.counts, o.sink.as_ref().map(|s| s.path.clone()))
            }
            Err(_) => (LevelCounts::default(), None),
        }
    }
}

/// One run's capture: instrument the run with [`Capture::span`], then [`Capture::finish`].
#[must_use = "a capture must be finished to close its files"]
pub struct Capture {
    hub: Option<Arc<Hub>>,
    run: u64,
    span: Span,
}

impl Capture {
    /// A capture that captures nothing (no hub installed).
    pub fn inactive() -> Self {
        Self {
            hub: None,
            run: 0,
            span: Span::none(),
        }
    }

    /// The `scenario_run` span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Stops capturing; the counts and paths (None for an inactive capture).
    pub fn finish(self) -> Option<RunLogs> {
        self.hub.as_ref()?.finish(self.run)
    }

    /// Stops capturing and puts the result in `result.logs`; a run that did not pass gets
    /// the last ERROR/WARN lines of the peers involved at the end of its `reason`.
    pub fn finish_into(self, result: &mut RunResult, plan: &Plan) {
        let Some(logs) = self.finish() else { return };
        if result.verdict != crate::engine::Verdict::Pass
            && let Some(tail) = logs.diagnosis(&involved_peers(plan, result))
        {
            result
                .reason
                .get_or_insert_with(String::new)
                .push_str(&tail);
        }
        result.logs = Some(logs);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // A run dropped half-way (Ctrl-C) still closes its files.
        if let Some(hub) = self.hub.take() {
            let _ = hub.finish(self.run);
        }
    }
}

/// The peers a failure is about: those of the failed expectations, else those of the step
/// that failed, else every peer.
pub fn involved_peers(plan: &Plan, result: &RunResult) -> Vec<String> {
    let mut peers: BTreeSet<String> = result.failures.iter().map(|f| f.peer.clone()).collect();
    if peers.is_empty()
        && result.verdict == crate::engine::Verdict::Fail
        && let Some(sp) = plan.steps.get(result.steps_completed)
    {
        let ids: Vec<&str> = sp.step.endpoints().iter().map(|e| e.peer).collect();
        peers.extend(ids.iter().map(|s| s.to_string()));
    }
    if peers.is_empty() {
        peers.extend(plan.peers.iter().map(|p| p.id.clone()));
    }
    peers.into_iter().collect()
}

fn format_line(ms: f64, level: Level, peer: &str, target: &str, message: &str) -> String {
    format!("{ms:>10.1} ms {level:<5} {peer:<12} {target}: {message}\n")
}

/// `[A-Za-z0-9._-]` kept, anything else `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `scenarios/lab/relay-bot-bot.toml`, repetition 2 -> `lab-relay-bot-bot.r2`.
pub fn base_name(source: &Path, repetition: u32) -> String {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let parent = source
        .parent()
        .and_then(Path::file_name)
        .map(|s| format!("{}-", s.to_string_lossy()))
        .unwrap_or_default();
    file_safe(&format!("{parent}{stem}.r{repetition}"))
}

static GLOBAL: OnceLock<Arc<Hub>> = OnceLock::new();

/// The hub [`init`] installed, if any.
pub fn global() -> Option<&'static Arc<Hub>> {
    GLOBAL.get()
}

/// Starts capturing a run of `plan` on the installed hub, into `dir` (inactive if no hub).
pub fn begin(dir: &Path, plan: &Plan, repetition: u32) -> Capture {
    let Some(hub) = global() else {
        return Capture::inactive();
    };
    let header = format!(
        "# rtc-harness library log: {} ({}), run {repetition}\n# started {:.0} ms after the Unix epoch; filter {}; columns: ms since start, level, peer, target: message\n",
        plan.name,
        plan.source.display(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
        capture_directives(&std::env::var("RUST_LOG").unwrap_or_default()),
    );
    hub.begin(dir, &base_name(&plan.source, repetition), &header)
}

/// Library levels captured: `warn`, then `RUST_LOG`'s directives (a later one wins), and
/// always the attribution spans.
pub fn capture_directives(rust_log: &str) -> String {
    join_directives(&[DEFAULT_LEVEL, rust_log, &format!("{SPAN_TARGET}=error")])
}

/// The terminal's filter (applied to the harness's own targets only): `warn`, then
/// `RUST_LOG`.
pub fn terminal_directives(rust_log: &str) -> String {
    join_directives(&[DEFAULT_LEVEL, rust_log])
}

fn join_directives(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the process's tracing subscriber: the harness's own lines to stderr (through the
/// progress bar, see [`terminal`]), library lines into a [`Hub`] whose lines outside any run
/// go to `outside`. Returns the hub (also [`global`]).
pub fn init(outside: Option<PathBuf>) -> Arc<Hub> {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let hub = GLOBAL.get_or_init(|| Hub::new(outside)).clone();
    let own = filter_fn(|m| is_own_target(m.target()));
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(terminal::Stderr)
        .with_filter(own.and(EnvFilter::new(terminal_directives(&rust_log))));
    let capture = hub
        .layer()
        .with_filter(EnvFilter::new(capture_directives(&rust_log)));
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(capture)
        .try_init();
    hub
}

/// The tracing layer that routes library lines into a [`Hub`].
pub struct CaptureLayer {
    hub: Arc<Hub>,
}

struct RunTag(u64);
struct PeerTag(String);

#[derive(Default)]
struct SpanFields {
    run: Option<u64>,
    peer: Option<String>,
}

impl Visit for SpanFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "run" {
            self.run = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "peer" {
            self.peer = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "peer" {
            self.peer = Some(format!("{value:?}"));
        }
    }
}

/// The message, then other fields as `key=value` (tracing-log's `log.*` fields left out).
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let meta = attrs.metadata();
        if meta.target() != SPAN_TARGET {
            return;
        }
        let mut f = SpanFields::default();
        attrs.record(&mut f);
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        match (meta.name(), f.run, f.peer) {
            (RUN_SPAN, Some(r), _) => ext.insert(RunTag(r)),
            (PEER_SPAN, _, Some(p)) => ext.insert(PeerTag(p)),
            _ => {}
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if is_own_target(meta.target()) {
            return;
        }
        let mut run = None;
        let mut peer = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                if peer.is_none()
                    && let Some(PeerTag(p)) = ext.get::<PeerTag>()
                {
                    peer = Some(p.clone());
                }
                if let Some(RunTag(r)) = ext.get::<RunTag>() {
                    run = Some(*r);
                    break;
                }
            }
        }
        let mut m = Message::default();
        event.record(&mut m);
        m.message.push_str(&m.fields);
        let message = m.message.replace('\n', " | ");
        self.hub
            .record(run, peer.as_deref(), *meta.level(), meta.target(), &message);
    }
}

#[cfg(test)]
mod tests;
