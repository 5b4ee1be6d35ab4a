//! OIDC ID-token verification (placeholder until the verifier lands).
