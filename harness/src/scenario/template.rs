//! Message templates of an app's signaling protocol (`[app.signaling]`): JSON values in which a
//! string that is exactly a placeholder stands for a part of the call.
//!
//! One template serves both ways. To send, [`fill`] puts the values in. To receive, [`capture`]
//! matches a message against it: every literal must be equal (objects member by member, arrays
//! position by position, extra members and trailing elements ignored), and every placeholder
//! takes the value found there. So `{ type = "offer", offer = "{description}", name = "{peer}" }`
//! sends `{"type":"offer","offer":{"type":"offer","sdp":"v=0..."},"name":"bob"}` and reads the
//! same shape back, whatever else the app adds.
//!
//! Placeholders (names after W3C webrtc-pc's dictionaries):
//! - `{description}`: the `RTCSessionDescriptionInit` (§4.7.2), `{type, sdp}`;
//!   `{description.type}` and `{description.sdp}`: its two members, for apps that flatten it;
//! - `{candidate}`: the `RTCIceCandidateInit` (§4.8.1); `{candidate.candidate}`,
//!   `{candidate.sdpMid}`, `{candidate.sdpMLineIndex}`, `{candidate.usernameFragment}`: its
//!   members;
//! - `{room}`: the room id; `{name}`: the bot's own name in the app; `{peer}`: the other user's
//!   name (sent to; read from a message, it becomes whom the bot answers);
//! - `{message}`: in an error template, the app's words.
//!
//! A placeholder must be the whole string. `{run}`, `{app}` and `{token}` are not placeholders
//! of the call: they are replaced in every string before the run starts.

use serde_json::{Map, Value};

/// A part of the call a template string stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `{description}`.
    Description,
    /// `{description.type}`.
    DescriptionType,
    /// `{description.sdp}`.
    DescriptionSdp,
    /// `{candidate}`.
    Candidate,
    /// `{candidate.<member>}`: one member of the `RTCIceCandidateInit`.
    CandidateMember(&'static str),
    /// `{room}`.
    Room,
    /// `{name}`.
    Name,
    /// `{peer}`.
    Peer,
    /// `{message}`.
    Message,
}

/// The `RTCIceCandidateInit` members, with their JSON names.
pub const CANDIDATE_MEMBERS: [&str; 4] =
    ["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"];

impl Slot {
    /// The slot a template string is, if it is exactly a placeholder.
    pub fn of(s: &str) -> Option<Slot> {
        let inner = s.strip_prefix('{')?.strip_suffix('}')?;
        Some(match inner {
            "description" => Slot::Description,
            "description.type" => Slot::DescriptionType,
            "description.sdp" => Slot::DescriptionSdp,
            "candidate" => Slot::Candidate,
            "room" => Slot::Room,
            "name" => Slot::Name,
            "peer" => Slot::Peer,
            "message" => Slot::Message,
            other => {
                let member = other.strip_prefix("candidate.")?;
                Slot::CandidateMember(CANDIDATE_MEMBERS.into_iter().find(|m| *m == member)?)
            }
        })
    }

    /// Whether the slot carries (part of) a description.
    pub fn is_description(self) -> bool {
        matches!(
            self,
            Slot::Description | Slot::DescriptionType | Slot::DescriptionSdp
        )
    }

    /// Whether the slot carries (part of) a candidate.
    pub fn is_candidate(self) -> bool {
        matches!(self, Slot::Candidate | Slot::CandidateMember(_))
    }
}

/// Every slot of a template, in document order.
pub fn slots(t: &Value) -> Vec<Slot> {
    let mut out = Vec::new();
    walk(t, &mut out);
    out
}

