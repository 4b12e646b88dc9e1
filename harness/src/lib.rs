//! # rtc-harness
//!
//! A headless WebRTC test and interop harness. Scenario files (TOML) say which peers take part
//! (webrtc-rs bots, headless Chromium and Firefox over WebDriver), what they do (connect, send
//! data-channel messages, wait, restart ICE, add tracks, change the network, close) and what
//! must hold afterwards (the W3C state sequences, message counts, setup-time bounds). The
//! harness runs them against a real signaling server and reports verdicts and setup-latency
//! metrics.
//!
//! Data flows through the modules in this order:
//!
//! | stage | module |
//! |---|---|
//! | scenario file → checked plan (and its JSON Schema) | [`scenario`], [`scenario::schema`] |
//! | plan → running peers | [`runner`], [`engine`] (run stages: [`engine::context`]; step kinds: [`engine::steps`]) |
//! | peers | [`peer`] (kinds: [`peer::bot`], [`peer::browser::chromium`], [`peer::browser::firefox`]; signaling: [`peer::signaling`]) |
//! | around the peers | [`server`] (harness HTTP and signaling), [`turn`] (coturn), [`lab`] (network namespaces) |
//! | peers → one timeline | [`timeline`], [`clock`] |
//! | timeline → verdict and metrics | [`engine::judge`], [`verdict`], [`metrics`], [`explain`] |
//! | results → table, JSON, JUnit, Markdown, HTML | [`report`], [`matrix`] |
//! | a scenario folder → `cargo test` (with your own peer kinds) | [`testing`] |
//!
//! ```
//! let plan = rtc_harness::scenario::parse(std::path::Path::new("x.toml"), r#"
//! name = "two bots"
//! [[peers]]
//! id = "a"
//! kind = "bot"
//! [[peers]]
//! id = "b"
//! kind = "bot"
//! [[steps]]
//! action = "connect"
//! offerer = "a"
//! answerer = "b"
//! data_channel = "chat"
//! "#).unwrap();
//! assert_eq!(plan.steps.len(), 1);
//! ```
#![deny(missing_docs)]

pub mod app;
pub mod clock;
pub mod engine;
pub mod explain;
pub mod lab;
pub mod load;
pub mod logs;
pub mod matrix;
pub mod metrics;
pub mod partition;
pub mod payload;
pub mod peer;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod server;
pub mod testing;
pub mod timeline;
pub mod turn;
pub mod verdict;
