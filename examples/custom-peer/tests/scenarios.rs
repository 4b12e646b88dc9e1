//! Every file in `scenarios/` is one test; `kind = "echo-endpoint"` peers are this crate's own
//! endpoint ([`custom_peer::EndpointLauncher`]).

use std::sync::Arc;

fn main() {
    rtc_harness::testing::Suite::new("scenarios")
        .with_launcher("echo-endpoint", Arc::new(custom_peer::EndpointLauncher))
        .run()
}
