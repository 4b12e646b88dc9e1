//! An app's own Socket.IO signaling (Socket.IO v4 over Engine.IO v4, through the maintained
//! `rust_socketio` client): how a bot joins a web app's rooms as one of its pages would.
//!
//! What the app's messages look like is data ([`AppSignalingPlan`], from the scenario's
//! `[app.signaling]`): the event that joins a room, the event after which the offerer offers,
//! and where in each message's arguments the description or the candidate sits. The defaults
//! are the room protocol of the apps this project grew from: emit `join` with the room id; the
//! server emits `ready` to the room once two are in; `offer` and `answer` carry an
//! `RTCSessionDescriptionInit` then the room id, `ice-candidate` an `RTCIceCandidateInit` then
//! the room id, and the server relays each to the others in the room.
//!
//! The app's protocol has no targets and no end-of-candidates message: signals go to the room,
//! and end-of-candidates is not sent (apps pass only non-null candidates on). A Socket.IO
//! server that refuses the handshake (a wrong `auth` token, say) makes `join` fail with the
//! server's reason.

use super::{
    IceCandidateInit, Outgoing, Signal, SignalingConnector, SignalingError, SignalingEvent,
    SignalingSession,
};
use crate::scenario::{AppArg, AppMessage, AppSignalingPlan};
use async_trait::async_trait;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long the server may take to accept the Socket.IO connection (namespace CONNECT).
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Joins rooms of an app's Socket.IO server.
#[derive(Debug, Clone)]
pub struct SocketIoConnector {
    url: String,
    plan: AppSignalingPlan,
}

impl SocketIoConnector {
    /// A connector for the app at `base` (e.g. `http://127.0.0.1:3000`).
    pub fn new(base: &str, plan: AppSignalingPlan) -> Self {
        Self {
            url: format!("{}{}", base.trim_end_matches('/'), plan.path),
            plan,
        }
    }
}

#[async_trait]
impl SignalingConnector for SocketIoConnector {
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError> {
        let (in_tx, incoming) = mpsc::unbounded_channel::<SignalingEvent>();
        let plan = self.plan.clone();
        let on_any_tx = in_tx.clone();
        let mut builder = ClientBuilder::new(self.url.clone())
            .reconnect(false)
            .on_any(move |event: Event, payload: Payload, _client: Client| {
                if let Some(e) = read(&plan, &event, payload) {
                    let _ = on_any_tx.send(e);
                }
                async {}.boxed()
            });
        let closed_tx = in_tx.clone();
        builder = builder.on(Event::Close, move |_, _| {
            let _ = closed_tx.send(SignalingEvent::Error(SignalingError::Closed));
            async {}.boxed()
        });
        // The server's answer to the namespace CONNECT: until it comes, an event would make a
        // Socket.IO v4 server close the connection ("invalid state"), so the join waits for it.
        let (handshake_tx, mut handshake) = mpsc::unbounded_channel::<Result<(), String>>();
        let connected_tx = handshake_tx.clone();
        builder = builder.on(Event::Connect, move |_, _| {
            let _ = connected_tx.send(Ok(()));
            async {}.boxed()
        });
        let refused_tx = in_tx.clone();
        builder = builder.on(Event::Error, move |payload, _| {
            let message = refusal(&text_of(&payload));
            let _ = handshake_tx.send(Err(message.clone()));
            let _ = refused_tx.send(SignalingEvent::Error(SignalingError::Refused {
                code: "socket.io error".into(),
                message,
            }));
            async {}.boxed()
        });
        if let Some(auth) = &self.plan.auth {
            builder = builder.auth(auth.clone());
        }
        for (k, v) in &self.plan.headers {
            builder = builder.opening_header(k.as_str(), v.as_str());
        }
        let client = builder
            .connect()
            .await
            .map_err(|e| SignalingError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let refused = |reason: String| SignalingError::Connect {
            url: self.url.clone(),
            reason,
        };
        match tokio::time::timeout(HANDSHAKE_DEADLINE, handshake.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(why))) => {
                let _ = client.disconnect().await;
                return Err(refused(format!(
                    "the server refused the Socket.IO connection: {why}"
                )));
            }
            Ok(None) => return Err(refused("the Socket.IO connection closed".into())),
            Err(_) => {
                let _ = client.disconnect().await;
                return Err(refused(format!(
                    "no Socket.IO CONNECT answer within {HANDSHAKE_DEADLINE:?}"
                )));
            }
        }
        let (out, mut out_rx) = mpsc::unbounded_channel::<(String, Vec<Value>)>();
        let room_id = room.to_string();
        let writer_client = client.clone();
        let writer_tx = in_tx.clone();
        // Dropping the session closes this queue, which ends the writer and disconnects.
        tokio::spawn(async move {
            while let Some((event, args)) = out_rx.recv().await {
                if let Err(e) = writer_client
                    .emit(event.as_str(), Payload::Text(args))
                    .await
                {
                    let _ = writer_tx.send(SignalingEvent::Error(SignalingError::Refused {
                        code: "emit".into(),
                        message: format!("emitting {event}: {e}"),
                    }));
                }
            }
            let _ = writer_client.disconnect().await;
        });
        let join = args_of(&self.plan.join, &room_id, None);
        out.send((self.plan.join.event.clone(), join))
            .map_err(|_| SignalingError::Closed)?;
        // The protocol says nothing back on a join: the session counts as in the room once the
        // join is sent.
        let _ = in_tx.send(SignalingEvent::Joined {
            peer_id: None,
            peers: Vec::new(),
        });
        Ok(Box::new(SocketIoSession {
            plan: self.plan.clone(),
            room: room_id,
            out,
            incoming,
        }))
    }
}

