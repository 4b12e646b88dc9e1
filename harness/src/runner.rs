//! Wiring for a run: the harness server, the launchers of every peer kind, the engine.
//! Both the CLI and the `cargo test` scenario suites ([`crate::testing`]) start here.

use crate::clock::Clock;
use crate::engine::Engine;
use crate::peer::Launchers;
use crate::peer::bot::BotLauncher;
use crate::peer::browser::chromium::Chromium;
use crate::peer::browser::firefox::Firefox;
use crate::peer::browser::{BrowserLauncher, Flavor};
use crate::scenario::PeerKind;
use crate::server::HarnessServer;
use std::path::PathBuf;
use std::sync::Arc;

/// Where driver, TURN server and library logs go without `--log-dir`.
pub fn default_log_dir() -> PathBuf {
    std::env::temp_dir().join("rtc-harness-logs")
}

/// Settings that come from the command line or the environment.
#[derive(Debug, Clone)]
pub struct Options {
    /// chromedriver to use instead of the one on PATH.
    pub chromedriver: Option<PathBuf>,
    /// Chromium binary to use instead of the one found.
    pub chromium: Option<PathBuf>,
    /// geckodriver to use instead of the one on PATH.
    pub geckodriver: Option<PathBuf>,
    /// Firefox binary to use instead of the one found.
    pub firefox: Option<PathBuf>,
    /// Where driver logs go (default: a folder under the system temp dir).
    pub log_dir: Option<PathBuf>,
    /// Reuse browser instances from one scenario to the next (default true).
    pub browser_reuse: bool,
    /// Launchers for kinds of the caller's own ([`PeerKind::Custom`]), added to the built-in
    /// ones; one registered for a built-in kind replaces the built-in launcher.
    pub launchers: Launchers,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chromedriver: None,
            chromium: None,
            geckodriver: None,
            firefox: None,
            log_dir: None,
            browser_reuse: true,
            launchers: Launchers::default(),
        }
    }
}

/// A ready harness: server running, engine wired.
pub struct Harness {
    _server: Arc<HarnessServer>,
    browsers: Vec<BrowserLauncher>,
    /// The engine.
    pub engine: Engine,
}

impl Harness {
    /// Starts the server and wires the launchers.
    pub async fn start(opts: Options) -> std::io::Result<Self> {
        let server = Arc::new(HarnessServer::start().await?);
        let clock = Clock::start();
        let log_dir = opts.log_dir.unwrap_or_else(default_log_dir);
        let browser = |flavor: Arc<dyn Flavor>| {
            BrowserLauncher::new(flavor, server.clone(), log_dir.clone(), opts.browser_reuse)
        };
        let chromium = browser(Arc::new(Chromium {
            chromedriver: opts.chromedriver,
            binary: opts.chromium,
        }));
        let firefox = browser(Arc::new(Firefox {
            geckodriver: opts.geckodriver,
            binary: opts.firefox,
        }));
        let launchers = Launchers::default()
            .with(PeerKind::Bot, Arc::new(BotLauncher::default()))
            .with(PeerKind::Chromium, Arc::new(chromium.clone()))
            .with(PeerKind::Firefox, Arc::new(firefox.clone()))
            .extend(&opts.launchers);
        let engine = Engine::new(launchers, server.signaling_url(), clock, log_dir.clone())
            .with_signaling_admin(server.signaling_admin());
        Ok(Self {
            _server: server,
            browsers: vec![chromium, firefox],
            engine,
        })
    }

    /// Closes every idle browser instance. Call at the end of a run; dropping the harness
    /// without it still kills every browser (process groups are killed on drop).
    pub async fn shutdown(&self) {
        futures::future::join_all(self.browsers.iter().map(|b| b.close_idle())).await;
    }
}
