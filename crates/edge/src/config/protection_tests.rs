use std::time::Duration;

use rampart_resources::Source;

use super::protection::*;
use super::*;

fn load_text(text: &str) -> Result<EdgeConfig, rampart_resources::Diagnostics> {
    load(&[Source::from_text("edge.yaml", text)])
}

const BASE: &str = r#"
apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {name: edge}
spec:
  listeners:
    - name: web
      address: "127.0.0.1:8080"
      httpRoutes:
        - {name: api, match: {pathPrefix: /api}, backend: app}
        - {name: login, match: {pathPrefix: /login}, backend: app}
  backends:
    - name: app
      servers: [{address: "127.0.0.1:9000"}]
"#;

#[test]
fn protection_is_on_by_default_with_safe_limits() {
    let c = load_text(BASE).unwrap();
    let p = &c.protection;
    assert!(p.enabled);
    assert_eq!((p.source_prefix_v4, p.source_prefix_v6), (32, 64));
    assert_eq!(p.connections.per_source, 500);
    assert_eq!(
        p.connections.rate_per_source,
        Rate {
            count: 1000,
            period: Duration::from_secs(10)
        }
    );
    assert_eq!(p.table_size, 100_000);
    assert_eq!(p.request_limits.len(), 1);
    assert_eq!(p.request_limits[0].key, LimitKey::Client);
    assert_eq!(p.request_limits[0].quota.burst(), 2000);
    assert!(p.bans.enabled);
    assert_eq!(p.bans.duration, Duration::from_secs(600));
}

#[test]
fn a_full_protection_section() {
    let text = format!(
        "{BASE}{}",
        r#"  protection:
    sourcePrefix: {ipv4: 24, ipv6: 56}
    allow: [10.0.0.0/8, "2001:db8::/32"]
    deny: [10.9.9.9]
    exempt: [10.1.0.0/16]
    listeners:
      - {name: web, deny: [10.8.0.0/16]}
    connections: {maxTotal: 1000, perSource: 20, ratePerSource: 50/10s, tlsHandshakesPerSource: 10/s}
    table: {size: 5000, expire: 5m}
    requestLimits:
      - {name: login, key: "header:X-User", rate: 5/m, burst: 3, routes: [login], tarpit: 2s}
      - {name: paths, key: path, rate: 100/s, listeners: [web]}
    maxTarpitted: 50
    bans: {threshold: 5, window: 30s, duration: 1m, maxDuration: 1h, size: 1000, httpErrorRate: 20/10s, weights: {rateLimited: 2, slow: 5}}
    logRejectionsPerSecond: 3
"#
    );
    let c = load_text(&text).unwrap();
    let p = &c.protection;
    assert_eq!((p.source_prefix_v4, p.source_prefix_v6), (24, 56));
    assert_eq!(p.allow.len(), 2);
    assert_eq!(p.deny[0].to_string(), "10.9.9.9/32");
    assert_eq!(p.listeners[0].deny[0].to_string(), "10.8.0.0/16");
    assert_eq!(p.connections.max_total, Some(1000));
    assert_eq!(
        p.connections.tls_handshakes_per_source,
        Rate {
            count: 10,
            period: Duration::from_secs(1)
        }
    );
    let login = &p.request_limits[0];
    assert_eq!(
        login.key,
        LimitKey::Header(http::HeaderName::from_static("x-user"))
    );
    assert_eq!(login.quota.interval(), Duration::from_secs(12));
    assert_eq!(login.quota.burst(), 3);
    assert_eq!(login.tarpit, Some(Duration::from_secs(2)));
    assert_eq!(login.routes, vec!["login".to_owned()]);
    assert_eq!(p.request_limits[1].quota.burst(), 100);
    assert_eq!(p.bans.weights.rate_limited, 2);
    assert_eq!(p.bans.weights.slow, 5);
    assert_eq!(p.bans.weights.smuggling, 50);
    assert_eq!(p.log_rejections_per_second, 3);
}

#[test]
fn every_protection_error_is_reported_with_its_path() {
    let text = format!(
        "{BASE}{}",
        r#"  protection:
    sourcePrefix: {ipv4: 33}
    allow: [10.0.0.1/8, nonsense]
    listeners:
      - {name: nope}
    connections: {maxTotal: 60000, perSource: 0, ratePerSource: fast}
    requestLimits:
      - {name: a, key: cookie, rate: 0/s}
      - {name: a, rate: 10/s, burst: 0, routes: [missing], listeners: [gone], tarpit: 5m}
    bans: {weights: {sneaky: 1}, maxDuration: 1s, duration: 1m}
    unknownField: 1
"#
    );
    let err = load_text(&text).unwrap_err().to_string();
    // Unknown fields are refused before anything else.
    assert!(err.contains("unknownField"), "{err}");
    let text = text.replace("    unknownField: 1\n", "");
    let err = load_text(&text).unwrap_err().to_string();
    for needle in [
        "spec.protection.sourcePrefix.ipv4",
        "spec.protection.allow[0]",
        "host bits",
        "spec.protection.allow[1]",
        "spec.protection.listeners[0].name",
        "spec.protection.connections.maxTotal",
        "half of table.size",
        "spec.protection.connections.perSource",
        "spec.protection.connections.ratePerSource",
        "spec.protection.requestLimits[0].key",
        "spec.protection.requestLimits[0].rate",
        "spec.protection.requestLimits[1].name",
        "spec.protection.requestLimits[1].burst",
        "spec.protection.requestLimits[1].routes[0]",
        "spec.protection.requestLimits[1].listeners[0]",
        "spec.protection.requestLimits[1].tarpit",
        "spec.protection.bans.weights[\"sneaky\"]",
        "spec.protection.bans.maxDuration",
        "edge.yaml",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn rates_parse() {
    assert_eq!(
        parse_rate("100/s").unwrap(),
        Rate {
            count: 100,
            period: Duration::from_secs(1)
        }
    );
    assert_eq!(
        parse_rate("300/10s").unwrap().period,
        Duration::from_secs(10)
    );
    assert_eq!(parse_rate("5/m").unwrap().period, Duration::from_secs(60));
    assert_eq!(
        parse_rate("1/1h").unwrap().period,
        Duration::from_secs(3600)
    );
    assert!(parse_rate("100").is_err());
    assert!(parse_rate("x/s").is_err());
    assert!(parse_rate("1/10ms").is_err());
    assert!(parse_rate("1/2d").is_err());
}

#[test]
fn dangerous_disabled_turns_protection_off() {
    let text = format!("{BASE}  protection: {{dangerousDisabled: true}}\n");
    assert!(!load_text(&text).unwrap().protection.enabled);
}
