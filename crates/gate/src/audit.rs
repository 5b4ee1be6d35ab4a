//! The audit log: one JSON object per line for every request the gateway decides.
//!
//! Fields: `time` (RFC 3339, UTC), `user`, `groups`, `uid`, `sourceAddress`, `method`,
//! `path` (without the query, which may carry secrets such as exec commands),
//! `verb`, `apiGroup`, `resource`, `subresource`, `namespace`, `name`, `decision`
//! (`allow` or `deny`), `reason`, `mfa` (the token's `amr`), and for `kubectl --as`
//! requests `impersonatedUser` and `impersonatedGroups`. Tokens are never logged.
//!
//! Lines are written by one task in arrival order; a full queue slows requests down
//! rather than dropping records.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use rampart_model::time::rfc3339_millis as rfc3339;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::GateError;

/// One decided request.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When, RFC 3339 in UTC.
    pub time: String,
    /// The authenticated user ("" when authentication failed).
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The user's uid, if mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The client's address.
    pub source_address: String,
    /// The HTTP method.
    pub method: String,
    /// The URL path.
    pub path: String,
    /// The RequestInfo verb.
    pub verb: String,
    /// The API group.
    pub api_group: String,
    /// The resource.
    pub resource: String,
    /// The subresource.
    pub subresource: String,
    /// The namespace.
    pub namespace: String,
    /// The object name.
    pub name: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Why.
    pub reason: String,
    /// The authentication methods of the token (`amr`).
    pub mfa: Vec<String>,
    /// The user asked for with `Impersonate-User`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<String>,
    /// The groups asked for with `Impersonate-Group`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub impersonated_groups: Vec<String>,
}

/// Sends events to the writer task.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
}

impl AuditLog {
    /// Opens (appends to) `path`, or standard output for `-`, and starts the writer.
    pub fn open(path: &str) -> Result<Self, GateError> {
        let mut out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| GateError::io(format!("audit log {path}"), e))?;
            Box::new(std::io::BufWriter::new(file))
        };
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(4096);
        std::thread::Builder::new()
            .name("rampart-audit".into())
            .spawn(move || {
                while let Some(event) = rx.blocking_recv() {
                    let mut line = serde_json::to_vec(&event).unwrap_or_default();
                    line.push(b'\n');
                    let mut ok = out.write_all(&line).is_ok();
                    // Write whatever is queued, then flush once.
                    while let Ok(event) = rx.try_recv() {
                        let mut line = serde_json::to_vec(&event).unwrap_or_default();
                        line.push(b'\n');
                        ok &= out.write_all(&line).is_ok();
                    }
                    ok &= out.flush().is_ok();
                    if !ok {
                        tracing::error!("cannot write the audit log");
                    }
                }
            })
            .map_err(|e| GateError::io("audit writer", e))?;
        Ok(Self { tx })
    }

    /// Records an event, stamping its time.
    pub async fn record(&self, mut event: AuditEvent) {
        event.time = rfc3339_now();
        if self.tx.send(event).await.is_err() {
            tracing::error!("the audit writer has stopped");
        }
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(super::rfc3339(1_800_000_000, 0), "2027-01-15T08:00:00.000Z");
    }
}
