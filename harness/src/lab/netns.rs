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
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_inside(&self.fd, "rtch-setns".into(), move |joined| {
            let _ = tx.send(joined.and_then(|_| f()));
        })?;
        rx.await
            .map_err(|_| std::io::Error::other("namespace thread ended without an answer"))?
    }

    /// A command that starts `program` inside this namespace (`ip netns exec`); its
    /// children (a driver's browser) are inside too.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
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

/// Starts a thread that joins the namespace `fd` and then runs `f` with the outcome of joining.
fn spawn_inside(
    fd: &Arc<OwnedFd>,
    name: String,
    f: impl FnOnce(std::io::Result<()>) + Send + 'static,
) -> std::io::Result<()> {
    let fd = fd.clone();
    std::thread::Builder::new().name(name).spawn(move || {
        f(nix::sched::setns(&*fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(Into::into))
    })?;
    Ok(())
}

/// A TCP connection to `addr`, made inside `ns` when given, else from the caller's namespace.
pub async fn connect(
    ns: Option<&Netns>,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    match ns {
        Some(ns) => ns.connect_tcp(addr).await,
        None => tokio::net::TcpStream::connect(addr).await,
    }
}

/// Forwards TCP connections made to `listener` (in one namespace) to `target`, connected
/// from inside `ns`; for a WebDriver server that listens on a lab namespace's loopback.
/// Aborting the returned task ends the forward and every connection it carries.
pub fn forward_into(
    listener: tokio::net::TcpListener,
    ns: Arc<Netns>,
    target: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Owned here: aborting this task drops the set, which aborts every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (mut inbound, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("forward into {} {target}: accept: {e}", ns.name());
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            let ns = ns.clone();
            connections.spawn(async move {
                match ns.connect_tcp(target).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(e) => tracing::warn!("forward into {} {target}: {e}", ns.name()),
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
        let thread = format!("rtch-{}", name.rsplit('-').next().unwrap_or("ns"));
        spawn_inside(&fd, thread, move |joined| {
            let rt = joined.and_then(|_| {
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
        // The driver too: it binds the sockets.
        self.spawn(future)
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

    // Both run on the namespace's thread whoever polls them: a socket is made in the
    // namespace of the thread that makes it.
    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, std::io::Result<Arc<dyn AsyncTcpStream>>> {
        let task = self
            .handle
            .spawn(async move { webrtc::runtime::TokioRuntime.connect_tcp(remote_addr).await });
        Box::pin(async move { task.await.map_err(std::io::Error::other)? })
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let host = host.to_string();
        let task = self
            .handle
            .spawn(async move { webrtc::runtime::TokioRuntime.resolve_host(&host).await });
        Box::pin(async move { task.await.map_err(std::io::Error::other)? })
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
