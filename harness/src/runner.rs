//! Wiring for a run: the harness server, the launchers of every peer kind, the engine.
//! Both the CLI and the `cargo test` scenario suite start here.

use crate::clock::Clock;
use crate::engine::Engine;
use crate::peer::Launchers;
use crate::peer::bot::BotLauncher;
use crate::peer::chromium::{ChromiumLauncher, PageHost};
use crate::scenario::PeerKind;
use crate::server::HarnessServer;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings that come from the command line or the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// chromedriver to use instead of the one on PATH.
    pub chromedriver: Option<PathBuf>,
    /// Chromium binary to use instead of the one found.
    pub chromium: Option<PathBuf>,
    /// Where driver logs go (default: a folder under the system temp dir).
    pub log_dir: Option<PathBuf>,
}

/// A ready harness: server running, engine wired.
pub struct Harness {
    /// Keeps the server alive as long as the harness.
    _server: HarnessServer,
    /// The engine.
    pub engine: Engine,
}

impl Harness {
    /// Starts the server and wires the launchers.
    pub async fn start(opts: Options) -> std::io::Result<Self> {
        let server = HarnessServer::start().await?;
        let clock = Clock::start();
        let addr_server = server.page_url("TOKEN");
        let host = PageHost {
            hub: server.hub(),
            page_url: Arc::new(move |token| addr_server.replace("TOKEN", token)),
        };
        let log_dir = opts
            .log_dir
            .unwrap_or_else(|| std::env::temp_dir().join("rtc-harness-logs"));
        let launchers = Launchers::default()
            .with(PeerKind::Bot, Arc::new(BotLauncher::default()))
            .with(
                PeerKind::Chromium,
                Arc::new(ChromiumLauncher::new(
                    opts.chromedriver,
                    opts.chromium,
                    host,
                    log_dir,
                )),
            );
        let engine = Engine::new(launchers, server.signaling_url(), clock);
        Ok(Self {
            _server: server,
            engine,
        })
    }
}
