//! The `rtc-signaling` protocol ([`rtc_signaling::protocol`]) over a real WebSocket: the first
//! [`SignalingConnector`] implementation.
//!
//! `join` opens the WebSocket and sends `{"type":"join","room":...}`; the server's `joined`,
//! `ready`, `offer`, `answer`, `candidate`, `peer-left` and `error` messages become
//! [`SignalingEvent`]s. A writer and a reader task own the two halves of the socket, so
//! [`SignalingSession::send`] never blocks and [`SignalingSession::recv`] is cancel-safe.

use super::{
    IceCandidateInit, Outgoing, Signal, SignalingConnector, SignalingError, SignalingEvent,
    SignalingSession,
};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use rtc_signaling::protocol::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

/// Joins rooms of an `rtc-signaling` server.
#[derive(Debug, Clone)]
pub struct RtcSignalingConnector {
    url: String,
}

impl RtcSignalingConnector {
    /// A connector for the server's WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }
}

#[async_trait]
impl SignalingConnector for RtcSignalingConnector {
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError> {
        let session = RtcSignalingSession::connect(&self.url).await?;
        session
            .out
            .send(ClientMessage::Join {
                room: room.into(),
                capacity: None,
            })
            .map_err(|_| SignalingError::Closed)?;
        Ok(Box::new(session))
    }
}

