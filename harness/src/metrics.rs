//! Setup-latency metrics, derived from a [`Timeline`] and nothing else.
//!
//! All values are milliseconds. For a peer in connection `c` (offerer `O`):
//!
//! | metric | from | to |
//! |---|---|---|
//! | `signaling_ms` | `O` calls `createOffer()` | `O` finished `setRemoteDescription(answer)` |
//! | `gathering_ms` | this peer's `iceGatheringState` `gathering` | `complete` |
//! | `ice_ms` | this peer's `iceConnectionState` `checking` | `connected` (or `completed`) |
//! | `dtls_ms` | `iceConnectionState` `connected` | `connectionState` `connected` |
//! | `setup_ms` | `O` calls `createOffer()` | this peer's `connectionState` `connected` |
//! | `first_message_ms` | the other peer's first `send` step begins (its `send-started` event, stamped by the harness just before it asks that peer to send) | first data-channel message this peer received |
//! | `first_frame_ms` | this peer's `connectionState` `connected` | first whole video frame (browsers: first frame painted, `requestVideoFrameCallback`; bots: last packet of the first frame); 0 when the frame is reported first (a page queues the two events separately: seen here, a frame 0.8 ms before `connected`) |
//!
//! A metric whose end points were not both observed is absent (`None`), never zero.

use crate::timeline::{Endpoint, EventKind, StateMachine, Timeline};
use serde::Serialize;

/// Metric names, in report order.
pub const NAMES: [&str; 10] = [
    "signaling_ms",
    "gathering_ms",
    "ice_ms",
    "dtls_ms",
    "setup_ms",
    "first_message_ms",
    "first_frame_ms",
    "fault_to_disconnected_ms",
    "fault_to_failed_ms",
    "restore_to_connected_ms",
];

/// One peer's metrics for one run (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PeerMetrics {
    /// createOffer → answer applied at the offerer.
    pub signaling_ms: Option<f64>,
    /// gathering → complete.
    pub gathering_ms: Option<f64>,
    /// ICE checking → connected.
    pub ice_ms: Option<f64>,
    /// ICE connected → connectionState connected: the DTLS handshake and anything that delays
    /// it (e.g. a bot waiting to nominate a peer-reflexive pair).
    pub dtls_ms: Option<f64>,
    /// Offerer's createOffer → this peer's connected.
    pub setup_ms: Option<f64>,
    /// The other peer's first send began → first data-channel message received here.
    pub first_message_ms: Option<f64>,
    /// connected → first whole video frame at this peer (browsers: first painted frame).
    pub first_frame_ms: Option<f64>,
    /// The fault → this peer's next connectionState `disconnected`. The fault is the first,
    /// after this peer was connected, of: the other peer of the connection killed (`kill`), or
    /// either peer's link cut (`set_network` to loss 100 or UDP blocked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_to_disconnected_ms: Option<f64>,
    /// The fault (as above) → this peer's next connectionState `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_to_failed_ms: Option<f64>,
    /// The restore (the faulted peer's next `set_network` after the fault that leaves its
    /// link not cut) → this peer's next connectionState `connected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_to_connected_ms: Option<f64>,
}

impl PeerMetrics {
    /// The value of a metric by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "signaling_ms" => self.signaling_ms,
            "gathering_ms" => self.gathering_ms,
            "ice_ms" => self.ice_ms,
            "dtls_ms" => self.dtls_ms,
            "setup_ms" => self.setup_ms,
            "first_message_ms" => self.first_message_ms,
            "first_frame_ms" => self.first_frame_ms,
            "fault_to_disconnected_ms" => self.fault_to_disconnected_ms,
            "fault_to_failed_ms" => self.fault_to_failed_ms,
            "restore_to_connected_ms" => self.restore_to_connected_ms,
            _ => None,
        }
    }
}

fn span(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    }
}

/// [`span`], but 0 when `to` came first (both observed): for an end point whose event may be
/// delivered before the start's although it cannot happen before it.
fn at_least_zero(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    match (from, to) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    }
}

/// Computes the metrics of one peer's side of one connection whose two ends share its id (a
/// `connect` step's).
pub fn peer_metrics(timeline: &Timeline, ep: Endpoint<'_>) -> PeerMetrics {
    metrics_in(timeline, ep, false)
}

/// Computes the metrics of one side of a connection whose other end has another name: a page
/// peer's `pcN`, a `join_app` bot's connection. The other end is found by ICE ufrag
/// ([`paired_endpoint`]); without one, the connection is this endpoint alone.
pub fn paired_peer_metrics(timeline: &Timeline, ep: Endpoint<'_>) -> PeerMetrics {
    metrics_in(timeline, ep, true)
}

