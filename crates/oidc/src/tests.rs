//! Verification against keys made here: every refusal the gateway must make.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.example.test";

struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    public_pem: String,
}

fn signer(kid: &str, alg: Algorithm) -> Signer {
    let rc_alg = match alg {
        Algorithm::RS256 | Algorithm::PS256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => panic!("{alg:?}"),
    };
    let kp = rcgen::KeyPair::generate_for(rc_alg).unwrap();
    let pem = kp.serialize_pem();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    Signer {
        kid: kid.into(),
        alg,
        key,
        jwk,
        public_pem: kp.public_key_pem(),
    }
}

fn jwks(signers: &[&Signer]) -> KeySet {
    let doc = json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()});
    KeySet::from_jwks(doc.to_string().as_bytes()).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "308541021466132481",
        "aud": ["kube", "308541021466132480"],
        "azp": "kube",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "auth_time": NOW - 20,
        "amr": ["pwd", "otp", "mfa"],
        "email": "alice@acme.test",
        "email_verified": true,
        "urn:zitadel:iam:org:project:roles": {
            "cluster-admin": {"1001": "acme.test"},
            "dev": {"1001": "acme.test", "1002": "other.test"}
        }
    })
}

fn sign(s: &Signer, claims: &Value) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.kid.clone());
    encode(&h, claims, &s.key).unwrap()
}

fn policy() -> IssuerPolicy {
    IssuerPolicy {
        issuer: ISS.into(),
        audiences: vec!["kube".into()],
        algorithms: SUPPORTED_ALGORITHMS.to_vec(),
        leeway: 30,
        mfa: MfaRule::default(),
        max_auth_age: None,
        claims: ClaimMappings {
            username_claim: "sub".into(),
            username_prefix: "zitadel:".into(),
            groups: vec![GroupsMapping {
                claim: "urn:zitadel:iam:org:project:roles".into(),
                prefix: "zitadel:".into(),
            }],
            uid_claim: Some("sub".into()),
        },
    }
}

fn check(token: &str, policy: &IssuerPolicy, keys: &KeySet) -> Result<Identity, TokenError> {
    verify(&UnverifiedToken::parse(token)?, policy, keys, NOW)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn zitadel_id_tokens_map_to_users() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
        let s = signer("k1", alg);
        let id = check(&sign(&s, &claims()), &policy(), &jwks(&[&s])).unwrap();
        assert_eq!(id.username, "zitadel:308541021466132481");
        assert_eq!(id.uid.as_deref(), Some("308541021466132481"));
        assert_eq!(id.groups, ["zitadel:cluster-admin", "zitadel:dev"]);
        assert_eq!(id.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(id.auth_time, Some(NOW - 20));
    }
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let s = signer("k1", Algorithm::ES256);
    let keys = jwks(&[&s]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        check(&sign(&s, &c), &policy(), &keys)
    };
    assert_eq!(
        with(&|c| c["exp"] = json!(NOW - 31)),
        Err(TokenError::Expired)
    );
    assert!(with(&|c| c["exp"] = json!(NOW - 29)).is_ok());
    assert_eq!(
        with(&|c| c["nbf"] = json!(NOW + 31)),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        with(&|c| c["iat"] = json!(NOW + 31)),
        Err(TokenError::IssuedInFuture)
    );
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        Err(TokenError::Claim("exp".into()))
    );
    assert_eq!(
        with(&|c| c["exp"] = json!("soon")),
        Err(TokenError::Claim("exp".into()))
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let s = signer("k1", Algorithm::ES256);
    let keys = jwks(&[&s]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        check(&sign(&s, &c), &policy(), &keys)
    };
    assert_eq!(
        with(&|c| c["iss"] = json!("https://evil.test")),
        Err(TokenError::Issuer)
    );
    assert_eq!(
        with(&|c| c["iss"] = json!(format!("{ISS}/"))),
        Err(TokenError::Issuer)
    );
    assert_eq!(
        with(&|c| c["aud"] = json!("other")),
        Err(TokenError::Audience)
    );
    assert_eq!(
        with(&|c| c["aud"] = json!(["a", "b"])),
        Err(TokenError::Audience)
    );
    assert!(with(&|c| c["aud"] = json!("kube")).is_ok());
    assert_eq!(
        with(&|c| c["azp"] = json!("other-client")),
        Err(TokenError::Audience)
    );
}

