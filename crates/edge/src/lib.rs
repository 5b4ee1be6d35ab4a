//! Rampart's edge gateway: the secure entry point to a cluster.
//!
//! What it does:
//! - listens on TCP addresses in `http` or `tcp` mode ([`config::Mode`]);
//! - terminates TLS (rustls with aws-lc-rs, several certificates chosen by SNI, ALPN
//!   `h2`/`http/1.1`, TLS 1.2 minimum or 1.3 only, rotating session-ticket keys; the
//!   session driven by [`tls_server`]) and serves HTTP/1.1 with its own engine
//!   ([`h1`]) and HTTP/2 with the `h2` crate ([`h2`]);
//! - routes HTTP requests by host (exact, wildcard), path prefix, method and headers to
//!   backends, or redirects them; rewrites `X-Forwarded-*`/`Forwarded`; edits headers;
//! - passes TLS through untouched by SNI (read from the ClientHello) or by port;
//! - balances over servers (round robin, least connections, power of two choices,
//!   consistent hash), with active health checks, passive ejection, retries of
//!   requests that could not be sent (connect failures), pooled keep-alive connections,
//!   optional TLS and PROXY protocol v2 towards servers, and PROXY v2 accepted from a
//!   trusted balancer in front;
//! - reloads its config on demand ([`Gateway::reload`]: SIGHUP and file changes in
//!   [`run`]): the new config is validated and made live first, an invalid one is
//!   reported and the old one keeps serving, in-flight requests finish, listeners stay
//!   open; SIGTERM drains in-flight requests up to a deadline;
//! - serves `/metrics`, `/healthz` and `/config` on a separate admin listener.
//!
//! Safe defaults: every timeout is set (connect 5 s, client header 10 s, TLS handshake
//! 10 s, HTTP/2 idle 60 s, server response 60 s, TCP idle 1 h, drain 30 s), header sizes
//! and counts are capped, connections per listener are capped, SNI with no matching
//! certificate and no default is refused, a backend with no available server answers
//! 503, and error responses carry no internal details.
//!
//! Extension points for connection filtering and rate limiting are in [`hooks`].
//!
//! What it does not do: HTTP/3, WebSocket/`Upgrade` tunnelling over terminated HTTP
//! (use a TCP route), caching, HTTP/2 to backends. [`config`] is pure (no I/O); the
//! other modules do the I/O.

pub mod abuse;
pub mod admin;
pub mod config;
pub mod demo;
pub mod forwarded;
pub mod h1;
pub mod h2;
mod health;
pub mod hooks;
pub mod io;
pub mod lb;
mod listener;
pub mod metrics;
pub mod protect;
pub mod proxy;
pub mod proxy_protocol;
pub mod route;
pub mod runtime;
pub mod sni;
pub mod tls_server;
pub mod upstream;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rampart_resources::{Diagnostic, Diagnostics, Source};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, watch};

use crate::config::EdgeConfig;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::runtime::{Carry, Runtime};

/// Where the gateway's config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A YAML or JSON file holding one `EdgeGateway`; reloads re-read it.
    File(PathBuf),
    /// A config text with a name for errors (embedded defaults, generated configs).
    Text {
        /// Shown in errors.
        name: String,
        /// YAML or JSON.
        text: String,
    },
}

impl ConfigSource {
    fn read(&self) -> Result<Source, Diagnostics> {
        match self {
            ConfigSource::File(path) => {
                let arg = path.display().to_string();
                let mut sources = rampart_resources::read_sources(&[arg])?;
                sources.pop().ok_or_else(|| {
                    Diagnostic::error(format!("{}: not a file", path.display())).into()
                })
            }
            ConfigSource::Text { name, text } => Ok(Source::from_text(name, text.clone())),
        }
    }
}

/// Loads and validates a config without starting anything (`--check`).
pub fn check(source: &ConfigSource) -> Result<EdgeConfig, Diagnostics> {
    let src = source.read()?;
    config::load(std::slice::from_ref(&src))
}

/// Counts live client connections, for draining.
#[derive(Debug, Default)]
pub struct ConnTracker {
    count: AtomicUsize,
    zero: Notify,
}

