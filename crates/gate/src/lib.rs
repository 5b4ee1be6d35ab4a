//! `rampart gate`: the access gateway in front of the Kubernetes API server.
//!
//! It accepts HTTPS from kubectl and other clients, authenticates their OIDC ID tokens
//! (Zitadel-compatible, several issuers, keys from each issuer's JWKS), requires MFA
//! evidence in `amr`, authorizes with Kubernetes RBAC exactly as the API server would,
//! writes every decision to a JSON-lines audit log, and forwards allowed requests to the
//! API server as the authenticated user through impersonation headers, with its own
//! client certificate or token.
//!
//! What it does:
//! - [`config`]: the `AccessGateway` resource;
//! - [`authn`]: token verification with cached, rate-limited key-set refreshes;
//! - [`proxy`]: the request path (authenticate, authorize, audit, forward; streaming
//!   bodies and protocol upgrades);
//! - [`audit`], [`status`], [`tls`]: the audit log, Kubernetes `Status` bodies, rustls
//!   configurations.
//!
//! What it does not do: token and RBAC semantics live in the pure crates
//! `rampart-oidc` and `rampart-authz`; it speaks HTTP/1.1 only to clients and to the
//! API server (kubectl falls back to it, and exec, attach and port-forward need it).
//!
//! The RBAC manifests and the listener's certificate are reloaded on SIGHUP; a reload
//! that fails keeps what is running.

pub mod audit;
pub mod authn;
pub mod config;
pub mod error;
pub mod proxy;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rampart_authz::{LoadedRbac, Rbac};
use rampart_resources::{Source, parse_sources, read_sources};
use rampart_tls::SniResolver;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use config::GateConfig;
pub use error::GateError;
pub use proxy::Proxy;

/// Reads an `AccessGateway` configuration file.
pub fn load_config(path: &str) -> Result<GateConfig, GateError> {
    let sources = read_sources(&[path])?;
    let (docs, errors) = parse_sources(&sources);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let base = Path::new(path).parent().unwrap_or(Path::new("."));
    Ok(config::from_documents(&docs, base)?)
}

/// Loads the RBAC manifests, with the API server's bootstrap policy when `bootstrap`
/// is set (an object of the same kind and name in the manifests replaces the bootstrap
/// one, as a `kubectl get -o yaml` dump of a cluster has them).
pub fn load_rbac(files: &[String], bootstrap: bool) -> Result<LoadedRbac, GateError> {
    let sources = read_sources(files)?;
    let (mut docs, errors) = parse_sources(&sources);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if bootstrap {
        let (boot, _) = rampart_resources::parse_source(&Source::from_text(
            rampart_authz::bootstrap::BOOTSTRAP_SOURCE,
            rampart_authz::bootstrap::BOOTSTRAP_POLICY,
        ));
        let defined: std::collections::HashSet<(String, Option<String>)> = docs
            .iter()
            .map(|d| (d.kind.clone(), d.name().map(str::to_owned)))
            .collect();
        let mut all: Vec<_> = boot
            .into_iter()
            .filter(|d| !defined.contains(&(d.kind.clone(), d.name().map(str::to_owned))))
            .collect();
        all.append(&mut docs);
        docs = all;
    }
    Ok(rampart_authz::load(&docs)?)
}

/// [`load_rbac`], logging the warnings (bindings to missing roles) and counts.
fn load_rbac_logged(files: &[String], bootstrap: bool) -> Result<Rbac, GateError> {
    let loaded = load_rbac(files, bootstrap)?;
    for w in loaded.warnings.iter() {
        tracing::warn!("{w}");
    }
    let [roles, cluster_roles, role_bindings, cluster_role_bindings] = loaded.counts;
    tracing::info!(
        roles,
        cluster_roles,
        role_bindings,
        cluster_role_bindings,
        "RBAC loaded"
    );
    Ok(loaded.rbac)
}

/// A gateway ready to serve: listener bound, policy loaded.
pub struct Gate {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    resolver: Arc<SniResolver>,
    config: GateConfig,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Validates everything and binds the listener. Nothing is served yet.
    pub async fn bind(config: GateConfig) -> Result<Self, GateError> {
        let rbac = load_rbac_logged(&config.rbac_files, config.rbac_bootstrap_policy)?;
        let resolver = SniResolver::new(tls::cert_store(
            &config.tls.cert_file,
            &config.tls.key_file,
        )?);
        let server = tls::server_config(Arc::clone(&resolver))?;
        let authenticator = authn::Authenticator::new(&config.issuers)?;
        let audit = audit::AuditLog::open(&config.audit_path)?;
        let proxy = Proxy::new(&config, authenticator, rbac, audit)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| GateError::io(format!("listen on {}", config.listen), e))?;
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(server),
            resolver,
            proxy: Arc::new(proxy),
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, GateError> {
        self.listener
            .local_addr()
            .map_err(|e| GateError::io("listener address", e))
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<(), GateError> {
        self.proxy.authenticator().start().await;
        spawn_reloader(
            Arc::clone(&self.proxy),
            Arc::clone(&self.resolver),
            self.config.clone(),
        );
        let limits = self.config.limits;
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        tracing::info!(listen = %self.config.listen, upstream = %self.config.upstream.url, "gateway serving");
        loop {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .map_err(|_| GateError::io("connection limit", std::io::Error::other("closed")))?;
            let (stream, peer) = match self.listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let proxy = Arc::clone(&self.proxy);
            tokio::spawn(async move {
                let _permit = permit;
                let tls =
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .max_buf_size(limits.max_header_bytes.max(8192))
                    .keep_alive(true);
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}

#[cfg(unix)]
fn spawn_reloader(proxy: Arc<Proxy>, resolver: Arc<SniResolver>, config: GateConfig) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reloads are off");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match load_rbac_logged(&config.rbac_files, config.rbac_bootstrap_policy) {
                Ok(rbac) => {
                    proxy.set_rbac(rbac);
                    tracing::info!("RBAC reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "RBAC reload failed; keeping the running policy");
                }
            }
            match tls::cert_store(&config.tls.cert_file, &config.tls.key_file) {
                Ok(store) => {
                    resolver.replace(store);
                    tracing::info!("listener certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload failed; keeping the running one");
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_reloader(_proxy: Arc<Proxy>, _resolver: Arc<SniResolver>, _config: GateConfig) {}
