//! What an app's messages mean, whatever carries them (Socket.IO events or WebSocket text
//! frames): the scenario's templates ([`crate::scenario::template`]) applied both ways. Pure,
//! so both transports share it and it is tested without a server.

use super::{AppJoin, IceCandidateInit, Signal, SignalingError, SignalingEvent};
use crate::scenario::template::{self, Captured, Values};
use crate::scenario::{AppMessage, AppSignalingPlan};
use serde_json::Value;

/// The other user's name as an answering bot learned it, shared by a connector and its
/// sessions.
pub type Learned = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// `join` as the bot joins now: with the other user's name if an earlier session learned it.
pub fn join_now(join: &AppJoin, learned: &Learned) -> AppJoin {
    let mut now = join.clone();
    if now.peer.is_none() {
        now.peer = learned.lock().ok().and_then(|l| l.clone());
    }
    now
}

/// Notes the sender of a received message as the other user, if none is known yet, for this
/// session (`join`) and for the sessions after a rejoin (`learned`).
pub fn learn(join: &mut AppJoin, learned: &Learned, from: Option<String>) {
    if join.peer.is_none()
        && let Some(from) = from
    {
        join.peer = Some(from.clone());
        if let Ok(mut l) = learned.lock() {
            *l = Some(from);
        }
    }
}

/// Who the bot is in the call, for filling templates.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    /// The room id.
    pub room: &'a str,
    /// The bot's name.
    pub name: &'a str,
    /// The other user's name, when known.
    pub peer: Option<&'a str>,
}

impl<'a> Me<'a> {
    fn values(&self) -> Values<'a> {
        Values {
            room: self.room,
            name: self.name,
            peer: self.peer,
            description: None,
            candidate: None,
        }
    }
}

/// A message filled in: the Socket.IO event (if any) and the arguments.
pub type Filled = (Option<String>, Vec<Value>);

/// `m` with the bot's room and names put in (the join message, say).
pub fn fill(m: &AppMessage, me: Me<'_>) -> Filled {
    let v = me.values();
    (
        m.event.clone(),
        m.args.iter().map(|a| template::fill(a, &v)).collect(),
    )
}

/// How `signal` goes out; `None` for end-of-candidates, which app protocols do not carry. A
/// message that names its target (`{peer}`) while nobody said who that is cannot go out.
pub fn outgoing(
    plan: &AppSignalingPlan,
    me: Me<'_>,
    signal: &Signal,
) -> Result<Option<Filled>, SignalingError> {
    let mut v = me.values();
    let candidate;
    let m = match signal {
        Signal::Offer { sdp } => {
            v.description = Some(("offer", sdp));
            &plan.offer
        }
        Signal::Answer { sdp } => {
            v.description = Some(("answer", sdp));
            &plan.answer
        }
        Signal::Candidate(c) => {
            candidate = serde_json::to_value(c).unwrap_or(Value::Null);
            v.candidate = Some(&candidate);
            &plan.candidate
        }
        Signal::EndOfCandidates => return Ok(None),
    };
    if me.peer.is_none() && m.slots().contains(&template::Slot::Peer) {
        return Err(SignalingError::Protocol(
            "the app's message names its target (\"{peer}\") but no message received so far \
             said who the other user is: if the app's relay renames the target (e.g. `to` sent, \
             `from` received), give the received shape in [app.signaling.received]"
                .into(),
        ));
    }
    Ok(Some((
        m.event.clone(),
        m.args.iter().map(|a| template::fill(a, &v)).collect(),
    )))
}

fn matches(m: &AppMessage, event: Option<&str>, args: &[Value]) -> Option<Captured> {
    if m.event.as_deref() != event {
        return None;
    }
    let mut c = Captured::default();
    m.args
        .iter()
        .enumerate()
        .all(|(i, t)| template::capture(t, args.get(i), &mut c))
        .then_some(c)
}

