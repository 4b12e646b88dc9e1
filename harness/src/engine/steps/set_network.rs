//! `set_network`: change a lab peer's packet loss and/or UDP policy while the scenario runs
//! (fault injection);
//! done as soon as the new rules are in place, or, with `recovers_within_ms`, once every
//! connection of the peer is `connected` again (both ends), within that many milliseconds.

use super::{BuildCx, Immediate, Kind, Progress, Step, Watch};
use crate::engine::context::{Deadline, RunCx};
use crate::engine::error::StepError;
use crate::scenario::{ScenarioError, UdpPolicy};
use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long asking a peer for its media counters at a recovery point may take.
const MEDIA_DEADLINE: Duration = Duration::from_secs(5);

pub(super) const KIND: Kind = Kind {
    action: "set_network",
    summary: "Change a network-lab peer's packet loss and/or UDP policy mid-scenario.",
    build,
    schema: super::schema_of::<Entry>,
};

/// The keys of a `set_network` step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The lab peer whose network changes.
    peer: String,
    /// The new packet loss each direction, percent (0-100; 100 drops everything); unset:
    /// as it is. Signed and wide so that any integer reaches the range check, which names
    /// the range.
    #[schemars(range(min = 0, max = 100))]
    loss_pct: Option<i64>,
    /// The new UDP policy: `blocked` drops all UDP both ways (TCP, e.g. TURN over TCP,
    /// passes), `open` lets it through again; unset: as it is.
    udp: Option<UdpPolicy>,
    /// After the change, wait until every connection of the peer has `connectionState`
    /// `connected` at both ends, and fail the step if that takes longer than this, ms. Only
    /// with loss below 100. A connection that never left `connected` counts as recovered.
    #[schemars(range(min = 1))]
    recovers_within_ms: Option<u64>,
}

/// A checked set_network step.
#[derive(Debug, Clone, PartialEq)]
pub struct SetNetwork {
    /// The peer.
    pub peer: String,
    /// New loss each direction, percent (`None`: unchanged).
    pub loss_pct: Option<u8>,
    /// New UDP policy (`None`: unchanged).
    pub udp: Option<UdpPolicy>,
    /// `recovers_within_ms`, and the connections it watches.
    pub recovery: Option<(u64, Vec<Watched>)>,
}

/// A connection a recovery waits for: (id, offerer, answerer, whether it carries media).
pub type Watched = (String, String, String, bool);

fn build(cx: &mut BuildCx<'_>, table: toml::Table) -> Result<Arc<dyn Step>, ScenarioError> {
    if !cx.in_lab {
        return Err(cx.err(
            "action",
            "set_network needs the network lab: add a [network] table",
        ));
    }
    let e: Entry = cx.parse(table)?;
    cx.peer("peer", &e.peer)?;
    let loss_pct = match e.loss_pct {
        None => None,
        Some(l) => match crate::scenario::checked_loss_pct(l) {
            Some(l) => Some(l),
            None => return Err(cx.err("loss_pct", "must be between 0 and 100")),
        },
    };
    if loss_pct.is_none() && e.udp.is_none() {
        return Err(cx.err("", "set_network needs `loss_pct`, `udp`, or both"));
    }
    let cuts = loss_pct == Some(100) || e.udp == Some(UdpPolicy::Blocked);
    let recovery = match e.recovers_within_ms {
        None => None,
        Some(_) if cuts => {
            return Err(cx.err(
                "recovers_within_ms",
                "nothing on UDP can recover while this step cuts the link (loss_pct = 100 or \
                 udp = \"blocked\"): set it on the step that restores the link",
            ));
        }
        Some(0) => return Err(cx.err("recovers_within_ms", "must be at least 1")),
        Some(ms) => {
            let conns: Vec<Watched> = cx
                .connections
                .iter()
                .filter(|c| c.expect_connected && c.has(&e.peer))
                .filter(|c| !cx.closed.contains(&c.offerer) && !cx.closed.contains(&c.answerer))
                .map(|c| {
                    (
                        c.id.clone(),
                        c.offerer.clone(),
                        c.answerer.clone(),
                        !c.media.is_empty(),
                    )
                })
                .collect();
            if conns.is_empty() {
                return Err(cx.err(
                    "recovers_within_ms",
                    format!(
                        "peer {:?} has no live connection that could recover",
                        e.peer
                    ),
                ));
            }
            Some((ms, conns))
        }
    };
    Ok(Arc::new(SetNetwork {
        peer: e.peer,
        loss_pct,
        udp: e.udp,
        recovery,
    }))
}

