//! A webrtc-rs [`Runtime`] that runs every task it spawns in a tracing span, so that a peer
//! connection's library lines (its driver loop, TCP transports) carry the peer's span.
//!
//! webrtc-rs 0.21 spawns a connection's tasks only through the builder's runtime
//! (`Runtime::spawn`, or `spawn_reactor` with a dedicated reactor pool); everything else
//! (sockets, timers, DNS) is delegated unchanged.
//!
//! Because every task of a connection passes through here, the same wrapper carries the bot's
//! [`KillSwitch`]: a `kill` step aborts those tasks at their next await point, which drops
//! the driver loop and its sockets without `close()` (no DTLS close_notify, no SCTP ABORT),
//! as a killed process would.

use futures::future::{AbortHandle, Abortable};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tracing::{Instrument, Span};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Aborts every task spawned through the runtimes that share it; clones share it.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    state: Arc<Mutex<KillState>>,
}

#[derive(Debug, Default)]
struct KillState {
    killed: bool,
    handles: Vec<AbortHandle>,
}

impl KillSwitch {
    /// Aborts every task registered so far, and every task registered from now on.
    pub fn kill(&self) {
        let handles = match self.state.lock() {
            Ok(mut s) => {
                s.killed = true;
                std::mem::take(&mut s.handles)
            }
            Err(_) => return,
        };
        for h in handles {
            h.abort();
        }
    }

    /// Whether [`KillSwitch::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.state.lock().map(|s| s.killed).unwrap_or(true)
    }

    /// `future`, made abortable by this switch.
    fn guard(&self, future: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
        let (handle, registration) = AbortHandle::new_pair();
        match self.state.lock() {
            Ok(mut s) if !s.killed => {
                s.handles.retain(|h| !h.is_aborted());
                s.handles.push(handle);
            }
            _ => handle.abort(),
        }
        Box::pin(async move {
            let _ = Abortable::new(future, registration).await;
        })
    }
}

/// `inner`, with every spawned task instrumented with `span` and abortable by `kill`.
#[derive(Debug)]
pub struct SpanRuntime {
    inner: Arc<dyn Runtime>,
    span: Span,
    kill: KillSwitch,
}

impl SpanRuntime {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Runtime>, span: Span) -> Self {
        Self {
            inner,
            span,
            kill: KillSwitch::default(),
        }
    }

    /// Makes every task spawned from now on abortable by `kill`.
    pub fn with_kill_switch(mut self, kill: KillSwitch) -> Self {
        self.kill = kill;
        self
    }
}

impl Runtime for SpanRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        let future = self.kill.guard(future);
        self.inner
            .spawn(Box::pin(future.instrument(self.span.clone())))
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: BoxFuture<'static, ()>,
    ) -> Box<dyn JoinHandle> {
        let future = self.kill.guard(future);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_killed_switch_aborts_running_and_later_tasks() {
        let kill = KillSwitch::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let running = {
            let tx = tx.clone();
            tokio::spawn(kill.guard(Box::pin(async move {
                let _ = tx.send(1);
                std::future::pending::<()>().await;
            })))
        };
        assert_eq!(rx.recv().await, Some(1));
        kill.kill();
        // The running task ends (aborted at its await point) instead of pending forever.
        tokio::time::timeout(std::time::Duration::from_secs(5), running)
            .await
            .expect("aborted task ended")
            .expect("no panic");
        assert!(kill.is_killed());
        // A task guarded after the kill never runs its body.
        let later = tokio::spawn(kill.guard(Box::pin(async move {
            let _ = tx.send(2);
        })));
        later.await.expect("no panic");
        assert!(rx.try_recv().is_err());
    }
}
