//! The protection endpoints of the admin listener:
//!
//! - `GET /bans`: the bans in force (JSON);
//! - `POST /bans` with `{"cidr": "203.0.113.7", "duration": "1h", "reason": "..."}`
//!   (`Content-Type: application/json`): bans an address or prefix (an operator's ban:
//!   never displaced by automatic bans);
//! - `DELETE /bans/<address or prefix>`: lifts a ban;
//! - `GET /bans/export`: the bans as prefixes with seconds left, per family, for
//!   dropping them lower in the stack (nftables sets with timeouts);
//! - `GET /protection`: counters, tracked sources and the busiest ones.
//!
//! The admin listener has no authentication: bind it to loopback or a management
//! network. Changes require `Content-Type: application/json`, which a browser cannot
//! send across origins without a preflight, so a web page cannot ban or unban.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use rampart_model::net::Cidr;
use rampart_ratelimit::{Ban, Time};
use serde::Deserialize;

use super::{Protection, rfc3339};

/// Largest request body accepted.
const MAX_BODY: usize = 4096;

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// True for paths this module answers.
pub fn handles(path: &str) -> bool {
    path == "/bans" || path.starts_with("/bans/") || path == "/protection"
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    cidr: String,
    duration: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Parses an address (a single-address prefix) or a prefix without host bits.
fn parse_target(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    let c = crate::config::parse_cidr(s)?;
    Cidr::new(super::canonical(c.addr), c.prefix).map_err(|e| e.to_string())
}

fn ban_json(p: &Protection, cidr: &Cidr, b: &Ban, now: Time) -> serde_json::Value {
    let clock = p.clock();
    serde_json::json!({
        "cidr": cidr.to_string(),
        "reason": b.reason,
        "manual": b.manual,
        "since": rfc3339(clock.unix_secs(b.since)),
        "until": rfc3339(clock.unix_secs(b.until)),
        "secondsLeft": ceil_secs(b.until.since(now)),
    })
}

/// Answers a protection endpoint.
pub async fn handle<B>(p: &Protection, req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let now = p.clock().now();
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/bans") => {
            let (list, capacity) = p.with_bans(|b| {
                (
                    b.iter()
                        .filter(|(_, ban)| ban.until > now)
                        .map(|(c, ban)| ban_json(p, c, ban, now))
                        .collect::<Vec<_>>(),
                    b.capacity(),
                )
            });
            json(
                StatusCode::OK,
                &serde_json::json!({"count": list.len(), "capacity": capacity, "bans": list}),
            )
        }
        (Method::GET | Method::HEAD, "/bans/export") => {
            let (v4, v6) = p.with_bans(|b| {
                let mut v4 = Vec::new();
                let mut v6 = Vec::new();
                for (c, ban) in b.iter().filter(|(_, ban)| ban.until > now) {
                    let e = serde_json::json!({
                        "cidr": c.to_string(),
                        "timeoutSeconds": ceil_secs(ban.until.since(now)).max(1),
                        "reason": ban.reason,
                    });
                    if c.addr().is_ipv4() {
                        v4.push(e);
                    } else {
                        v6.push(e);
                    }
                }
                (v4, v6)
            });
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "version": 1,
                    "generatedAt": rfc3339(p.clock().unix_secs(now)),
                    "ipv4": v4,
                    "ipv6": v6,
                }),
            )
        }
        (Method::POST, "/bans") => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/json") {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "send Content-Type: application/json",
                );
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            let new: NewBan = match serde_json::from_slice(&body) {
                Ok(n) => n,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad ban: {e}")),
            };
            let cidr = match parse_target(&new.cidr) {
                Ok(c) => c,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cidr: {e}")),
            };
            let duration = match crate::config::parse_duration(&new.duration) {
                Ok(d) if !d.is_zero() && d <= std::time::Duration::from_secs(365 * 86_400) => d,
                Ok(_) => return error(StatusCode::BAD_REQUEST, "duration: must be 1s to 365 days"),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("duration: {e}")),
            };
            let reason = new.reason.unwrap_or_else(|| "manual".to_owned());
            if reason.len() > 200 || reason.chars().any(char::is_control) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "reason: at most 200 characters, no control characters",
                );
            }
            let ban = Ban {
                since: now,
                until: now.saturating_add(duration),
                reason,
                manual: true,
            };
            match p.with_bans_mut(|b| b.set(cidr, ban.clone())) {
                Ok(_) => {
                    tracing::warn!(source = %cidr, seconds = duration.as_secs(), reason = %ban.reason, "source banned by an operator");
                    json(StatusCode::CREATED, &ban_json(p, &cidr, &ban, now))
                }
                Err(e) => error(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
            }
        }
        (Method::DELETE, rest) if rest.starts_with("/bans/") => {
            let target = &rest["/bans/".len()..];
            let decoded = target.replace("%2F", "/").replace("%2f", "/");
            let cidr = match parse_target(&decoded) {
                Ok(c) => c,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match p.with_bans_mut(|b| b.remove(&cidr)) {
                Some(_) => {
                    tracing::warn!(source = %cidr, "ban lifted by an operator");
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"lifted": cidr.to_string()}),
                    )
                }
                None => error(StatusCode::NOT_FOUND, format!("{cidr} is not banned")),
            }
        }
        (Method::GET | Method::HEAD, "/protection") => {
            let top: Vec<serde_json::Value> = p
                .top_sources(20)
                .into_iter()
                .map(|(c, s)| {
                    serde_json::json!({
                        "source": c.to_string(),
                        "connCur": s.conn_cur,
                        "connRate": s.conn_rate,
                        "handshakeRate": s.handshake_rate,
                        "httpReqRate": s.http_req_rate,
                        "httpErrRate": s.http_err_rate,
                        "offenceRate": s.offence_rate,
                        "bans": s.bans,
                    })
                })
                .collect();
            let limits: Vec<serde_json::Value> = p
                .limits()
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "name": l.limit.name,
                        "rate": l.limit.rate.to_string(),
                        "burst": l.limit.quota.burst(),
                        "keys": l.len(),
                        "refused": l.refused.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "connections": p.slots().used(),
                    "maxConnections": p.slots().max(),
                    "trackedSources": p.tracked_sources(),
                    "evictedSources": p.evicted_sources(),
                    "bans": p.with_bans(|b| b.len()),
                    "limits": limits,
                    "busiestSources": top,
                }),
            )
        }
        (_, "/bans") => error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}
