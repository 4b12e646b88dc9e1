//! Where a peer's setup time went (pure). The first line lists the phases; every further line
//! names the evidence it rests on (event times on the timeline, fields of the peer's stats, the
//! scenario's network) or says plainly that the phase is not explained.
//!
//! What counts as evidence, bots only (the webrtc-rs timers are rtc-ice 0.21 defaults, see
//! FIELD-NOTES):
//! - an acceptance wait (controlling agent, the offerer, RFC 8445 §6.1.1): webrtc-rs nominates a
//!   pair only when both its candidates' waits have passed since checking began. The pair's types
//!   come from the peer's stats (the nominated `candidate-pair` and its `local-candidate` /
//!   `remote-candidate`). webrtc-rs lists only signalled remote candidates in its stats, so a
//!   nominated pair whose remote candidate is missing there is peer-reflexive; the line then
//!   also says whether the timeline shows the race behind it (the answerer could send checks,
//!   being `checking` with the offerer's candidate, before the offerer received the answerer's
//!   first trickled candidate). The wait is claimed only when the phase lasted at least that
//!   long, and what it does not cover is said to be not explained.
//! - connectivity-check intervals: the nominated pair's `requestsSent` (webrtc-rs fills it) and
//!   the check interval, when the phase fits between one interval less and one more.
//! - a DTLS retransmission: only where loss is configured on either peer's network.
//!
//! A phase of [`NOTABLE_MS`] or more with no such evidence gets a "not explained" line.

use crate::metrics::PeerMetrics;
use crate::scenario::{BotTimers, NetworkPlan, PeerKind};
use crate::timeline::{EventKind, StateMachine, Timeline};
use serde_json::Value;

/// webrtc-rs defaults (rtc-ice 0.21), ms.
const CHECK_INTERVAL_MS: f64 = 200.0;
const HOST_WAIT_MS: f64 = 0.0;
const SRFLX_WAIT_MS: f64 = 500.0;
const PRFLX_WAIT_MS: f64 = 1000.0;
const RELAY_WAIT_MS: f64 = 2000.0;
const DTLS_RETRANSMIT_MS: f64 = 1000.0;

/// A phase this long or longer gets a line even when nothing explains it, ms.
pub const NOTABLE_MS: f64 = 100.0;

/// What the explanation needs to know about a peer in one connection.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Peer id.
    pub peer: &'a str,
    /// The other peer of the connection.
    pub remote: &'a str,
    /// The connection (its `connect` step).
    pub connection: &'a str,
    /// Kind.
    pub kind: PeerKind,
    /// Bot timers (unset: defaults).
    pub timers: BotTimers,
    /// Whether the peer made the offer (and so is the controlling ICE agent, RFC 8445 §6.1.1).
    pub offerer: bool,
    /// The judged timeline.
    pub timeline: &'a Timeline,
    /// The peer's first stats sample of this connection (webrtc-stats dictionaries), taken at
    /// the end of the connect step.
    pub stats: Option<&'a [Value]>,
    /// The network lab, if the scenario had one (each peer's `loss_pct`).
    pub network: Option<&'a NetworkPlan>,
}

fn ms(v: Option<u64>, default: f64) -> f64 {
    v.map(|v| v as f64).unwrap_or(default)
}

/// The nominated candidate pair, as the peer's stats show it.
#[derive(Debug, Default)]
struct Pair<'v> {
    /// `candidateType` of its local candidate, when listed.
    local: Option<&'v str>,
    /// `candidateType` of its remote candidate, when listed.
    remote: Option<&'v str>,
    /// The pair's `remoteCandidateId`.
    remote_id: Option<&'v str>,
    /// `candidateType` of every `remote-candidate` in the sample.
    remote_types: Vec<&'v str>,
    requests_sent: Option<u64>,
    responses_received: Option<u64>,
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn of_type<'v>(stats: &'v [Value], ty: &'v str) -> impl Iterator<Item = &'v Value> + 'v {
    stats.iter().filter(move |v| str_of(v, "type") == Some(ty))
}

