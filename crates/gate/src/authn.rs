//! Authentication: ID tokens from the configured issuers, verified against key sets
//! fetched from each issuer (discovery, then `jwks_uri`) and cached.
//!
//! The key set of an issuer is fetched at start, refreshed periodically, and refreshed
//! when a token names an unknown key id — at most once per `minRefreshInterval`, and
//! one fetch at a time, so tokens with made-up key ids cannot make the gateway hammer
//! the issuer. A failed fetch keeps the previous keys.
//!
//! Verified tokens are remembered for a few seconds ([`TokenCache`]), so a client's
//! burst of requests costs one signature check.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rampart_oidc::{Identity, KeySet, TokenError, UnverifiedToken};

use crate::config::Issuer;
use crate::error::GateError;

/// The largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Time allowed for one discovery or JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

type FetchClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    NoToken,
    /// The token is refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token's issuer is not configured.
    #[error("token issuer is not accepted")]
    UnknownIssuer,
    /// The issuer's keys could not be fetched yet.
    #[error("the issuer's signing keys are not available")]
    KeysUnavailable,
}

struct IssuerKeys {
    config: Issuer,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    client: FetchClient,
}

/// Verifies tokens from the configured issuers.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerKeys>>,
    cache: TokenCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| &i.config.policy.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator; nothing is fetched yet (see [`Authenticator::start`]).
    pub fn new(issuers: &[Issuer]) -> Result<Self, GateError> {
        let mut out = Vec::new();
        for issuer in issuers {
            let tls = crate::tls::client_config(&issuer.ca_file, None)?;
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(FETCH_TIMEOUT));
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            let client = Client::builder(TokioExecutor::new()).build(connector);
            out.push(Arc::new(IssuerKeys {
                config: issuer.clone(),
                keys: RwLock::new(None),
                last_refresh: tokio::sync::Mutex::new(None),
                client,
            }));
        }
        Ok(Self {
            issuers: out,
            cache: TokenCache::default(),
        })
    }

    /// Fetches every issuer's keys once and starts the periodic refreshes.
    pub async fn start(&self) {
        for issuer in &self.issuers {
            issuer.refresh(true).await;
            let issuer = Arc::clone(issuer);
            tokio::spawn(async move {
                let period = issuer.config.jwks_refresh_interval;
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    tick.tick().await;
                    issuer.refresh(true).await;
                }
            });
        }
    }

    /// Authenticates a bearer token: from the cache of verified tokens, or by verifying
    /// it (refreshing the issuer's keys once if the key id is unknown).
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let now = unix_now();
        let digest = TokenCache::key(token);
        if let Some(id) = self.cache.lookup(&digest, now) {
            return Ok(id);
        }
        let unverified = UnverifiedToken::parse(token)?;
        let iss = unverified.issuer().ok_or(AuthError::UnknownIssuer)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.policy.issuer == iss)
            .ok_or(AuthError::UnknownIssuer)?;
        let keys = issuer.current_keys();
        let result = match &keys {
            Some(keys) => {
                rampart_oidc::verify(&unverified, &issuer.config.policy, keys, unix_now())
            }
            None => Err(TokenError::UnknownKey { kid: None }),
        };
        let identity = match result {
            Err(TokenError::UnknownKey { .. }) => {
                if !issuer.refresh(false).await {
                    return Err(if keys.is_some() {
                        AuthError::Token(TokenError::UnknownKey {
                            kid: unverified.kid().map(str::to_owned),
                        })
                    } else {
                        AuthError::KeysUnavailable
                    });
                }
                let keys = issuer.current_keys().ok_or(AuthError::KeysUnavailable)?;
                rampart_oidc::verify(&unverified, &issuer.config.policy, &keys, unix_now())?
            }
            other => other?,
        };
        self.cache
            .store(digest, &identity, &issuer.config.policy, now);
        Ok(identity)
    }

    /// Puts a key set in the cache of the issuer `iss` (tests and benchmarks).
    pub fn set_keys(&self, iss: &str, keys: KeySet) {
        for i in &self.issuers {
            if i.config.policy.issuer == iss
                && let Ok(mut slot) = i.keys.write()
            {
                *slot = Some(Arc::new(keys.clone()));
            }
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IssuerKeys {
    fn current_keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().ok().and_then(|k| k.clone())
    }

    /// Refreshes the key set. Unless `force`, does nothing (and returns false) when the
    /// last refresh is more recent than the minimum interval. Returns whether new keys
    /// were installed. Concurrent callers wait for the running refresh and then see
    /// its result through the rate limit.
    async fn refresh(&self, force: bool) -> bool {
        let mut last = self.last_refresh.lock().await;
        if !force
            && let Some(at) = *last
            && at.elapsed() < self.config.jwks_min_refresh_interval
        {
            return false;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT * 2, self.fetch()).await {
            Ok(Ok(keys)) => {
                tracing::info!(issuer = %self.config.policy.issuer, keys = keys.len(), "signing keys fetched");
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(Arc::new(keys));
                }
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(issuer = %self.config.policy.issuer, error = %e, "cannot fetch signing keys; keeping the previous ones");
                false
            }
            Err(_) => {
                tracing::warn!(issuer = %self.config.policy.issuer, "fetching signing keys timed out; keeping the previous ones");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let discovery = self.get_json(&self.config.discovery_url).await?;
        let issuer = discovery.get("issuer").and_then(serde_json::Value::as_str);
        if issuer != Some(self.config.policy.issuer.as_str()) {
            return Err(format!(
                "discovery document names issuer {issuer:?}, expected {:?}",
                self.config.policy.issuer
            ));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or("discovery document has no jwks_uri")?;
        if !jwks_uri.starts_with("https://") {
            return Err("jwks_uri is not https".into());
        }
        let body = self.get(jwks_uri).await?;
        KeySet::from_jwks(&body).map_err(|e| e.to_string())
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let body = self.get(url).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: invalid JSON: {e}"))
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("{url}: timed out"))?
            .map_err(|e| format!("{url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{url}: HTTP {}", res.status()));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(res.into_body(), MAX_DOCUMENT_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(body.to_bytes())
    }
}

/// How long a verified token is trusted without checking its signature again (the API
/// server caches successful token authentications for 10 s too).
pub const TOKEN_CACHE_TTL: u64 = 10;
/// The most tokens remembered.
pub const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Verified tokens, keyed by the SHA-256 of the token, each trusted until the earliest
/// of: its `exp` (plus leeway), its `auth_time` plus the MFA maximum age (plus leeway),
/// and [`TOKEN_CACHE_TTL`] after verification. A removed or rotated key therefore stops
/// being trusted within the TTL. Bounded: when full, expired entries go first, then all.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Identity, u64)>>,
}

impl TokenCache {
    fn key(token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    /// The identity of a token verified earlier and still trusted at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Identity> {
        self.lookup(&Self::key(token), now)
    }

    fn lookup(&self, key: &[u8; 32], now: u64) -> Option<Identity> {
        let mut map = self.entries.lock().ok()?;
        match map.get(key) {
            Some((id, until)) if now <= *until => Some(id.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a token verified at `now` under `policy`.
    pub fn insert(
        &self,
        token: &str,
        identity: &Identity,
        policy: &rampart_oidc::IssuerPolicy,
        now: u64,
    ) {
        self.store(Self::key(token), identity, policy, now);
    }

    fn store(
        &self,
        key: [u8; 32],
        identity: &Identity,
        policy: &rampart_oidc::IssuerPolicy,
        now: u64,
    ) {
        let mut until = identity
            .expires_at
            .saturating_add(policy.leeway)
            .min(now.saturating_add(TOKEN_CACHE_TTL));
        if let (Some(max_age), Some(at)) = (policy.max_auth_age, identity.auth_time) {
            until = until.min(at.saturating_add(max_age).saturating_add(policy.leeway));
        }
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() >= TOKEN_CACHE_ENTRIES {
            map.retain(|_, (_, u)| now <= *u);
            if map.len() >= TOKEN_CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (identity.clone(), until));
    }
}

#[cfg(test)]
mod tests {
    use rampart_oidc::{ClaimMappings, IssuerPolicy, MfaRule};

    use super::*;

    fn identity(exp: u64, auth_time: Option<u64>) -> Identity {
        Identity {
            issuer: "https://idp".into(),
            username: "u".into(),
            uid: None,
            groups: vec![],
            amr: vec!["mfa".into()],
            auth_time,
            expires_at: exp,
        }
    }

    fn policy(max_auth_age: Option<u64>) -> IssuerPolicy {
        IssuerPolicy {
            issuer: "https://idp".into(),
            audiences: vec!["kube".into()],
            algorithms: vec![],
            leeway: 5,
            mfa: MfaRule::default(),
            max_auth_age,
            claims: ClaimMappings::default(),
        }
    }

    #[tokio::test]
    async fn verified_tokens_are_served_from_the_cache() {
        use jsonwebtoken::jwk::Jwk;
        use jsonwebtoken::{Algorithm, EncodingKey, Header};

        let dir = std::env::temp_dir().join(format!("rampart-authn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["idp".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let issuer = crate::config::Issuer {
            policy: IssuerPolicy {
                issuer: "https://idp".into(),
                audiences: vec!["kube".into()],
                algorithms: vec![Algorithm::ES256],
                leeway: 5,
                mfa: MfaRule::default(),
                max_auth_age: None,
                claims: ClaimMappings::default(),
            },
            discovery_url: "https://idp/.well-known/openid-configuration".into(),
            ca_file: ca,
            jwks_refresh_interval: Duration::from_secs(3600),
            jwks_min_refresh_interval: Duration::from_secs(3600),
        };
        let auth = Authenticator::new(&[issuer]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        let signing = rcgen::KeyPair::generate().unwrap();
        let enc = EncodingKey::from_ec_pem(signing.serialize_pem().as_bytes()).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap()).unwrap();
        jwk["kid"] = serde_json::json!("k");
        let keys =
            KeySet::from_jwks(serde_json::json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        auth.set_keys("https://idp", keys);
        let now = unix_now();
        let token = |sub: &str| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some("k".into());
            let claims = serde_json::json!({"iss": "https://idp", "aud": "kube", "sub": sub,
                "iat": now, "exp": now + 300, "amr": ["mfa"]});
            jsonwebtoken::encode(&h, &claims, &enc).unwrap()
        };
        let first = token("alice");
        assert_eq!(auth.authenticate(&first).await.unwrap().username, "alice");
        // With the key gone (and no refresh allowed), the verified token is still served
        // from the cache, and a new one is refused.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_enc = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
        let mut other_jwk =
            serde_json::to_value(Jwk::from_encoding_key(&other_enc, Algorithm::ES256).unwrap())
                .unwrap();
        other_jwk["kid"] = serde_json::json!("k");
        auth.set_keys(
            "https://idp",
            KeySet::from_jwks(
                serde_json::json!({"keys": [other_jwk]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap(),
        );
        assert_eq!(auth.authenticate(&first).await.unwrap().username, "alice");
        assert_eq!(
            auth.authenticate(&token("bob")).await,
            Err(AuthError::Token(TokenError::Signature))
        );
    }

    #[test]
    fn cached_tokens_expire() {
        let c = TokenCache::default();
        c.insert("t1", &identity(1000, None), &policy(None), 998);
        assert!(c.get("t1", 1000).is_some());
        assert!(c.get("t1", 1005).is_some(), "exp plus leeway");
        assert!(c.get("t1", 1006).is_none());
        assert!(c.get("t1", 998).is_none(), "removed once expired");
        assert!(c.get("t2", 998).is_none());

        c.insert("t3", &identity(5000, None), &policy(None), 1000);
        assert!(c.get("t3", 1000 + TOKEN_CACHE_TTL).is_some());
        assert!(
            c.get("t3", 1001 + TOKEN_CACHE_TTL).is_none(),
            "trusted for the TTL only"
        );

        c.insert("t4", &identity(5000, Some(900)), &policy(Some(100)), 1000);
        assert!(c.get("t4", 1005).is_some());
        assert!(c.get("t4", 1006).is_none(), "MFA maximum age still applies");
    }
}
