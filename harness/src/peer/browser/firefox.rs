//! `firefox`: headless Firefox (Debian's `firefox-esr`) under geckodriver.

use super::{Flavor, Programs, find_program};
use crate::peer::PeerError;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Preferences Firefox needs for WebRTC in a closed, loopback-only network (FIELD-NOTES):
/// loopback ICE candidates, host candidates as IPs rather than mDNS names, fake media devices
/// with no permission prompt; full-precision `performance.now()` (the timeline's stamps); and
/// no background traffic.
pub fn prefs() -> serde_json::Value {
    json!({
        "media.peerconnection.ice.loopback": true,
        "media.peerconnection.ice.obfuscate_host_addresses": false,
        "media.navigator.streams.fake": true,
        "media.navigator.permission.disabled": true,
        "privacy.reduceTimerPrecision": false,
        // No back/forward cache: a page left for about:blank is destroyed with its connections.
        "browser.sessionhistory.max_total_viewers": 0,
        "app.update.enabled": false,
        "app.update.auto": false,
        "browser.shell.checkDefaultBrowser": false,
        "datareporting.policy.dataSubmissionEnabled": false,
        "datareporting.healthreport.uploadEnabled": false,
        "toolkit.telemetry.enabled": false,
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "browser.safebrowsing.update.enabled": false,
        "extensions.update.enabled": false
    })
}

/// Firefox, with optional explicit program paths.
#[derive(Debug, Clone, Default)]
pub struct Firefox {
    /// geckodriver to use instead of the one on PATH.
    pub geckodriver: Option<PathBuf>,
    /// Browser binary to use instead of the one found.
    pub binary: Option<PathBuf>,
}

impl Flavor for Firefox {
    fn kind(&self) -> &'static str {
        "firefox"
    }

    fn programs(&self) -> Result<Programs, PeerError> {
        Ok(Programs {
            driver: find_program(
                self.geckodriver.as_deref(),
                &["geckodriver"],
                "geckodriver",
                "install it (`cargo install geckodriver --locked`; ci/install does) or pass \
                 --geckodriver PATH",
            )?,
            browser: find_program(
                self.binary.as_deref(),
                &["firefox-esr", "firefox"],
                "firefox",
                "install it (Debian: `apt-get install firefox-esr`) or pass --firefox PATH",
            )?,
        })
    }

    fn driver_command(&self, programs: &Programs, port: u16) -> Command {
        let mut cmd = Command::new(&programs.driver);
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--marionette-port")
            .arg("0");
        // WebDriver BiDi (page peers) listens on its own port, 9222 unless told: one per
        // instance, so that instances side by side do not collide.
        if let Ok(bidi) = super::free_port() {
            cmd.arg("--websocket-port").arg(bidi.to_string());
        }
        cmd
    }

    fn capabilities(
        &self,
        browser: Option<&Path>,
        profile: Option<&Path>,
    ) -> fantoccini::wd::Capabilities {
        let mut args = vec![json!("-headless")];
        if let Some(profile) = profile {
            args.extend([json!("-profile"), json!(profile)]);
        }
        let mut options = json!({ "args": args, "prefs": prefs() });
        if let Some(browser) = browser {
            options["binary"] = json!(browser);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("firefox"));
        caps.insert("moz:firefoxOptions".into(), options);
        caps
    }

    fn binary(&self) -> Option<&Path> {
        self.binary.as_deref()
    }
}
