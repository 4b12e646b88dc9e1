//! `rtc-signaling`: runs the WebSocket signaling server standalone.
//!
//! Prints the WebSocket URL on stdout once listening; logs go to stderr and
//! are filtered with `RUST_LOG` (default `info`). Stops on Ctrl-C (or
//! SIGTERM on Unix).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rtc_signaling::auth::JwtSecret;
use rtc_signaling::{Config, Server};
use tracing_subscriber::EnvFilter;

/// WebSocket signaling server with rooms, for WebRTC tests.
///
/// Clients connect to ws://LISTEN/ws (with ?token=<JWT> when --jwt-secret is
/// set), join a room and relay offer/answer/candidate messages to its other
/// peers. Every limit is per client connection. A message over the rate
/// limit is dropped (the first of a run answered with `error {code:
/// "rate_limited"}`); a binary frame gets `bad_message`; a text frame that is not valid UTF-8
/// gets `invalid_frame` and the connection is closed (close code 1007), as
/// RFC 6455 requires. A client that does not read until its outbox is full
/// is disconnected (one WARN line). The protocol and error codes are in the
/// crate documentation (cargo doc -p rtc-signaling) and README.md.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Peers per room; `ready` is sent when a room reaches it.
    #[arg(long, default_value_t = Config::default().room_capacity, value_parser = positive)]
    room_capacity: usize,
    /// Largest room capacity a `join` may ask for (a mesh call of that many peers).
    #[arg(long, default_value_t = Config::default().max_room_capacity, value_parser = positive)]
    max_room_capacity: usize,
    /// Largest accepted client message, in bytes.
    #[arg(long, default_value_t = Config::default().max_message_bytes, value_parser = positive)]
    max_message_bytes: usize,
    /// Server messages queued for a client that has not read them; one more
    /// disconnects the client as too slow.
    #[arg(long, default_value_t = Config::default().outbox_capacity, value_parser = positive)]
    outbox_capacity: usize,
    /// Sustained client messages a second (text or binary frames; pings do
    /// not count); over it a message is dropped, the first of a run of
    /// dropped messages answered with `rate_limited`. 0 disables the limit.
    #[arg(long, default_value_t = Config::default().rate_limit_per_second)]
    rate_limit_per_second: u32,
    /// Messages a client may send at once (the size of its token bucket,
    /// refilled at the sustained rate).
    #[arg(long, default_value_t = Config::default().rate_limit_burst)]
    rate_limit_burst: u32,
    /// Messages dropped over the rate limit (over a connection's life) after
    /// which the client is disconnected (close code 1008); 0 never does.
    #[arg(long, default_value_t = Config::default().rate_limit_disconnect_after)]
    rate_limit_disconnect_after: u32,
    /// Seconds without any frame from a client (message, ping or pong)
    /// after which its connection is closed (close code 1000, reason "idle
    /// timeout"); 0 disables.
    #[arg(long, value_name = "SECONDS", default_value_t = default_idle_seconds())]
    idle_timeout: u64,
    /// Require an HS256 JSON Web Token with this secret: clients connect to
    /// /ws?token=<JWT> whose claims hold `room` (the room they may join) and
    /// `exp`; a missing or wrong token gets `unauthorized` on join. Off by
    /// default. (Visible in process listings: prefer a private machine.)
    #[arg(long, value_name = "SECRET", value_parser = jwt_secret)]
    jwt_secret: Option<JwtSecret>,
}

fn default_idle_seconds() -> u64 {
    Config::default()
        .idle_timeout
        .map_or(0, |idle| idle.as_secs())
}

fn jwt_secret(text: &str) -> Result<JwtSecret, String> {
    JwtSecret::new(text).map_err(|err| err.to_string())
}

impl Args {
    fn config(&self) -> Config {
        Config {
            room_capacity: self.room_capacity,
            max_room_capacity: self.max_room_capacity,
            max_message_bytes: self.max_message_bytes,
            outbox_capacity: self.outbox_capacity,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            rate_limit_disconnect_after: self.rate_limit_disconnect_after,
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            jwt_secret: self.jwt_secret.clone(),
        }
    }
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
    let config = args.config();
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
        assert_eq!(args.config(), Config::default());
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
        assert!(Args::try_parse_from(["rtc-signaling", "--jwt-secret", ""]).is_err());
        let args = Args::try_parse_from([
            "rtc-signaling",
            "--idle-timeout",
            "0",
            "--rate-limit-per-second",
            "0",
            "--jwt-secret",
            "k",
        ])
        .expect("flags parse");
        let config = args.config();
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.rate_limit_per_second, 0);
        assert_eq!(
            config.jwt_secret,
            Some(JwtSecret::new("k").expect("secret"))
        );
        assert!(Args::try_parse_from(["rtc-signaling", "--listen", "nope"]).is_err());
    }
}
