//! OIDC ID-token verification for Rampart's access gateway: signature against a key
//! set, the standard claims, the MFA rule, and the mapping of claims to a Kubernetes
//! user (name, uid, groups), as the API server's structured authentication
//! configuration would map them.
//!
//! What it does:
//! - [`KeySet::from_jwks`] turns a JWKS document into verification keys, each pinned to
//!   the algorithms its key type allows (RSA: RS256/384/512 and PS256/384/512; EC P-256:
//!   ES256; EC P-384: ES384; a JWK `alg` narrows that to one). Symmetric and unknown keys
//!   are dropped: a token can never pick HMAC with a public key as secret. Each key is
//!   parsed once, when the key set is made, into an aws-lc-rs verification key per
//!   algorithm it allows; a request only checks the signature.
//! - [`verify`] checks, in this order: size and shape, the header (`alg` allowed by the
//!   issuer and the key, `none` and HMAC refused, `typ` absent, `JWT` or
//!   `application/jwt` — access tokens with `at+jwt` are refused), the signature with the
//!   key named by `kid` (or every key of the algorithm when there is no `kid`; at most
//!   [`MAX_SIGNATURE_CHECKS`] of them), then
//!   `iss` (exact), `aud` (one of the configured audiences; with several audiences an
//!   `azp` must be one of ours), `exp`, `nbf` and `iat` with a small leeway, `sub`, the
//!   MFA rule over `amr` and the optional maximum age of `auth_time`, and finally maps
//!   the user. Names in the reserved `system:` space are refused.
//!
//! What it does not do: no HTTP (the JWKS and discovery documents are fetched by the
//! gateway), no clock (the time is passed in), no token caching.

use std::collections::BTreeSet;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use serde_json::{Map, Value};

/// The largest token accepted, in bytes. Real ID tokens are well below 8 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The most keys kept from one JWKS document.
pub const MAX_KEYS: usize = 64;
/// The most signature checks one token can cause: a token without `kid` is tried
/// against the keys of its algorithm, but not against more than this many.
pub const MAX_SIGNATURE_CHECKS: usize = 4;
/// The reserved Kubernetes name space.
pub const RESERVED_PREFIX: &str = "system:";

/// The algorithms the gateway can verify (the API server's list, less ES512, which
/// the crypto stack does not offer).
pub const SUPPORTED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Parses an algorithm name of [`SUPPORTED_ALGORITHMS`].
pub fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

