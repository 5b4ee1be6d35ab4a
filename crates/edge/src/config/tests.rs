use std::time::Duration;

use rampart_resources::Source;

use super::*;

fn load_text(text: &str) -> Result<EdgeConfig, rampart_resources::Diagnostics> {
    load(&[Source::from_text("edge.yaml", text)])
}

const GOOD: &str = r#"
apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {name: edge}
spec:
  admin: {address: "127.0.0.1:9901"}
  timeouts: {connect: 2s, clientHeader: 5s, drain: 1m30s}
  trustedProxies: [10.0.0.0/8, "2001:db8::/32"]
  listeners:
    - name: https
      address: "0.0.0.0:443"
      tls:
        minVersion: "1.3"
        certificates:
          - name: main
            certFile: /etc/rampart/tls.crt
            keyFile: /etc/rampart/tls.key
          - name: dev
            selfSigned: [localhost]
        defaultCertificate: main
      tcpRoutes:
        - sni: [kube.example.com]
          backend: apiserver
      httpRoutes:
        - name: api
          match: {hosts: ["API.example.com", "*.apps.example.com"], pathPrefix: /v1/, methods: [GET]}
          backend: web
    - name: kube
      address: "0.0.0.0:6443"
      mode: tcp
      tcpRoutes: [{backend: apiserver}]
  backends:
    - name: web
      balance: leastConnections
      servers: [{address: "10.0.0.1:8080", weight: 2}, {address: "web.internal:8080"}]
      healthCheck: {http: {path: /healthz}, interval: 1s, rise: 1, fall: 2}
    - name: apiserver
      servers: [{address: "10.0.0.10:6443"}]
      healthCheck: {tcp: {}}
"#;

#[test]
fn a_full_config_validates_with_defaults_filled_in() {
    let c = load_text(GOOD).unwrap();
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.drain, Duration::from_secs(90));
    assert_eq!(c.timeouts.server_response, Duration::from_secs(60));
    assert_eq!(c.listeners.len(), 2);
    let https = &c.listeners[0];
    let tls = https.tls.as_ref().unwrap();
    assert_eq!(tls.min_version, rampart_tls::MinVersion::Tls13);
    assert_eq!(tls.default_certificate, Some(0));
    assert_eq!(tls.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(tls.session_tickets);
    let r = &https.http_routes[0];
    assert_eq!(r.hosts[0], HostMatch::Exact("api.example.com".into()));
    assert_eq!(r.hosts[1], HostMatch::Wildcard("apps.example.com".into()));
    assert_eq!(r.path_prefix.as_deref(), Some("/v1"));
    assert_eq!(c.backends[0].balance, Balance::LeastConnections);
    assert_eq!(
        c.backends[0].servers[1].address,
        ServerAddress::Name {
            host: "web.internal".into(),
            port: 8080
        }
    );
    assert_eq!(
        c.backends[1].health_check.as_ref().unwrap().kind,
        HealthCheckKind::Tcp
    );
    assert_eq!(c.listeners[1].mode, Mode::Tcp);
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let bad = GOOD
        .replace("connect: 2s", "connect: 0s")
        .replace("clientHeader: 5s", "clientHeader: 5 sec")
        .replace("10.0.0.0/8", "10.0.0.1/8")
        .replace("minVersion: \"1.3\"", "minVersion: \"1.1\"")
        .replace("backend: web", "backend: nope")
        .replace("weight: 2", "weight: 0")
        .replace("methods: [GET]", "methods: [get]")
        .replace("address: \"0.0.0.0:6443\"", "address: \"0.0.0.0:443\"");
    let err = load_text(&bad).unwrap_err();
    let text = err.to_string();
    for expected in [
        "spec.timeouts.connect: must be greater than zero",
        "spec.timeouts.clientHeader: invalid duration",
        "spec.trustedProxies[0]: \"10.0.0.1/8\" has host bits set",
        "spec.listeners[0].tls.minVersion: \"1.1\"",
        "spec.listeners[0].httpRoutes[0].backend: no backend named \"nope\"",
        "spec.backends[0].servers[0].weight: must be 1 to 256",
        "spec.listeners[0].httpRoutes[0].match.methods[0]",
        "spec.listeners[1].address: address 0.0.0.0:443 is already used by listeners[0]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(err.len(), 8, "{text}");
    assert!(
        text.starts_with("edge.yaml: document 1 (line 2): EdgeGateway edge: "),
        "{text}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let err = load_text(
        &GOOD
            .replace("accessLog", "x")
            .replace("  timeouts:", "  timeout:"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.timeout: unknown field `timeout`"),
        "{err}"
    );
    let err = load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("expected kind EdgeGateway, found ConfigMap"),
        "{err}"
    );
    let err = load_text("").unwrap_err();
    assert!(err.to_string().contains("no EdgeGateway document"), "{err}");
}

#[test]
fn structural_rules() {
    let cases = [
        // A tcp listener with TLS.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", mode: tcp, tls: {certificates: [{selfSigned: [x]}]}, tcpRoutes: [{backend: b}]}\n  backends: [{name: b, servers: [{address: \"127.0.0.1:2\"}]}]\n",
            "spec.listeners[0].tls: a tcp listener passes TLS through",
        ),
        // SNI routes on a plain http listener.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", tcpRoutes: [{sni: [k.test], backend: b}], httpRoutes: [{backend: b}]}\n  backends: [{name: b, servers: [{address: \"127.0.0.1:2\"}]}]\n",
            "SNI passthrough on an http listener needs tls",
        ),
        // A route with both backend and redirect.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", httpRoutes: [{backend: b, redirect: {scheme: https}}]}\n  backends: [{name: b, servers: [{address: \"127.0.0.1:2\"}]}]\n",
            "spec.listeners[0].httpRoutes[0]: give either backend or redirect",
        ),
        // Editing a managed header.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", httpRoutes: [{backend: b, requestHeaders: {set: {Host: x}}}]}\n  backends: [{name: b, servers: [{address: \"127.0.0.1:2\"}]}]\n",
            "host is managed by the gateway",
        ),
        // TLS to servers on a backend used for passthrough.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", mode: tcp, tcpRoutes: [{backend: b}]}\n  backends: [{name: b, tls: {caFile: /x}, servers: [{address: \"127.0.0.1:2\"}]}]\n",
            "spec.listeners[0].tcpRoutes[0].backend: a tcp route forwards bytes untouched",
        ),
        // No servers; a bad health check.
        (
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nspec:\n  listeners:\n  - {name: a, address: \"127.0.0.1:1\", httpRoutes: [{backend: b}]}\n  backends: [{name: b, healthCheck: {interval: 1s}}]\n",
            "spec.backends[0].servers: at least one server is required",
        ),
    ];
    for (text, expected) in cases {
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1h2m3s").unwrap(), Duration::from_secs(3723));
    for bad in ["", "10", "s", "1d", "-1s", "1.5s", "9999999999s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn cidrs() {
    use super::validate::parse_cidr;
    let c = parse_cidr("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.2.3".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(
        parse_cidr("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(
        parse_cidr("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap())
    );
    for bad in ["10.0.0.0/33", "x", "10.0.0.1/8", "::1/129"] {
        assert!(parse_cidr(bad).is_err(), "{bad}");
    }
}

proptest::proptest! {
    /// Arbitrary YAML-ish text never panics the loader.
    #[test]
    fn arbitrary_text_never_panics(text in "[a-zA-Z0-9:{}\\[\\], \\n\\-\"./*]{0,300}") {
        let _ = load_text(&format!("apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\n{text}"));
    }
}
