//! `rtc-signaling`: runs the WebSocket signaling server standalone.
//!
//! Prints the WebSocket URL on stdout once listening; logs go to stderr and
//! are filtered with `RUST_LOG` (default `info`). Stops on Ctrl-C (or
//! SIGTERM on Unix).

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use rtc_signaling::{Config, Server};
use tracing_subscriber::EnvFilter;

/// WebSocket signaling server with rooms, for WebRTC tests.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Peers per room; `ready` is sent when a room reaches it.
    #[arg(long, default_value_t = Config::default().room_capacity, value_parser = positive)]
    room_capacity: usize,
    /// Largest accepted client message, in bytes.
    #[arg(long, default_value_t = Config::default().max_message_bytes, value_parser = positive)]
    max_message_bytes: usize,
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = Config {
        room_capacity: args.room_capacity,
        max_message_bytes: args.max_message_bytes,
    };
    let stop = watch_stop_signals()?;
    let server = Server::bind(args.listen, config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", server.ws_url())?;
        stdout.flush()?;
    }
    stop.await;
    tracing::info!("stop signal received, shutting down");
    server.shutdown().await;
    Ok(())
}

/// Starts listening for Ctrl-C (and SIGTERM on Unix) right away, so a
/// signal sent as soon as the URL is printed is not missed.
#[cfg(unix)]
fn watch_stop_signals() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Listens for Ctrl-C.
#[cfg(not(unix))]
fn watch_stop_signals() -> anyhow::Result<impl Future<Output = ()>> {
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        if let Err(err) = ctrl_c.await {
            tracing::error!("cannot watch Ctrl-C: {err}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_defaults_and_validation() {
        let args = Args::try_parse_from(["rtc-signaling"]).expect("defaults parse");
        assert_eq!(args.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(args.room_capacity, 2);
        assert_eq!(args.max_message_bytes, 65536);
        let args = Args::try_parse_from([
            "rtc-signaling",
            "--listen",
            "0.0.0.0:0",
            "--room-capacity",
            "3",
            "--max-message-bytes",
            "1000",
        ])
        .expect("flags parse");
        assert_eq!(args.room_capacity, 3);
        assert_eq!(args.max_message_bytes, 1000);
        assert!(Args::try_parse_from(["rtc-signaling", "--room-capacity", "0"]).is_err());
        assert!(Args::try_parse_from(["rtc-signaling", "--listen", "nope"]).is_err());
    }
}
