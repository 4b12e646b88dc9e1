//! Every peer's calls in its `peer` tracing span (see [`crate::logs`]): [`Launchers::with`]
//! wraps each launcher in [`TracedLauncher`], whose peers are [`TracedPeer`]s. A peer's own
//! tasks inherit the span where it spawns them with `in_current_span` (bots also hand
//! webrtc-rs a [`crate::logs::runtime::SpanRuntime`]).
//!
//! [`Launchers::with`]: super::Launchers::with

use super::{ConnectRequest, EventSink, Launcher, Peer, PeerError, PeerInfo, SendRequest, media};
use crate::scenario::{MediaKind, PeerPlan};
use async_trait::async_trait;
use std::sync::Arc;
use tracing::{Instrument, Span};

/// A launcher whose `launch` and peers run in the peer's span.
pub struct TracedLauncher(pub Arc<dyn Launcher>);

#[async_trait]
impl Launcher for TracedLauncher {
    fn check(&self) -> Result<(), PeerError> {
        self.0.check()
    }

    async fn launch(
        &self,
        plan: &PeerPlan,
        sink: EventSink,
        lab: Option<&crate::lab::LabHost>,
    ) -> Result<Box<dyn Peer>, PeerError> {
        let span = crate::logs::peer_span(&plan.id);
        let inner = self
            .0
            .launch(plan, sink, lab)
            .instrument(span.clone())
            .await?;
        Ok(Box::new(TracedPeer { inner, span }))
    }
}

/// A peer whose every call runs in `span`.
pub struct TracedPeer {
    inner: Box<dyn Peer>,
    span: Span,
}

#[async_trait]
impl Peer for TracedPeer {
    fn info(&self) -> PeerInfo {
        self.inner.info()
    }

    async fn connect(&self, req: &ConnectRequest) -> Result<(), PeerError> {
        self.inner.connect(req).instrument(self.span.clone()).await
    }

    async fn send(&self, req: &SendRequest) -> Result<(), PeerError> {
        self.inner.send(req).instrument(self.span.clone()).await
    }

    async fn selected_pair(&self, connection: &str) -> Result<Option<(String, String)>, PeerError> {
        self.inner
            .selected_pair(connection)
            .instrument(self.span.clone())
            .await
    }

    async fn stats(&self, connection: &str) -> Result<Vec<serde_json::Value>, PeerError> {
        self.inner
            .stats(connection)
            .instrument(self.span.clone())
            .await
    }

    async fn media_counters(&self, connection: &str) -> Result<media::MediaCounters, PeerError> {
        self.inner
            .media_counters(connection)
            .instrument(self.span.clone())
            .await
    }

    async fn kill(&self) -> Result<(), PeerError> {
        self.inner.kill().instrument(self.span.clone()).await
    }

    async fn kill_driver(&self) -> Result<String, PeerError> {
        self.inner.kill_driver().instrument(self.span.clone()).await
    }

    async fn freeze(&self) -> Result<(), PeerError> {
        self.inner.freeze().instrument(self.span.clone()).await
    }

    async fn add_track(&self, connection: &str, kind: MediaKind) -> Result<(), PeerError> {
        self.inner
            .add_track(connection, kind)
            .instrument(self.span.clone())
            .await
    }

    async fn restart_ice(&self, connection: &str) -> Result<(), PeerError> {
        self.inner
            .restart_ice(connection)
            .instrument(self.span.clone())
            .await
    }

    async fn close(&self, connection: &str) -> Result<(), PeerError> {
        self.inner
            .close(connection)
            .instrument(self.span.clone())
            .await
    }

    fn console(&self) -> Vec<String> {
        self.inner.console()
    }

    async fn page(&self, action: &crate::peer::PageAction) -> Result<serde_json::Value, PeerError> {
        self.inner.page(action).instrument(self.span.clone()).await
    }

    async fn flush(&self) -> Result<(), PeerError> {
        self.inner.flush().instrument(self.span.clone()).await
    }

    async fn screenshot(&self) -> Option<Vec<u8>> {
        self.inner.screenshot().instrument(self.span.clone()).await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().instrument(self.span.clone()).await
    }
}