#[async_trait]
impl Step for SetNetwork {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.loss_pct {
            parts.push(format!("loss {l}%"));
        }
        match self.udp {
            Some(UdpPolicy::Blocked) => parts.push("UDP blocked".into()),
            Some(UdpPolicy::Open) => parts.push("UDP open".into()),
            None => {}
        }
        if let Some((ms, _)) = &self.recovery {
            parts.push(format!("recovers within {ms} ms"));
        }
        format!("set_network {}: {}", self.peer, parts.join(", "))
    }

    fn endpoints(&self) -> Vec<Endpoint<'_>> {
        self.recovery
            .iter()
            .flat_map(|(_, conns)| conns)
            .flat_map(|(c, o, a, _)| [Endpoint::new(o, c), Endpoint::new(a, c)])
            .collect()
    }

    async fn start(&self, cx: &mut RunCx<'_>) -> Result<Box<dyn Watch>, StepError> {
        let Some((udp_now, loss_now)) = cx.lab().and_then(|l| l.link_now(&self.peer)) else {
            return Err(StepError::Impossible(format!(
                "set_network: peer {} has no link in the network lab",
                self.peer
            )));
        };
        // Stamped just before the rules change (they are in place a few ms later), so that no
        // state change the new rules cause can come before it on the timeline.
        cx.record(
            &self.peer,
            "",
            EventKind::NetworkChanged {
                loss_pct: self.loss_pct.unwrap_or(loss_now),
                udp: self.udp.unwrap_or(udp_now),
            },
        );
        let deadline = cx.deadline().clone();
        let Some(lab) = cx.lab() else {
            return Err(StepError::Impossible(
                "set_network needs the network lab".into(),
            ));
        };
        match tokio::time::timeout_at(
            deadline.at,
            lab.set_link(&self.peer, self.udp, self.loss_pct),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(StepError::CommandDeadline {
                    what: format!("{}: set_network", self.peer),
                    limit: deadline.what,
                });
            }
        }
        let Some((ms, conns)) = &self.recovery else {
            return Ok(Box::new(Immediate));
        };
        let at = Instant::now() + Duration::from_millis(*ms);
        if at < cx.deadline().at {
            cx.deadline = Deadline {
                at,
                what: format!("its recovers_within_ms = {ms}"),
            };
        }
        Ok(Box::new(Recovery {
            endpoints: conns
                .iter()
                .flat_map(|(c, o, a, _)| [(o.clone(), c.clone()), (a.clone(), c.clone())])
                .collect(),
        }))
    }

    /// At a recovery point: what each watched end had received so far, for the
    /// `*_after_recovery` expectations.
    async fn finish(&self, cx: &mut RunCx<'_>) -> Result<(), StepError> {
        let Some((_, conns)) = &self.recovery else {
            return Ok(());
        };
        for (c, o, a, _) in conns.iter().filter(|w| w.3) {
            for p in [o, a] {
                // Its own short deadline: the step's (recovers_within_ms) may be spent.
                match tokio::time::timeout(MEDIA_DEADLINE, cx.peer(p)?.media_counters(c)).await {
                    Ok(Ok(m)) => cx.record(
                        p,
                        c,
                        EventKind::MediaAtRecovery {
                            video_frames: m.video_frames,
                            audio_packets_received: m.audio_packets_received,
                        },
                    ),
                    Ok(Err(e)) => tracing::warn!("{p}: media counters at the recovery point: {e}"),
                    Err(_) => tracing::warn!(
                        "{p}: media counters at the recovery point: no answer within {MEDIA_DEADLINE:?}"
                    ),
                }
            }
        }
        Ok(())
    }
}

/// Done once every watched endpoint's connectionState is `connected`.
struct Recovery {
    /// (peer, connection).
    endpoints: Vec<(String, String)>,
}

impl Recovery {
    fn not_connected<'a>(&'a self, timeline: &'a Timeline) -> Vec<String> {
        self.endpoints
            .iter()
            .filter_map(|(p, c)| {
                let ep = Endpoint::new(p, c);
                match timeline.states(ep, StateMachine::Connection).last() {
                    Some((_, "connected")) => None,
                    Some((t, s)) => Some(format!(
                        "peer {p} ({c}): connectionState {s} since {t:.1} ms"
                    )),
                    None => Some(format!("peer {p} ({c}): no connectionState")),
                }
            })
            .collect()
    }
}

impl Watch for Recovery {
    fn progress(&self, timeline: &Timeline) -> Progress {
        if self.not_connected(timeline).is_empty() {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    fn waiting_for(&self, timeline: &Timeline) -> String {
        format!(
            "every connection connected again; not yet: {}",
            self.not_connected(timeline).join("; ")
        )
    }
}