/// A candidate by the id a pair names. webrtc-rs prefixes the candidate's own `id`
/// (`RTCLocalIceCandidate_candidate:…`) but not the pair's `localCandidateId`.
fn candidate_type<'v>(stats: &'v [Value], ty: &'v str, id: &str) -> Option<&'v str> {
    let suffix = format!("_{id}");
    of_type(stats, ty)
        .find(|c| str_of(c, "id").is_some_and(|cid| cid == id || cid.ends_with(&suffix)))
        .and_then(|c| str_of(c, "candidateType"))
}

fn nominated_pair(stats: &[Value]) -> Option<Pair<'_>> {
    let selected = of_type(stats, "transport").find_map(|t| str_of(t, "selectedCandidatePairId"));
    let pair = of_type(stats, "candidate-pair")
        .find(|p| selected.is_some() && str_of(p, "id") == selected)
        .or_else(|| {
            of_type(stats, "candidate-pair").find(|p| {
                p.get("nominated").and_then(Value::as_bool) == Some(true)
                    && str_of(p, "state") == Some("succeeded")
            })
        })?;
    let local = str_of(pair, "localCandidateId")
        .and_then(|id| candidate_type(stats, "local-candidate", id));
    let remote_id = str_of(pair, "remoteCandidateId");
    let remote = remote_id.and_then(|id| candidate_type(stats, "remote-candidate", id));
    Some(Pair {
        local,
        remote,
        remote_id,
        remote_types: of_type(stats, "remote-candidate")
            .filter_map(|c| str_of(c, "candidateType"))
            .collect(),
        requests_sent: pair.get("requestsSent").and_then(Value::as_u64),
        responses_received: pair.get("responsesReceived").and_then(Value::as_u64),
    })
}

/// Times (ms) of one peer's events in one connection.
struct Times<'a> {
    timeline: &'a Timeline,
    connection: &'a str,
}

impl Times<'_> {
    fn first(&self, peer: &str, pred: impl Fn(&EventKind) -> bool) -> Option<f64> {
        self.timeline
            .first_time(crate::timeline::Endpoint::new(peer, self.connection), pred)
    }

    fn state(&self, peer: &str, machine: StateMachine, states: &[&str]) -> Option<f64> {
        self.first(peer, |k| {
            matches!(k, EventKind::State { machine: m, state } if *m == machine && states.contains(&state.as_str()))
        })
    }

    fn first_remote_candidate(&self, peer: &str) -> Option<f64> {
        self.first(peer, |k| matches!(k, EventKind::RemoteCandidate { .. }))
    }
}

fn t(v: f64) -> String {
    format!("{v:.1} ms")
}

/// What the timeline shows of the race behind a peer-reflexive pair: whether the answerer
/// could send checks (checking, with the offerer's candidate) before the offerer had the
/// answerer's first trickled candidate. Events are stamped when a state-change event fires and
/// when the harness hands a candidate over, so the order can be hidden: then it says so.
fn prflx_order(s: &Subject<'_>, times: &Times<'_>) -> String {
    let (r, p) = (s.remote, s.peer);
    let checking = times.state(r, StateMachine::IceConnection, &["checking"]);
    let had_candidate = times.first_remote_candidate(r);
    let trickled = times.first_remote_candidate(p);
    let (Some(checking), Some(had_candidate)) = (checking, had_candidate) else {
        return format!(
            "the timeline has no iceConnectionState checking or no remote candidate at {r}"
        );
    };
    let ready = checking.max(had_candidate);
    let trickled_at = trickled
        .map(|tr| format!("at {}", t(tr)))
        .unwrap_or_else(|| "never, on the timeline".into());
    if trickled.is_some_and(|tr| tr <= ready) {
        return format!(
            "the timeline does not show the race ({r} checking at {}, with {p}'s candidate since {}; {p} received {r}'s first trickled candidate {trickled_at})",
            t(checking),
            t(had_candidate)
        );
    }
    let connected = times
        .state(r, StateMachine::IceConnection, &["connected", "completed"])
        .filter(|c| trickled.is_none_or(|tr| *c < tr));
    format!(
        "timeline: {r} was checking at {} with {p}'s candidate since {}{}, before {p} received {r}'s first trickled candidate ({trickled_at})",
        t(checking),
        t(had_candidate),
        connected
            .map(|c| format!(
                " (and its iceConnectionState was connected at {}: a check had been answered)",
                t(c)
            ))
            .unwrap_or_default(),
    )
}

