//! An app's own Socket.IO signaling (Socket.IO v4 over Engine.IO v4, through the maintained
//! `rust_socketio` client): how a bot joins a web app's rooms as one of its pages would.
//!
//! What the app's messages look like is data ([`crate::scenario::AppSignalingPlan`], from the
//! scenario's `[app.signaling]`, read and written by [`super::app`]): the event that joins a room, the event after which the offerer offers,
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

use super::app::{self, Learned, Me};
use super::{
    AppJoin, Outgoing, SignalingConnector, SignalingError, SignalingEvent, SignalingSession,
};
use async_trait::async_trait;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long the server may take to accept the Socket.IO connection (namespace CONNECT).
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Joins rooms of an app's Socket.IO server.
#[derive(Debug, Clone)]
pub struct SocketIoConnector {
    url: String,
    join: AppJoin,
    /// Whom an answering bot learned it talks to: kept across rejoins (a session ends with its
    /// socket; the call, and who is on its other end, does not).
    learned: Learned,
}

impl SocketIoConnector {
    /// A connector for the app at `base` (e.g. `http://127.0.0.1:3000`).
    pub fn new(base: &str, join: AppJoin) -> Self {
        Self {
            url: format!("{}{}", base.trim_end_matches('/'), join.plan.path),
            join,
            learned: Learned::default(),
        }
    }
}

/// What the client's callbacks hand the session: a room event, or an app message still to read
/// (read by the session, which knows who the bot is).
enum Raw {
    Event(SignalingEvent),
    Message(String, Vec<Value>),
}

#[async_trait]
impl SignalingConnector for SocketIoConnector {
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError> {
        let (in_tx, incoming) = mpsc::unbounded_channel::<Raw>();
        let plan = &self.join.plan;
        let on_any_tx = in_tx.clone();
        let mut builder = ClientBuilder::new(self.url.clone())
            .reconnect(false)
            .on_any(move |event: Event, payload: Payload, _client: Client| {
                if let (Event::Custom(name), Payload::Text(args)) = (event, payload) {
                    let _ = on_any_tx.send(Raw::Message(name, args));
                }
                async {}.boxed()
            });
        // The server's answer to the namespace CONNECT: until it comes, an event would make a
        // Socket.IO v4 server close the connection ("invalid state"), so the join waits for it.
        let (handshake_tx, mut handshake) = mpsc::unbounded_channel::<Result<(), String>>();
        let connected_tx = handshake_tx.clone();
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_connect = connected.clone();
        builder = builder.on(Event::Connect, move |_, _| {
            on_connect.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = connected_tx.send(Ok(()));
            async {}.boxed()
        });
        let closed_tx = in_tx.clone();
        let closed_handshake = handshake_tx.clone();
        let closed_connected = connected.clone();
        builder = builder.on(Event::Close, move |_, _| {
            if !closed_connected.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = closed_handshake.send(Err(
                    "the server closed the connection before answering the Socket.IO CONNECT"
                        .into(),
                ));
            }
            let _ = closed_tx.send(Raw::Event(SignalingEvent::Error(SignalingError::Closed)));
            async {}.boxed()
        });
        let refused_tx = in_tx.clone();
        builder = builder.on(Event::Error, move |payload, _| {
            let message = refusal(&text_of(&payload));
            // Before the CONNECT answer, an error is the server refusing the handshake. After
            // it, rust_socketio reports a lost transport (the app crashed or restarted) as an
            // error ("EngineIO Error"), not as a close: the session ends, and the bot rejoins.
            let event = if connected.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::debug!(%message, "Socket.IO transport lost");
                SignalingEvent::Error(SignalingError::Closed)
            } else {
                let _ = handshake_tx.send(Err(message.clone()));
                SignalingEvent::Error(SignalingError::Refused {
                    code: "socket.io error".into(),
                    message,
                })
            };
            let _ = refused_tx.send(Raw::Event(event));
            async {}.boxed()
        });
        if let Some(auth) = &plan.auth {
            builder = builder.auth(auth.clone());
        }
        for (k, v) in &plan.headers {
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
                    let _ = writer_tx.send(Raw::Event(SignalingEvent::Error(
                        SignalingError::Refused {
                            code: "emit".into(),
                            message: format!("emitting {event}: {e}"),
                        },
                    )));
                }
            }
            let _ = writer_client.disconnect().await;
        });
        let me = Me {
            room: &room_id,
            name: &self.join.name,
            peer: self.join.peer.as_deref(),
        };
        if let Some(join) = &plan.join
            && let (Some(event), args) = app::fill(join, me)
        {
            out.send((event, args))
                .map_err(|_| SignalingError::Closed)?;
        }
        // The protocol says nothing back on a join: the session counts as in the room once the
        // join is sent.
        let _ = in_tx.send(Raw::Event(SignalingEvent::Joined {
            peer_id: None,
            peers: Vec::new(),
        }));
        if plan.ready.is_none() {
            let _ = in_tx.send(Raw::Event(SignalingEvent::Ready { peers: Vec::new() }));
        }
        Ok(Box::new(SocketIoSession {
            join: app::join_now(&self.join, &self.learned),
            learned: self.learned.clone(),
            room: room_id,
            out,
            incoming,
        }))
    }
}

/// A joined room of an app's Socket.IO server.
struct SocketIoSession {
    join: AppJoin,
    learned: Learned,
    room: String,
    out: mpsc::UnboundedSender<(String, Vec<Value>)>,
    incoming: mpsc::UnboundedReceiver<Raw>,
}

#[async_trait]
impl SignalingSession for SocketIoSession {
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError> {
        let me = Me {
            room: &self.room,
            name: &self.join.name,
            peer: message.to.as_deref().or(self.join.peer.as_deref()),
        };
        let Some((Some(event), args)) = app::outgoing(&self.join.plan, me, &message.signal)? else {
            // End-of-candidates: the app protocol has no message for it.
            return Ok(());
        };
        self.out
            .send((event, args))
            .map_err(|_| SignalingError::Closed)
    }

    async fn recv(&mut self) -> Option<SignalingEvent> {
        loop {
            match self.incoming.recv().await? {
                // The socket closed: the session ends (the bot reports it and rejoins).
                Raw::Event(SignalingEvent::Error(SignalingError::Closed)) => return None,
                Raw::Event(e) => return Some(e),
                Raw::Message(event, args) => {
                    if let Some((e, from)) = app::incoming(&self.join.plan, Some(&event), &args) {
                        app::learn(&mut self.join, &self.learned, from);
                        return Some(e);
                    }
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