/// State shared by every task of a gateway.
#[derive(Debug)]
pub struct Shared {
    /// The live config.
    pub current: ArcSwap<Runtime>,
    /// Counters.
    pub metrics: Metrics,
    /// Filters (the protection layer first, then the caller's).
    pub hooks: Hooks,
    /// Connection filtering, limits and bans (`spec.protection`).
    pub protection: Arc<protect::Protection>,
    /// Live connections.
    pub connections: ConnTrackerHandle,
    /// Turns true when listeners must close.
    pub stop_accepting: watch::Sender<bool>,
    /// Turns true when connections must finish their requests and close.
    pub shutdown: watch::Sender<bool>,
    /// Set while draining (`/healthz` answers 503).
    pub draining: AtomicBool,
    /// Budget for log lines about refused clients.
    pub rejection_log: abuse::LogLimiter,
    revision: AtomicU64,
    carry: Carry,
    reload_lock: Mutex<()>,
    source: ConfigSource,
    /// Listener name to (configured address, bound address, stop signal).
    sockets: std::sync::Mutex<HashMap<String, BoundListener>>,
    /// The data-path threads, one single-threaded runtime each.
    workers: Vec<tokio::runtime::Handle>,
}

#[derive(Debug)]
struct BoundListener {
    configured: SocketAddr,
    bound: SocketAddr,
    stop: Option<watch::Sender<bool>>,
}

/// The connection counter plus a way to enter it.
#[derive(Debug, Default)]
pub struct ConnTrackerHandle {
    inner: Arc<ConnTracker>,
}

/// Held by each connection task (the counter's guard).
#[derive(Debug)]
pub struct Entered(Arc<ConnTracker>);

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

impl ConnTrackerHandle {
    /// Counts one more connection until the guard drops.
    pub fn enter(&self) -> Entered {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        Entered(self.inner.clone())
    }

