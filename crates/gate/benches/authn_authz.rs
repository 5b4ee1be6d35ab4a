//! Authentication plus authorization per request, as the gateway does it with a cached
//! key set: token parse and signature check, claim checks and mapping, RequestInfo
//! parsing, and the RBAC decision over 1,000 bindings.
//!
//! Beside each total, the same run measures the signature check alone with aws-lc-rs
//! (the key parsed once, as the gateway keeps it; and parsed per request, as a verifier
//! that keeps only the key's bytes does), so the part the gateway cannot remove is in
//! plain view.
//!
//! Prints p50 and p99 per run and the medians over runs (machines are noisy: read the
//! medians). Run: `cargo bench -p rampart-gate --bench authn_authz`.

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rampart_authz::{RequestInfo, UserInfo};
use rampart_oidc::{
    ClaimMappings, GroupsMapping, IssuerPolicy, KeySet, MfaRule, SUPPORTED_ALGORITHMS,
    UnverifiedToken,
};
use rampart_resources::{Source, parse_source};
use serde_json::json;

const RUNS: usize = 7;
const WARMUP: usize = 2_000;
const ITERATIONS: usize = 20_000;

fn rbac_with_bindings(n: usize) -> rampart_authz::Rbac {
    let mut text = String::new();
    text.push_str("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: view}\nrules:\n- {apiGroups: [\"\"], resources: [pods, services, configmaps], verbs: [get, list, watch]}\n");
    text.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: discovery}\nrules:\n- {nonResourceURLs: [/api, /api/*, /apis, /apis/*, /version], verbs: [get]}\n");
    // Half ClusterRoleBindings to other teams' groups and users, half RoleBindings in
    // 100 namespaces; the user's own binding is the last RoleBinding of its namespace.
    for i in 0..n / 2 {
        text.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: crb-{i}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects: [{{kind: Group, name: \"zitadel:team-{i}\"}}, {{kind: User, name: \"zitadel:user-{i}\"}}]\n"
        ));
    }
    for i in 0..n / 2 {
        let ns = i % 100;
        let group = if i == n / 2 - 1 {
            "zitadel:dev".to_owned()
        } else {
            format!("zitadel:ns-team-{i}")
        };
        text.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: rb-{i}, namespace: ns-{ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects: [{{kind: Group, name: \"{group}\"}}]\n"
        ));
    }
    let (docs, errors) = parse_source(&Source::from_text("bench.yaml", text));
    assert!(errors.is_empty(), "{errors}");
    let loaded = rampart_authz::load(&docs).expect("bench RBAC loads");
    assert_eq!(loaded.rbac.binding_count(), n);
    loaded.rbac
}

struct Case {
    name: &'static str,
    alg: Algorithm,
    token: String,
    keys: KeySet,
    jwk: serde_json::Value,
}

fn case(name: &'static str, alg: Algorithm, now: u64) -> Case {
    let rc = match alg {
        Algorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let kp = rcgen::KeyPair::generate_for(rc).expect("key generation");
    let pem = kp.serialize_pem();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()),
    }
    .expect("key");
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, alg).expect("jwk")).expect("json");
    jwk["kid"] = json!("k1");
    let keys = KeySet::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes()).expect("jwks");
    let mut header = Header::new(alg);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": "https://idp.example.test", "sub": "308541021466132481", "aud": ["kube", "3085410"],
        "azp": "kube", "iat": now, "exp": now + 3600, "auth_time": now, "amr": ["pwd", "otp", "mfa"],
        "email": "alice@acme.test", "email_verified": true,
        "urn:zitadel:iam:org:project:roles": {"dev": {"1001": "acme.test"}, "viewer": {"1001": "acme.test"}}
    });
    Case {
        name,
        alg,
        token: encode(&header, &claims, &key).expect("sign"),
        keys,
        jwk,
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Runs `f` WARMUP + ITERATIONS times per run, RUNS runs; returns the median over runs
/// of p50 and of p99, and the p99 of each run (nanoseconds).
fn measure(mut f: impl FnMut()) -> (u64, u64, Vec<u64>) {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..RUNS {
        let mut samples = Vec::with_capacity(ITERATIONS);
        for i in 0..WARMUP + ITERATIONS {
            let start = Instant::now();
            f();
            let elapsed = start.elapsed().as_nanos() as u64;
            if i >= WARMUP {
                samples.push(elapsed);
            }
        }
        samples.sort_unstable();
        p50s.push(percentile(&samples, 0.50));
        p99s.push(percentile(&samples, 0.99));
    }
    (median(p50s), median(p99s.clone()), p99s)
}

fn report(out: &mut impl Write, label: &str, (p50, p99, runs): (u64, u64, Vec<u64>)) {
    writeln!(
        out,
        "{label:<46} p50 {:>6.1} us  p99 {:>6.1} us  (p99 per run: {})",
        us(p50),
        us(p99),
        runs.iter()
            .map(|v| format!("{:.1}", us(*v)))
            .collect::<Vec<_>>()
            .join(" "),
    )
    .ok();
}

/// The aws-lc-rs verification of a case's signature alone: with the key parsed once,
/// and with the key parsed on every call.
fn signature_only(out: &mut impl Write, c: &Case) {
    let (signing_input, signature) = c.token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64");
    let b64 = |f: &str| {
        URL_SAFE_NO_PAD
            .decode(c.jwk[f].as_str().expect("jwk field"))
            .expect("base64")
    };
    let (parsed, unparsed): (ParsedPublicKey, Box<dyn Fn() -> bool>) = match c.alg {
        Algorithm::RS256 => {
            let (n, e) = (b64("n"), b64("e"));
            let parsed = RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
                .expect("rsa key");
            let signature = signature.clone();
            let message = signing_input.as_bytes().to_vec();
            (
                parsed,
                Box::new(move || {
                    RsaPublicKeyComponents { n: &n, e: &e }
                        .verify(&sig::RSA_PKCS1_2048_8192_SHA256, &message, &signature)
                        .is_ok()
                }),
            )
        }
        _ => {
            let point = [&[4u8][..], &b64("x"), &b64("y")].concat();
            let parsed =
                ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point).expect("ec key");
            let signature = signature.clone();
            let message = signing_input.as_bytes().to_vec();
            (
                parsed,
                Box::new(move || {
                    sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point)
                        .verify(&message, &signature)
                        .is_ok()
                }),
            )
        }
    };
    let message = signing_input.as_bytes();
    report(
        out,
        &format!("{:<17} signature alone, key parsed once", c.name),
        measure(|| {
            assert!(black_box(&parsed).verify_sig(message, &signature).is_ok());
        }),
    );
    report(
        out,
        &format!("{:<17} signature alone, key parsed per call", c.name),
        measure(|| assert!(black_box(&unparsed)())),
    );
}

fn main() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let policy = IssuerPolicy {
        issuer: "https://idp.example.test".into(),
        audiences: vec!["kube".into()],
        algorithms: SUPPORTED_ALGORITHMS.to_vec(),
        leeway: 30,
        mfa: MfaRule::default(),
        max_auth_age: Some(12 * 3600),
        claims: ClaimMappings {
            username_claim: "sub".into(),
            username_prefix: "zitadel:".into(),
            groups: vec![GroupsMapping {
                claim: "urn:zitadel:iam:org:project:roles".into(),
                prefix: "zitadel:".into(),
            }],
            uid_claim: Some("sub".into()),
        },
    };
    let rbac = rbac_with_bindings(1_000);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "authn+authz per request, cached key, {} bindings, {ITERATIONS} requests x {RUNS} runs",
        rbac.binding_count()
    )
    .ok();
    for c in [
        case("RS256 (2048-bit)", Algorithm::RS256, now),
        case("ES256 (P-256)", Algorithm::ES256, now),
    ] {
        for (label, method, target) in [
            (
                "allowed list",
                "GET",
                "/api/v1/namespaces/ns-99/pods?limit=500",
            ),
            (
                "denied delete",
                "DELETE",
                "/api/v1/namespaces/ns-99/pods/web-1",
            ),
        ] {
            let mut expected = None;
            let result = measure(|| {
                let token = UnverifiedToken::parse(black_box(&c.token)).expect("parse");
                let id = rampart_oidc::verify(&token, &policy, &c.keys, now).expect("verify");
                let mut groups = id.groups;
                groups.push("system:authenticated".into());
                let info = RequestInfo::parse(method, black_box(target)).expect("request");
                let d = rbac.authorize(
                    UserInfo {
                        name: &id.username,
                        groups: &groups,
                    },
                    &info,
                );
                let allowed = black_box(d.is_allowed());
                assert_eq!(*expected.get_or_insert(allowed), allowed);
            });
            report(
                &mut out,
                &format!(
                    "{:<17} {:<14} allowed={:<5}",
                    c.name,
                    label,
                    expected.unwrap_or(false)
                ),
                result,
            );
        }
        signature_only(&mut out, &c);
    }
    // With the gateway's cache of verified tokens (a client's second and later requests
    // within the cache TTL): digest, lookup, RequestInfo, RBAC.
    let c = case("RS256 (2048-bit)", Algorithm::RS256, now);
    let cache = rampart_gate::authn::TokenCache::default();
    let token = UnverifiedToken::parse(&c.token).expect("parse");
    let id = rampart_oidc::verify(&token, &policy, &c.keys, now).expect("verify");
    cache.insert(&c.token, &id, &policy, now);
    let result = measure(|| {
        let id = cache.get(black_box(&c.token), now).expect("cached");
        let mut groups = id.groups;
        groups.push("system:authenticated".into());
        let info = RequestInfo::parse("GET", black_box("/api/v1/namespaces/ns-99/pods?limit=500"))
            .expect("request");
        black_box(
            rbac.authorize(
                UserInfo {
                    name: &id.username,
                    groups: &groups,
                },
                &info,
            )
            .is_allowed(),
        );
    });
    report(
        &mut out,
        "token cache hit   allowed list   allowed=true ",
        result,
    );
    // The RBAC decision alone, to show where the time goes.
    let groups = vec![
        "zitadel:dev".to_owned(),
        "zitadel:viewer".to_owned(),
        "system:authenticated".to_owned(),
    ];
    let info = RequestInfo::parse("GET", "/api/v1/namespaces/ns-99/pods").expect("request");
    let result = measure(|| {
        black_box(rbac.authorize(
            UserInfo {
                name: "zitadel:308541021466132481",
                groups: &groups,
            },
            black_box(&info),
        ));
    });
    report(&mut out, "RBAC decision alone (1,000 bindings)", result);
}
