//! A config made live: certificates loaded, server addresses resolved, pools and
//! balancers built. Building can fail (a missing certificate file, an unresolvable
//! server name); such a config is rejected like an invalid one and the running one
//! keeps serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_resources::{Diagnostic, Diagnostics, Severity};
use rampart_tls::{CertEntry, CertStore, Identity, RotatingTicketer, ServerSettings, SniResolver};

use crate::config::{Backend, CertKind, EdgeConfig, ServerAddress};
use crate::lb::{Balancer, ServerState};
use crate::metrics::{ListenerMetrics, Metrics, RouteMetrics};
use crate::upstream::{Connector, ServerPool, upstream_tls};

/// How long an idle server connection is kept.
pub const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// A live listener config.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// Counters.
    pub metrics: Arc<ListenerMetrics>,
    /// Per HTTP route, same order as the config.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    /// TLS, when terminating.
    pub tls: Option<TlsRuntime>,
    /// `https` or `http`.
    pub scheme: &'static str,
}

/// Live TLS of a listener.
pub struct TlsRuntime {
    /// The server configuration handshakes use.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate set.
    pub resolver: Arc<SniResolver>,
    /// Ticket keys (kept across reloads).
    pub ticketer: Option<Arc<RotatingTicketer>>,
    /// Ticket key rotation interval.
    pub rotation: Duration,
}

impl std::fmt::Debug for TlsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRuntime")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

/// A live backend.
#[derive(Debug)]
pub struct BackendRuntime {
    /// Chooses servers.
    pub balancer: Balancer,
    /// Resolved server addresses, same order as the config.
    pub addrs: Vec<SocketAddr>,
    /// Opens connections.
    pub connector: Connector,
    /// Idle connections, per server (same order as `addrs`).
    pub pools: Vec<Arc<ServerPool>>,
}

/// Everything a request needs, for one config revision.
#[derive(Debug)]
pub struct Runtime {
    /// Increases with each applied config.
    pub revision: u64,
    /// SHA-256 of the config text, hex.
    pub digest: String,
    /// The validated config.
    pub config: EdgeConfig,
    /// Same order as `config.listeners`.
    pub listeners: Vec<ListenerRuntime>,
    /// Listener name to index (names identify listeners across reloads).
    pub by_name: HashMap<Arc<str>, usize>,
    /// Same order as `config.backends`.
    pub backends: Vec<BackendRuntime>,
    /// Files whose change triggers a reload.
    pub watched_files: Vec<PathBuf>,
    /// Fingerprints of the certificates, per listener: (listener, names, fingerprint).
    pub certificates: Vec<(String, Vec<String>, rampart_tls::Fingerprint, bool)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Runtime {
    /// Signals this revision's background tasks (health checks, ticket rotation) to stop.
    pub fn retire(&self) {
        let _ = self.stop.send(true);
    }

    /// A receiver that turns true when the revision is retired.
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Carried from one revision to the next.
#[derive(Debug, Default)]
pub struct Carry {
    /// Generated certificates by their names, so fingerprints survive reloads.
    pub self_signed: Mutex<HashMap<Vec<String>, Identity>>,
}

fn build_error(config: &EdgeConfig, path: String, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        location: config.location.clone(),
        object: Some(format!("EdgeGateway {}", config.name)),
        path,
        message,
    }
}

/// Makes `config` live. `previous` lends ticket keys and server health.
pub async fn build(
    config: EdgeConfig,
    digest: String,
    revision: u64,
    previous: Option<&Runtime>,
    metrics: &Metrics,
    carry: &Carry,
    workers: usize,
) -> Result<Runtime, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut listeners = Vec::new();
    let mut watched = Vec::new();
    let mut certificates = Vec::new();
    for (li, l) in config.listeners.iter().enumerate() {
        let route_metrics = l
            .http_routes
            .iter()
            .map(|r| metrics.route(&l.name, &r.name))
            .collect();
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let mut entries = Vec::new();
                for (ci, c) in t.certificates.iter().enumerate() {
                    let path = format!("spec.listeners[{li}].tls.certificates[{ci}]");
                    let identity = match &c.kind {
                        CertKind::Files { cert, key } => {
                            watched.push(cert.clone());
                            watched.push(key.clone());
                            match Identity::load(cert, key) {
                                Ok(id) => id,
                                Err(e) => {
                                    errors.push(build_error(&config, path, e.to_string()));
                                    continue;
                                }
                            }
                        }
                        CertKind::SelfSigned(names) => {
                            let mut cache = carry
                                .self_signed
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            match cache.get(names) {
                                Some(id) => id.clone(),
                                None => match rampart_tls::self_signed(names) {
                                    Ok(ss) => {
                                        cache.insert(names.clone(), ss.identity.clone());
                                        ss.identity
                                    }
                                    Err(e) => {
                                        errors.push(build_error(&config, path, e.to_string()));
                                        continue;
                                    }
                                },
                            }
                        }
                    };
                    certificates.push((
                        l.name.clone(),
                        if c.server_names.is_empty() {
                            identity.names().to_vec()
                        } else {
                            c.server_names.clone()
                        },
                        identity.fingerprint(),
                        matches!(c.kind, CertKind::SelfSigned(_)),
                    ));
                    entries.push(CertEntry {
                        identity,
                        names: c.server_names.clone(),
                    });
                }
                if entries.len() != t.certificates.len() {
                    continue;
                }
                let store = match CertStore::new(&entries, t.default_certificate) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(build_error(
                            &config,
                            format!("spec.listeners[{li}].tls"),
                            e.to_string(),
                        ));
                        continue;
                    }
                };
                let ticketer = if t.session_tickets {
                    let old = previous.and_then(|p| {
                        let i = p.config.listeners.iter().position(|x| x.name == l.name)?;
                        p.listeners[i].tls.as_ref()?.ticketer.clone()
                    });
                    match old {
                        Some(t) => Some(t),
                        None => match RotatingTicketer::new(
                            t.ticket_key_rotation
                                .as_secs()
                                .clamp(1, u64::from(u32::MAX)) as u32,
                        ) {
                            Ok(t) => Some(Arc::new(t)),
                            Err(e) => {
                                errors.push(build_error(
                                    &config,
                                    format!("spec.listeners[{li}].tls"),
                                    e.to_string(),
                                ));
                                continue;
                            }
                        },
                    }
                } else {
                    None
                };
                let resolver = SniResolver::new(store);
                let settings = ServerSettings {
                    min_version: t.min_version,
                    alpn: t.alpn.clone(),
                    tickets: ticketer.clone(),
                    // One ticket per handshake: a client resumes one connection with
                    // it and gets a fresh one there (tickets are best used once, RFC
                    // 8446 C.4); a second ticket per handshake costs the server and
                    // every client that never resumes.
                    tls13_tickets: 1,
                    ..ServerSettings::default()
                };
                match rampart_tls::server_config(resolver.clone(), &settings) {
                    Ok(sc) => Some(TlsRuntime {
                        config: sc,
                        resolver,
                        ticketer,
                        rotation: t.ticket_key_rotation,
                    }),
                    Err(e) => {
                        errors.push(build_error(
                            &config,
                            format!("spec.listeners[{li}].tls"),
                            e.to_string(),
                        ));
                        continue;
                    }
                }
            }
        };
        listeners.push(ListenerRuntime {
            metrics: metrics.listener(&l.name),
            route_metrics,
            scheme: if l.tls.is_some() { "https" } else { "http" },
            tls,
        });
    }

    let mut backends = Vec::new();
    for (bi, b) in config.backends.iter().enumerate() {
        match build_backend(&config, bi, b, previous, workers).await {
            Ok(rt) => {
                if let Some(t) = &b.tls {
                    watched.push(t.ca_file.clone());
                }
                backends.push(rt);
            }
            Err(d) => errors.extend(d),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let by_name = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (Arc::from(l.name.as_str()), i))
        .collect();
    let (stop, _) = tokio::sync::watch::channel(false);
    Ok(Runtime {
        revision,
        digest,
        config,
        listeners,
        by_name,
        backends,
        watched_files: watched,
        certificates,
        stop,
    })
}