    /// Live connections.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    /// Waits until no connection is left.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.zero.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What went wrong starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid or could not be made live.
    #[error("invalid configuration")]
    Invalid(#[from] Diagnostics),
    /// The worker threads could not be started.
    #[error("cannot start worker threads: {source}")]
    Workers {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The key of the admin listener in [`Gateway::bound_addresses`].
pub const ADMIN: &str = "admin";

/// A running gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

fn digest(text: &str) -> String {
    let fp = rampart_tls::Fingerprint::of(text.as_bytes());
    fp.0.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gateway {
    /// Loads the config, makes it live, binds every listener and the admin listener, and
    /// starts serving in the background (on the current tokio runtime).
    pub async fn start(source: ConfigSource, hooks: Hooks) -> Result<Gateway, StartError> {
        Self::start_with(source, hooks, 0).await
    }

    /// [`Gateway::start`] with `workers` data-path threads (0: one per CPU).
    ///
    /// The data path is thread-per-core: each worker thread runs its own
    /// single-threaded runtime and accepts on its own `SO_REUSEPORT` socket of every
    /// listener, so a connection, its HTTP/2 streams and its server connections stay on
    /// one thread (no work stealing, no cross-thread wake-ups), as HAProxy's threads
    /// and nginx's workers do. Admin, health checks and reloads run on the caller's
    /// runtime.
    pub async fn start_with(
        source: ConfigSource,
        hooks: Hooks,
        workers: usize,
    ) -> Result<Gateway, StartError> {
        let src = source.read()?;
        let config = config::load(std::slice::from_ref(&src))?;
        let carry = Carry::default();
        let protection = protect::Protection::new(&config);
        let hooks = protect::install(hooks, protection.clone());
        let workers = spawn_workers(workers).map_err(|source| StartError::Workers { source })?;
        let metrics = Metrics::new(workers.len());
        let rt = runtime::build(
            config,
            digest(&src.text),
            1,
            None,
            &metrics,
            &carry,
            workers.len(),
        )
        .await?;
        let (stop_accepting, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(rt),
            metrics,
            hooks,
            protection,
            connections: ConnTrackerHandle::default(),
            stop_accepting,
            shutdown,
            draining: AtomicBool::new(false),
            rejection_log: abuse::LogLimiter::default(),
            revision: AtomicU64::new(1),
            carry,
            reload_lock: Mutex::new(()),
            source,
            sockets: std::sync::Mutex::new(HashMap::new()),
            workers,
        });
        let gw = Gateway { shared };
        let rt = gw.shared.current.load_full();
        let sockets = gw.bind_new(&rt)?;
        gw.activate(&rt, sockets);
        if let Some(admin) = rt.config.admin {
            let l = TcpListener::bind(admin)
                .await
                .map_err(|source| StartError::Bind {
                    address: admin,
                    source,
                })?;
            let bound = l.local_addr().unwrap_or(admin);
            gw.lock_sockets().insert(
                ADMIN.to_owned(),
                BoundListener {
                    configured: admin,
                    bound,
                    stop: None,
                },
            );
            tokio::spawn(admin::serve(gw.shared.clone(), l));
        }
        start_background(&rt);
        tokio::spawn(protect::sweeper(Arc::downgrade(&gw.shared)));
        Ok(gw)
    }

    fn lock_sockets(&self) -> std::sync::MutexGuard<'_, HashMap<String, BoundListener>> {
        self.shared
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Binds the listeners of `rt` that are not bound yet (new names, or names whose
    /// address changed). The sockets start accepting in [`Self::activate`], once the
    /// config is live.
    fn bind_new(
        &self,
        rt: &Runtime,
    ) -> Result<Vec<(String, Vec<std::net::TcpListener>)>, StartError> {
        let mut out = Vec::new();
        for l in &rt.config.listeners {
            if let Some(b) = self.lock_sockets().get(&l.name)
                && b.configured == l.address
            {
                continue;
            }
            let listeners =
                bind(l.address, self.shared.workers.len()).map_err(|source| StartError::Bind {
                    address: l.address,
                    source,
                })?;
            out.push((l.name.clone(), listeners));
        }
        Ok(out)
    }

    /// Starts accepting on freshly bound sockets (one per worker); stops old sockets of
    /// the same name.
    fn activate(&self, rt: &Runtime, sockets: Vec<(String, Vec<std::net::TcpListener>)>) {
        for (name, listeners) in sockets {
            let Some(l) = rt.config.listeners.iter().find(|l| l.name == name) else {
                continue;
            };
            let bound = listeners
                .first()
                .and_then(|s| s.local_addr().ok())
                .unwrap_or(l.address);
            let (stop, stopped) = watch::channel(false);
            let old = self.lock_sockets().insert(
                name.clone(),
                BoundListener {
                    configured: l.address,
                    bound,
                    stop: Some(stop),
                },
            );
            if let Some(BoundListener { stop: Some(s), .. }) = old {
                let _ = s.send(true);
            }
            let key: Arc<str> = Arc::from(name.as_str());
            for (socket, worker) in listeners.into_iter().zip(self.shared.workers.iter()) {
                let (shared, key, stopped) = (self.shared.clone(), key.clone(), stopped.clone());
                worker.spawn(async move {
                    match TcpListener::from_std(socket) {
                        Ok(l) => listener::accept_loop(shared, l, key, stopped).await,
                        Err(e) => {
                            tracing::error!(error = %e, listener = %key, "cannot register listener")
                        }
                    }
                });
            }
        }
    }

    /// The bound address of each listener by name (useful with port 0), and of the
    /// admin listener under [`ADMIN`].
    pub fn bound_addresses(&self) -> HashMap<String, SocketAddr> {
        self.lock_sockets()
            .iter()
            .map(|(name, b)| (name.clone(), b.bound))
            .collect()
    }

    /// The running config revision.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.current.load_full()
    }

    /// Shared state (metrics, connection count).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Re-reads and validates the config, makes it live and swaps it in. On any error the
    /// running config stays. Returns the new revision.
    pub async fn reload(&self) -> Result<u64, Diagnostics> {
        let _guard = self.shared.reload_lock.lock().await;
        let result = self.reload_locked().await;
        match &result {
            Ok(rev) => {
                self.shared
                    .metrics
                    .reloads_ok
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(revision = rev, "configuration reloaded");
            }
            Err(d) => {
                self.shared
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("configuration rejected, the running one stays:\n{d}");
            }
        }
        result
    }

    async fn reload_locked(&self) -> Result<u64, Diagnostics> {
        let src = self.shared.source.read()?;
        let config = config::load(std::slice::from_ref(&src))?;
        let old = self.shared.current.load_full();
        if config.admin != old.config.admin {
            return Err(Diagnostic::error(
                "spec.admin.address cannot change on reload (restart to move the admin listener)",
            )
            .into());
        }
        let revision = self.shared.revision.fetch_add(1, Ordering::Relaxed) + 1;
        let rt = runtime::build(
            config,
            digest(&src.text),
            revision,
            Some(&old),
            &self.shared.metrics,
            &self.shared.carry,
            self.shared.workers.len(),
        )
        .await?;
        // New listeners are bound before the swap; a bind failure rejects the config.
        let sockets = match self.bind_new(&rt) {
            Ok(s) => s,
            Err(e) => return Err(Diagnostic::error(e.to_string()).into()),
        };
        let rt = Arc::new(rt);
        self.shared.protection.apply(&rt.config);
        self.shared.current.store(rt.clone());
        self.activate(&rt, sockets);
        old.retire();
        start_background(&rt);
        // Listeners that left the config stop accepting.
        let keep: Vec<&str> = rt
            .config
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        let mut sockets = self.lock_sockets();
        let removed: Vec<String> = sockets
            .keys()
            .filter(|n| !keep.contains(&n.as_str()) && n.as_str() != ADMIN)
            .cloned()
            .collect();
        for name in removed {
            if let Some(BoundListener { stop: Some(s), .. }) = sockets.remove(&name) {
                let _ = s.send(true);
            }
        }
        drop(sockets);
        Ok(revision)
    }

    /// Stops accepting, asks every connection to finish its in-flight requests, and
    /// waits for them up to the configured drain deadline. Returns the number of
    /// connections still open at the deadline.
    pub async fn drain(&self) -> usize {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.shared.stop_accepting.send(true);
        let _ = self.shared.shutdown.send(true);
        let deadline = self.shared.current.load().config.timeouts.drain;
        let _ = tokio::time::timeout(deadline, self.shared.connections.wait_idle()).await;
        self.shared.current.load().retire();
        self.shared.connections.count()
    }

    /// Files whose change triggers a reload: the config file and the certificate and
    /// CA files it names.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.shared.current.load().watched_files.clone();
        if let ConfigSource::File(p) = &self.shared.source {
            files.push(p.clone());
        }
        files
    }
}

/// Binds `n` sockets to `addr` with `SO_REUSEPORT` (the kernel spreads connections
/// over them); with port 0 the first picks the port and the others join it.
fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n.max(1) {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(4096)?;
        let l: std::net::TcpListener = socket.into();
        at = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Starts `n` worker threads (0: one per CPU), each driving a single-threaded runtime
/// for the life of the process.
fn spawn_workers(n: usize) -> std::io::Result<Vec<tokio::runtime::Handle>> {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    } else {
        n
    };
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(rt.handle().clone());
        // Keeps the timer wheel's next wake-up near. Tokio's timer wakes its own driver
        // (an eventfd write) whenever a timer is registered earlier than the driver's
        // next planned wake-up; every request registers timers (header and server
        // response deadlines), and with no near timer that cost a syscall per request.
        // A 50 ms tick costs 20 wake-ups a second instead.
        rt.spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        });
        std::thread::Builder::new()
            .name(format!("rampart-edge-{i}"))
            .spawn(move || {
                worker::set_index(i + 1);
                rt.block_on(std::future::pending::<()>())
            })?;
    }
    Ok(handles)
}

