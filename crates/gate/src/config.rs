//! The `AccessGateway` resource (`rampart.dev/v1alpha1`): what `rampart gate --config`
//! reads, validated into a [`GateConfig`] with every error reported at once.
//!
//! ```yaml
//! apiVersion: rampart.dev/v1alpha1
//! kind: AccessGateway
//! metadata: {name: kube-api}
//! spec:
//!   listen: 0.0.0.0:8443
//!   tls: {certFile: gate.crt, keyFile: gate.key}
//!   upstream:
//!     url: https://10.0.0.1:6443
//!     caFile: apiserver-ca.crt
//!     clientCertFile: gate-client.crt     # the gateway's own identity: a client
//!     clientKeyFile: gate-client.key      # certificate, or a tokenFile
//!   issuers:
//!   - url: https://acme.zitadel.cloud
//!     audiences: ["123456789@kube"]
//!     claims:
//!       username: {claim: sub, prefix: "zitadel:"}
//!       groups: [{claim: "urn:zitadel:iam:org:project:roles", prefix: "zitadel:"}]
//!     mfa: {anyOf: [[mfa]], maxAuthAge: 12h}
//!   rbac: {files: [rbac/]}
//!   audit: {path: /var/log/rampart/gate-audit.jsonl}
//! ```
//!
//! Relative file paths are relative to the configuration file's directory. Defaults
//! are safe: MFA required (`amr` contains `mfa`), every timeout and limit set (see
//! [`Limits`]), an issuer's CA defaults to the system bundle
//! (`/etc/ssl/certs/ca-certificates.crt`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_oidc::{ClaimMappings, GroupsMapping, IssuerPolicy, MfaRule, SUPPORTED_ALGORITHMS};
use rampart_resources::{Diagnostics, Document, FieldPath, ObjectErrors};
use serde::Deserialize;

/// The API version of Rampart's own kinds.
pub const API_VERSION: &str = "rampart.dev/v1alpha1";
/// The kind of the gateway's configuration.
pub const KIND: &str = "AccessGateway";
/// The CA bundle used for issuers without a `caFile`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The `Impersonate-Extra-` key that carries the token's `amr` by default.
pub const DEFAULT_AMR_EXTRA_KEY: &str = "rampart.dev/amr";

/// A validated gateway configuration.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The configuration's name (`metadata.name`).
    pub name: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The listener's certificate chain and key (PEM files).
    pub tls: TlsFiles,
    /// The API server behind the gateway.
    pub upstream: Upstream,
    /// The accepted issuers.
    pub issuers: Vec<Issuer>,
    /// RBAC manifests: files and directories.
    pub rbac_files: Vec<String>,
    /// Whether the API server's bootstrap policy for authenticated users (discovery,
    /// health and version, self-reviews) is added to the manifests.
    pub rbac_bootstrap_policy: bool,
    /// The audit log: a file path, or `-` for standard output.
    pub audit_path: String,
    /// The `Impersonate-Extra-` key that carries the token's `amr`.
    pub amr_extra_key: String,
    /// Limits and timeouts.
    pub limits: Limits,
}

/// A certificate chain and private key, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
}

/// How the gateway proves itself to the API server.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// A client certificate.
    ClientCert(TlsFiles),
    /// A bearer token read from a file.
    TokenFile(PathBuf),
}

/// The API server behind the gateway.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `https://host:port`, without a path.
    pub url: String,
    /// The host name to verify in the API server's certificate.
    pub server_name: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// The CA that signed the API server's certificate.
    pub ca_file: PathBuf,
    /// The gateway's identity.
    pub auth: UpstreamAuth,
}

/// One accepted OIDC issuer.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// What tokens must satisfy.
    pub policy: IssuerPolicy,
    /// Where the discovery document is (`<issuer>/.well-known/openid-configuration`
    /// unless set).
    pub discovery_url: String,
    /// The CA for the issuer's HTTPS endpoints.
    pub ca_file: PathBuf,
    /// How often the key set is refreshed.
    pub jwks_refresh_interval: Duration,
    /// The least time between two refreshes caused by unknown key ids.
    pub jwks_min_refresh_interval: Duration,
}

