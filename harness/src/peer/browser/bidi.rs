//! A minimal WebDriver BiDi client (W3C WebDriver BiDi, §5 transport): one WebSocket to the
//! session's `webSocketUrl`, commands `{id, method, params}` answered by `{id, type: "success",
//! result}` or `{id, type: "error", error, message}`, and events `{type: "event", method,
//! params}` handed to a callback in the order they arrive.
//!
//! fantoccini speaks classic WebDriver only; the harness needs BiDi for two things classic
//! WebDriver lacks: a script that runs before any script of a page (`script.addPreloadScript`)
//! and a channel from the page to the harness that the page's CSP cannot block
//! (`script.message`). The WebSocket itself is tokio-tungstenite's.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long one BiDi command may take.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A BiDi session's socket.
pub struct Bidi {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    gone: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bidi {
    /// Connects to `url`; every event goes to `on_event(method, params)`, on the reader task.
    pub async fn connect(
        url: &str,
        on_event: impl Fn(&str, &Value) + Send + 'static,
    ) -> Result<Bidi, String> {
        let (ws, _) = tokio::time::timeout(COMMAND_DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("WebDriver BiDi socket {url}: no answer in {COMMAND_DEADLINE:?}"))?
            .map_err(|e| format!("WebDriver BiDi socket {url}: {e}"))?;
        let (mut tx, mut rx) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let gone = Arc::new(AtomicBool::new(false));
        let reader_pending = pending.clone();
        let reader_gone = gone.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!("unreadable WebDriver BiDi message: {text}");
                    continue;
                };
                if v["type"] == "event" {
                    on_event(v["method"].as_str().unwrap_or(""), &v["params"]);
                    continue;
                }
                let Some(id) = v["id"].as_u64() else {
                    tracing::debug!("WebDriver BiDi message without id: {text}");
                    continue;
                };
                let reply = if v["type"] == "success" {
                    Ok(v["result"].clone())
                } else {
                    Err(format!(
                        "{}: {}",
                        v["error"].as_str().unwrap_or("error"),
                        v["message"].as_str().unwrap_or("")
                    ))
                };
                if let Some(tx) = reader_pending.lock().ok().and_then(|mut p| p.remove(&id)) {
                    let _ = tx.send(reply);
                }
            }
            reader_gone.store(true, Ordering::Relaxed);
            if let Ok(mut p) = reader_pending.lock() {
                for (_, tx) in p.drain() {
                    let _ = tx.send(Err("the WebDriver BiDi socket closed".into()));
                }
            }
        });
        Ok(Bidi {
            out,
            pending,
            next_id: AtomicU64::new(1),
            gone,
            tasks: vec![writer, reader],
        })
    }

    /// Sends a command and waits for its result (under [`COMMAND_DEADLINE`]).
    pub async fn command(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let msg = json!({"id": id, "method": method, "params": params});
        if self.gone.load(Ordering::Relaxed)
            || self
                .out
                .send(Message::Text(msg.to_string().into()))
                .is_err()
        {
            return Err(format!("{method}: the WebDriver BiDi socket closed"));
        }
        match tokio::time::timeout(COMMAND_DEADLINE, rx).await {
            Ok(Ok(r)) => r.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err(format!("{method}: the WebDriver BiDi socket closed")),
            Err(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                Err(format!("{method}: no answer within {COMMAND_DEADLINE:?}"))
            }
        }
    }

    /// Whether the socket has closed.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Stops reading and writing.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Bidi {
    fn drop(&mut self) {
        self.stop();
    }
}