/// The aws-lc-rs verification algorithm of an ECDSA JWS algorithm (fixed-size `r || s`
/// signatures, as JWS has them).
fn ecdsa_algorithm(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

/// The aws-lc-rs parameters of an RSA JWS algorithm; keys must have 2048 to 8192 bits.
fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// Why a token is refused. The `Display` text is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("token is too large")]
    TooLarge,
    /// Not three base64url parts of JSON.
    #[error("token is malformed")]
    Malformed,
    /// `alg` is `none`, HMAC, or not allowed for the issuer.
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// `typ` says this is not an ID token.
    #[error("token type {0:?} is not accepted: use an ID token")]
    Type(String),
    /// No key with this `kid` (the key set may need a refresh).
    #[error("token signing key is unknown")]
    UnknownKey {
        /// The `kid` of the token, if any.
        kid: Option<String>,
    },
    /// The key exists but does not allow the token's algorithm.
    #[error("token algorithm does not match its signing key")]
    KeyAlgorithm,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// `aud` has none of the configured audiences, or `azp` is not one of them.
    #[error("token audience is not accepted")]
    Audience,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` in the future.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// A required claim is missing or has the wrong type.
    #[error("token claim {0:?} is missing or invalid")]
    Claim(String),
    /// `amr` does not satisfy the MFA rule.
    #[error(
        "multi-factor authentication required: the token's authentication methods {amr:?} do not satisfy {rule}"
    )]
    MfaRequired {
        /// The token's `amr` values.
        amr: Vec<String>,
        /// The rule, in words.
        rule: String,
    },
    /// `auth_time` is older than the allowed maximum.
    #[error("authentication is too old: log in again (maximum age {max_age}s)")]
    AuthTooOld {
        /// The maximum age in seconds.
        max_age: u64,
    },
    /// `email` is the user name but not verified.
    #[error("token email is not verified")]
    EmailNotVerified,
    /// The user or a group is in the reserved `system:` space.
    #[error("token maps to the reserved name {0:?}")]
    Reserved(String),
}

/// One verification key: the public key parsed once for each algorithm it may verify.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl Key {
    fn allows(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find_map(|(a, k)| (*a == alg).then_some(k))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field(
                "algorithms",
                &self.verifiers.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The verification keys of one issuer.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// A JWKS document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("invalid JWKS document: {0}")]
    Invalid(String),
    /// No key the gateway can verify with.
    #[error("the JWKS document has no usable signing key")]
    NoUsableKey,
}

impl KeySet {
    /// Parses a JWKS document. Keys that are not for signatures, symmetric, of an
    /// unsupported type or malformed are skipped; at most [`MAX_KEYS`] are kept.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeySetError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| KeySetError::Invalid(e.to_string()))?;
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::Invalid("no \"keys\" array".into()));
        };
        let mut out = Vec::new();
        for k in keys {
            if out.len() == MAX_KEYS {
                break;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            if let Some(key) = Self::key_from_jwk(&jwk) {
                out.push(key);
            }
        }
        if out.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys: out })
    }

    fn key_from_jwk(jwk: &Jwk) -> Option<Key> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => SUPPORTED_ALGORITHMS[..6].to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => family,
            Some(ka) => {
                let named = key_algorithm(ka)?;
                if !family.contains(&named) {
                    return None;
                }
                vec![named]
            }
        };
        let verifiers = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
                let e = URL_SAFE_NO_PAD.decode(&rsa.e).ok()?;
                let components = RsaPublicKeyComponents { n, e };
                algorithms
                    .iter()
                    .map(|&a| {
                        let params = rsa_parameters(a)?;
                        Some((a, components.to_parsed_public_key(params).ok()?))
                    })
                    .collect::<Option<Vec<_>>>()?
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let x = URL_SAFE_NO_PAD.decode(&ec.x).ok()?;
                let y = URL_SAFE_NO_PAD.decode(&ec.y).ok()?;
                let size = if ec.curve == EllipticCurve::P256 {
                    32
                } else {
                    48
                };
                if x.len() != size || y.len() != size {
                    return None;
                }
                // The uncompressed SEC 1 point; aws-lc checks that it is on the curve.
                let point = [&[4u8][..], &x, &y].concat();
                algorithms
                    .iter()
                    .map(|&a| {
                        let alg = ecdsa_algorithm(a)?;
                        Some((a, ParsedPublicKey::new(alg, &point).ok()?))
                    })
                    .collect::<Option<Vec<_>>>()?
            }
            _ => return None,
        };
        Some(Key {
            kid: jwk.common.key_id.clone(),
            verifiers,
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// Where the groups come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsMapping {
    /// The claim: an array of strings, a string, or an object whose keys are the
    /// groups (Zitadel's `urn:zitadel:iam:org:project:roles`).
    pub claim: String,
    /// Prepended to every group.
    pub prefix: String,
}

/// How claims become a Kubernetes user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMappings {
    /// The user-name claim (`sub` by default).
    pub username_claim: String,
    /// Prepended to the user name.
    pub username_prefix: String,
    /// Group claims; several may be given and their groups are joined.
    pub groups: Vec<GroupsMapping>,
    /// The uid claim, if any.
    pub uid_claim: Option<String>,
}

impl Default for ClaimMappings {
    fn default() -> Self {
        Self {
            username_claim: "sub".into(),
            username_prefix: String::new(),
            groups: Vec::new(),
            uid_claim: None,
        }
    }
}

/// The MFA rule over `amr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MfaRule {
    /// `amr` must contain every value of at least one of these sets.
    Required {
        /// The alternatives, e.g. `[["mfa"]]` or `[["mfa"], ["pwd", "otp"]]`.
        any_of: Vec<Vec<String>>,
    },
    /// No MFA evidence is asked for. Weakens the gateway; only for issuers that
    /// enforce MFA themselves and do not report it.
    DangerousNotRequired,
}

impl Default for MfaRule {
    fn default() -> Self {
        MfaRule::Required {
            any_of: vec![vec!["mfa".into()]],
        }
    }
}

impl MfaRule {
    fn describe(&self) -> String {
        match self {
            MfaRule::Required { any_of } => {
                let alts: Vec<String> = any_of
                    .iter()
                    .map(|set| format!("[{}]", set.join(", ")))
                    .collect();
                format!("the MFA rule (amr containing one of {})", alts.join(" or "))
            }
            MfaRule::DangerousNotRequired => "nothing".into(),
        }
    }

    fn satisfied_by(&self, amr: &[String]) -> bool {
        match self {
            MfaRule::Required { any_of } => any_of
                .iter()
                .any(|set| set.iter().all(|m| amr.iter().any(|a| a == m))),
            MfaRule::DangerousNotRequired => true,
        }
    }
}

/// What the gateway accepts from one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted audiences (client ids); at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms, a subset of [`SUPPORTED_ALGORITHMS`].
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf`, `iat` and `auth_time`, in seconds.
    pub leeway: u64,
    /// The MFA rule.
    pub mfa: MfaRule,
    /// Maximum age of `auth_time` in seconds; `None` for no limit.
    pub max_auth_age: Option<u64>,
    /// How claims map to a user.
    pub claims: ClaimMappings,
}

/// A verified, mapped user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The issuer that vouched for the user.
    pub issuer: String,
    /// The Kubernetes user name (prefixed).
    pub username: String,
    /// The uid, if mapped.
    pub uid: Option<String>,
    /// The Kubernetes groups (prefixed).
    pub groups: Vec<String>,
    /// The authentication methods (`amr`).
    pub amr: Vec<String>,
    /// When the user authenticated (`auth_time`), if stated.
    pub auth_time: Option<u64>,
    /// When the token expires (`exp`).
    pub expires_at: u64,
}

/// The JOSE header of a token.
#[derive(Debug, serde::Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<Value>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// A token split into its parts, header and claims decoded but nothing verified.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    header: JoseHeader,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

impl<'a> UnverifiedToken<'a> {
    /// Splits and decodes a compact JWS.
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: JoseHeader = decode_part(h)?;
        let claims: Map<String, Value> = decode_part(c)?;
        Ok(Self {
            header,
            claims,
            signing_input: &token[..h.len() + 1 + c.len()],
            signature: s,
        })
    }

    /// The unverified `iss`, to choose the issuer's policy and keys.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The unverified `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }
}