/// Limits on what clients control, all with safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent client connections (default 1024).
    pub max_connections: usize,
    /// Bytes of request line and headers (default 64 KiB).
    pub max_header_bytes: usize,
    /// Time to complete the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Time to receive a request's headers, which also bounds how long a keep-alive
    /// connection may sit idle (default 10 s).
    pub header_read_timeout: Duration,
    /// Time to connect to the API server (default 5 s).
    pub upstream_connect_timeout: Duration,
    /// Time for the API server to answer with headers (default 60 s); bodies such as
    /// watches and log streams are not limited.
    pub upstream_response_timeout: Duration,
    /// Clock skew allowed on token times (default 30 s).
    pub token_leeway: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            token_leeway: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Debug, Deserialize, Default)]
struct RawMetadata {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    listen: String,
    tls: RawTls,
    upstream: RawUpstream,
    issuers: Vec<RawIssuer>,
    rbac: RawRbac,
    audit: RawAudit,
    #[serde(default)]
    impersonation: RawImpersonation,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUpstream {
    url: String,
    ca_file: String,
    #[serde(default)]
    client_cert_file: Option<String>,
    #[serde(default)]
    client_key_file: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIssuer {
    url: String,
    #[serde(default, rename = "discoveryURL")]
    discovery_url: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    claims: RawClaims,
    #[serde(default)]
    mfa: RawMfa,
    #[serde(default)]
    jwks: RawJwks,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawClaims {
    #[serde(default)]
    username: Option<RawClaimPrefix>,
    #[serde(default)]
    groups: Vec<RawClaimPrefix>,
    #[serde(default)]
    uid: Option<RawClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawClaimPrefix {
    claim: String,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawClaim {
    claim: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMfa {
    #[serde(default)]
    any_of: Option<Vec<Vec<String>>>,
    #[serde(default)]
    max_auth_age: Option<String>,
    #[serde(default)]
    dangerous_not_required: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawJwks {
    #[serde(default)]
    refresh_interval: Option<String>,
    #[serde(default)]
    min_refresh_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRbac {
    files: Vec<String>,
    #[serde(default)]
    bootstrap_policy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAudit {
    path: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawImpersonation {
    #[serde(default)]
    amr_extra_key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    max_header_bytes: Option<usize>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    upstream_connect_timeout: Option<String>,
    upstream_response_timeout: Option<String>,
    token_leeway: Option<String>,
}

/// Parses a duration: a number followed by `ms`, `s`, `m` or `h` (`1h30m` works too).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Reads the configuration from the documents of one file; exactly one
/// `AccessGateway` is expected. `base` is the directory relative paths start from.
pub fn from_documents(docs: &[Document], base: &Path) -> Result<GateConfig, Diagnostics> {
    let gateways: Vec<&Document> = docs
        .iter()
        .filter(|d| d.kind == KIND && d.api_group() == "rampart.dev")
        .collect();
    let doc = match gateways.as_slice() {
        [one] => *one,
        [] => {
            return Err(rampart_resources::Diagnostic::error(format!(
                "no {KIND} ({API_VERSION}) document found"
            ))
            .into());
        }
        [_, second, ..] => {
            return Err(second
                .error(
                    &FieldPath::root(),
                    format!("only one {KIND} per configuration"),
                )
                .into());
        }
    };
    if doc.api_version != API_VERSION {
        return Err(doc
            .error(
                &FieldPath::root().field("apiVersion"),
                format!("unsupported: use {API_VERSION}"),
            )
            .into());
    }
    let raw: RawGateway = doc.decode().map_err(Diagnostics::from)?;
    let mut oe = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let config = validate(raw, base, &mut oe);
    let errors = oe.finish();
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(errors),
    }
}

fn validate(raw: RawGateway, base: &Path, oe: &mut ObjectErrors<'_>) -> Option<GateConfig> {
    let spec_path = FieldPath::root().field("spec");
    let path_of = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let listen = match raw.spec.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            oe.push(
                &spec_path.field("listen"),
                "must be an address and port, e.g. 0.0.0.0:8443",
            );
            None
        }
    };
    let tls = TlsFiles {
        cert_file: path_of(&raw.spec.tls.cert_file),
        key_file: path_of(&raw.spec.tls.key_file),
    };

    let up = raw.spec.upstream;
    let up_path = spec_path.field("upstream");
    let target = parse_https_url(&up.url);
    if target.is_none() {
        oe.push(
            &up_path.field("url"),
            "must be https://host[:port] without a path",
        );
    }
    let auth = match (&up.client_cert_file, &up.client_key_file, &up.token_file) {
        (Some(c), Some(k), None) => Some(UpstreamAuth::ClientCert(TlsFiles {
            cert_file: path_of(c),
            key_file: path_of(k),
        })),
        (None, None, Some(t)) => Some(UpstreamAuth::TokenFile(path_of(t))),
        _ => {
            oe.push(
                &up_path,
                "give the gateway's identity: clientCertFile and clientKeyFile, or tokenFile",
            );
            None
        }
    };

    let mut limits = Limits::default();
    let lp = spec_path.field("limits");
    let l = raw.spec.limits;
    if let Some(n) = l.max_connections {
        if n == 0 || n > 1_000_000 {
            oe.push(&lp.field("maxConnections"), "must be between 1 and 1000000");
        }
        limits.max_connections = n;
    }
    if let Some(n) = l.max_header_bytes {
        if !(8192..=1024 * 1024).contains(&n) {
            oe.push(
                &lp.field("maxHeaderBytes"),
                "must be between 8192 and 1048576",
            );
        }
        limits.max_header_bytes = n;
    }
    let mut dur = |value: &Option<String>, name: &str, slot: &mut Duration, max: Duration| {
        if let Some(v) = value {
            match parse_duration(v) {
                Some(d) if !d.is_zero() && d <= max => *slot = d,
                _ => oe.push(
                    &lp.field(name),
                    format!(
                        "must be a duration such as 10s, 500ms or 2m, above zero and at most {}s",
                        max.as_secs()
                    ),
                ),
            }
        }
    };
    let hour = Duration::from_secs(3600);
    dur(
        &l.handshake_timeout,
        "handshakeTimeout",
        &mut limits.handshake_timeout,
        hour,
    );
    dur(
        &l.header_read_timeout,
        "headerReadTimeout",
        &mut limits.header_read_timeout,
        hour,
    );
    dur(
        &l.upstream_connect_timeout,
        "upstreamConnectTimeout",
        &mut limits.upstream_connect_timeout,
        hour,
    );
    dur(
        &l.upstream_response_timeout,
        "upstreamResponseTimeout",
        &mut limits.upstream_response_timeout,
        hour,
    );
    dur(
        &l.token_leeway,
        "tokenLeeway",
        &mut limits.token_leeway,
        Duration::from_secs(300),
    );

    let ip = spec_path.field("issuers");
    if raw.spec.issuers.is_empty() {
        oe.push(&ip, "required: at least one issuer");
    }
    let mut issuers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, ri) in raw.spec.issuers.into_iter().enumerate() {
        let p = ip.index(i);
        if !seen.insert(ri.url.clone()) {
            oe.push(&p.field("url"), "duplicate issuer");
        }
        if let Some(issuer) = validate_issuer(ri, &p, &limits, &path_of, oe) {
            issuers.push(issuer);
        }
    }

    if raw.spec.rbac.files.is_empty() {
        oe.push(
            &spec_path.field("rbac").field("files"),
            "required: at least one file or directory",
        );
    }
    let rbac_files = raw
        .spec
        .rbac
        .files
        .iter()
        .map(|f| path_of(f).to_string_lossy().into_owned())
        .collect();
    let audit_path = if raw.spec.audit.path == "-" {
        "-".to_owned()
    } else if raw.spec.audit.path.is_empty() {
        oe.push(
            &spec_path.field("audit").field("path"),
            "required: a file, or - for standard output",
        );
        String::new()
    } else {
        path_of(&raw.spec.audit.path).to_string_lossy().into_owned()
    };
    let amr_extra_key = raw
        .spec
        .impersonation
        .amr_extra_key
        .unwrap_or_else(|| DEFAULT_AMR_EXTRA_KEY.to_owned());
    if amr_extra_key.is_empty()
        || !amr_extra_key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._/".contains(&b))
    {
        oe.push(
            &spec_path.field("impersonation").field("amrExtraKey"),
            "must be a lower-case key such as example.com/amr",
        );
    }

    let (server_name, authority) = target?;
    Some(GateConfig {
        name: raw.metadata.name,
        listen: listen?,
        tls,
        upstream: Upstream {
            url: up.url.trim_end_matches('/').to_owned(),
            server_name,
            authority,
            ca_file: path_of(&up.ca_file),
            auth: auth?,
        },
        issuers,
        rbac_files,
        rbac_bootstrap_policy: raw.spec.rbac.bootstrap_policy.unwrap_or(true),
        audit_path,
        amr_extra_key,
        limits,
    })
}

fn validate_issuer(
    ri: RawIssuer,
    p: &FieldPath,
    limits: &Limits,
    path_of: &dyn Fn(&str) -> PathBuf,
    oe: &mut ObjectErrors<'_>,
) -> Option<Issuer> {
    let before = !oe.is_empty();
    let mut ok = true;
    if parse_https_url(&ri.url).is_none() && !is_https_with_path(&ri.url) {
        oe.push(&p.field("url"), "must be an https:// URL");
        ok = false;
    }
    let discovery_url = match ri.discovery_url {
        Some(d) => {
            if !d.starts_with("https://") {
                oe.push(&p.field("discoveryURL"), "must be an https:// URL");
                ok = false;
            }
            d
        }
        None => format!(
            "{}/.well-known/openid-configuration",
            ri.url.trim_end_matches('/')
        ),
    };
    if ri.audiences.is_empty() || ri.audiences.iter().any(String::is_empty) {
        oe.push(
            &p.field("audiences"),
            "required: at least one non-empty audience (client id)",
        );
        ok = false;
    }
    let algorithms = match ri.algorithms {
        None => SUPPORTED_ALGORITHMS.to_vec(),
        Some(names) => {
            let mut out = Vec::new();
            for (j, n) in names.iter().enumerate() {
                match rampart_oidc::algorithm_from_name(n) {
                    Some(a) => out.push(a),
                    None => {
                        oe.push(
                            &p.field("algorithms").index(j),
                            format!("unsupported {n:?}: use RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384"),
                        );
                        ok = false;
                    }
                }
            }
            if names.is_empty() {
                oe.push(&p.field("algorithms"), "must not be empty");
                ok = false;
            }
            out
        }
    };
    let cp = p.field("claims");
    let mut claims = ClaimMappings::default();
    if let Some(u) = ri.claims.username {
        claims.username_claim = u.claim;
        claims.username_prefix = u.prefix.unwrap_or_default();
        if claims.username_claim.is_empty() {
            oe.push(&cp.field("username").field("claim"), "required");
            ok = false;
        }
    }
    if claims
        .username_prefix
        .starts_with(rampart_oidc::RESERVED_PREFIX)
    {
        oe.push(
            &cp.field("username").field("prefix"),
            "must not be in the reserved system: space",
        );
        ok = false;
    }
    for (j, g) in ri.claims.groups.into_iter().enumerate() {
        let prefix = g.prefix.unwrap_or_default();
        if prefix.starts_with(rampart_oidc::RESERVED_PREFIX) {
            oe.push(
                &cp.field("groups").index(j).field("prefix"),
                "must not be in the reserved system: space",
            );
            ok = false;
        }
        if g.claim.is_empty() {
            oe.push(&cp.field("groups").index(j).field("claim"), "required");
            ok = false;
        }
        claims.groups.push(GroupsMapping {
            claim: g.claim,
            prefix,
        });
    }
    claims.uid_claim = ri.claims.uid.map(|u| u.claim);

    let mp = p.field("mfa");
    let mfa = if ri.mfa.dangerous_not_required {
        if ri.mfa.any_of.is_some() {
            oe.push(&mp.field("anyOf"), "conflicts with dangerousNotRequired");
            ok = false;
        }
        MfaRule::DangerousNotRequired
    } else {
        match ri.mfa.any_of {
            None => MfaRule::default(),
            Some(any_of) => {
                if any_of.is_empty()
                    || any_of
                        .iter()
                        .any(|s| s.is_empty() || s.iter().any(String::is_empty))
                {
                    oe.push(
                        &mp.field("anyOf"),
                        "must list non-empty sets of amr values, e.g. [[mfa]]",
                    );
                    ok = false;
                }
                MfaRule::Required { any_of }
            }
        }
    };
    let max_auth_age = match &ri.mfa.max_auth_age {
        None => None,
        Some(v) => match parse_duration(v) {
            Some(d) if !d.is_zero() => Some(d.as_secs()),
            _ => {
                oe.push(&mp.field("maxAuthAge"), "must be a duration such as 12h");
                ok = false;
                None
            }
        },
    };
    let jp = p.field("jwks");
    let mut refresh = Duration::from_secs(3600);
    let mut min_refresh = Duration::from_secs(10);
    for (value, name, slot) in [
        (&ri.jwks.refresh_interval, "refreshInterval", &mut refresh),
        (
            &ri.jwks.min_refresh_interval,
            "minRefreshInterval",
            &mut min_refresh,
        ),
    ] {
        if let Some(v) = value {
            match parse_duration(v) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86400) => {
                    *slot = d
                }
                _ => {
                    oe.push(&jp.field(name), "must be a duration between 1s and 24h");
                    ok = false;
                }
            }
        }
    }
    let _ = before;
    ok.then(|| Issuer {
        policy: IssuerPolicy {
            issuer: ri.url.clone(),
            audiences: ri.audiences,
            algorithms,
            leeway: limits.token_leeway.as_secs(),
            mfa,
            max_auth_age,
            claims,
        },
        discovery_url,
        ca_file: ri
            .ca_file
            .map_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE), |f| path_of(&f)),
        jwks_refresh_interval: refresh,
        jwks_min_refresh_interval: min_refresh,
    })
}

fn is_https_with_path(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', '@'])
    })
}

