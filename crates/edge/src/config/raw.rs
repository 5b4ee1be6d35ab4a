//! The serde form of an `EdgeGateway` document, exactly as written. Every field a user
//! can misspell is refused (`deny_unknown_fields`); values are checked in
//! [`super::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEdgeGateway {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: RawMetadata,
    pub spec: RawSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawMetadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSpec {
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub access_log: Option<bool>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
    #[serde(default)]
    pub protection: super::protection::RawProtection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAdmin {
    pub address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub client_header: Option<String>,
    pub idle: Option<String>,
    pub server_response: Option<String>,
    pub client_body: Option<String>,
    pub client_write: Option<String>,
    pub tls_handshake: Option<String>,
    pub tcp_idle: Option<String>,
    pub drain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimits {
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_uri_bytes: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub min_body_rate: Option<u64>,
    pub min_read_rate: Option<u64>,
    pub max_connections: Option<u64>,
    pub h2_max_concurrent_streams: Option<u64>,
    pub h2_max_resets_per_second: Option<u64>,
    pub h2_max_control_frames_per_second: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRouteLimits {
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_uri_bytes: Option<u64>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawListener {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub tls: Option<RawListenerTls>,
    #[serde(default)]
    pub accept_proxy_protocol: Option<RawAcceptProxy>,
    #[serde(default)]
    pub tcp_routes: Vec<RawTcpRoute>,
    #[serde(default)]
    pub http_routes: Vec<RawHttpRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAcceptProxy {
    pub from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawListenerTls {
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    #[serde(default)]
    pub default_certificate: Option<String>,
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    #[serde(default)]
    pub session_tickets: Option<bool>,
    #[serde(default)]
    pub ticket_key_rotation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCertificate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub self_signed: Option<Vec<String>>,
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTcpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sni: Vec<String>,
    pub backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: RawHttpMatch,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub redirect: Option<RawRedirect>,
    #[serde(default)]
    pub request_headers: RawHeaderEdits,
    #[serde(default)]
    pub response_headers: RawHeaderEdits,
    #[serde(default)]
    pub limits: RawRouteLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHttpMatch {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHeaderMatch {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRedirect {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub status: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBackend {
    pub name: String,
    #[serde(default)]
    pub balance: Option<String>,
    #[serde(default)]
    pub servers: Vec<RawServer>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub passive_ejection: Option<RawPassive>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub tls: Option<RawBackendTls>,
    #[serde(default)]
    pub proxy_protocol: Option<bool>,
    #[serde(default)]
    pub max_idle_per_server: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawServer {
    pub address: String,
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHealthCheck {
    #[serde(default)]
    pub http: Option<RawHttpCheck>,
    #[serde(default)]
    pub tcp: Option<serde_json::Value>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub rise: Option<u32>,
    #[serde(default)]
    pub fall: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHttpCheck {
    pub path: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPassive {
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    #[serde(default)]
    pub eject_for: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBackendTls {
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
}
