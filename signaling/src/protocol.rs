//! Wire format: the JSON text messages exchanged over the signaling WebSocket.
//!
//! Every message is a JSON object with a `type` field naming the variant in
//! kebab-case (`"join"`, `"peer-left"`, ...). The other fields are named in
//! snake_case exactly as in the Rust variants below. See the
//! [crate documentation](crate) for the full list of shapes.
//!
//! Both enums implement [`Serialize`] and [`Deserialize`], so the same types
//! serve the server and clients (the harness uses them as a client).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A message sent by a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    /// `{"type":"join","room":"r1"}`: enter a room, creating it if needed.
    /// `{"type":"join","room":"r1","capacity":4}`: the same, for a room of 4 (a mesh call); the
    /// first joiner sets the room's capacity (default: the server's
    /// [`Config::room_capacity`](crate::Config::room_capacity)); a later joiner that names a
    /// different one is refused with `bad_capacity`.
    Join {
        /// Name of the room to join (any string).
        room: String,
        /// Peers the room holds, 2 to [`Config::max_room_capacity`](crate::Config::max_room_capacity).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<usize>,
    },
    /// `{"type":"offer","sdp":"...","to":"p2"}`: an SDP offer to relay.
    Offer {
        /// The SDP text, relayed verbatim.
        sdp: String,
        /// Target peer id; `None` relays to every other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// `{"type":"answer","sdp":"...","to":"p1"}`: an SDP answer to relay.
    Answer {
        /// The SDP text, relayed verbatim.
        sdp: String,
        /// Target peer id; `None` relays to every other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// `{"type":"candidate","candidate":{...},"to":"p2"}`: an ICE candidate.
    Candidate {
        /// An `RTCIceCandidateInit` JSON object, or `null` (serialized as
        /// JSON `null`, never omitted) for end-of-candidates. The field is
        /// required; any value other than an object or `null` is rejected.
        #[serde(deserialize_with = "object_or_null")]
        candidate: Option<Value>,
        /// Target peer id; `None` relays to every other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// `{"type":"leave"}`: leave the current room (the socket stays open).
    Leave,
}

/// A message sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// Reply to a successful `join`.
    Joined {
        /// The id the server assigned to this connection (`"p1"`, `"p2"`, ...).
        peer_id: String,
        /// Ids of the peers already in the room, in join order.
        peers: Vec<String>,
    },
    /// Sent to the peers already in a room when another joins it.
    PeerJoined {
        /// Id of the peer that joined.
        peer_id: String,
    },
    /// Sent to every peer of a room once it reaches its capacity.
    Ready {
        /// Ids of all peers in the room, in join order.
        peers: Vec<String>,
    },
    /// A relayed offer.
    Offer {
        /// The SDP text, verbatim.
        sdp: String,
        /// Id of the peer that sent it (set by the server).
        from: String,
    },
    /// A relayed answer.
    Answer {
        /// The SDP text, verbatim.
        sdp: String,
        /// Id of the peer that sent it (set by the server).
        from: String,
    },
    /// A relayed ICE candidate; `null` means end-of-candidates.
    Candidate {
        /// The candidate object, or `None` (JSON `null`).
        #[serde(deserialize_with = "object_or_null")]
        candidate: Option<Value>,
        /// Id of the peer that sent it (set by the server).
        from: String,
    },
    /// A peer left the room (explicit `leave` or closed socket).
    PeerLeft {
        /// Id of the peer that left.
        peer_id: String,
    },
    /// The previous client message was refused; the connection stays open.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Reason carried by [`ServerMessage::Error`], serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `bad_message`: not JSON, unknown `type`, a missing or mistyped field,
    /// or a binary frame.
    BadMessage,
    /// `too_large`: the message is longer than the configured maximum
    /// ([`Config::max_message_bytes`](crate::Config::max_message_bytes)).
    TooLarge,
    /// `not_in_room`: `offer`, `answer`, `candidate` or `leave` before `join`.
    NotInRoom,
    /// `already_joined`: `join` while already in a room.
    AlreadyJoined,
    /// `room_full`: the room already holds its capacity of peers.
    RoomFull,
    /// `bad_capacity`: a `join` whose `capacity` is out of range, or differs from the
    /// capacity the room was created with.
    BadCapacity,
    /// `target_required`: an `offer`, `answer` or `candidate` without `to` in a room of more
    /// than two peers (whom it is for would be a guess).
    TargetRequired,
    /// `unknown_peer`: `to` names no other peer of the sender's room.
    UnknownPeer,
    /// `unauthorized`: `join` without a valid token for that room, while the
    /// server requires one ([`Config::jwt_secret`](crate::Config::jwt_secret)).
    Unauthorized,
    /// `rate_limited`: the client sent messages faster than its rate limit
    /// ([`Config::rate_limit_per_second`](crate::Config::rate_limit_per_second));
    /// the message was dropped.
    RateLimited,
    /// `invalid_frame`: the WebSocket layer rejected a frame (a text frame
    /// that is not valid UTF-8, a message over the WebSocket layer's size
    /// limit, a protocol violation); the server then closes the connection.
    InvalidFrame,
}

impl ErrorCode {
    /// The wire name of the code, e.g. `"room_full"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::BadCapacity => "bad_capacity",
            ErrorCode::TargetRequired => "target_required",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidFrame => "invalid_frame",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Deserializes a required `Option<Value>` that must be a JSON object or `null`.
fn object_or_null<'de, D>(deserializer: D) -> Result<Option<Value>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value)),
        Some(_) => Err(serde::de::Error::custom(
            "`candidate` must be a JSON object or null",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip_client(msg: ClientMessage, expected: Value) {
        let encoded = serde_json::to_value(&msg).expect("serialize");
        assert_eq!(encoded, expected);
        let text = serde_json::to_string(&msg).expect("serialize");
        let decoded: ClientMessage = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(decoded, msg);
    }

    fn round_trip_server(msg: ServerMessage, expected: Value) {
        let encoded = serde_json::to_value(&msg).expect("serialize");
        assert_eq!(encoded, expected);
        let text = serde_json::to_string(&msg).expect("serialize");
        let decoded: ServerMessage = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(decoded, msg);
    }

    #[test]
    fn client_join_and_leave() {
        round_trip_client(
            ClientMessage::Join {
                room: "r1".into(),
                capacity: None,
            },
            json!({"type": "join", "room": "r1"}),
        );
        round_trip_client(ClientMessage::Leave, json!({"type": "leave"}));
    }

    #[test]
    fn client_offer_answer_skip_absent_to() {
        round_trip_client(
            ClientMessage::Offer {
                sdp: "v=0".into(),
                to: None,
            },
            json!({"type": "offer", "sdp": "v=0"}),
        );
        round_trip_client(
            ClientMessage::Answer {
                sdp: "v=0".into(),
                to: Some("p2".into()),
            },
            json!({"type": "answer", "sdp": "v=0", "to": "p2"}),
        );
    }

    #[test]
    fn client_candidate_object_and_null() {
        let cand = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        round_trip_client(
            ClientMessage::Candidate {
                candidate: Some(cand.clone()),
                to: Some("p1".into()),
            },
            json!({"type": "candidate", "candidate": cand, "to": "p1"}),
        );
        round_trip_client(
            ClientMessage::Candidate {
                candidate: None,
                to: None,
            },
            json!({"type": "candidate", "candidate": null}),
        );
    }

    #[test]
    fn client_to_null_means_broadcast() {
        let msg: ClientMessage =
            serde_json::from_str(r#"{"type":"offer","sdp":"x","to":null}"#).expect("parse");
        assert_eq!(
            msg,
            ClientMessage::Offer {
                sdp: "x".into(),
                to: None
            }
        );
    }

    #[test]
    fn client_rejects_malformed() {
        let bad = [
            "",
            "not json",
            "[]",
            "null",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"Join","room":"r"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","room":5}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"offer","sdp":"x","to":7}"#,
            r#"{"type":"candidate"}"#,
            r#"{"type":"candidate","candidate":"a=candidate"}"#,
            r#"{"type":"candidate","candidate":[1,2]}"#,
            r#"{"type":"candidate","candidate":3}"#,
            r#"{"type":"peer-left","peer_id":"p1"}"#,
            r#"{"type":5}"#,
        ];
        for text in bad {
            assert!(
                serde_json::from_str::<ClientMessage>(text).is_err(),
                "accepted {text:?}"
            );
        }
    }

    #[test]
    fn server_messages() {
        round_trip_server(
            ServerMessage::Joined {
                peer_id: "p3".into(),
                peers: vec!["p1".into()],
            },
            json!({"type": "joined", "peer_id": "p3", "peers": ["p1"]}),
        );
        round_trip_server(
            ServerMessage::Ready {
                peers: vec!["p1".into(), "p3".into()],
            },
            json!({"type": "ready", "peers": ["p1", "p3"]}),
        );
        round_trip_server(
            ServerMessage::Offer {
                sdp: "o".into(),
                from: "p1".into(),
            },
            json!({"type": "offer", "sdp": "o", "from": "p1"}),
        );
        round_trip_server(
            ServerMessage::Answer {
                sdp: "a".into(),
                from: "p2".into(),
            },
            json!({"type": "answer", "sdp": "a", "from": "p2"}),
        );
        round_trip_server(
            ServerMessage::Candidate {
                candidate: Some(json!({"candidate": ""})),
                from: "p2".into(),
            },
            json!({"type": "candidate", "candidate": {"candidate": ""}, "from": "p2"}),
        );
        round_trip_server(
            ServerMessage::Candidate {
                candidate: None,
                from: "p2".into(),
            },
            json!({"type": "candidate", "candidate": null, "from": "p2"}),
        );
        round_trip_server(
            ServerMessage::PeerLeft {
                peer_id: "p1".into(),
            },
            json!({"type": "peer-left", "peer_id": "p1"}),
        );
    }

    #[test]
    fn error_codes_are_snake_case() {
        let all = [
            ErrorCode::BadMessage,
            ErrorCode::TooLarge,
            ErrorCode::NotInRoom,
            ErrorCode::AlreadyJoined,
            ErrorCode::RoomFull,
            ErrorCode::UnknownPeer,
            ErrorCode::Unauthorized,
            ErrorCode::RateLimited,
            ErrorCode::InvalidFrame,
        ];
        for code in all {
            round_trip_server(
                ServerMessage::Error {
                    code,
                    message: "m".into(),
                },
                json!({"type": "error", "code": code.as_str(), "message": "m"}),
            );
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn candidate_null_is_emitted_not_omitted() {
        let text = serde_json::to_string(&ServerMessage::Candidate {
            candidate: None,
            from: "p1".into(),
        })
        .expect("serialize");
        assert!(text.contains(r#""candidate":null"#), "{text}");
    }
}
