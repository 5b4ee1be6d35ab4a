//! The access gateway for the Kubernetes API (placeholder until the proxy lands).