#[test]
fn signatures_and_algorithms_are_enforced() {
    let s = signer("k1", Algorithm::RS256);
    let keys = jwks(&[&s]);
    let good = sign(&s, &claims());

    // Forged: same kid, another key.
    let forger = signer("k1", Algorithm::RS256);
    assert_eq!(
        check(&sign(&forger, &claims()), &policy(), &keys),
        Err(TokenError::Signature)
    );

    // Tampered claims.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    assert_eq!(
        check(&tampered, &policy(), &keys),
        Err(TokenError::Signature)
    );

    // alg none, with and without a signature.
    let none = json!({"alg": "none", "kid": "k1"});
    for t in [
        format!("{}.{}.", b64(&none), b64(&claims())),
        format!("{}.{}.{}", b64(&none), b64(&claims()), parts[2]),
    ] {
        assert_eq!(
            check(&t, &policy(), &keys),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    // HS256 with the RSA public key (PEM) as the HMAC secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let hs = encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(s.public_pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        check(&hs, &policy(), &keys),
        Err(TokenError::Algorithm("HS256".into()))
    );

    // An RSA key pinned to RS256 by its JWK refuses PS256.
    let mut h = Header::new(Algorithm::PS256);
    h.kid = Some("k1".into());
    let ps = encode(&h, &claims(), &s.key).unwrap();
    assert_eq!(check(&ps, &policy(), &keys), Err(TokenError::KeyAlgorithm));

    // An algorithm the issuer does not allow.
    let mut only_es = policy();
    only_es.algorithms = vec![Algorithm::ES256];
    assert_eq!(
        check(&good, &only_es, &keys),
        Err(TokenError::Algorithm("RS256".into()))
    );

    // Unknown kid: the caller refreshes the key set.
    let other = signer("k2", Algorithm::RS256);
    assert_eq!(
        check(&sign(&other, &claims()), &policy(), &keys),
        Err(TokenError::UnknownKey {
            kid: Some("k2".into())
        })
    );
    assert!(check(&sign(&other, &claims()), &policy(), &jwks(&[&s, &other])).is_ok());

    // Access tokens are not ID tokens.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    h.typ = Some("at+jwt".into());
    let at = encode(&h, &claims(), &s.key).unwrap();
    assert_eq!(
        check(&at, &policy(), &keys),
        Err(TokenError::Type("at+jwt".into()))
    );

    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.x",
        &"x".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert!(check(bad, &policy(), &keys).is_err(), "{bad:.20}");
    }
}

#[test]
fn mfa_rule_and_auth_age() {
    let s = signer("k1", Algorithm::ES256);
    let keys = jwks(&[&s]);
    let mut c = claims();
    c["amr"] = json!(["pwd"]);
    let err = check(&sign(&s, &c), &policy(), &keys).unwrap_err();
    assert!(matches!(err, TokenError::MfaRequired { .. }));
    assert!(
        err.to_string()
            .starts_with("multi-factor authentication required"),
        "{err}"
    );
    c.as_object_mut().unwrap().remove("amr");
    assert!(matches!(
        check(&sign(&s, &c), &policy(), &keys),
        Err(TokenError::MfaRequired { .. })
    ));
    // An external IdP login without local factors: amr is empty.
    c["amr"] = json!([]);
    assert!(matches!(
        check(&sign(&s, &c), &policy(), &keys),
        Err(TokenError::MfaRequired { .. })
    ));

    let mut p = policy();
    p.mfa = MfaRule::Required {
        any_of: vec![vec!["hwk".into()], vec!["pwd".into(), "otp".into()]],
    };
    c["amr"] = json!(["pwd", "otp"]);
    assert!(check(&sign(&s, &c), &p, &keys).is_ok());
    c["amr"] = json!(["pwd", "sms"]);
    assert!(check(&sign(&s, &c), &p, &keys).is_err());

    let mut p = policy();
    p.max_auth_age = Some(60);
    let mut c = claims();
    c["auth_time"] = json!(NOW - 100);
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::AuthTooOld { max_age: 60 })
    );
    c.as_object_mut().unwrap().remove("auth_time");
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::Claim("auth_time".into()))
    );
}

#[test]
fn reserved_names_and_email_rules() {
    let s = signer("k1", Algorithm::ES256);
    let keys = jwks(&[&s]);
    let mut p = policy();
    p.claims.username_prefix = String::new();
    let mut c = claims();
    c["sub"] = json!("system:admin");
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::Reserved("system:admin".into()))
    );

    let mut p = policy();
    p.claims.groups = vec![GroupsMapping {
        claim: "groups".into(),
        prefix: String::new(),
    }];
    let mut c = claims();
    c["groups"] = json!(["dev", "system:masters"]);
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::Reserved("system:masters".into()))
    );
    c["groups"] = json!("dev");
    assert_eq!(check(&sign(&s, &c), &p, &keys).unwrap().groups, ["dev"]);
    c["groups"] = json!(42);
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::Claim("groups".into()))
    );

    let mut p = policy();
    p.claims.username_claim = "email".into();
    p.claims.username_prefix = String::new();
    assert_eq!(
        check(&sign(&s, &claims()), &p, &keys).unwrap().username,
        "alice@acme.test"
    );
    let mut c = claims();
    c["email_verified"] = json!(false);
    assert_eq!(
        check(&sign(&s, &c), &p, &keys),
        Err(TokenError::EmailNotVerified)
    );
}