/// A joined room of an app's Socket.IO server.
struct SocketIoSession {
    plan: AppSignalingPlan,
    room: String,
    out: mpsc::UnboundedSender<(String, Vec<Value>)>,
    incoming: mpsc::UnboundedReceiver<SignalingEvent>,
}

#[async_trait]
impl SignalingSession for SocketIoSession {
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError> {
        let (m, value) = match message.signal {
            Signal::Offer { sdp } => (&self.plan.offer, json!({"type": "offer", "sdp": sdp})),
            Signal::Answer { sdp } => (&self.plan.answer, json!({"type": "answer", "sdp": sdp})),
            Signal::Candidate(c) => (
                &self.plan.candidate,
                serde_json::to_value(c).map_err(|_| SignalingError::Closed)?,
            ),
            // The app protocol has no end-of-candidates message.
            Signal::EndOfCandidates => return Ok(()),
        };
        let args = args_of(m, &self.room, Some(value));
        self.out
            .send((m.event.clone(), args))
            .map_err(|_| SignalingError::Closed)
    }

    async fn recv(&mut self) -> Option<SignalingEvent> {
        match self.incoming.recv().await {
            // The socket closed: the session ends (the bot reports it and rejoins).
            Some(SignalingEvent::Error(SignalingError::Closed)) => None,
            other => other,
        }
    }
}

/// The arguments of a message: the room and `value` (description or candidate) in their places.
fn args_of(m: &AppMessage, room: &str, value: Option<Value>) -> Vec<Value> {
    m.args
        .iter()
        .map(|a| match a {
            AppArg::Room => json!(room),
            AppArg::Description | AppArg::Candidate => value.clone().unwrap_or(Value::Null),
            AppArg::Literal(s) => json!(s),
        })
        .collect()
}