fn start_background(rt: &Arc<Runtime>) {
    health::spawn_checks(rt);
    // Idle server connections: drop expired ones and those the server closed.
    let pools: Vec<_> = rt
        .backends
        .iter()
        .flat_map(|b| b.pools.iter().cloned())
        .collect();
    if !pools.is_empty() {
        let mut stop = rt.stopped();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.changed() => return,
                }
                let now = io::now_ms();
                for p in &pools {
                    p.sweep(now);
                }
            }
        });
    }
    for l in &rt.listeners {
        let Some(tls) = &l.tls else { continue };
        let Some(ticketer) = tls.ticketer.clone() else {
            continue;
        };
        let every = tls.rotation;
        let mut stop = rt.stopped();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = ticketer.rotate() {
                    tracing::error!(error = %e, "ticket key rotation failed");
                }
            }
        });
    }
}

/// A file's identity for change detection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64)>);

fn stamp(path: &Path) -> Stamp {
    Stamp(
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len()))),
    )
}

/// How [`run`] behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How often watched files are checked (0 turns watching off).
    pub watch_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            watch_interval: Duration::from_secs(1),
        }
    }
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP and when watched files change,
/// then drains. Returns the number of connections cut at the drain deadline.
pub async fn run(gateway: Gateway, options: RunOptions) -> std::io::Result<usize> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let watching = !options.watch_interval.is_zero();
    let mut stamps: HashMap<PathBuf, Stamp> = gateway
        .watched_files()
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect();
    let mut tick = tokio::time::interval(if watching {
        options.watch_interval
    } else {
        Duration::from_secs(3600)
    });
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = gateway.reload().await;
                stamps = gateway.watched_files().into_iter().map(|p| { let s = stamp(&p); (p, s) }).collect();
            }
            _ = tick.tick(), if watching => {
                let changed = stamps.iter().any(|(p, s)| stamp(p) != *s);
                if changed {
                    tracing::info!("configuration or certificate files changed: reloading");
                    let _ = gateway.reload().await;
                    stamps = gateway.watched_files().into_iter().map(|p| { let s = stamp(&p); (p, s) }).collect();
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("draining");
    let left = gateway.drain().await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain deadline reached; closing the rest"
        );
    }
    Ok(left)
}
