//! A webrtc-rs [`Runtime`] that runs every task it spawns in a tracing span, so that a peer
//! connection's library lines (its driver loop, TCP transports) carry the peer's span.
//!
//! webrtc-rs 0.21 spawns a connection's tasks only through the builder's runtime
//! (`Runtime::spawn`, or `spawn_reactor` with a dedicated reactor pool); everything else
//! (sockets, timers, DNS) is delegated unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tracing::{Instrument, Span};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `inner`, with every spawned task instrumented with `span`.
#[derive(Debug)]
pub struct SpanRuntime {
    inner: Arc<dyn Runtime>,
    span: Span,
}

impl SpanRuntime {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Runtime>, span: Span) -> Self {
        Self { inner, span }
    }
}

impl Runtime for SpanRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner
            .spawn(Box::pin(future.instrument(self.span.clone())))
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: BoxFuture<'static, ()>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(
            reactor_pool_size,
            Box::pin(future.instrument(self.span.clone())),
        )
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: std::net::SocketAddr,
    ) -> BoxFuture<'a, std::io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, std::io::Result<Vec<std::net::SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: std::time::Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