fn metrics_in(timeline: &Timeline, ep: Endpoint<'_>, page: bool) -> PeerMetrics {
    let connection = ep.connection;
    let remote = if page {
        paired_endpoint(timeline, ep)
    } else {
        None
    };
    let in_connection = |e: &crate::timeline::Event| {
        if page {
            (e.peer == ep.peer && e.connection == connection)
                || remote
                    .as_ref()
                    .is_some_and(|(p, c)| e.peer == *p && e.connection == *c)
        } else {
            e.connection == connection
        }
    };
    let first_in = |pred: fn(&EventKind) -> bool| {
        timeline
            .events()
            .iter()
            .find(|e| in_connection(e) && pred(&e.event))
            .map(|e| e.t_ms)
    };
    let offer = first_in(|k| matches!(k, EventKind::CreateOffer));
    let answer_applied = first_in(|k| matches!(k, EventKind::AnswerApplied));
    let st = |m, s| timeline.first_state_time(ep, m, s);
    let connected = st(StateMachine::Connection, "connected");
    let ice_connected = match (
        st(StateMachine::IceConnection, "connected"),
        st(StateMachine::IceConnection, "completed"),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let send_started = timeline
        .events()
        .iter()
        .find(|e| {
            in_connection(e)
                && e.peer != ep.peer
                && matches!(e.event, EventKind::SendStarted { .. })
        })
        .map(|e| e.t_ms);
    let first_message = timeline.first_time(ep, |k| matches!(k, EventKind::MessageReceived { .. }));
    let remote_peer = remote.as_ref().map(|(p, _)| p.as_str());
    let faults = faults(timeline, ep, connected, remote_peer);
    let next_state = |after: Option<f64>, state: &str| {
        after.and_then(|a| {
            timeline
                .states(ep, StateMachine::Connection)
                .into_iter()
                .find(|(t, s)| *t >= a && *s == state)
                .map(|(t, _)| t)
        })
    };
    PeerMetrics {
        fault_to_disconnected_ms: span(faults.0, next_state(faults.0, "disconnected")),
        fault_to_failed_ms: span(faults.0, next_state(faults.0, "failed")),
        restore_to_connected_ms: span(faults.1, next_state(faults.1, "connected")),
        signaling_ms: span(offer, answer_applied),
        gathering_ms: span(
            st(StateMachine::IceGathering, "gathering"),
            st(StateMachine::IceGathering, "complete"),
        ),
        ice_ms: span(st(StateMachine::IceConnection, "checking"), ice_connected),
        dtls_ms: span(ice_connected, connected),
        setup_ms: span(offer, connected),
        first_message_ms: span(send_started, first_message),
        first_frame_ms: at_least_zero(
            connected,
            timeline.first_time(ep, |k| matches!(k, EventKind::FirstVideoFrame)),
        ),
    }
}

/// The first fault of an endpoint's connection after `connected` (see
/// [`PeerMetrics::fault_to_disconnected_ms`]), and the restore after it.
fn faults(
    timeline: &Timeline,
    ep: Endpoint<'_>,
    connected: Option<f64>,
    page_remote: Option<&str>,
) -> (Option<f64>, Option<f64>) {
    let Some(connected) = connected else {
        return (None, None);
    };
    // The peers of the connection: this one and whoever else has events in it (a page
    // connection: the peer of its paired end).
    let in_connection = |peer: &str| {
        peer == ep.peer
            || page_remote == Some(peer)
            || page_remote.is_none()
                && timeline
                    .events()
                    .iter()
                    .any(|e| e.peer == peer && e.connection == ep.connection)
    };
    let fault = timeline.events().iter().find(|e| {
        e.t_ms >= connected
            && e.connection.is_empty()
            && in_connection(&e.peer)
            && match e.event {
                EventKind::Killed => e.peer != ep.peer,
                EventKind::NetworkChanged { loss_pct, udp } => cut(loss_pct, udp),
                _ => false,
            }
    });
    let Some(fault) = fault else {
        return (None, None);
    };
    let restore = timeline.events().iter().find(|e| {
        e.t_ms >= fault.t_ms
            && e.peer == fault.peer
            && matches!(e.event, EventKind::NetworkChanged { loss_pct, udp } if !cut(loss_pct, udp))
    });
    (Some(fault.t_ms), restore.map(|e| e.t_ms))
}

/// The other end of a page connection: the endpoint of another peer whose applied remote
/// description carries this endpoint's local `a=ice-ufrag`, or whose local one this endpoint
/// applied as remote (RFC 8839 §5.4: the ufrag names one ICE agent's session). `None` when no
/// endpoint matches.
pub fn paired_endpoint(timeline: &Timeline, ep: Endpoint<'_>) -> Option<(String, String)> {
    let ufrags = |peer: &str, connection: &str, method: &str| -> Vec<String> {
        timeline
            .events()
            .iter()
            .filter(|e| e.peer == peer && e.connection == connection)
            .filter_map(|e| match &e.event {
                EventKind::Call {
                    method: m,
                    ice_ufrag: Some(u),
                    error: None,
                    ..
                } if m == method => Some(u.clone()),
                _ => None,
            })
            .collect()
    };
    let local = ufrags(ep.peer, ep.connection, "setLocalDescription");
    let remote = ufrags(ep.peer, ep.connection, "setRemoteDescription");
    let mut seen = std::collections::HashSet::new();
    for e in timeline.events() {
        if (e.peer == ep.peer && e.connection == ep.connection) || e.connection.is_empty() {
            continue;
        }
        if !seen.insert((e.peer.as_str(), e.connection.as_str())) {
            continue;
        }
        let their_remote = ufrags(&e.peer, &e.connection, "setRemoteDescription");
        let their_local = ufrags(&e.peer, &e.connection, "setLocalDescription");
        if local.iter().any(|u| their_remote.contains(u))
            || remote.iter().any(|u| their_local.contains(u))
        {
            return Some((e.peer.clone(), e.connection.clone()));
        }
    }
    None
}

/// Whether a link with these rules is cut for a UDP path: loss 100, or UDP blocked.
fn cut(loss_pct: u8, udp: crate::scenario::UdpPolicy) -> bool {
    loss_pct == 100 || udp == crate::scenario::UdpPolicy::Blocked
}

/// min / median / p95 / max of a sample (ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// 50th percentile.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// Percentile `p` (0..=100) by linear interpolation between closest ranks (the "R-7" /
/// NumPy default definition). `sorted` must be sorted and non-empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// The finite values of a sample, sorted (what [`percentile`] takes); `None` when none is.
pub fn sorted_finite(values: &[f64]) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then_some(v)
}

