//! The bots' client side of the signaling protocol ([`rtc_signaling::protocol`]), over a real
//! WebSocket.

use super::PeerError;
use futures::{SinkExt, StreamExt};
use rtc_signaling::protocol::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

/// A connected signaling client: send with [`SignalingClient::send`], receive from `incoming`.
pub struct SignalingClient {
    out: mpsc::UnboundedSender<ClientMessage>,
    /// Messages from the server, in order; closed when the socket closes.
    pub incoming: mpsc::UnboundedReceiver<Result<ServerMessage, String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SignalingClient {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Self, PeerError> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| PeerError::failed(format!("signaling connect to {url}: {e}")))?;
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
                    let parsed = match msg {
                        Ok(Message::Text(t)) => serde_json::from_str::<ServerMessage>(&t)
                            .map_err(|e| format!("unreadable signaling message {t:?}: {e}")),
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => continue,
                    };
                    if in_tx.send(parsed).is_err() {
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

    /// Queues a message.
    pub fn send(&self, m: ClientMessage) {
        let _ = self.out.send(m);
    }
}

impl Drop for SignalingClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