/// The server's own words in a refusal: rust_socketio reports a CONNECT_ERROR as `Received an
/// ConnectError frame: {"message": ...}`; the `message` is what the app said.
fn refusal(text: &str) -> String {
    text.find('{')
        .and_then(|i| serde_json::from_str::<Value>(&text[i..]).ok())
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

fn text_of(p: &Payload) -> String {
    match p {
        Payload::Text(v) => v
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Payload::Binary(b) => format!("{} bytes", b.len()),
        #[allow(deprecated)]
        Payload::String(s) => s.clone(),
    }
}

/// What an app event means to the bot (pure): `None` for events the protocol does not use.
pub fn read(plan: &AppSignalingPlan, event: &Event, payload: Payload) -> Option<SignalingEvent> {
    let Event::Custom(name) = event else {
        return None;
    };
    let args = match payload {
        Payload::Text(v) => v,
        _ => return None,
    };
    let unreadable = |why: &str| {
        Some(SignalingEvent::Error(SignalingError::Unreadable {
            text: format!("{name} {}", Value::Array(args.clone())),
            reason: why.to_string(),
        }))
    };
    if *name == plan.ready {
        return Some(SignalingEvent::Ready { peers: Vec::new() });
    }
    for (m, kind) in [(&plan.offer, "offer"), (&plan.answer, "answer")] {
        if *name != m.event {
            continue;
        }
        let at = m.position(&AppArg::Description)?;
        let Some(sdp) = args.get(at).and_then(|d| d["sdp"].as_str()) else {
            return unreadable(&format!(
                "argument {} is not an RTCSessionDescriptionInit with sdp",
                at + 1
            ));
        };
        let sdp = sdp.to_string();
        let signal = if kind == "offer" {
            Signal::Offer { sdp }
        } else {
            Signal::Answer { sdp }
        };
        return Some(SignalingEvent::Signal { from: None, signal });
    }
    if *name == plan.candidate.event {
        let at = plan.candidate.position(&AppArg::Candidate)?;
        return match args.get(at) {
            None | Some(Value::Null) => Some(SignalingEvent::Signal {
                from: None,
                signal: Signal::EndOfCandidates,
            }),
            Some(c) => match serde_json::from_value::<IceCandidateInit>(c.clone()) {
                Ok(c) if c.candidate.is_empty() => Some(SignalingEvent::Signal {
                    from: None,
                    signal: Signal::EndOfCandidates,
                }),
                Ok(c) => Some(SignalingEvent::Signal {
                    from: None,
                    signal: Signal::Candidate(c),
                }),
                Err(e) => unreadable(&format!(
                    "argument {} is not an RTCIceCandidateInit: {e}",
                    at + 1
                )),
            },
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> AppSignalingPlan {
        let text = r#"
name = "t"
[app]
url = "http://127.0.0.1:1"
[app.signaling]
protocol = "socket.io"
[[peers]]
id = "b"
kind = "bot"
"#;
        crate::scenario::parse(std::path::Path::new("t.toml"), text)
            .unwrap()
            .app
            .unwrap()
            .signaling
            .unwrap()
    }

    #[test]
    fn a_refusal_quotes_the_app() {
        assert_eq!(
            refusal(
                r#"Received an ConnectError frame: {"message":"unauthorized: invalid signature"}"#
            ),
            "unauthorized: invalid signature"
        );
        assert_eq!(refusal("something else"), "something else");
    }

    #[test]
    fn the_room_protocol_is_read_and_written_by_position() {
        let p = rooms();
        assert_eq!(
            args_of(&p.offer, "r1", Some(json!({"type": "offer", "sdp": "v=0"}))),
            vec![json!({"type": "offer", "sdp": "v=0"}), json!("r1")]
        );
        assert_eq!(args_of(&p.join, "r1", None), vec![json!("r1")]);
        let ev = |n: &str| Event::Custom(n.into());
        assert_eq!(
            read(&p, &ev("ready"), Payload::Text(vec![json!("r1")])),
            Some(SignalingEvent::Ready { peers: vec![] })
        );
        assert_eq!(
            read(
                &p,
                &ev("answer"),
                Payload::Text(vec![json!({"type": "answer", "sdp": "v=0 a"}), json!("r1")])
            ),
            Some(SignalingEvent::Signal {
                from: None,
                signal: Signal::Answer {
                    sdp: "v=0 a".into()
                }
            })
        );
        let cand = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        match read(
            &p,
            &ev("ice-candidate"),
            Payload::Text(vec![cand, json!("r1")]),
        ) {
            Some(SignalingEvent::Signal {
                signal: Signal::Candidate(c),
                ..
            }) => assert_eq!(c.sdp_mid.as_deref(), Some("0")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(&p, &ev("offer"), Payload::Text(vec![json!("no sdp")])),
            Some(SignalingEvent::Error(SignalingError::Unreadable { .. }))
        ));
        assert_eq!(read(&p, &ev("chat"), Payload::Text(vec![])), None);
    }
}
