//! Whether a run met its expectations: pure functions over the timeline and metrics.

use crate::metrics::PeerMetrics;
use crate::scenario::Expectation;
use crate::timeline::{Endpoint, StateMachine, Timeline};
use serde::Serialize;
use std::fmt;

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Failure {
    /// The peer.
    pub peer: String,
    /// The scenario key, e.g. `connection_state`.
    pub key: String,
    /// What the file asked for.
    pub expected: String,
    /// What happened.
    pub observed: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer {}: {}: expected {}, observed {}",
            self.peer, self.key, self.expected, self.observed
        )
    }
}

fn list<S: AsRef<str>>(v: &[S]) -> String {
    let items: Vec<&str> = v.iter().map(|s| s.as_ref()).collect();
    format!("[{}]", items.join(", "))
}

/// Checks one expectation against a timeline that ends at the end of the last step.
pub fn check(
    exp: &Expectation,
    timeline: &Timeline,
    metrics: &PeerMetrics,
    media: Option<&crate::peer::media::MediaCounters>,
    last_stats: Option<&[serde_json::Value]>,
) -> Vec<Failure> {
    let mut out = Vec::new();
    let ep = Endpoint::new(&exp.peer, exp.connection.as_deref().unwrap_or(""));
    let fail = |key: &str, expected: String, observed: String| Failure {
        peer: exp.peer.clone(),
        key: key.to_string(),
        expected,
        observed,
    };
    for (machine, want) in &exp.sequences {
        let got: Vec<&str> = timeline
            .states(ep, *machine)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        if got != *want {
            out.push(fail(machine.key(), list(want), list(&got)));
        }
    }
    for bad in &exp.never {
        for machine in StateMachine::ALL {
            if let Some((t, _)) = timeline
                .states(ep, machine)
                .into_iter()
                .find(|(_, s)| s == bad)
            {
                out.push(fail(
                    "never",
                    format!("no {machine} {bad:?}"),
                    format!("{machine} {bad:?} at {t:.1} ms"),
                ));
            }
        }
    }
    if let Some(n) = exp.received_messages {
        let got = timeline.intact_in_order_received(ep);
        if got != n {
            let all = timeline.messages_received(ep, None).len();
            out.push(fail(
                "received_messages",
                format!("{n} intact in-order messages"),
                format!("{got} intact in-order (of {all} received)"),
            ));
        }
    }
    if let Some(want) = &exp.candidate_types_gathered {
        let mut got: Vec<String> = timeline
            .of(ep)
            .filter_map(|e| match &e.event {
                crate::timeline::EventKind::LocalCandidate { candidate_type, .. } => {
                    Some(candidate_type.clone())
                }
                _ => None,
            })
            .collect();
        got.sort();
        got.dedup();
        if got != *want {
            out.push(fail("candidate_types_gathered", list(want), list(&got)));
        }
    }
    if let Some((local, remote)) = &exp.selected_pair {
        let got = timeline.of(ep).find_map(|e| match &e.event {
            crate::timeline::EventKind::SelectedCandidatePair { local, remote } => {
                Some((local.clone(), remote.clone()))
            }
            _ => None,
        });
        let want = format!("local {local}, remote {remote}");
        match got {
            Some((l, r)) if l == *local && r == *remote => {}
            Some((l, r)) => out.push(fail(
                "selected_pair",
                want,
                format!("local {l}, remote {r}"),
            )),
            None => out.push(fail("selected_pair", want, "no selected pair".into())),
        }
    }
    let counters = media.copied().unwrap_or_default();
    if let Some(n) = exp.min_video_frames
        && counters.video_frames < n
    {
        out.push(fail(
            "min_video_frames",
            format!("at least {n} video frames"),
            format!(
                "{} frames ({} packets)",
                counters.video_frames, counters.video_packets_received
            ),
        ));
    }
    if let Some(n) = exp.min_audio_packets
        && counters.audio_packets_received < n
    {
        out.push(fail(
            "min_audio_packets",
            format!("at least {n} audio packets"),
            format!("{} packets", counters.audio_packets_received),
        ));
    }
    if exp.min_video_frames_after_recovery.is_some()
        || exp.min_audio_packets_after_recovery.is_some()
    {
        // The last recovery point: (time, video frames, audio packets) received by then.
        let last = timeline
            .of(ep)
            .filter_map(|e| match e.event {
                crate::timeline::EventKind::MediaAtRecovery {
                    video_frames,
                    audio_packets_received,
                } => Some((e.t_ms, video_frames, audio_packets_received)),
                _ => None,
            })
            .last();
        // (key, minimum, what, at the end, at the recovery point)
        let checks = [
            (
                "min_video_frames_after_recovery",
                exp.min_video_frames_after_recovery,
                "video frames",
                counters.video_frames,
                last.map(|(t, v, _)| (t, v)),
            ),
            (
                "min_audio_packets_after_recovery",
                exp.min_audio_packets_after_recovery,
                "audio packets",
                counters.audio_packets_received,
                last.map(|(t, _, a)| (t, a)),
            ),
        ];
        for (key, want, what, end, at) in checks {
            let Some(n) = want else { continue };
            let want = format!("at least {n} {what} after the recovery point");
            match at {
                None => out.push(fail(
                    key,
                    want,
                    "no recovery point (no set_network step with recovers_within_ms completed)"
                        .into(),
                )),
                Some((t, base)) => {
                    let got = end.saturating_sub(base);
                    if got < n {
                        out.push(fail(
                            key,
                            want,
                            format!(
                                "{got} {what} after it ({base} at {t:.1} ms, {end} at the end)"
                            ),
                        ));
                    }
                }
            }
        }
    }
    // Upper bounds: (key, what is bounded, limit, observed value, unit, text when unobserved).
    let bounds = [
        (
            "first_frame_ms_max",
            "first_frame_ms",
            exp.first_frame_ms_max,
            metrics.first_frame_ms,
            " ms",
            "no video frame",
        ),
        (
            "max_rtt_ms",
            "RTT",
            exp.max_rtt_ms,
            last_stats.and_then(rtt_ms),
            " ms",
            "no currentRoundTripTime on a nominated candidate pair",
        ),
        (
            "max_packet_loss_pct",
            "inbound loss",
            exp.max_packet_loss_pct,
            last_stats.and_then(loss_pct),
            "%",
            "no inbound-rtp stats",
        ),
        (
            "setup_ms_max",
            "setup_ms",
            exp.setup_ms_max,
            metrics.setup_ms,
            " ms",
            "never connected",
        ),
    ];
    for (key, what, limit, observed, unit, missing) in bounds {
        let Some(max) = limit else { continue };
        let expected = format!("{what} <= {max}{}", if unit == "%" { "%" } else { "" });
        match observed {
            Some(v) if v <= max => {}
            Some(v) if unit == "%" => out.push(fail(key, expected, format!("{v:.2}%"))),
            Some(v) => out.push(fail(key, expected, format!("{v:.1} ms"))),
            None => out.push(fail(key, expected, missing.to_string())),
        }
    }
    out
}

