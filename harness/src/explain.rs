//! Where a peer's setup time went, derived from its metrics and the candidate pair it selected
//! (pure). When a known webrtc-rs timer (FIELD-NOTES, rtc-ice 0.21 defaults) accounts for a
//! phase, one line says which, and which scenario key changes it.

use crate::metrics::PeerMetrics;
use crate::scenario::{BotTimers, PeerKind};

/// webrtc-rs defaults (rtc-ice 0.21), ms.
const CHECK_INTERVAL_MS: f64 = 200.0;
const SRFLX_WAIT_MS: f64 = 500.0;
const PRFLX_WAIT_MS: f64 = 1000.0;
const RELAY_WAIT_MS: f64 = 2000.0;
const DTLS_RETRANSMIT_MS: f64 = 1000.0;
const SCTP_DELAYED_ACK_MS: f64 = 200.0;

/// What the explanation needs to know about a peer.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Kind.
    pub kind: PeerKind,
    /// Bot timers (unset: defaults).
    pub timers: BotTimers,
    /// Whether the peer made the offer (and so is the controlling ICE agent, RFC 8445 §6.1.1).
    pub offerer: bool,
    /// Selected pair's (local, remote) candidate types.
    pub selected: Option<(&'a str, &'a str)>,
}

fn ms(v: Option<u64>, default: f64) -> f64 {
    v.map(|v| v as f64).unwrap_or(default)
}

/// One line of phases, then a line per timer that explains a phase.
pub fn explain(s: &Subject<'_>, m: &PeerMetrics) -> Vec<String> {
    let mut out = Vec::new();
    let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    if m.setup_ms.is_some() {
        out.push(format!(
            "setup {} ms: signaling {}, gathering {}, ICE checks {}, DTLS {}; then first message {}, first video frame {} (ms; signaling, gathering and checks overlap)",
            f(m.setup_ms),
            f(m.signaling_ms),
            f(m.gathering_ms),
            f(m.ice_ms),
            f(m.dtls_ms),
            f(m.first_message_ms),
            f(m.first_frame_ms)
        ));
    }
    if s.kind != PeerKind::Bot {
        return out;
    }
    let t = &s.timers;
    // The controlling agent nominates only after the acceptance wait for the pair's type. The
    // selected pair's type comes from stats taken after connecting, when a peer-reflexive
    // remote may already have been replaced by its trickled host candidate: so a prflx wait is
    // also recognised by its duration alone.
    let interval = ms(t.ice_check_interval_ms, CHECK_INTERVAL_MS);
    if s.offerer
        && let Some(ice) = m.ice_ms
    {
        let (local, remote) = s.selected.unwrap_or(("", ""));
        let waits = [
            (
                "relay",
                "relay_acceptance_wait_ms",
                ms(t.relay_acceptance_wait_ms, RELAY_WAIT_MS),
            ),
            (
                "srflx",
                "srflx_acceptance_wait_ms",
                ms(t.srflx_acceptance_wait_ms, SRFLX_WAIT_MS),
            ),
            (
                "prflx",
                "prflx_acceptance_wait_ms",
                ms(t.prflx_acceptance_wait_ms, PRFLX_WAIT_MS),
            ),
        ];
        for (kind, key, wait) in waits {
            if wait <= 0.0 || ice < 0.9 * wait {
                continue;
            }
            let selected = local == kind || remote == kind;
            let by_duration = kind == "prflx" && ice <= wait + 2.5 * interval;
            if selected || by_duration {
                let why = if kind == "prflx" {
                    " (the remote's connectivity check arrives before its trickled candidate, so the pair starts peer-reflexive)"
                } else {
                    ""
                };
                let how = if selected { "" } else { ", matching" };
                out.push(format!(
                    "ICE checks took {ice:.0} ms{how}: webrtc-rs waits {wait:.0} ms before nominating a {kind} pair{why}; set `{key} = 0` to nominate at once"
                ));
                break;
            }
        }
    }
    if let Some(ice) = m.ice_ms
        && out.len() == 1
        && interval >= 20.0
        && ice >= 0.75 * interval
        && ice <= 2.5 * interval
    {
        out.push(format!(
            "ICE checks took {ice:.0} ms, about {:.0} connectivity-check intervals of {interval:.0} ms (`ice_check_interval_ms`)",
            (ice / interval).round()
        ));
    }
    if let Some(dtls) = m.dtls_ms
        && dtls >= 0.9 * DTLS_RETRANSMIT_MS
        && !out.iter().any(|l| l.contains("before nominating"))
    {
        out.push(format!(
            "DTLS took {dtls:.0} ms, consistent with a lost flight retransmitted after webrtc-rs's {DTLS_RETRANSMIT_MS:.0} ms DTLS timer"
        ));
    }
    if let Some(first) = m.first_message_ms
        && first >= 1.5 * SCTP_DELAYED_ACK_MS
    {
        out.push(format!(
            "the first data-channel message came {first:.0} ms after connected, consistent with {:.0} of webrtc-rs's {SCTP_DELAYED_ACK_MS:.0} ms SCTP delayed ACKs (the SCTP association and DCEP handshake come first)",
            (first / SCTP_DELAYED_ACK_MS).round()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(offerer: bool, selected: Option<(&'static str, &'static str)>) -> Subject<'static> {
        Subject {
            kind: PeerKind::Bot,
            timers: BotTimers::default(),
            offerer,
            selected,
        }
    }

    fn m(ice: f64, dtls: f64) -> PeerMetrics {
        PeerMetrics {
            signaling_ms: Some(10.0),
            ice_ms: Some(ice),
            dtls_ms: Some(dtls),
            setup_ms: Some(ice + dtls + 10.0),
            ..Default::default()
        }
    }

    #[test]
    fn the_peer_reflexive_wait_is_named_with_its_key() {
        let lines = explain(&bot(true, Some(("host", "prflx"))), &m(1013.0, 580.0));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("waits 1000 ms before nominating a prflx pair"));
        assert!(lines[1].contains("`prflx_acceptance_wait_ms = 0`"));
    }

    #[test]
    fn a_prflx_wait_is_recognised_by_its_duration_when_stats_show_host() {
        let lines = explain(&bot(true, Some(("host", "host"))), &m(1016.0, 580.0));
        assert!(
            lines[1].contains(", matching: webrtc-rs waits 1000 ms"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_zero_wait_or_the_controlled_side_is_not_blamed() {
        let mut s = bot(true, Some(("host", "prflx")));
        s.timers.prflx_acceptance_wait_ms = Some(0);
        s.timers.ice_check_interval_ms = Some(20);
        assert_eq!(explain(&s, &m(30.0, 20.0)).len(), 2); // the check-interval line
        assert_eq!(
            explain(&bot(false, Some(("host", "prflx"))), &m(1013.0, 5.0)).len(),
            1
        );
    }

    #[test]
    fn two_check_intervals_and_slow_dtls() {
        let lines = explain(&bot(true, Some(("host", "host"))), &m(201.0, 1600.0));
        assert!(
            lines[1].contains("about 1 connectivity-check intervals of 200 ms"),
            "{lines:?}"
        );
        assert!(lines[2].contains("DTLS took 1600 ms"), "{lines:?}");
    }

    #[test]
    fn browsers_get_the_phases_only() {
        let s = Subject {
            kind: PeerKind::Chromium,
            ..bot(true, Some(("host", "prflx")))
        };
        assert_eq!(explain(&s, &m(1013.0, 5.0)).len(), 1);
    }
}