/// A joined room on an `rtc-signaling` server.
struct RtcSignalingSession {
    out: mpsc::UnboundedSender<ClientMessage>,
    incoming: mpsc::UnboundedReceiver<SignalingEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RtcSignalingSession {
    async fn connect(url: &str) -> Result<Self, SignalingError> {
        let (ws, _) =
            tokio_tungstenite::connect_async(url)
                .await
                .map_err(|e| SignalingError::Connect {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(
            async move {
                while let Some(m) = out_rx.recv().await {
                    let Ok(text) = serde_json::to_string(&m) else {
                        continue;
                    };
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                let _ = sink.close().await;
            }
            .in_current_span(),
        );
        let reader = tokio::spawn(
            async move {
                while let Some(msg) = stream.next().await {
                    let event = match msg {
                        Ok(Message::Text(t)) => match serde_json::from_str::<ServerMessage>(&t) {
                            Ok(m) => event_of(m),
                            Err(e) => SignalingEvent::Error(SignalingError::Unreadable {
                                text: t.to_string(),
                                reason: e.to_string(),
                            }),
                        },
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => continue,
                    };
                    if in_tx.send(event).is_err() {
                        break;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(Self {
            out: out_tx,
            incoming: in_rx,
            tasks: vec![writer, reader],
        })
    }
}

#[async_trait]
impl SignalingSession for RtcSignalingSession {
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError> {
        self.out
            .send(client_message(message))
            .map_err(|_| SignalingError::Closed)
    }

    async fn recv(&mut self) -> Option<SignalingEvent> {
        self.incoming.recv().await
    }
}

impl Drop for RtcSignalingSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The wire message for an outgoing signal.
fn client_message(m: Outgoing) -> ClientMessage {
    let to = m.to;
    match m.signal {
        Signal::Offer { sdp } => ClientMessage::Offer { sdp, to },
        Signal::Answer { sdp } => ClientMessage::Answer { sdp, to },
        Signal::Candidate(c) => ClientMessage::Candidate {
            // Serializing a struct of strings and numbers cannot fail.
            candidate: serde_json::to_value(c).ok(),
            to,
        },
        Signal::EndOfCandidates => ClientMessage::Candidate {
            candidate: None,
            to,
        },
    }
}

/// The event for a server message.
fn event_of(m: ServerMessage) -> SignalingEvent {
    let signal = |from: String, signal: Signal| SignalingEvent::Signal {
        from: Some(from),
        signal,
    };
    match m {
        ServerMessage::Joined { peer_id, peers } => SignalingEvent::Joined {
            peer_id: Some(peer_id),
            peers,
        },
        ServerMessage::Ready { peers } => SignalingEvent::Ready { peers },
        ServerMessage::PeerJoined { peer_id } => SignalingEvent::PeerJoined { peer_id },
        ServerMessage::Offer { sdp, from } => signal(from, Signal::Offer { sdp }),
        ServerMessage::Answer { sdp, from } => signal(from, Signal::Answer { sdp }),
        ServerMessage::Candidate {
            candidate: None,
            from,
        } => signal(from, Signal::EndOfCandidates),
        ServerMessage::Candidate {
            candidate: Some(c),
            from,
        } => match serde_json::from_value::<IceCandidateInit>(c.clone()) {
            Ok(init) => signal(from, Signal::Candidate(init)),
            Err(e) => SignalingEvent::Error(SignalingError::Unreadable {
                text: c.to_string(),
                reason: format!("not an RTCIceCandidateInit: {e}"),
            }),
        },
        ServerMessage::PeerLeft { peer_id } => SignalingEvent::PeerLeft { peer_id },
        ServerMessage::Error { code, message } => SignalingEvent::Error(SignalingError::Refused {
            code: code.to_string(),
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_signaling::protocol::ErrorCode;
    use serde_json::json;

    fn host() -> IceCandidateInit {
        IceCandidateInit {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        }
    }

    #[test]
    fn outgoing_signals_become_rtc_signaling_messages() {
        let offer = client_message(Outgoing::to_room(Signal::Offer { sdp: "v=0".into() }));
        assert_eq!(
            serde_json::to_value(offer).unwrap(),
            json!({"type": "offer", "sdp": "v=0"})
        );
        let answer = client_message(Outgoing {
            to: Some("p1".into()),
            signal: Signal::Answer { sdp: "v=0".into() },
        });
        assert_eq!(
            serde_json::to_value(answer).unwrap(),
            json!({"type": "answer", "sdp": "v=0", "to": "p1"})
        );
        // The candidate object keeps the webrtc-pc member names; absent members are null.
        let cand = client_message(Outgoing::to_room(Signal::Candidate(host())));
        assert_eq!(
            serde_json::to_value(cand).unwrap(),
            json!({"type": "candidate", "candidate": {
                "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}})
        );
        let end = client_message(Outgoing::to_room(Signal::EndOfCandidates));
        assert_eq!(
            serde_json::to_value(end).unwrap(),
            json!({"type": "candidate", "candidate": null})
        );
    }

    #[test]
    fn server_messages_become_protocol_neutral_events() {
        assert_eq!(
            event_of(ServerMessage::Joined {
                peer_id: "p2".into(),
                peers: vec!["p1".into()]
            }),
            SignalingEvent::Joined {
                peer_id: Some("p2".into()),
                peers: vec!["p1".into()]
            }
        );
        assert_eq!(
            event_of(ServerMessage::Ready {
                peers: vec!["p1".into(), "p2".into()]
            }),
            SignalingEvent::Ready {
                peers: vec!["p1".into(), "p2".into()]
            }
        );
        assert_eq!(
            event_of(ServerMessage::Candidate {
                candidate: Some(serde_json::to_value(host()).unwrap()),
                from: "p1".into()
            }),
            SignalingEvent::Signal {
                from: Some("p1".into()),
                signal: Signal::Candidate(host())
            }
        );
        assert_eq!(
            event_of(ServerMessage::Candidate {
                candidate: None,
                from: "p1".into()
            }),
            SignalingEvent::Signal {
                from: Some("p1".into()),
                signal: Signal::EndOfCandidates
            }
        );
        assert_eq!(
            event_of(ServerMessage::PeerLeft {
                peer_id: "p1".into()
            }),
            SignalingEvent::PeerLeft {
                peer_id: "p1".into()
            }
        );
        let refused = event_of(ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "room \"r\" is full (2 peers)".into(),
        });
        let SignalingEvent::Error(e) = refused else {
            panic!("not an error: {refused:?}");
        };
        assert_eq!(
            e.to_string(),
            "signaling server: room_full: room \"r\" is full (2 peers)"
        );
    }

    #[test]
    fn a_candidate_without_its_candidate_attribute_is_an_error_event() {
        let e = event_of(ServerMessage::Candidate {
            candidate: Some(json!({"sdpMid": "0"})),
            from: "p1".into(),
        });
        assert!(
            matches!(e, SignalingEvent::Error(SignalingError::Unreadable { .. })),
            "{e:?}"
        );
    }
}