fn wait_for(t: &BotTimers, kind: &str) -> Option<(f64, &'static str)> {
    Some(match kind {
        "host" => (
            ms(t.host_acceptance_wait_ms, HOST_WAIT_MS),
            "host_acceptance_wait_ms",
        ),
        "srflx" => (
            ms(t.srflx_acceptance_wait_ms, SRFLX_WAIT_MS),
            "srflx_acceptance_wait_ms",
        ),
        "prflx" => (
            ms(t.prflx_acceptance_wait_ms, PRFLX_WAIT_MS),
            "prflx_acceptance_wait_ms",
        ),
        "relay" => (
            ms(t.relay_acceptance_wait_ms, RELAY_WAIT_MS),
            "relay_acceptance_wait_ms",
        ),
        _ => return None,
    })
}

fn default_note(v: Option<u64>) -> &'static str {
    if v.is_some() {
        "set in the scenario"
    } else {
        "webrtc-rs default"
    }
}

/// One line of phases, then a line per phase with its evidence or "not explained".
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
    let times = Times {
        timeline: s.timeline,
        connection: s.connection,
    };
    let pair = s.stats.and_then(nominated_pair);
    if let Some(ice) = m.ice_ms {
        out.extend(ice_line(s, &times, pair.as_ref(), ice));
    }
    if let Some(dtls) = m.dtls_ms {
        out.extend(dtls_line(s, &times, dtls));
    }
    out
}

fn ice_line(
    s: &Subject<'_>,
    times: &Times<'_>,
    pair: Option<&Pair<'_>>,
    ice: f64,
) -> Option<String> {
    let span = match (
        times.state(s.peer, StateMachine::IceConnection, &["checking"]),
        times.state(
            s.peer,
            StateMachine::IceConnection,
            &["connected", "completed"],
        ),
    ) {
        (Some(a), Some(b)) => format!(
            " (iceConnectionState checking at {}, connected at {})",
            t(a),
            t(b)
        ),
        _ => String::new(),
    };
    let head = format!("ICE checks took {ice:.0} ms{span}");
    // The acceptance wait of the nominated pair (controlling side only).
    if s.offerer
        && let Some(p) = pair
    {
        // webrtc-rs registers remote-candidate stats only for candidates handed to
        // addIceCandidate (rtc 0.21.1, `add_ice_remote_candidate`): a remote candidate the pair
        // names but the stats do not list was learned from an incoming check, peer-reflexive.
        let prflx = (p.remote.is_none() && p.remote_id.is_some()).then(|| prflx_order(s, times));
        let remote = p.remote.or(prflx.as_ref().map(|_| "prflx"));
        if let (Some(local), Some(remote)) = (p.local, remote)
            && let (Some((wl, kl)), Some((wr, kr))) =
                (wait_for(&s.timers, local), wait_for(&s.timers, remote))
        {
            let (wait, key, kind) = if wr >= wl {
                (wr, kr, remote)
            } else {
                (wl, kl, local)
            };
            if wait > 0.0 && ice >= wait {
                let listed = if p.remote_types.is_empty() {
                    "none".to_string()
                } else {
                    p.remote_types.join(", ")
                };
                let evidence = match &prflx {
                    Some(e) => format!(
                        "stats: the nominated pair's local candidate is {local}, its remote candidate is not among the remote-candidate stats (listed: {listed}), which webrtc-rs fills only from signalled candidates; {e}"
                    ),
                    None => format!("stats: the nominated pair is {local} -> {remote}"),
                };
                return Some(format!(
                    "{head}: the nominated pair is {kind} ({evidence}); webrtc-rs nominates a {kind} pair no sooner than {wait:.0} ms after checking starts (`{key}`): that accounts for {wait:.0} ms, the other {:.0} ms are not explained; set `{key} = 0` to nominate at once",
                    ice - wait
                ));
            }
        }
    }
    // Connectivity-check intervals, from the nominated pair's request count.
    let interval = ms(s.timers.ice_check_interval_ms, CHECK_INTERVAL_MS);
    if let Some(n) = pair.and_then(|p| p.requests_sent)
        && n >= 2
        && interval > 0.0
    {
        let between = (n - 1) as f64 * interval;
        if ice >= 0.95 * between && ice <= between + interval {
            let resp = pair
                .and_then(|p| p.responses_received)
                .map(|r| format!(", responsesReceived = {r}"))
                .unwrap_or_default();
            return Some(format!(
                "{head}: the nominated pair's stats show requestsSent = {n}{resp}; {} check interval(s) of {interval:.0} ms (`ice_check_interval_ms`, {}) between its first and last check account for {between:.0} ms",
                n - 1,
                default_note(s.timers.ice_check_interval_ms)
            ));
        }
    }
    if ice < NOTABLE_MS {
        return None;
    }
    let seen = match pair {
        None => "no nominated candidate pair in the stats".to_string(),
        Some(p) => format!(
            "nominated pair {} -> {}, requestsSent {}",
            p.local.unwrap_or("(not listed)"),
            p.remote.unwrap_or("(not listed)"),
            p.requests_sent
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        ),
    };
    Some(format!("{head}: not explained ({seen})"))
}