/// Summarises a sample; `None` when it is empty.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let v = sorted_finite(values)?;
    Some(Summary {
        n: v.len(),
        min: v[0],
        median: percentile(&v, 50.0),
        p95: percentile(&v, 95.0),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::UdpPolicy;
    use crate::timeline::Event;
    use proptest::prelude::*;

    fn push(t: &mut Timeline, ms: f64, peer: &str, kind: EventKind) {
        t.push(Event {
            t_ms: ms,
            peer: peer.into(),
            connection: "c".into(),
            event: kind,
        });
    }
    fn st(m: StateMachine, s: &str) -> EventKind {
        EventKind::State {
            machine: m,
            state: s.into(),
        }
    }

    #[test]
    fn phases_from_a_timeline() {
        let mut t = Timeline::new();
        push(&mut t, 10.0, "o", EventKind::CreateOffer);
        push(
            &mut t,
            11.0,
            "o",
            st(StateMachine::IceGathering, "gathering"),
        );
        push(
            &mut t,
            15.0,
            "a",
            st(StateMachine::IceConnection, "checking"),
        );
        push(&mut t, 18.0, "o", EventKind::AnswerApplied);
        push(
            &mut t,
            19.0,
            "o",
            st(StateMachine::IceGathering, "complete"),
        );
        push(
            &mut t,
            25.0,
            "a",
            st(StateMachine::IceConnection, "connected"),
        );
        push(&mut t, 40.0, "a", st(StateMachine::Connection, "connected"));
        // The harness's own work after connected (selected pairs, stats) is not in
        // first_message_ms: it starts when the other peer's send begins.
        push(
            &mut t,
            41.0,
            "o",
            EventKind::SendStarted {
                label: "x".into(),
                count: 1,
            },
        );
        push(
            &mut t,
            42.5,
            "a",
            EventKind::MessageReceived {
                label: "x".into(),
                seq: 0,
                intact: true,
                in_order: true,
            },
        );
        let a = peer_metrics(&t, Endpoint::new("a", "c"));
        assert_eq!(
            a,
            PeerMetrics {
                signaling_ms: Some(8.0),
                gathering_ms: None,
                ice_ms: Some(10.0),
                dtls_ms: Some(15.0),
                setup_ms: Some(30.0),
                first_message_ms: Some(1.5),
                first_frame_ms: None,
                ..PeerMetrics::default()
            }
        );
        let o = Endpoint::new("o", "c");
        assert_eq!(peer_metrics(&t, o).gathering_ms, Some(8.0));
        assert_eq!(peer_metrics(&t, o).setup_ms, None);
        // Its own send does not start a clock for itself.
        assert_eq!(peer_metrics(&t, o).first_message_ms, None);
    }

    fn peer_wide(t: &mut Timeline, ms: f64, peer: &str, kind: EventKind) {
        t.push(Event {
            t_ms: ms,
            peer: peer.into(),
            connection: String::new(),
            event: kind,
        });
    }

    #[test]
    fn a_first_frame_reported_before_connected_is_zero_not_absent() {
        let mut t = Timeline::new();
        push(&mut t, 10.0, "o", EventKind::CreateOffer);
        push(&mut t, 336.8, "a", EventKind::FirstVideoFrame);
        push(
            &mut t,
            337.6,
            "a",
            st(StateMachine::Connection, "connected"),
        );
        assert_eq!(
            peer_metrics(&t, Endpoint::new("a", "c")).first_frame_ms,
            Some(0.0)
        );
        // Without a frame it stays absent.
        let mut t = Timeline::new();
        push(
            &mut t,
            337.6,
            "a",
            st(StateMachine::Connection, "connected"),
        );
        assert_eq!(
            peer_metrics(&t, Endpoint::new("a", "c")).first_frame_ms,
            None
        );
    }

    #[test]
    fn fault_and_restore_intervals() {
        let mut t = Timeline::new();
        push(&mut t, 10.0, "o", EventKind::CreateOffer);
        push(&mut t, 50.0, "a", st(StateMachine::Connection, "connected"));
        push(&mut t, 60.0, "o", st(StateMachine::Connection, "connected"));
        // A loss change of another peer's link is no fault of this connection.
        peer_wide(
            &mut t,
            90.0,
            "x",
            EventKind::NetworkChanged {
                loss_pct: 100,
                udp: UdpPolicy::Open,
            },
        );
        peer_wide(
            &mut t,
            100.0,
            "o",
            EventKind::NetworkChanged {
                loss_pct: 100,
                udp: UdpPolicy::Open,
            },
        );
        push(
            &mut t,
            2100.0,
            "a",
            st(StateMachine::Connection, "disconnected"),
        );
        peer_wide(
            &mut t,
            5100.0,
            "o",
            EventKind::NetworkChanged {
                loss_pct: 0,
                udp: UdpPolicy::Open,
            },
        );
        push(
            &mut t,
            7000.0,
            "a",
            st(StateMachine::Connection, "connected"),
        );
        let m = peer_metrics(&t, Endpoint::new("a", "c"));
        assert_eq!(m.fault_to_disconnected_ms, Some(2000.0));
        assert_eq!(m.fault_to_failed_ms, None);
        assert_eq!(m.restore_to_connected_ms, Some(1900.0));
        // A kill counts for the survivor, not for the killed peer itself.
        let mut t = Timeline::new();
        push(&mut t, 50.0, "a", st(StateMachine::Connection, "connected"));
        push(&mut t, 60.0, "o", st(StateMachine::Connection, "connected"));
        peer_wide(&mut t, 100.0, "o", EventKind::Killed);
        push(
            &mut t,
            5100.0,
            "a",
            st(StateMachine::Connection, "disconnected"),
        );
        push(&mut t, 30100.0, "a", st(StateMachine::Connection, "failed"));
        let m = peer_metrics(&t, Endpoint::new("a", "c"));
        assert_eq!(m.fault_to_disconnected_ms, Some(5000.0));
        assert_eq!(m.fault_to_failed_ms, Some(30000.0));
        assert_eq!(
            peer_metrics(&t, Endpoint::new("o", "c")).fault_to_failed_ms,
            None
        );
    }

    #[test]
    fn percentiles() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.max), (5, 1.0, 3.0, 5.0));
        assert!((s.p95 - 4.8).abs() < 1e-9);
        assert_eq!(summarize(&[]), None);
        let one = summarize(&[7.0]).unwrap();
        assert_eq!((one.median, one.p95), (7.0, 7.0));
    }

    proptest! {
        #[test]
        fn summary_is_ordered(v in proptest::collection::vec(0.0f64..1e6, 1..50)) {
            let s = summarize(&v).unwrap();
            prop_assert!(s.min <= s.median && s.median <= s.p95 && s.p95 <= s.max);
        }
    }
}
