//! Shared helpers for the integration tests: a small WebSocket test client.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::{SinkExt, StreamExt};
use rtc_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long to listen when asserting that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(200);

/// A signaling client on a real socket.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client> {
        let connecting = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (ws, _) = tokio::time::timeout(WAIT, connecting)
            .await
            .context("connect timed out")?
            .context("connect failed")?;
        Ok(Client { ws })
    }

    pub async fn send_frame(&mut self, frame: Message) -> Result<()> {
        tokio::time::timeout(WAIT, self.ws.send(frame))
            .await
            .context("send timed out")?
            .context("send failed")
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<()> {
        self.send_text(serde_json::to_string(msg)?).await
    }

    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.send_frame(Message::text(text.into())).await
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<()> {
        self.send_frame(Message::binary(data)).await
    }

    /// The next text frame, raw. `Ok(None)` if nothing came within `wait`.
    pub async fn recv_raw_within(&mut self, wait: Duration) -> Result<Option<String>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(Some(text.as_str().to_owned())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => bail!("unexpected frame {other:?}"),
                Some(Err(err)) => bail!("socket error: {err}"),
                None => bail!("socket closed"),
            }
        }
    }

    /// The next text frame, raw; fails after [`WAIT`].
    pub async fn recv_raw(&mut self) -> Result<String> {
        self.recv_raw_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("no message within {WAIT:?}"))
    }

    /// The next server message; fails after [`WAIT`].
    pub async fn recv(&mut self) -> Result<ServerMessage> {
        let text = self.recv_raw().await?;
        serde_json::from_str(&text).with_context(|| format!("undecodable server message {text}"))
    }

    /// Fails if any message arrives within [`QUIET`].
    pub async fn expect_quiet(&mut self) -> Result<()> {
        match self.recv_raw_within(QUIET).await? {
            None => Ok(()),
            Some(text) => bail!("unexpected message {text}"),
        }
    }

    /// Expects an `error` with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Result<()> {
        match self.recv().await? {
            ServerMessage::Error { code: got, .. } if got == code => Ok(()),
            other => bail!("expected error {code}, got {other:?}"),
        }
    }

    /// Joins `room`; returns (own id, peers already there).
    pub async fn join(&mut self, room: &str) -> Result<(String, Vec<String>)> {
        self.send(&ClientMessage::Join {
            room: room.into(),
            capacity: None,
        })
        .await?;
        match self.recv().await? {
            ServerMessage::Joined { peer_id, peers } => Ok((peer_id, peers)),
            other => bail!("expected joined, got {other:?}"),
        }
    }

    /// Expects `ready` (after any `peer-joined`, which a peer already in the room gets first)
    /// and returns its peers.
    pub async fn expect_ready(&mut self) -> Result<Vec<String>> {
        loop {
            match self.recv().await? {
                ServerMessage::PeerJoined { .. } => {}
                ServerMessage::Ready { peers } => return Ok(peers),
                other => bail!("expected ready, got {other:?}"),
            }
        }
    }

    /// Proves the connection still works: an unknown type gets `bad_message`.
    pub async fn probe(&mut self) -> Result<()> {
        self.send_text(r#"{"type":"probe"}"#).await?;
        self.expect_error(ErrorCode::BadMessage)
            .await
            .context("probe after the previous message")
    }

    /// Sends a close frame and waits for the server to close the socket.
    pub async fn close(mut self) -> Result<()> {
        self.send_frame(Message::Close(None)).await?;
        self.expect_closed().await
    }

    /// Waits until the server closes the socket (ignoring other frames).
    pub async fn expect_closed(&mut self) -> Result<()> {
        self.closed_within(WAIT).await.map(|_| ())
    }

    /// Waits up to `wait` for the server to close the socket, ignoring other
    /// frames; returns the close frame if the server sent one.
    pub async fn closed_within(&mut self, wait: Duration) -> Result<Option<CloseFrame>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("socket not closed within {wait:?}"),
                Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame),
                Ok(None | Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Expects the server's close frame as the next frame (pings and
    /// pongs aside) and returns it.
    pub async fn expect_close_next(&mut self) -> Result<Option<CloseFrame>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("socket not closed within {WAIT:?}"),
                Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame),
                Ok(None | Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => bail!("expected the close, got {other:?}"),
            }
        }
    }

    /// Sends a WebSocket ping (the server answers it with a pong).
    pub async fn ping(&mut self) -> Result<()> {
        self.send_frame(Message::Ping(Vec::new().into())).await
    }
}

/// Two clients joined to `room` (capacity 2), both past `ready`.
pub async fn pair(url: &str, room: &str) -> Result<((Client, String), (Client, String))> {
    let mut a = Client::connect(url).await?;
    let mut b = Client::connect(url).await?;
    let (a_id, peers) = a.join(room).await?;
    ensure!(peers.is_empty(), "room {room} not empty: {peers:?}");
    let (b_id, peers) = b.join(room).await?;
    ensure!(peers == vec![a_id.clone()], "unexpected peers {peers:?}");
    let expected = vec![a_id.clone(), b_id.clone()];
    ensure!(a.expect_ready().await? == expected);
    ensure!(b.expect_ready().await? == expected);
    Ok(((a, a_id), (b, b_id)))
}

/// A full offer/answer/candidate exchange between a joined pair.
pub async fn exchange(a: &mut Client, a_id: &str, b: &mut Client, b_id: &str) -> Result<()> {
    a.send(&ClientMessage::Offer {
        sdp: "v=0 offer".into(),
        to: Some(b_id.into()),
    })
    .await?;
    let got = b.recv().await?;
    ensure!(
        got == ServerMessage::Offer {
            sdp: "v=0 offer".into(),
            from: a_id.into()
        },
        "offer: {got:?}"
    );
    b.send(&ClientMessage::Answer {
        sdp: "v=0 answer".into(),
        to: None,
    })
    .await?;
    let got = a.recv().await?;
    ensure!(
        got == ServerMessage::Answer {
            sdp: "v=0 answer".into(),
            from: b_id.into()
        },
        "answer: {got:?}"
    );
    Ok(())
}