/// What a received message means (`event`: the Socket.IO event name; `None` for a WebSocket
/// frame, whose JSON is `args[0]`), and the sender's name when the message says it. `None`:
/// a message the protocol does not use.
pub fn incoming(
    plan: &AppSignalingPlan,
    event: Option<&str>,
    args: &[Value],
) -> Option<(SignalingEvent, Option<String>)> {
    let unreadable = |why: String| {
        let text = match event {
            Some(e) => format!("{e} {}", Value::Array(args.to_vec())),
            None => args.first().map(Value::to_string).unwrap_or_default(),
        };
        SignalingEvent::Error(SignalingError::Unreadable { text, reason: why })
    };
    let received = &plan.received;
    for (m, kind) in [(&received.offer, "offer"), (&received.answer, "answer")] {
        let Some(c) = matches(m, event, args) else {
            continue;
        };
        if let Some(why) = c.unreadable {
            return Some((unreadable(why), c.peer));
        }
        // One template may carry both (`{type = "signal", data = "{description}"}`): the
        // description's own type decides.
        let kind = match c.description_type.as_deref() {
            None => kind,
            Some(t @ ("offer" | "answer")) => t,
            Some(_) => continue,
        };
        let Some(sdp) = c.sdp else { continue };
        let signal = if kind == "offer" {
            Signal::Offer { sdp }
        } else {
            Signal::Answer { sdp }
        };
        return Some((
            SignalingEvent::Signal {
                from: c.peer.clone(),
                signal,
            },
            c.peer,
        ));
    }
    if let Some(c) = matches(&received.candidate, event, args) {
        let signal = match c.candidate {
            None | Some(Value::Null) => Signal::EndOfCandidates,
            Some(v) => match serde_json::from_value::<IceCandidateInit>(v.clone()) {
                Ok(ci) if ci.candidate.is_empty() => Signal::EndOfCandidates,
                Ok(ci) => Signal::Candidate(ci),
                Err(e) => {
                    return Some((
                        unreadable(format!("{v} is not an RTCIceCandidateInit: {e}")),
                        c.peer,
                    ));
                }
            },
        };
        return Some((
            SignalingEvent::Signal {
                from: c.peer.clone(),
                signal,
            },
            c.peer,
        ));
    }
    if let Some(r) = &plan.ready
        && matches(r, event, args).is_some()
    {
        return Some((SignalingEvent::Ready { peers: Vec::new() }, None));
    }
    for m in &plan.errors {
        if let Some(c) = matches(m, event, args) {
            let message = c.message.unwrap_or_else(|| match event {
                Some(e) => format!("{e} {}", Value::Array(args.to_vec())),
                None => args.first().map(Value::to_string).unwrap_or_default(),
            });
            return Some((
                SignalingEvent::Error(SignalingError::Refused {
                    code: "app".into(),
                    message,
                }),
                None,
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(signaling: &str) -> AppSignalingPlan {
        let text = format!(
            "name = \"t\"\n[app]\nurl = \"http://127.0.0.1:1\"\n[app.signaling]\n{signaling}\n\
             [[peers]]\nid = \"b\"\nkind = \"bot\"\n"
        );
        crate::scenario::parse(std::path::Path::new("t.toml"), &text)
            .unwrap()
            .app
            .unwrap()
            .signaling
            .unwrap()
    }

    #[test]
    fn the_named_user_defaults_log_in_target_and_learn_the_caller() {
        let p = plan("protocol = \"websocket\"");
        let me = Me {
            room: "",
            name: "bob",
            peer: None,
        };
        assert_eq!(
            fill(p.join.as_ref().unwrap(), me).1,
            vec![json!({"type": "login", "name": "bob"})]
        );
        let ok = json!({"type": "login", "success": true});
        assert!(matches!(
            incoming(&p, None, &[ok]),
            Some((SignalingEvent::Ready { .. }, None))
        ));
        let offer =
            json!({"type": "offer", "offer": {"type": "offer", "sdp": "v=0"}, "name": "alice"});
        let (e, from) = incoming(&p, None, &[offer]).unwrap();
        assert_eq!(from.as_deref(), Some("alice"));
        assert!(matches!(
            e,
            SignalingEvent::Signal {
                signal: Signal::Offer { .. },
                ..
            }
        ));
        let me = Me {
            peer: Some("alice"),
            ..me
        };
        let (_, args) = outgoing(
            &p,
            me,
            &Signal::Answer {
                sdp: "v=0 a".into(),
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            args,
            vec![
                json!({"type": "answer", "answer": {"type": "answer", "sdp": "v=0 a"}, "name": "alice"})
            ]
        );
        match incoming(&p, None, &[json!({"type": "login", "success": false})]) {
            Some((SignalingEvent::Error(SignalingError::Refused { message, .. }), _)) => {
                assert!(message.contains("success"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match incoming(
            &p,
            None,
            &[json!({"type": "error", "message": "no user carol"})],
        ) {
            Some((SignalingEvent::Error(SignalingError::Refused { message, .. }), _)) => {
                assert_eq!(message, "no user carol")
            }
            other => panic!("{other:?}"),
        }
        assert!(incoming(&p, None, &[json!({"type": "chat"})]).is_none());
    }

    #[test]
    fn a_relay_that_renames_the_target_is_read_through_received() {
        let sig = "protocol = \"websocket\"\njoin = { cmd = \"hello\", user = \"{name}\" }\n\
                   offer = { cmd = \"relay\", to = \"{peer}\", data = \"{description}\" }\n\
                   answer = { cmd = \"relay\", to = \"{peer}\", data = \"{description}\" }\n\
                   candidate = { cmd = \"relay\", to = \"{peer}\", data = \"{candidate}\" }";
        let me = Me {
            room: "",
            name: "b",
            peer: None,
        };
        let relayed = json!({"cmd": "relay", "from": "a", "data": {"type": "offer", "sdp": "v=0"}});
        // As sent, the offer says nothing of its sender: answering it is refused, not sent to
        // nobody.
        let p = plan(sig);
        let (_, from) = incoming(&p, None, std::slice::from_ref(&relayed)).unwrap();
        assert_eq!(from, None);
        assert!(matches!(
            outgoing(&p, me, &Signal::Answer { sdp: "v=0".into() }),
            Err(SignalingError::Protocol(_))
        ));
        let p = plan(&format!(
            "{sig}\n[app.signaling.received]\n\
             offer = {{ cmd = \"relay\", from = \"{{peer}}\", data = \"{{description}}\" }}"
        ));
        let (_, from) = incoming(&p, None, &[relayed]).unwrap();
        assert_eq!(from.as_deref(), Some("a"));
    }

    #[test]
    fn the_learned_caller_outlives_the_session() {
        let join = AppJoin {
            plan: plan("protocol = \"websocket\""),
            name: "bob".into(),
            peer: None,
        };
        let learned = Learned::default();
        let mut session = join_now(&join, &learned);
        learn(&mut session, &learned, Some("alice".into()));
        learn(&mut session, &learned, Some("mallory".into()));
        assert_eq!(session.peer.as_deref(), Some("alice"));
        // A rejoin starts from the connector's copy, which knew no one.
        assert_eq!(join_now(&join, &learned).peer.as_deref(), Some("alice"));
    }

    #[test]
    fn one_template_for_offer_and_answer_is_told_apart_by_the_description_type() {
        let p = plan(
            "protocol = \"socket.io\"\n\
             offer = [\"signal\", { room = \"{room}\", description = \"{description}\" }]\n\
             answer = [\"signal\", { room = \"{room}\", description = \"{description}\" }]",
        );
        let got = |ty: &str| {
            incoming(
                &p,
                Some("signal"),
                &[json!({"room": "r", "description": {"type": ty, "sdp": "v=0"}})],
            )
            .map(|x| x.0)
        };
        assert!(matches!(
            got("answer"),
            Some(SignalingEvent::Signal {
                signal: Signal::Answer { .. },
                ..
            })
        ));
        assert!(matches!(
            got("offer"),
            Some(SignalingEvent::Signal {
                signal: Signal::Offer { .. },
                ..
            })
        ));
        assert!(got("pranswer").is_none());
    }

    #[test]
    fn the_room_protocol_is_read_and_written_by_position() {
        let p = plan("protocol = \"socket.io\"");
        let me = Me {
            room: "r1",
            name: "b",
            peer: None,
        };
        assert_eq!(
            outgoing(&p, me, &Signal::Offer { sdp: "v=0".into() })
                .unwrap()
                .unwrap(),
            (
                Some("offer".to_string()),
                vec![json!({"type": "offer", "sdp": "v=0"}), json!("r1")]
            )
        );
        assert_eq!(
            fill(p.join.as_ref().unwrap(), me),
            (Some("join".to_string()), vec![json!("r1")])
        );
        assert!(matches!(
            incoming(&p, Some("ready"), &[json!("r1")]),
            Some((SignalingEvent::Ready { .. }, _))
        ));
        let cand = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        match incoming(&p, Some("ice-candidate"), &[cand, json!("r1")]) {
            Some((
                SignalingEvent::Signal {
                    signal: Signal::Candidate(c),
                    ..
                },
                _,
            )) => assert_eq!(c.sdp_mid.as_deref(), Some("0")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            incoming(&p, Some("ice-candidate"), &[Value::Null, json!("r1")]),
            Some((
                SignalingEvent::Signal {
                    signal: Signal::EndOfCandidates,
                    ..
                },
                _
            ))
        ));
        assert!(matches!(
            incoming(&p, Some("offer"), &[json!("no sdp")]),
            Some((SignalingEvent::Error(SignalingError::Unreadable { .. }), _))
        ));
        assert!(incoming(&p, Some("chat"), &[]).is_none());
        assert_eq!(outgoing(&p, me, &Signal::EndOfCandidates), Ok(None));
    }
}
