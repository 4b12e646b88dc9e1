//! The `rtc-signaling` binary: prints its URL, serves, stops on SIGINT.
#![cfg(unix)]

mod common;

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use common::{Client, WAIT, exchange, pair};
use rtc_signaling::protocol::{ClientMessage, ErrorCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn binary_serves_and_stops_on_sigint() -> Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-signaling"))
        .args(["--listen", "127.0.0.1:0", "--room-capacity", "2"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawn rtc-signaling")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
        .await
        .context("no URL printed")??;
    let url = line.trim();
    ensure!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws"),
        "{url:?}"
    );

    let ((mut a, a_id), (mut b, b_id)) = pair(url, "r").await?;
    exchange(&mut a, &a_id, &mut b, &b_id).await?;
    let mut c = Client::connect(url).await?;
    c.send(&ClientMessage::Join {
        room: "r".into(),
        capacity: None,
    })
    .await?;
    c.expect_error(ErrorCode::RoomFull).await?;

    let pid = child.id().context("pid")?;
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await?;
    ensure!(status.success(), "kill failed");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .context("did not stop on SIGINT")??;
    ensure!(status.success(), "exit status {status}");
    a.expect_closed().await?;
    b.expect_closed().await?;
    Ok(())
}