fn loss_of(s: &Subject<'_>) -> Vec<String> {
    s.network
        .map(|n| {
            n.peers
                .iter()
                .filter(|p| (p.peer == s.peer || p.peer == s.remote) && p.loss_pct > 0)
                .map(|p| format!("{} {}%", p.peer, p.loss_pct))
                .collect()
        })
        .unwrap_or_default()
}

fn dtls_line(s: &Subject<'_>, times: &Times<'_>, dtls: f64) -> Option<String> {
    if dtls < NOTABLE_MS {
        return None;
    }
    let span = match (
        times.state(
            s.peer,
            StateMachine::IceConnection,
            &["connected", "completed"],
        ),
        times.state(s.peer, StateMachine::Connection, &["connected"]),
    ) {
        (Some(a), Some(b)) => format!(
            " (iceConnectionState connected at {}, connectionState connected at {})",
            t(a),
            t(b)
        ),
        _ => String::new(),
    };
    let head = format!("DTLS took {dtls:.0} ms{span}");
    let loss = loss_of(s);
    Some(if loss.is_empty() {
        let why = if s.network.is_some() {
            "no loss configured on either peer's network"
        } else {
            "no network lab, so no loss configured"
        };
        format!("{head}: not explained ({why})")
    } else if dtls >= 0.9 * DTLS_RETRANSMIT_MS {
        format!(
            "{head}: loss is configured ({} each direction), so a lost flight retransmitted after webrtc-rs's {DTLS_RETRANSMIT_MS:.0} ms DTLS timer may account for it (no retransmission count is in the stats)",
            loss.join(", ")
        )
    } else {
        format!(
            "{head}: not explained (loss is configured: {}, but one DTLS retransmission takes {DTLS_RETRANSMIT_MS:.0} ms)",
            loss.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Nat, PeerNetwork, UdpPolicy};
    use crate::timeline::Event;
    use serde_json::json;

    fn push(tl: &mut Timeline, t_ms: f64, peer: &str, event: EventKind) {
        tl.push(Event {
            t_ms,
            peer: peer.into(),
            connection: "c".into(),
            event,
        });
    }

    fn st(tl: &mut Timeline, t_ms: f64, peer: &str, machine: StateMachine, state: &str) {
        push(
            tl,
            t_ms,
            peer,
            EventKind::State {
                machine,
                state: state.into(),
            },
        );
    }

    fn cand(tl: &mut Timeline, t_ms: f64, peer: &str) {
        push(
            tl,
            t_ms,
            peer,
            EventKind::RemoteCandidate {
                candidate_type: "host".into(),
                candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            },
        );
    }

    /// Offerer `bot` and answerer `other`: both check from 80 ms; `other` gets the bot's
    /// candidate at `other_has` and the bot gets `other`'s at `bot_has`; the bot is ICE
    /// connected after `ice` ms and DTLS connected `dtls` ms later.
    fn timeline(other_has: f64, bot_has: f64, ice: f64, dtls: f64) -> Timeline {
        use StateMachine::*;
        let mut tl = Timeline::new();
        st(&mut tl, 80.0, "bot", IceConnection, "checking");
        st(&mut tl, 81.0, "other", IceConnection, "checking");
        cand(&mut tl, other_has, "other");
        cand(&mut tl, bot_has, "bot");
        st(&mut tl, 80.0 + ice, "bot", IceConnection, "connected");
        st(&mut tl, 80.0 + ice + dtls, "bot", Connection, "connected");
        tl
    }

    /// A webrtc-rs stats sample: a nominated pair whose remote candidate is listed with
    /// `remote` as its type, or not listed (`None`, as webrtc-rs does with a prflx one).
    fn stats(local: &str, remote: Option<&str>, requests: u64) -> Vec<Value> {
        let mut v = vec![
            json!({"type": "transport", "id": "RTCTransport", "selectedCandidatePairId": "RTCIceCandidatePair_candidate:L_candidate:R"}),
            json!({"type": "candidate-pair", "id": "RTCIceCandidatePair_candidate:L_candidate:R",
                "localCandidateId": "candidate:L", "remoteCandidateId": "candidate:R", "state": "succeeded",
                "nominated": true, "requestsSent": requests, "responsesReceived": requests}),
            json!({"type": "local-candidate", "id": "RTCLocalIceCandidate_candidate:L", "candidateType": local}),
            json!({"type": "remote-candidate", "id": "RTCRemoteIceCandidate_candidate:T", "candidateType": "host"}),
        ];
        if let Some(r) = remote {
            v.push(json!({"type": "remote-candidate", "id": "RTCRemoteIceCandidate_candidate:R", "candidateType": r}));
        }
        v
    }

    fn subject<'a>(
        tl: &'a Timeline,
        stats: &'a [Value],
        network: Option<&'a NetworkPlan>,
    ) -> Subject<'a> {
        Subject {
            peer: "bot",
            remote: "other",
            connection: "c",
            kind: PeerKind::Bot,
            timers: BotTimers::default(),
            offerer: true,
            timeline: tl,
            stats: Some(stats),
            network,
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

    fn network(loss: u8) -> NetworkPlan {
        NetworkPlan {
            peers: vec![PeerNetwork {
                peer: "other".into(),
                nat: Nat::None,
                udp: UdpPolicy::Open,
                loss_pct: loss,
                rate_kbit: None,
            }],
        }
    }

    #[test]
    fn a_prflx_wait_is_explained_when_the_check_came_before_the_trickled_candidate() {
        // The answerer has the bot's candidate at 83 ms; the bot gets the answerer's at 91 ms.
        let tl = timeline(83.0, 91.0, 1018.0, 50.0);
        let st = stats("host", None, 2);
        let lines = explain(&subject(&tl, &st, None), &m(1018.0, 50.0));
        assert_eq!(lines.len(), 2, "{lines:?}");
        let l = &lines[1];
        assert!(l.contains("the nominated pair is prflx"), "{l}");
        assert!(
            l.contains(
                "timeline: other was checking at 81.0 ms with bot's candidate since 83.0 ms"
            ),
            "{l}"
        );
        assert!(l.contains("first trickled candidate (at 91.0 ms)"), "{l}");
        assert!(
            l.contains("not among the remote-candidate stats (listed: host)"),
            "{l}"
        );
        assert!(
            l.contains("accounts for 1000 ms, the other 18 ms are not explained"),
            "{l}"
        );
        assert!(l.contains("set `prflx_acceptance_wait_ms = 0`"), "{l}");
    }

    #[test]
    fn a_prflx_duration_is_not_explained_when_the_stats_list_the_remote_candidate() {
        // The stats list the nominated pair's remote candidate as host: no prflx claim, even
        // with a timeline that shows the race and a duration that fits the wait.
        let tl = timeline(83.0, 91.0, 1018.0, 50.0);
        let st = stats("host", Some("host"), 2);
        let lines = explain(&subject(&tl, &st, None), &m(1018.0, 50.0));
        assert!(!lines[1].contains("prflx"), "{lines:?}");
        assert!(
            lines[1].ends_with("not explained (nominated pair host -> host, requestsSent 2)"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_prflx_pair_says_when_the_timeline_hides_the_race() {
        // The bot had the answerer's candidate (91 ms) before the answerer had the bot's (95 ms).
        let tl = timeline(95.0, 91.0, 1018.0, 50.0);
        let st = stats("host", None, 2);
        let lines = explain(&subject(&tl, &st, None), &m(1018.0, 50.0));
        let l = &lines[1];
        assert!(l.contains("the nominated pair is prflx"), "{l}");
        assert!(
            l.contains("the timeline does not show the race (other checking at 81.0 ms, with bot's candidate since 95.0 ms; bot received other's first trickled candidate at 91.0 ms)"),
            "{l}"
        );
    }

    #[test]
    fn a_relay_wait_is_explained_by_the_pair_types_in_the_stats() {
        let tl = timeline(83.0, 84.0, 2617.0, 50.0);
        let st = stats("relay", Some("relay"), 10);
        let lines = explain(&subject(&tl, &st, None), &m(2617.0, 50.0));
        let l = &lines[1];
        assert!(
            l.contains("stats: the nominated pair is relay -> relay"),
            "{l}"
        );
        assert!(
            l.contains("accounts for 2000 ms, the other 617 ms are not explained"),
            "{l}"
        );
        // Shorter than the wait: the wait did not decide it.
        let lines = explain(&subject(&tl, &st, None), &m(1500.0, 50.0));
        assert!(lines[1].contains("not explained"), "{lines:?}");
    }

    #[test]
    fn check_intervals_are_explained_by_requests_sent_and_not_without_them() {
        let tl = timeline(83.0, 84.0, 201.0, 50.0);
        let st = stats("host", Some("host"), 2);
        let mut s = subject(&tl, &st, None);
        s.offerer = false;
        let lines = explain(&s, &m(201.0, 50.0));
        assert!(lines[1].contains("requestsSent = 2, responsesReceived = 2; 1 check interval(s) of 200 ms (`ice_check_interval_ms`, webrtc-rs default)"), "{lines:?}");
        // One request cannot span an interval; a count that needs more time than was taken
        // does not fit either.
        for n in [1, 4] {
            let st = stats("host", Some("host"), n);
            let lines = explain(&subject(&tl, &st, None), &m(201.0, 50.0));
            assert!(lines[1].contains("not explained"), "{n}: {lines:?}");
        }
        // No stats at all.
        let mut s = subject(&tl, &st, None);
        s.stats = None;
        let lines = explain(&s, &m(201.0, 50.0));
        assert!(
            lines[1].ends_with("not explained (no nominated candidate pair in the stats)"),
            "{lines:?}"
        );
    }

    #[test]
    fn dtls_retransmission_only_where_loss_is_configured() {
        let tl = timeline(83.0, 84.0, 20.0, 1600.0);
        let st = stats("host", Some("host"), 2);
        let lines = explain(&subject(&tl, &st, None), &m(20.0, 1600.0));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].starts_with("DTLS took 1600 ms (iceConnectionState connected at 100.0 ms, connectionState connected at 1700.0 ms): not explained (no network lab"), "{lines:?}");
        let clean = network(0);
        let lines = explain(&subject(&tl, &st, Some(&clean)), &m(20.0, 1600.0));
        assert!(
            lines[1].ends_with("not explained (no loss configured on either peer's network)"),
            "{lines:?}"
        );
        let lossy = network(5);
        let lines = explain(&subject(&tl, &st, Some(&lossy)), &m(20.0, 1600.0));
        assert!(
            lines[1].contains("loss is configured (other 5% each direction)"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("1000 ms DTLS timer may account for it"),
            "{lines:?}"
        );
    }

    #[test]
    fn browsers_and_short_phases_get_the_phases_only() {
        let tl = timeline(83.0, 91.0, 1018.0, 50.0);
        let st = stats("host", None, 2);
        let mut s = subject(&tl, &st, None);
        s.kind = PeerKind::Chromium;
        assert_eq!(explain(&s, &m(1018.0, 50.0)).len(), 1);
        let tl = timeline(83.0, 84.0, 60.0, 50.0);
        assert_eq!(explain(&subject(&tl, &st, None), &m(60.0, 50.0)).len(), 1);
    }
}