/// Decodes one base64url part holding a JSON object.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    if bytes.first() != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies a token against an issuer's policy and keys at time `now` (Unix seconds),
/// and maps it to a user.
pub fn verify(
    token: &UnverifiedToken<'_>,
    policy: &IssuerPolicy,
    keys: &KeySet,
    now: u64,
) -> Result<Identity, TokenError> {
    // Header.
    let alg_name = token.header.alg.as_str();
    let alg = algorithm_from_name(alg_name)
        .filter(|a| policy.algorithms.contains(a))
        .ok_or_else(|| TokenError::Algorithm(alg_name.to_owned()))?;
    if token.header.crit.is_some() {
        return Err(TokenError::Malformed);
    }
    match &token.header.typ {
        None => {}
        Some(Value::String(t))
            if t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt") => {}
        Some(t) => return Err(TokenError::Type(t.as_str().unwrap_or("?").to_owned())),
    }

    // Signature, with the key pinned by kid and algorithm: with a kid, the keys of that
    // id (one in any sane key set); without, the keys of the algorithm. Each candidate
    // costs one signature check, so their number is bounded.
    let kid = token.kid();
    let mut candidates = keys
        .keys
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => k.allows(alg),
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(TokenError::UnknownKey {
            kid: kid.map(str::to_owned),
        });
    }
    let signature = URL_SAFE_NO_PAD
        .decode(token.signature)
        .map_err(|_| TokenError::Signature)?;
    let message = token.signing_input.as_bytes();
    let mut verified = false;
    let mut algorithm_mismatch = false;
    for key in candidates.take(MAX_SIGNATURE_CHECKS) {
        let Some(verifier) = key.verifier(alg) else {
            algorithm_mismatch = true;
            continue;
        };
        if verifier.verify_sig(message, &signature).is_ok() {
            verified = true;
            break;
        }
    }
    if !verified {
        return Err(if algorithm_mismatch {
            TokenError::KeyAlgorithm
        } else {
            TokenError::Signature
        });
    }

    // Claims.
    let claims = &token.claims;
    if token.issuer() != Some(policy.issuer.as_str()) {
        return Err(TokenError::Issuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Audience),
    };
    if !audiences
        .iter()
        .any(|a| policy.audiences.iter().any(|p| p == a))
    {
        return Err(TokenError::Audience);
    }
    if audiences.len() > 1
        && let Some(azp) = claims.get("azp")
        && !azp
            .as_str()
            .is_some_and(|azp| policy.audiences.iter().any(|p| p == azp))
    {
        return Err(TokenError::Audience);
    }
    let exp = time_claim(claims, "exp")?.ok_or_else(|| TokenError::Claim("exp".into()))?;
    if now > exp.saturating_add(policy.leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && now.saturating_add(policy.leeway) < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    let iat = time_claim(claims, "iat")?.ok_or_else(|| TokenError::Claim("iat".into()))?;
    if iat > now.saturating_add(policy.leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(TokenError::Claim("sub".into()));
    }

    // MFA.
    let amr: Vec<String> = match claims.get("amr") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| TokenError::Claim("amr".into()))?,
        Some(_) => return Err(TokenError::Claim("amr".into())),
    };
    if !policy.mfa.satisfied_by(&amr) {
        return Err(TokenError::MfaRequired {
            amr,
            rule: policy.mfa.describe(),
        });
    }
    let auth_time = time_claim(claims, "auth_time")?;
    if let Some(max_age) = policy.max_auth_age {
        let Some(at) = auth_time else {
            return Err(TokenError::Claim("auth_time".into()));
        };
        if now > at.saturating_add(max_age).saturating_add(policy.leeway) {
            return Err(TokenError::AuthTooOld { max_age });
        }
    }

    let (username, uid, groups) = map_user(claims, &policy.claims)?;
    Ok(Identity {
        issuer: policy.issuer.clone(),
        username,
        uid,
        groups,
        amr,
        auth_time,
        expires_at: exp,
    })
}

