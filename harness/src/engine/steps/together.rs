//! Several steps run as one: each started in turn (one every `every`, a ramp), and done when
//! every one of them has settled. Not an `action` of its own: `[load]` scenarios are made of
//! it ([`crate::load`]), where a part that fails does not fail the whole (a load run counts
//! how many pairs connected, and the verdict judges that share), and so is a `mesh` step,
//! where it does (`strict`).

use super::{Progress, Step, Watch};
use crate::engine::context::RunCx;
use crate::engine::error::StepError;
use crate::timeline::{Endpoint, Timeline};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How many unsettled parts a diagnosis names.
const NAMED: usize = 5;

/// Steps started in turn and awaited together.
#[derive(Debug)]
pub struct Together {
    /// What the progress line says (e.g. `connect 200 pairs, 50 a second`).
    pub what: String,
    /// The parts, in start order.
    pub parts: Vec<Arc<dyn Step>>,
    /// Time between two parts' starts (`None`: all at once).
    pub every: Option<Duration>,
    /// A part that fails fails the whole (else it only counts as settled).
    pub strict: bool,
}

#[async_trait]
impl Step for Together {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        // A diagnosis of hundreds of peers helps nobody: the first few parts.
        self.parts
            .iter()
            .take(NAMED)
            .flat_map(|p| p.endpoints())
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let t0 = Instant::now();
        let mut watches = Vec::with_capacity(self.parts.len());
        for (i, part) in self.parts.iter().enumerate() {
            if let Some(every) = self.every {
                let at = t0 + every * i as u32;
                if at > cx.deadline().at {
                    return Err(StepError::Impossible(format!(
                        "starting part {} of {} at this ramp would pass the deadline ({})",
                        i + 1,
                        self.parts.len(),
                        cx.deadline().what
                    )));
                }
                cx.sleep_until(at).await;
            }
            cx.drain();
            watches.push((part.describe(), part.start(cx).await?));
        }
        Ok(Box::new(All {
            watches,
            strict: self.strict,
        }))
    }

    fn samples_while_waiting(&self) -> bool {
        self.parts.iter().all(|p| p.samples_while_waiting())
    }

    async fn finish(&self, cx: &mut RunCx<'_>) -> Result<(), StepError> {
        for p in &self.parts {
            // Loose: a part that failed has nothing to finish; its failure is counted.
            let done = p.finish(cx).await;
            if self.strict {
                done?;
            }
        }
        Ok(())
    }
}

struct All {
    watches: Vec<(String, Box<dyn Watch>)>,
    strict: bool,
}

impl All {
    fn waiting<'a>(&'a self, timeline: &'a Timeline) -> impl Iterator<Item = &'a String> + 'a {
        self.watches
            .iter()
            .filter(|(_, w)| w.progress(timeline) == Progress::Waiting)
            .map(|(d, _)| d)
    }
}

impl Watch for All {
    fn progress(&self, timeline: &Timeline) -> Progress {
        if self.strict {
            for (what, w) in &self.watches {
                if let Progress::Failed(why) = w.progress(timeline) {
                    return Progress::Failed(format!("{what}: {why}"));
                }
            }
        }
        if self.waiting(timeline).next().is_none() {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        let waiting: Vec<&String> = self.waiting(timeline).collect();
        let named: Vec<&str> = waiting.iter().take(NAMED).map(|s| s.as_str()).collect();
        format!(
            "{} of {} parts still waiting ({}{})",
            waiting.len(),
            self.watches.len(),
            named.join("; "),
            if waiting.len() > NAMED { "; ..." } else { "" }
        )
    }
}