#[test]
fn key_sets_drop_what_cannot_sign() {
    let s = signer("k1", Algorithm::ES256);
    let doc = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
        {"kty": "weird"},
        s.jwk.clone(),
    ]});
    let keys = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.has_kid("k1"));
    assert!(!keys.has_kid("hmac"));
    assert_eq!(
        KeySet::from_jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap_err(),
        KeySetError::NoUsableKey
    );
    assert!(KeySet::from_jwks(b"[]").is_err());
}

#[test]
fn rsa_keys_without_alg_verify_every_rsa_algorithm() {
    let s = signer("k1", Algorithm::RS256);
    let mut jwk = s.jwk.clone();
    jwk.as_object_mut().unwrap().remove("alg");
    let keys = KeySet::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
    for alg in &SUPPORTED_ALGORITHMS[..6] {
        let mut h = Header::new(*alg);
        h.kid = Some("k1".into());
        let t = encode(&h, &claims(), &s.key).unwrap();
        assert!(check(&t, &policy(), &keys).is_ok(), "{alg:?}");
    }
    let es = sign(&signer("k1", Algorithm::ES256), &claims());
    assert_eq!(check(&es, &policy(), &keys), Err(TokenError::KeyAlgorithm));
}

#[test]
fn tokens_without_kid_try_a_bounded_number_of_keys() {
    let signers: Vec<Signer> = (0..MAX_SIGNATURE_CHECKS + 2)
        .map(|i| signer(&format!("k{i}"), Algorithm::ES256))
        .collect();
    let keys = jwks(&signers.iter().collect::<Vec<_>>());
    let no_kid = |s: &Signer| encode(&Header::new(Algorithm::ES256), &claims(), &s.key).unwrap();
    assert!(check(&no_kid(&signers[0]), &policy(), &keys).is_ok());
    assert!(
        check(
            &no_kid(&signers[MAX_SIGNATURE_CHECKS - 1]),
            &policy(),
            &keys
        )
        .is_ok()
    );
    assert_eq!(
        check(&no_kid(&signers[MAX_SIGNATURE_CHECKS]), &policy(), &keys),
        Err(TokenError::Signature),
        "keys past the bound are not tried"
    );
    // No key of the algorithm at all.
    let rsa = signer("r", Algorithm::RS256);
    assert_eq!(
        check(
            &encode(&Header::new(Algorithm::RS256), &claims(), &rsa.key).unwrap(),
            &policy(),
            &keys
        ),
        Err(TokenError::UnknownKey { kid: None })
    );
}

#[test]
fn malformed_ec_keys_are_dropped() {
    let s = signer("k1", Algorithm::ES256);
    let mut short = s.jwk.clone();
    short["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 31]));
    short["kid"] = json!("short");
    let mut off_curve = s.jwk.clone();
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
    off_curve["kid"] = json!("off");
    let mut wrong_curve = s.jwk.clone();
    wrong_curve["crv"] = json!("P-384");
    wrong_curve["kid"] = json!("p384");
    let doc = json!({"keys": [short, off_curve, wrong_curve, s.jwk.clone()]});
    let keys = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.has_kid("k1"));
}

#[test]
fn malformed_headers_are_refused() {
    let c = b64(&claims());
    for header in [
        r#"[1]"#,
        r#"{"kid":"k1"}"#,
        r#"{"alg":"ES256","alg":"none"}"#,
        r#"{"alg":7}"#,
    ] {
        let t = format!("{}.{c}.AAAA", URL_SAFE_NO_PAD.encode(header));
        assert_eq!(
            UnverifiedToken::parse(&t).err(),
            Some(TokenError::Malformed),
            "{header}"
        );
    }
    let s = signer("k1", Algorithm::ES256);
    let crit = format!(
        "{}.{c}.AAAA",
        b64(&json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}))
    );
    assert_eq!(
        check(&crit, &policy(), &jwks(&[&s])),
        Err(TokenError::Malformed)
    );
}

proptest::proptest! {
    /// Arbitrary input never panics the parser or the verifier.
    #[test]
    fn arbitrary_tokens_are_refused_without_panic(t in "[A-Za-z0-9_.-]{0,200}") {
        let keys = KeySet::default();
        if let Ok(u) = UnverifiedToken::parse(&t) {
            proptest::prop_assert!(verify(&u, &policy(), &keys, NOW).is_err());
        }
    }
}