/// A NumericDate claim: `None` when absent, an error when not a non-negative number.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| TokenError::Claim(name.to_owned())),
    }
}

fn map_user(
    claims: &Map<String, Value>,
    m: &ClaimMappings,
) -> Result<(String, Option<String>, Vec<String>), TokenError> {
    let name = claims
        .get(&m.username_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Claim(m.username_claim.clone()))?;
    if m.username_claim == "email"
        && claims.get("email_verified").and_then(Value::as_bool) != Some(true)
    {
        return Err(TokenError::EmailNotVerified);
    }
    let username = format!("{}{name}", m.username_prefix);
    if username.starts_with(RESERVED_PREFIX) {
        return Err(TokenError::Reserved(username));
    }
    let uid = match &m.uid_claim {
        None => None,
        Some(c) => Some(
            claims
                .get(c)
                .and_then(Value::as_str)
                .ok_or_else(|| TokenError::Claim(c.clone()))?
                .to_owned(),
        ),
    };
    let mut groups = BTreeSet::new();
    for g in &m.groups {
        let names: Vec<&str> = match claims.get(&g.claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => list
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or_else(|| TokenError::Claim(g.claim.clone()))?,
            Some(Value::Object(map)) => map.keys().map(String::as_str).collect(),
            Some(_) => return Err(TokenError::Claim(g.claim.clone())),
        };
        for n in names {
            if n.is_empty() {
                continue;
            }
            let group = format!("{}{n}", g.prefix);
            if group.starts_with(RESERVED_PREFIX) {
                return Err(TokenError::Reserved(group));
            }
            groups.insert(group);
        }
    }
    Ok((username, uid, groups.into_iter().collect()))
}

#[cfg(test)]
mod tests;