/// `https://host[:port]` → (host, host:port).
pub(crate) fn parse_https_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if after.is_empty() => 443,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()?),
            None => (rest.to_owned(), 443),
        }
    };
    if host.is_empty() {
        return None;
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some((host, authority))
}

#[cfg(test)]
mod tests {
    use rampart_resources::{Source, parse_source};

    use super::*;

    fn load(text: &str) -> Result<GateConfig, Diagnostics> {
        let (docs, errors) = parse_source(&Source::from_text("gate.yaml", text));
        assert!(errors.is_empty(), "{errors}");
        from_documents(&docs, Path::new("/etc/rampart"))
    }

    const GOOD: &str = r#"
apiVersion: rampart.dev/v1alpha1
kind: AccessGateway
metadata: {name: kube}
spec:
  listen: 127.0.0.1:8443
  tls: {certFile: gate.crt, keyFile: /abs/gate.key}
  upstream: {url: "https://10.0.0.1:6443", caFile: ca.crt, tokenFile: token}
  issuers:
  - url: https://idp.test
    audiences: [kube]
    claims:
      username: {claim: sub, prefix: "zitadel:"}
      groups: [{claim: "urn:zitadel:iam:org:project:roles", prefix: "zitadel:"}]
    mfa: {maxAuthAge: 12h}
  rbac: {files: [rbac/]}
  audit: {path: audit.jsonl}
"#;

