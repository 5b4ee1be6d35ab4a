//! Active health checks: one task per server of each backend with a check, stopped
//! when the config revision that started it is retired.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::config::{HealthCheck, HealthCheckKind};
use crate::lb::ServerState;
use crate::runtime::Runtime;
use crate::upstream::Connector;

/// Starts the checks of `rt`.
pub(crate) fn spawn_checks(rt: &Arc<Runtime>) {
    for (bi, b) in rt.config.backends.iter().enumerate() {
        let Some(check) = &b.health_check else {
            continue;
        };
        let backend = &rt.backends[bi];
        for (si, state) in backend.balancer.servers().iter().enumerate() {
            let task = Check {
                backend: b.name.clone(),
                addr: backend.addrs[si],
                state: state.clone(),
                check: check.clone(),
                connector: backend.connector.clone(),
            };
            let mut stop = rt.stopped();
            tokio::spawn(async move {
                // Spread the first checks over the interval.
                let jitter =
                    rand::random::<u64>() % (task.check.interval.as_millis() as u64).max(1);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(jitter / 4)) => {}
                    _ = stop.changed() => return,
                }
                loop {
                    let ok = task.run_once().await;
                    task.observe(ok);
                    tokio::select! {
                        _ = tokio::time::sleep(task.check.interval) => {}
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }
}

struct Check {
    backend: String,
    addr: std::net::SocketAddr,
    state: Arc<ServerState>,
    check: HealthCheck,
    connector: Connector,
}

impl Check {
    async fn run_once(&self) -> bool {
        let fut = async {
            let io = self.connector.connect(self.addr, None).await.ok()?;
            match &self.check.kind {
                HealthCheckKind::Tcp => Some(true),
                HealthCheckKind::Http {
                    path,
                    host,
                    expect_status,
                } => {
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(io))
                            .await
                            .ok()?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let host = host.clone().unwrap_or_else(|| self.addr.to_string());
                    let req = http::Request::get(path.as_str())
                        .header(http::header::HOST, host)
                        .header(http::header::USER_AGENT, "rampart-edge-health-check")
                        .header(http::header::CONNECTION, "close")
                        .body(Empty::<Bytes>::new())
                        .ok()?;
                    let resp = sender.send_request(req).await.ok()?;
                    Some(expect_status.contains(&resp.status().as_u16()))
                }
            }
        };
        matches!(
            tokio::time::timeout(self.check.timeout, fut).await,
            Ok(Some(true))
        )
    }

    fn observe(&self, ok: bool) {
        let change = {
            let mut rf = self
                .state
                .checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rf.observe(ok, self.check.rise, self.check.fall)
        };
        if let Some(healthy) = change {
            self.state.set_healthy(healthy);
            if healthy {
                tracing::info!(backend = %self.backend, server = %self.addr, "server is healthy");
            } else {
                tracing::warn!(backend = %self.backend, server = %self.addr, "server is unhealthy");
            }
        }
    }
}
