//! The engine's errors: why a run could not be set up, and why a step failed.

use super::Verdict;
use crate::lab::LabError;
use crate::peer::PeerError;

/// Why a scenario could not be set up (nothing of its steps ran).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The network lab could not be built (missing programs or privileges, a refused command).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The app under test could not start or never became ready.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// The scenario's coturn did not start.
    #[error("the embedded TURN server could not start: {0}")]
    Turn(#[source] PeerError),
    /// A `[load]` larger than the process's descriptor limit.
    #[error("{0}")]
    DescriptorLimit(String),
    /// A peer did not start (a missing browser or driver, a session refused, its deadline).
    #[error("peer {peer:?} ({kind}) could not start: {source}")]
    Launch {
        /// Peer id.
        peer: String,
        /// Its kind.
        kind: String,
        /// Why.
        #[source]
        source: PeerError,
    },
}

impl SetupError {
    /// The verdict of a run that stopped here: a setup error when the machine lacks something,
    /// a failure when what was started misbehaved (coturn exiting at once).
    pub fn verdict(&self) -> Verdict {
        match self {
            SetupError::Turn(e) if !matches!(e, PeerError::Missing { .. }) => Verdict::Fail,
            _ => Verdict::SetupError,
        }
    }
}

/// Why a step failed. The texts are stable: `expected_failure` of must-fail scenarios matches
/// them.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A peer's command returned an error.
    #[error("{what}: {source}")]
    Peer {
        /// Which peer and command, e.g. `bot: connect`.
        what: String,
        /// The peer's error.
        #[source]
        source: PeerError,
    },
    /// A peer's command did not return before the step's deadline.
    #[error("{what}: deadline ({limit}) passed")]
    CommandDeadline {
        /// Which peer and command.
        what: String,
        /// The deadline's name, e.g. `its timeout_ms = 150`.
        limit: String,
    },
    /// The step cannot finish any more (a state went `failed`, a peer reported an error...).
    #[error("{why}{context}\n{diagnosis}")]
    Stuck {
        /// What went wrong.
        why: String,
        /// Evidence from servers (the TURN server's errors), may be empty.
        context: String,
        /// Every involved endpoint's states and last events.
        diagnosis: String,
    },
    /// The deadline passed while the step waited.
    #[error("deadline ({limit}) passed while waiting for {waiting_for}{context}\n{diagnosis}")]
    Deadline {
        /// The deadline's name.
        limit: String,
        /// What was still missing.
        waiting_for: String,
        /// Evidence from servers, may be empty.
        context: String,
        /// Every involved endpoint's states and last events.
        diagnosis: String,
    },
    /// The step cannot run as asked (e.g. a wait that would pass the deadline).
    #[error("{0}")]
    Impossible(String),
    /// The network lab refused a change.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// Every peer's event channel closed (the run is being torn down).
    #[error("event channel closed")]
    EventsClosed,
}
