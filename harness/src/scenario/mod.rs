//! Scenario files: TOML in, a checked [`Plan`] out, or an error that names file, line, column
//! and key.
//!
//! Loading never runs anything: a file is either entirely valid or rejected.
//!
//! ```
//! let text = r#"
//! name = "two bots"
//! [[peers]]
//! id = "a"
//! kind = "bot"
//! [[peers]]
//! id = "b"
//! kind = "bot"
//! [[steps]]
//! action = "connect"
//! offerer = "a"
//! answerer = "c"
//! "#;
//! let err = rtc_harness::scenario::parse(std::path::Path::new("x.toml"), text).unwrap_err();
//! assert_eq!(err.to_string(), "x.toml:12:12: key `steps[0].answerer`: unknown peer id \"c\" (peers: a, b)");
//! ```

mod file;
mod plan;
pub mod schema;
pub mod template;

pub use file::{
    AppProtocol, ConnectOutcome, Direction, IcePolicy, IceServerEntry, MediaKind, Nat, PeerKind,
    ScenarioFile, TurnTransport, UdpPolicy,
};
pub use plan::{
    AppMessage, AppPlan, AppReceived, AppSignalingPlan, BotTimers, CANDIDATE_TYPES, ConnectionPlan,
    DEFAULT_APP_READY_TIMEOUT_MS, EmbeddedTurnPlan, Expectation, IcePlan, LoadPlan, NetworkPlan,
    PeerNetwork, PeerPlan, Plan, StepPlan, TokenPlan, is_page_connection_id,
};
pub(crate) use plan::{Checker, Seg, checked_loss_pct};
pub use schema::scenario_schema;

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}:{column}: {}{message}", file.display(), key_prefix(key))]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key path, e.g. `steps[1].offerer` (empty for syntax errors before any key).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario.
    #[error(transparent)]
    Invalid(#[from] ScenarioError),
}

/// Reads and checks one scenario file whose peers are of the built-in kinds
/// ([`PeerKind::BUILT_IN`]); [`load_with_kinds`] accepts others.
pub fn load(path: &Path) -> Result<Plan, LoadError> {
    load_with_kinds(path, &PeerKind::BUILT_IN)
}

/// Reads and checks one scenario file; every peer's kind must be one of `kinds` (the kinds the
/// harness has launchers for, e.g. [`crate::engine::Engine::kinds`]). Another kind is an error
/// at the peer's `kind` key that names the kinds there are.
pub fn load_with_kinds(path: &Path, kinds: &[PeerKind]) -> Result<Plan, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_with_kinds(path, &text, kinds)?)
}

/// Checks scenario text whose peers are of the built-in kinds; `path` is only used in errors
/// and in the plan.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ScenarioError> {
    parse_with_kinds(path, text, &PeerKind::BUILT_IN)
}

/// Checks scenario text; every peer's kind must be one of `kinds` (see [`load_with_kinds`]).
pub fn parse_with_kinds(
    path: &Path,
    text: &str,
    kinds: &[PeerKind],
) -> Result<Plan, ScenarioError> {
    let raw = deserialize(path, text)?;
    let plan = plan::build(path, text, raw)?;
    if let Some((i, p)) = plan
        .peers
        .iter()
        .enumerate()
        .find(|(_, p)| !kinds.contains(&p.kind))
    {
        let mut names: Vec<&str> = kinds.iter().map(PeerKind::as_str).collect();
        names.sort_unstable();
        names.dedup();
        // A [load] table's peers are generated: its `kind` is the key to point at.
        let at = match plan.load {
            Some(_) => vec![Seg::Key("load"), Seg::Key("kind")],
            None => vec![Seg::Key("peers"), Seg::Index(i), Seg::Key("kind")],
        };
        return Err(Checker::new(path, text).err(
            &at,
            format!(
                "no launcher for peer kind {:?} (kinds: {})",
                p.kind.as_str(),
                names.join(", ")
            ),
        ));
    }
    Ok(plan)
}

fn deserialize(path: &Path, text: &str) -> Result<file::ScenarioFile, ScenarioError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        located(
            path,
            text,
            e.span(),
            String::new(),
            e.message().trim().to_string(),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        located(
            path,
            text,
            inner.span(),
            key,
            inner.message().trim().to_string(),
        )
    })
}

/// Builds an error at a byte span of `text`.
fn located(
    path: &Path,
    text: &str,
    span: Option<Range<usize>>,
    key: String,
    message: String,
) -> ScenarioError {
    let (line, column) = line_column(text, span.map(|s| s.start).unwrap_or(0));
    ScenarioError {
        file: path.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Finds the scenario files under `paths` (files as given; folders searched recursively for
/// `*.toml`), sorted for a stable order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| LoadError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
