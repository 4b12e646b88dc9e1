//! Working inside a lab namespace from the harness process.
//!
//! A network namespace is a property of a *thread*, and a socket stays in the namespace it was
//! created in whatever thread uses it later. So the harness opens a socket in a peer's
//! namespace on a short-lived thread that has joined it (`setns(2)`), and then uses the socket
//! from its own runtime. A fresh thread every time: a pooled thread (tokio's blocking pool)
//! would carry the namespace into unrelated work.
//!
//! webrtc-rs binds its sockets on its driver task, so a bot in the lab gets a
//! [`webrtc::runtime::Runtime`] whose tasks all run on one thread inside the namespace
//! ([`NsRuntime`]).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use webrtc::runtime::{AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket};

/// A named network namespace (`/run/netns/NAME`), held open.
pub struct Netns {
    name: String,
    fd: Arc<OwnedFd>,
    runtime: OnceLock<Arc<NsRuntime>>,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netns").field("name", &self.name).finish()
    }
}

impl Netns {
    /// Opens `/run/netns/NAME`.
    pub fn open(name: &str) -> std::io::Result<Self> {
        let file = std::fs::File::open(format!("/run/netns/{name}"))?;
        Ok(Self {
            name: name.to_string(),
            fd: Arc::new(OwnedFd::from(file)),
            runtime: OnceLock::new(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread that has joined this namespace, and waits for it.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let fd = self.fd.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("rtch-setns".into())
            .spawn(move || {
                let r = nix::sched::setns(&*fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .and_then(|_| f());
                let _ = tx.send(r);
            })?;
        rx.await
            .map_err(|_| std::io::Error::other("namespace thread ended without an answer"))?
    }

    /// A TCP listener bound inside the namespace, served from the caller's runtime.
    pub async fn bind_tcp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let l = self
            .run(move || {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await?;
        tokio::net::TcpListener::from_std(l)
    }

    /// A TCP connection made from inside the namespace.
    pub async fn connect_tcp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let s = self
            .run(move || {
                let s =
                    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await?;
        tokio::net::TcpStream::from_std(s)
    }

    /// The webrtc-rs runtime for peers in this namespace (started on first use).
    pub fn webrtc_runtime(&self) -> std::io::Result<Arc<dyn webrtc::runtime::Runtime>> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(NsRuntime::start(&self.name, self.fd.clone())?);
        Ok(self.runtime.get_or_init(|| rt).clone())
    }
}

/// Forwards TCP connections made to `listener` (in one namespace) to `target`, connected
/// from inside `ns`; for a WebDriver server that listens on a lab namespace's loopback. Ends
/// when the returned task is aborted.
pub fn forward_into(
    listener: tokio::net::TcpListener,
    ns: Arc<Netns>,
    target: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let ns = ns.clone();
            tokio::spawn(async move {
                match ns.connect_tcp(target).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(e) => tracing::debug!("forward into {} {target}: {e}", ns.name()),
                }
            });
        }
    })
}

/// A single-threaded tokio runtime on a thread inside a namespace, for webrtc-rs: every task
/// it spawns (the peer connection's driver binds the ICE sockets) runs there. Stops when
/// dropped.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    inner: webrtc::runtime::TokioRuntime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl fmt::Debug for NsRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NsRuntime")
    }
}

impl NsRuntime {
    fn start(name: &str, fd: Arc<OwnedFd>) -> std::io::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("rtch-{}", name.rsplit('-').next().unwrap_or("ns")))
            .spawn(move || {
                let rt = nix::sched::setns(&*fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .and_then(|_| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                    });
                match rt {
                    Ok(rt) => {
                        let _ = handle_tx.send(Ok(rt.handle().clone()));
                        let _ = rt.block_on(stop_rx);
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                    }
                }
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("namespace runtime thread died"))??;
        Ok(Self {
            handle,
            inner: webrtc::runtime::TokioRuntime,
            stop: Some(stop),
        })
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

struct NsJoinHandle(tokio::task::JoinHandle<()>);

impl webrtc::runtime::JoinHandle for NsJoinHandle {
    fn detach(&self) {}

    fn abort(&self) {
        self.0.abort();
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl webrtc::runtime::Runtime for NsRuntime {
    fn spawn(
        &self,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn webrtc::runtime::JoinHandle> {
        Box::new(NsJoinHandle(self.handle.spawn(future)))
    }

    fn spawn_reactor(
        &self,
        _reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn webrtc::runtime::JoinHandle> {
        Box::new(NsJoinHandle(self.handle.spawn(future)))
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        let _guard = self.handle.enter();
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        let _guard = self.handle.enter();
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, std::io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()> {
        let _guard = self.handle.enter();
        self.inner.sleep(duration)
    }

    fn interval(&self, period: std::time::Duration) -> Box<dyn AsyncInterval> {
        let _guard = self.handle.enter();
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn name(&self) -> &'static str {
        "tokio (lab namespace)"
    }
}