/// The largest `currentRoundTripTime` (seconds in webrtc-stats) of the nominated, succeeded
/// candidate pairs, in ms.
pub fn rtt_ms(stats: &[serde_json::Value]) -> Option<f64> {
    stats
        .iter()
        .filter(|s| s["type"] == "candidate-pair" && s["nominated"] == true)
        .filter(|s| s["state"] == "succeeded")
        .filter_map(|s| s["currentRoundTripTime"].as_f64())
        .map(|s| s * 1000.0)
        .reduce(f64::max)
}

/// Inbound RTP loss in percent over every `inbound-rtp`: lost / (received + lost).
pub fn loss_pct(stats: &[serde_json::Value]) -> Option<f64> {
    let inbound: Vec<&serde_json::Value> = stats
        .iter()
        .filter(|s| s["type"] == "inbound-rtp")
        .collect();
    if inbound.is_empty() {
        return None;
    }
    let lost: f64 = inbound
        .iter()
        .map(|s| s["packetsLost"].as_f64().unwrap_or(0.0).max(0.0))
        .sum();
    let received: f64 = inbound
        .iter()
        .map(|s| s["packetsReceived"].as_f64().unwrap_or(0.0))
        .sum();
    if lost + received == 0.0 {
        return Some(0.0);
    }
    Some(lost / (lost + received) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Event, EventKind};

    fn timeline(states: &[(&str, StateMachine, &str)]) -> Timeline {
        let mut t = Timeline::new();
        for (i, (peer, m, s)) in states.iter().enumerate() {
            t.push(Event {
                t_ms: i as f64,
                peer: peer.to_string(),
                connection: "c".into(),
                event: EventKind::State {
                    machine: *m,
                    state: s.to_string(),
                },
            });
        }
        t
    }

    fn exp(seq: &[&str]) -> Expectation {
        Expectation {
            peer: "a".into(),
            connection: Some("c".into()),
            sequences: vec![(
                StateMachine::Connection,
                seq.iter().map(|s| s.to_string()).collect(),
            )],
            ..Default::default()
        }
    }

    #[test]
    fn exact_sequence_passes_and_any_difference_fails() {
        use StateMachine::Connection as C;
        let t = timeline(&[
            ("a", C, "new"),
            ("b", C, "new"),
            ("a", C, "connecting"),
            ("a", C, "connected"),
        ]);
        let m = PeerMetrics::default();
        assert!(
            check(
                &exp(&["new", "connecting", "connected"]),
                &t,
                &m,
                None,
                None
            )
            .is_empty()
        );
        // Prefix, extra and reordered sequences all fail.
        for bad in [
            &["new", "connecting"][..],
            &["new", "connecting", "connected", "closed"][..],
            &["new", "connected", "connecting"][..],
        ] {
            let f = check(&exp(bad), &t, &m, None, None);
            assert_eq!(f.len(), 1, "{bad:?}");
            assert_eq!(f[0].observed, "[new, connecting, connected]");
        }
    }

    #[test]
    fn rtt_and_loss_come_from_webrtc_stats() {
        use serde_json::json;
        let stats = vec![
            json!({"type": "candidate-pair", "nominated": true, "state": "succeeded", "currentRoundTripTime": 0.0125}),
            json!({"type": "candidate-pair", "nominated": false, "state": "succeeded", "currentRoundTripTime": 0.5}),
            json!({"type": "inbound-rtp", "kind": "video", "packetsReceived": 95, "packetsLost": 5}),
            json!({"type": "inbound-rtp", "kind": "audio", "packetsReceived": 100, "packetsLost": 0}),
        ];
        assert_eq!(rtt_ms(&stats), Some(12.5));
        assert_eq!(loss_pct(&stats), Some(2.5));
        assert_eq!(loss_pct(&stats[..2]), None);
        let e = Expectation {
            peer: "a".into(),
            connection: Some("c".into()),
            max_rtt_ms: Some(10.0),
            max_packet_loss_pct: Some(1.0),
            ..Default::default()
        };
        let f = check(
            &e,
            &Timeline::new(),
            &PeerMetrics::default(),
            None,
            Some(&stats),
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].observed, "12.5 ms");
        assert_eq!(f[1].observed, "2.50%");
    }

    #[test]
    fn media_after_recovery_counts_from_the_last_recovery_point() {
        let e = Expectation {
            peer: "a".into(),
            connection: Some("c".into()),
            min_video_frames_after_recovery: Some(20),
            min_audio_packets_after_recovery: Some(100),
            ..Default::default()
        };
        let end = crate::peer::media::MediaCounters {
            video_frames: 100,
            audio_packets_received: 400,
            ..Default::default()
        };
        // No recovery point: both fail, saying so.
        let f = check(
            &e,
            &Timeline::new(),
            &PeerMetrics::default(),
            Some(&end),
            None,
        );
        assert_eq!(f.len(), 2);
        assert!(f[0].observed.contains("no recovery point"));
        let mut t = Timeline::new();
        let at = |t_ms, video_frames, audio_packets_received| Event {
            t_ms,
            peer: "a".into(),
            connection: "c".into(),
            event: EventKind::MediaAtRecovery {
                video_frames,
                audio_packets_received,
            },
        };
        t.push(at(1000.0, 10, 50));
        assert!(check(&e, &t, &PeerMetrics::default(), Some(&end), None).is_empty());
        // A later recovery point counts: 100 - 85 = 15 frames, 400 - 350 = 50 packets after it.
        t.push(at(5000.0, 85, 350));
        let f = check(&e, &t, &PeerMetrics::default(), Some(&end), None);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key, "min_video_frames_after_recovery");
        assert_eq!(
            f[0].observed,
            "15 video frames after it (85 at 5000.0 ms, 100 at the end)"
        );
        assert_eq!(
            f[1].observed,
            "50 audio packets after it (350 at 5000.0 ms, 400 at the end)"
        );
    }

    #[test]
    fn never_finds_states_in_any_machine() {
        use StateMachine::*;
        let t = timeline(&[("a", IceConnection, "new"), ("a", IceConnection, "failed")]);
        let e = Expectation {
            peer: "a".into(),
            connection: Some("c".into()),
            never: vec!["failed".into()],
            ..Default::default()
        };
        let f = check(&e, &t, &PeerMetrics::default(), None, None);
        assert_eq!(f.len(), 1);
        assert!(f[0].observed.contains("iceConnectionState \"failed\""));
    }

    #[test]
    fn setup_bound_and_message_count() {
        let mut t = Timeline::new();
        for (seq, intact, in_order) in [(0, true, true), (1, false, true), (3, true, false)] {
            t.push(Event {
                t_ms: 1.0,
                peer: "a".into(),
                connection: "c".into(),
                event: EventKind::MessageReceived {
                    label: "x".into(),
                    seq,
                    intact,
                    in_order,
                },
            });
        }
        let e = Expectation {
            peer: "a".into(),
            connection: Some("c".into()),
            received_messages: Some(3),
            setup_ms_max: Some(100.0),
            ..Default::default()
        };
        let m = PeerMetrics {
            setup_ms: Some(150.0),
            ..Default::default()
        };
        let f = check(&e, &t, &m, None, None);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].observed, "1 intact in-order (of 3 received)");
        assert_eq!(f[1].observed, "150.0 ms");
        let ok = PeerMetrics {
            setup_ms: Some(100.0),
            ..Default::default()
        };
        assert_eq!(check(&e, &t, &ok, None, None).len(), 1);
    }
}