async fn build_backend(
    config: &EdgeConfig,
    bi: usize,
    b: &Backend,
    previous: Option<&Runtime>,
    workers: usize,
) -> Result<BackendRuntime, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut addrs = Vec::new();
    for (si, s) in b.servers.iter().enumerate() {
        match &s.address {
            ServerAddress::Socket(a) => addrs.push(*a),
            ServerAddress::Name { host, port } => {
                let resolved = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::lookup_host((host.as_str(), *port)),
                )
                .await;
                match resolved {
                    Ok(Ok(mut it)) => match it.next() {
                        Some(a) => addrs.push(a),
                        None => errors.push(build_error(
                            config,
                            format!("spec.backends[{bi}].servers[{si}].address"),
                            format!("{host} has no address"),
                        )),
                    },
                    Ok(Err(e)) => errors.push(build_error(
                        config,
                        format!("spec.backends[{bi}].servers[{si}].address"),
                        format!("cannot resolve {host}: {e}"),
                    )),
                    Err(_) => errors.push(build_error(
                        config,
                        format!("spec.backends[{bi}].servers[{si}].address"),
                        format!("resolving {host} timed out"),
                    )),
                }
            }
        }
    }
    let tls = match &b.tls {
        None => None,
        Some(t) => match upstream_tls(&t.ca_file, t.server_name.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(build_error(config, format!("spec.backends[{bi}].tls"), e));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    // Keep the health state of servers that stay.
    let old = previous.and_then(|p| {
        let i = p.config.backends.iter().position(|x| x.name == b.name)?;
        Some(&p.backends[i])
    });
    let servers: Vec<Arc<ServerState>> = b
        .servers
        .iter()
        .map(|s| {
            let label = s.address.to_string();
            old.and_then(|o| {
                o.balancer
                    .servers()
                    .iter()
                    .find(|x| x.label == label)
                    .cloned()
            })
            .unwrap_or_else(|| Arc::new(ServerState::new(label)))
        })
        .collect();
    let weights = b.servers.iter().map(|s| s.weight).collect();
    let connector = Connector {
        timeout: config.timeouts.connect,
        tls,
    };
    Ok(BackendRuntime {
        balancer: Balancer::new(b.balance, servers, weights, b.passive),
        pools: addrs
            .iter()
            .map(|_| {
                Arc::new(ServerPool::new(
                    b.max_idle_per_server,
                    UPSTREAM_IDLE,
                    workers,
                ))
            })
            .collect(),
        addrs,
        connector,
    })
}
