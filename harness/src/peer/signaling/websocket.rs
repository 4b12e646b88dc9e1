//! An app's own signaling as JSON text messages over one WebSocket (RFC 6455), through
//! `tokio-tungstenite`: how a bot logs in to a web app and calls, or answers, a user by name.
//!
//! Each message is one JSON value in one text frame, shaped by the scenario's templates
//! (`[app.signaling]` with `protocol = "websocket"`, read and written by [`super::app`]). The
//! defaults are the classic named-user chat server: `{"type":"login","name":...}`, answered
//! `{"type":"login","success":true}`; then `{"type":"offer","offer":{...},"name":"bob"}` reaches
//! only bob, with `name` set to the sender, and so do answers and candidates. The bot offers to
//! the step's `call` user once logged in, and answers whoever sent the offer.
//!
//! Frames that are not JSON, and JSON that matches no template, are not the protocol's: they
//! are passed over (apps send chat, presence, pings). A refused upgrade (HTTP 401, say) makes
//! `join` fail with the status and the app's body.

use super::app::{self, Learned, Me};
use super::{
    AppJoin, Outgoing, SignalingConnector, SignalingError, SignalingEvent, SignalingSession,
};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long the WebSocket opening handshake may take.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects bots to an app's WebSocket signaling.
#[derive(Debug, Clone)]
pub struct WebSocketConnector {
    url: String,
    join: AppJoin,
    /// Whom an answering bot learned it talks to: kept across rejoins (a session ends with its
    /// socket; the call, and who is on its other end, does not).
    learned: Learned,
}

impl WebSocketConnector {
    /// A connector for the app at `base` (e.g. `http://127.0.0.1:3000`): the WebSocket URL is
    /// `base` with `ws`/`wss` for `http`/`https`, then the plan's `path`.
    pub fn new(base: &str, join: AppJoin) -> Self {
        let base = base.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        };
        Self {
            url: format!("{base}{}", join.plan.path),
            join,
            learned: Learned::default(),
        }
    }
}

enum Raw {
    Frame(Value),
    Closed,
}

#[async_trait]
impl SignalingConnector for WebSocketConnector {
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError> {
        let connect_err = |reason: String| SignalingError::Connect {
            url: self.url.clone(),
            reason,
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| connect_err(e.to_string()))?;
        for (k, v) in &self.join.plan.headers {
            let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| connect_err(format!("header {k:?}: {e}")))?;
            let value = tungstenite::http::HeaderValue::from_str(v)
                .map_err(|e| connect_err(format!("header {k:?}: {e}")))?;
            request.headers_mut().insert(name, value);
        }
        let ws = match tokio::time::timeout(
            HANDSHAKE_DEADLINE,
            tokio_tungstenite::connect_async(request),
        )
        .await
        {
            Err(_) => {
                return Err(connect_err(format!(
                    "no WebSocket handshake answer within {HANDSHAKE_DEADLINE:?}"
                )));
            }
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_string())
                    .unwrap_or_default();
                return Err(connect_err(format!(
                    "the app refused the WebSocket upgrade: HTTP {}{}",
                    resp.status(),
                    if body.is_empty() {
                        String::new()
                    } else {
                        format!(": {body}")
                    }
                )));
            }
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Ok(Ok((ws, _))) => ws,
        };
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Value>();
        let (in_tx, incoming) = mpsc::unbounded_channel::<Raw>();
        // Dropping the session closes `out`, which ends the writer and closes the socket; the
        // reader ends with the socket.
        tokio::spawn(async move {
            while let Some(v) = out_rx.recv().await {
                if sink.send(Message::text(v.to_string())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        if in_tx.send(Raw::Frame(v)).is_err() {
                            return;
                        }
                    }
                    Err(_) => tracing::debug!(%text, "a frame that is not JSON: passed over"),
                }
            }
            let _ = in_tx.send(Raw::Closed);
        });
        let mut session = WebSocketSession {
            join: app::join_now(&self.join, &self.learned),
            learned: self.learned.clone(),
            room: room.to_string(),
            out,
            incoming,
            pending: std::collections::VecDeque::new(),
            reader,
        };
        let me = session.me(None);
        if let Some(join) = &self.join.plan.join {
            for v in app::fill(join, me).1 {
                session.out.send(v).map_err(|_| SignalingError::Closed)?;
            }
        }
        // With a `ready` reply (a login's success), the bot is in once it comes; without
        // one, once its join is sent.
        if self.join.plan.ready.is_none() {
            session.pending.push_back(session.joined());
            session
                .pending
                .push_back(SignalingEvent::Ready { peers: Vec::new() });
        }
        Ok(Box::new(session))
    }
}

/// A bot logged in to an app's WebSocket signaling.
struct WebSocketSession {
    join: AppJoin,
    learned: Learned,
    room: String,
    out: mpsc::UnboundedSender<Value>,
    incoming: mpsc::UnboundedReceiver<Raw>,
    pending: std::collections::VecDeque<SignalingEvent>,
    /// The task reading the socket (the writer ends by itself once `out` is dropped).
    reader: tokio::task::JoinHandle<()>,
}

impl WebSocketSession {
    fn joined(&self) -> SignalingEvent {
        SignalingEvent::Joined {
            peer_id: Some(self.join.name.clone()),
            peers: Vec::new(),
        }
    }

    fn me<'a>(&'a self, to: Option<&'a str>) -> Me<'a> {
        Me {
            room: &self.room,
            name: &self.join.name,
            peer: to.or(self.join.peer.as_deref()),
        }
    }
}

impl Drop for WebSocketSession {
    fn drop(&mut self) {
        // The writer ends by itself once `out` is gone; the reader would wait for the server.
        self.reader.abort();
    }
}

#[async_trait]
impl SignalingSession for WebSocketSession {
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError> {
        let me = self.me(message.to.as_deref());
        let Some((_, args)) = app::outgoing(&self.join.plan, me, &message.signal)? else {
            // End-of-candidates: the app protocol has no message for it.
            return Ok(());
        };
        for v in args {
            self.out.send(v).map_err(|_| SignalingError::Closed)?;
        }
        Ok(())
    }

    async fn recv(&mut self) -> Option<SignalingEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        loop {
            match self.incoming.recv().await? {
                Raw::Closed => return None,
                Raw::Frame(v) => {
                    if let Some((e, from)) =
                        app::incoming(&self.join.plan, None, std::slice::from_ref(&v))
                    {
                        app::learn(&mut self.join, &self.learned, from);
                        if matches!(e, SignalingEvent::Ready { .. }) {
                            self.pending.push_back(e);
                            return Some(self.joined());
                        }
                        return Some(e);
                    }
                }
            }
        }
    }
}
