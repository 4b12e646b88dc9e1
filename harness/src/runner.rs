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
    /// Chromium sessions from this remote WebDriver endpoint (a Selenium Grid hub) instead of
    /// a local chromedriver.
    pub chromium_webdriver: Option<String>,
    /// Firefox sessions from this remote WebDriver endpoint instead of a local geckodriver.
    pub firefox_webdriver: Option<String>,
    /// The address the harness serves pages and signaling on (default 127.0.0.1): one that
    /// remote browsers can reach.
    pub advertise_addr: Option<std::net::IpAddr>,
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
            chromium_webdriver: None,
            firefox_webdriver: None,
            advertise_addr: None,
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
        let server = Arc::new(match opts.advertise_addr {
            Some(ip) => HarnessServer::start_on(ip).await?,
            None => HarnessServer::start().await?,
        });
        let clock = Clock::start();
        let log_dir = opts.log_dir.unwrap_or_else(default_log_dir);
        let starts = Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
        let browser = |flavor: Arc<dyn Flavor>| {
            BrowserLauncher::new(flavor, server.clone(), log_dir.clone(), opts.browser_reuse)
                .with_start_limit(starts.clone())
        };
        let chromium = browser(Arc::new(Chromium {
            chromedriver: opts.chromedriver,
            binary: opts.chromium,
        }))
        .with_remote(opts.chromium_webdriver);
        let firefox = browser(Arc::new(Firefox {
            geckodriver: opts.geckodriver,
            binary: opts.firefox,
        }))
        .with_remote(opts.firefox_webdriver);
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

/// Runs `run` on every item, up to `parallel` at a time, and returns the outputs in the order of
/// `items` whatever the order they finish in. Items for which `alone` holds run one at a time
/// with nothing beside them, after the others. `parallel <= 1` runs everything in order, one at a
/// time. This is `rtc-harness run --jobs N` and `matrix --jobs N`.
pub async fn in_order<'a, I, T, Fut>(
    items: &'a [I],
    parallel: usize,
    alone: impl Fn(&I) -> bool,
    run: impl Fn(usize, &'a I) -> Fut,
) -> Vec<T>
where
    Fut: std::future::Future<Output = T>,
{
    use futures::stream::{self, StreamExt};
    if parallel <= 1 {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(run(i, item).await);
        }
        return out;
    }
    let (single, together): (Vec<_>, Vec<_>) =
        items.iter().enumerate().partition(|(_, item)| alone(item));
    let run = &run;
    let mut done: Vec<(usize, T)> = stream::iter(
        together
            .into_iter()
            .map(|(i, item)| async move { (i, run(i, item).await) }),
    )
    .buffer_unordered(parallel)
    .collect()
    .await;
    for (i, item) in single {
        done.push((i, run(i, item).await));
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::in_order;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Items are (sleep ms, runs alone); each run records how many ran at once.
    async fn observe(items: &[(u64, bool)], parallel: usize) -> (Vec<usize>, usize, Vec<usize>) {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let beside_alone = std::sync::Mutex::new(Vec::new());
        let out = in_order(
            items,
            parallel,
            |(_, alone)| *alone,
            |i, (ms, alone)| {
                let (running, peak, beside_alone) = (&running, &peak, &beside_alone);
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    if *alone {
                        beside_alone.lock().unwrap().push(now);
                    }
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            },
        )
        .await;
        let beside = beside_alone.into_inner().unwrap();
        (out, peak.load(Ordering::SeqCst), beside)
    }

    #[tokio::test(start_paused = true)]
    async fn outputs_keep_the_input_order_whatever_finishes_first() {
        // The first item takes longest: it finishes last.
        let items = [
            (50, false),
            (30, false),
            (10, false),
            (20, false),
            (5, false),
        ];
        let (out, peak, _) = observe(&items, 3).await;
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
        assert_eq!(peak, 3, "up to 3 at a time, and 3 were reached");
    }

    #[tokio::test(start_paused = true)]
    async fn one_job_runs_one_at_a_time() {
        let items = [(5, false), (5, false), (5, true)];
        let (out, peak, _) = observe(&items, 1).await;
        assert_eq!(out, vec![0, 1, 2]);
        assert_eq!(peak, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exclusive_item_runs_with_nothing_beside_it() {
        let items = [(5, true), (50, false), (50, false), (5, true), (50, false)];
        let (out, peak, beside) = observe(&items, 4).await;
        assert_eq!(
            out,
            vec![0, 1, 2, 3, 4],
            "still reported in the input order"
        );
        assert_eq!(peak, 3, "the three shared items ran together");
        assert_eq!(beside, vec![1, 1], "each exclusive item ran alone");
    }
}