fn walk(t: &Value, out: &mut Vec<Slot>) {
    match t {
        Value::String(s) => out.extend(Slot::of(s)),
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// Every placeholder of the call, as written.
pub const PLACEHOLDER_NAMES: [&str; 12] = [
    "{description}",
    "{description.type}",
    "{description.sdp}",
    "{candidate}",
    "{candidate.candidate}",
    "{candidate.sdpMid}",
    "{candidate.sdpMLineIndex}",
    "{candidate.usernameFragment}",
    "{room}",
    "{name}",
    "{peer}",
    "{message}",
];

/// What is wrong with a template's placeholders, one line each: strings that look like
/// placeholders but are none (a typo such as `{descripton}`), and placeholders of the call
/// inside longer strings. `{run}`, `{app}` and `{token}` are allowed anywhere (replaced before
/// the run).
pub fn unknown_placeholders(t: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn go(t: &Value, out: &mut Vec<String>) {
        match t {
            Value::String(s) => {
                let whole = s.starts_with('{') && s.ends_with('}') && !s[1..].contains('{');
                if whole
                    && Slot::of(s).is_none()
                    && !matches!(s.as_str(), "{run}" | "{app}" | "{token}")
                {
                    out.push(format!("unknown placeholder {s:?}"));
                } else if !whole {
                    // A placeholder of the call inside a longer string ("user-{peer}") would be
                    // sent as it is: refused, so that what is sent is what the user meant.
                    for name in PLACEHOLDER_NAMES {
                        if s.contains(name) {
                            out.push(format!(
                                "{name} inside {s:?}: a placeholder must be the whole string"
                            ));
                        }
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| go(x, out)),
            Value::Object(o) => o.values().for_each(|x| go(x, out)),
            _ => {}
        }
    }
    go(t, &mut out);
    out
}

/// What [`fill`] puts into a template.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    /// The room id.
    pub room: &'a str,
    /// The bot's own name.
    pub name: &'a str,
    /// The other user's name, when known.
    pub peer: Option<&'a str>,
    /// The description: its `type` and `sdp`.
    pub description: Option<(&'a str, &'a str)>,
    /// The candidate, as `RTCIceCandidateInit` JSON.
    pub candidate: Option<&'a Value>,
}

/// The template with every placeholder replaced; a placeholder without a value becomes `null`.
pub fn fill(t: &Value, v: &Values<'_>) -> Value {
    match t {
        Value::String(s) => match Slot::of(s) {
            None => t.clone(),
            Some(slot) => match slot {
                Slot::Description => match v.description {
                    Some((ty, sdp)) => serde_json::json!({ "type": ty, "sdp": sdp }),
                    None => Value::Null,
                },
                Slot::DescriptionType => v.description.map_or(Value::Null, |d| d.0.into()),
                Slot::DescriptionSdp => v.description.map_or(Value::Null, |d| d.1.into()),
                Slot::Candidate => v.candidate.cloned().unwrap_or(Value::Null),
                Slot::CandidateMember(m) => v
                    .candidate
                    .and_then(|c| c.get(m))
                    .cloned()
                    .unwrap_or(Value::Null),
                Slot::Room => v.room.into(),
                Slot::Name => v.name.into(),
                Slot::Peer => v.peer.map_or(Value::Null, Value::from),
                Slot::Message => Value::Null,
            },
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, v)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill(x, v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// What [`capture`] found in a message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Captured {
    /// The description's `type`, from `{description}` or `{description.type}`.
    pub description_type: Option<String>,
    /// The description's SDP, from `{description}` or `{description.sdp}`.
    pub sdp: Option<String>,
    /// The candidate, from `{candidate}` (`Value::Null`: end-of-candidates) or its members.
    pub candidate: Option<Value>,
    /// `{room}`.
    pub room: Option<String>,
    /// `{peer}`.
    pub peer: Option<String>,
    /// `{message}`.
    pub message: Option<String>,
    /// A placeholder's value had the wrong shape (e.g. a description without `sdp`).
    pub unreadable: Option<String>,
}

/// Whether `msg` has the template's shape; what its placeholders hold goes to `out`.
///
/// A description or candidate placeholder must be present for a match; `{room}`, `{peer}`,
/// `{name}` and `{message}` may be absent (a relay often renames or drops the target).
pub fn capture(t: &Value, msg: Option<&Value>, out: &mut Captured) -> bool {
    match t {
        Value::String(s) => {
            let Some(slot) = Slot::of(s) else {
                return msg == Some(t);
            };
            let Some(v) = msg else {
                return !(slot.is_description() || slot.is_candidate());
            };
            take(slot, v, out);
            true
        }
        Value::Object(o) => {
            let Some(Value::Object(m)) = msg else {
                return false;
            };
            o.iter().all(|(k, x)| capture(x, m.get(k), out))
        }
        Value::Array(a) => {
            let Some(Value::Array(m)) = msg else {
                return false;
            };
            a.iter().enumerate().all(|(i, x)| capture(x, m.get(i), out))
        }
        other => msg == Some(other),
    }
}

fn take(slot: Slot, v: &Value, out: &mut Captured) {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match slot {
        Slot::Description => match (v.get("type"), v.get("sdp").and_then(Value::as_str)) {
            (ty, Some(sdp)) => {
                out.sdp = Some(sdp.to_string());
                out.description_type = ty.and_then(Value::as_str).map(str::to_string);
            }
            _ => {
                out.unreadable = Some(format!(
                    "{v} is not an RTCSessionDescriptionInit (no sdp string)"
                ))
            }
        },
        Slot::DescriptionType => out.description_type = v.as_str().map(str::to_string),
        Slot::DescriptionSdp => match v.as_str() {
            Some(s) => out.sdp = Some(s.to_string()),
            None => out.unreadable = Some(format!("{v} is not SDP text")),
        },
        Slot::Candidate => out.candidate = Some(v.clone()),
        Slot::CandidateMember(m) => {
            let c = out
                .candidate
                .get_or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(o) = c {
                o.insert(m.to_string(), v.clone());
            }
        }
        Slot::Room => out.room = text(v),
        Slot::Peer => out.peer = text(v),
        Slot::Message => out.message = text(v),
        Slot::Name => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_whole_strings_of_known_names() {
        assert_eq!(Slot::of("{description}"), Some(Slot::Description));
        assert_eq!(
            Slot::of("{candidate.sdpMLineIndex}"),
            Some(Slot::CandidateMember("sdpMLineIndex"))
        );
        assert_eq!(Slot::of("{candidate.foo}"), None);
        assert_eq!(Slot::of("room {room}"), None);
        assert_eq!(
            unknown_placeholders(
                &json!({"a": "{descripton}", "b": ["{run}", "{room}", "r-{run}"]})
            ),
            vec!["unknown placeholder \"{descripton}\"".to_string()]
        );
        assert_eq!(unknown_placeholders(&json!({"to": "user-{peer}"})).len(), 1);
    }

    #[test]
    fn a_named_user_message_is_written_and_read_back() {
        let t = json!({"type": "offer", "offer": "{description}", "name": "{peer}"});
        let sent = fill(
            &t,
            &Values {
                room: "r",
                name: "alice",
                peer: Some("bob"),
                description: Some(("offer", "v=0")),
                candidate: None,
            },
        );
        assert_eq!(
            sent,
            json!({"type": "offer", "offer": {"type": "offer", "sdp": "v=0"}, "name": "bob"})
        );
        // The relay renames the target to the sender and adds a member of its own.
        let relayed = json!({"type": "offer", "offer": {"type": "offer", "sdp": "v=0"}, "name": "alice", "ts": 5});
        let mut c = Captured::default();
        assert!(capture(&t, Some(&relayed), &mut c));
        assert_eq!(c.peer.as_deref(), Some("alice"));
        assert_eq!(c.sdp.as_deref(), Some("v=0"));
        assert_eq!(c.description_type.as_deref(), Some("offer"));
        // Another type does not match; neither does a message without the description.
        let mut c = Captured::default();
        assert!(!capture(
            &t,
            Some(&json!({"type": "answer", "answer": {}})),
            &mut c
        ));
        assert!(!capture(&t, Some(&json!({"type": "offer"})), &mut c));
    }

    #[test]
    fn flattened_members_and_nesting() {
        let t = json!({"kind": "signal", "data": {"candidate": "{candidate.candidate}", "mid": "{candidate.sdpMid}", "index": "{candidate.sdpMLineIndex}"}});
        let cand = json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        let sent = fill(
            &t,
            &Values {
                candidate: Some(&cand),
                ..Default::default()
            },
        );
        assert_eq!(sent["data"]["index"], json!(0));
        let mut c = Captured::default();
        assert!(capture(&t, Some(&sent), &mut c));
        assert_eq!(c.candidate, Some(cand));
        let d = json!(["offer", {"type": "{description.type}", "sdp": "{description.sdp}"}]);
        let mut c = Captured::default();
        assert!(capture(
            &d,
            Some(&json!(["offer", {"type": "answer", "sdp": "v=0"}, "r1"])),
            &mut c
        ));
        assert_eq!(c.description_type.as_deref(), Some("answer"));
    }

    #[test]
    fn a_description_of_the_wrong_shape_is_unreadable() {
        let mut c = Captured::default();
        assert!(capture(
            &json!({"sdp": "{description}"}),
            Some(&json!({"sdp": "v=0 as text"})),
            &mut c
        ));
        assert!(c.unreadable.is_some());
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-z]{0,6}".prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::from("{description}")),
            Just(Value::from("{candidate}")),
            Just(Value::from("{peer}")),
            Just(Value::from("{room}")),
        ]
    }

    fn template() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the template, what `fill` writes `capture` reads back, with the values put
        /// in.
        #[test]
        fn fill_then_capture_round_trips(t in template(), sdp in "v=0[ -~]{0,20}", peer in "[a-z]{1,8}") {
            let cand = json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
            let v = Values { room: "r1", name: "me", peer: Some(&peer), description: Some(("offer", &sdp)), candidate: Some(&cand) };
            let sent = fill(&t, &v);
            let mut c = Captured::default();
            prop_assert!(capture(&t, Some(&sent), &mut c));
            let s = slots(&t);
            if s.contains(&Slot::Description) {
                prop_assert_eq!(c.sdp.as_deref(), Some(sdp.as_str()));
            }
            if s.contains(&Slot::Candidate) {
                prop_assert_eq!(c.candidate.as_ref(), Some(&cand));
            }
            if s.contains(&Slot::Peer) {
                prop_assert_eq!(c.peer.as_deref(), Some(peer.as_str()));
            }
            prop_assert!(c.unreadable.is_none());
        }
    }
}