    #[test]
    fn a_good_configuration_gets_safe_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.tls.cert_file, Path::new("/etc/rampart/gate.crt"));
        assert_eq!(c.tls.key_file, Path::new("/abs/gate.key"));
        assert_eq!(c.upstream.authority, "10.0.0.1:6443");
        assert_eq!(c.issuers[0].policy.mfa, MfaRule::default());
        assert_eq!(c.issuers[0].policy.max_auth_age, Some(12 * 3600));
        assert_eq!(c.issuers[0].ca_file, Path::new(SYSTEM_CA_BUNDLE));
        assert_eq!(
            c.issuers[0].discovery_url,
            "https://idp.test/.well-known/openid-configuration"
        );
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.rbac_files, ["/etc/rampart/rbac/"]);
    }

    #[test]
    fn every_error_is_reported() {
        let bad = GOOD
            .replace("127.0.0.1:8443", "nowhere")
            .replace("https://10.0.0.1:6443", "http://10.0.0.1")
            .replace("{maxAuthAge: 12h}", "{maxAuthAge: soon, anyOf: []}")
            .replace("prefix: \"zitadel:\"}]", "prefix: \"system:\"}]")
            .replace(
                "audiences: [kube]",
                "audiences: []\n    algorithms: [HS256]",
            );
        let text = load(&bad).unwrap_err().to_string();
        for expected in [
            "spec.listen: must be an address",
            "spec.upstream.url: must be https://",
            "spec.issuers[0].audiences: required",
            "spec.issuers[0].algorithms[0]: unsupported \"HS256\"",
            "spec.issuers[0].claims.groups[0].prefix: must not be in the reserved system: space",
            "spec.issuers[0].mfa.anyOf: must list",
            "spec.issuers[0].mfa.maxAuthAge: must be a duration",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            load(&GOOD.replace("tokenFile: token", "clientCertFile: c"))
                .unwrap_err()
                .to_string()
                .contains("gateway's identity")
        );
        assert!(
            load(&GOOD.replace("audit:", "audits:"))
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        for bad in ["", "10", "s", "1x", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn https_urls() {
        assert_eq!(
            parse_https_url("https://a:1"),
            Some(("a".into(), "a:1".into()))
        );
        assert_eq!(
            parse_https_url("https://a/"),
            Some(("a".into(), "a:443".into()))
        );
        assert_eq!(
            parse_https_url("https://[::1]:6443"),
            Some(("::1".into(), "[::1]:6443".into()))
        );
        for bad in [
            "http://a",
            "https://",
            "https://a/p",
            "https://u@a",
            "https://a:x",
        ] {
            assert_eq!(parse_https_url(bad), None, "{bad}");
        }
    }
}
