//! Kubernetes `Status` responses, as the API server writes them, so that kubectl prints
//! the gateway's refusals the way it prints the API server's.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

/// A `Status` failure response.
pub fn failure(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response<Bytes> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let mut res = Response::new(Bytes::from(body.to_string()));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    res
}

/// 401: the request carries no acceptable token. The message says why (an expired
/// token, missing MFA, ...), never anything about the gateway's internals.
pub fn unauthorized(message: &str) -> Response<Bytes> {
    let mut res = failure(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rampart\""),
    );
    res
}

/// 403 for a request RBAC does not allow, with the API server's message and details.
pub fn forbidden(user: &str, req: &rampart_authz::RequestInfo) -> Response<Bytes> {
    let message = rampart_authz::forbidden_status_message(user, req);
    let details = if req.is_resource_request && !req.resource.is_empty() {
        let mut d = json!({"group": req.api_group, "kind": req.resource});
        if !req.name.is_empty() {
            d["name"] = json!(req.name);
        }
        Some(d)
    } else {
        None
    };
    failure(StatusCode::FORBIDDEN, "Forbidden", &message, details)
}

/// 400 for a request the gateway cannot parse.
pub fn bad_request(message: &str) -> Response<Bytes> {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// 502 when the API server cannot be reached; the cause is logged, not sent.
pub fn bad_gateway() -> Response<Bytes> {
    failure(
        StatusCode::BAD_GATEWAY,
        "ServiceUnavailable",
        "the Kubernetes API server behind the gateway is unreachable",
        None,
    )
}

/// 504 when the API server does not answer in time.
pub fn gateway_timeout() -> Response<Bytes> {
    failure(
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        "the Kubernetes API server behind the gateway did not answer in time",
        None,
    )
}
