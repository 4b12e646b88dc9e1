//! `chromium`: headless Chromium under chromedriver.

use super::{Flavor, Programs, find_program};
use crate::peer::PeerError;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Chromium flags: headless as root in a closed network, fake media devices, loopback ICE.
/// See FIELD-NOTES: without the background-networking flags Chromium keeps dialling out; it
/// gathers a 127.0.0.1 candidate only with `--allow-loopback-in-peer-connection` plus a granted
/// getUserMedia; mDNS host-name obfuscation is turned off so host candidates carry IPs; the
/// back/forward cache is off, so a page the harness leaves is destroyed.
pub const ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    // No back/forward cache: a page left for about:blank (browser reuse) must be destroyed
    // with its connections, not kept alive in the cache (seen here: the renderers of earlier
    // mesh pages kept sending video, 16 of them after 10 runs).
    "--disable-features=WebRtcHideLocalIpsWithMdns,BackForwardCache",
];

/// Chromium, with optional explicit program paths.
#[derive(Debug, Clone, Default)]
pub struct Chromium {
    /// chromedriver to use instead of the one on PATH.
    pub chromedriver: Option<PathBuf>,
    /// Browser binary to use instead of the one found.
    pub binary: Option<PathBuf>,
}

impl Flavor for Chromium {
    fn kind(&self) -> &'static str {
        "chromium"
    }

    fn programs(&self) -> Result<Programs, PeerError> {
        Ok(Programs {
            driver: find_program(
                self.chromedriver.as_deref(),
                &["chromedriver"],
                "chromedriver",
                "install it (Debian: `apt-get install chromium-driver`) or pass --chromedriver PATH",
            )?,
            // Debian's /usr/bin/chromium is a wrapper script; the binary is behind it.
            browser: find_program(
                self.binary.as_deref(),
                &[
                    "/usr/lib/chromium/chromium",
                    "chromium",
                    "chromium-browser",
                    "google-chrome",
                ],
                "chromium",
                "install it (Debian: `apt-get install chromium`) or pass --chromium PATH",
            )?,
        })
    }

    fn driver_command(&self, programs: &Programs, port: u16) -> Command {
        let mut cmd = Command::new(&programs.driver);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        cmd
    }

    fn capabilities(
        &self,
        browser: Option<&Path>,
        profile: Option<&Path>,
    ) -> fantoccini::wd::Capabilities {
        let mut args: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
        if let Some(profile) = profile {
            args.push(format!("--user-data-dir={}", profile.display()));
        }
        let mut options = json!({ "args": args });
        if let Some(browser) = browser {
            options["binary"] = json!(browser);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }

    fn binary(&self) -> Option<&Path> {
        self.binary.as_deref()
    }
}
