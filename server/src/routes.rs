//! Request routing: path and method to handler. Unknown paths get 404
//! JSON; paths are matched on their raw (percent-encoded) form and decoded
//! only by the handler that owns them. `/api/*` passes the access rule
//! (`auth.rs`) first.

use crate::auth::Peer;
use crate::body::RespBody;
use crate::error::ApiError;
use crate::{git, object, status, ServerConfig};
use http::{header, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::rc::Rc;
use trove_engine::NodeServices;

const OBJECT_PREFIX: &str = "/api/v1/object/";

pub async fn route(services: &Rc<NodeServices>, cfg: &ServerConfig, req: Request<Incoming>) -> Response<RespBody> {
    if let Err(e) = framing(&req) {
        return e.into_response();
    }
    let path = req.uri().path().to_owned();
    // /metrics shows what /api/v1/stats does: under the same rule.
    if path.starts_with("/api/") || path == "/metrics" {
        let write = !matches!(*req.method(), Method::GET | Method::HEAD);
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        if let Err(e) = cfg.api.check(peer, req.headers(), write) {
            return e.into_response();
        }
    }
    let result = match (req.method(), path.as_str()) {
        (_, p) if p.starts_with(OBJECT_PREFIX) => {
            let rest = &p[OBJECT_PREFIX.len()..];
            match rest.split_once('/') {
                Some((ns, key)) => object::handle(&services.objects, req, ns, key).await,
                None => Err(ApiError::bad_request("invalid_key", "the path must be /api/v1/object/{namespace}/{key}")),
            }
        }
        (_, p) if p.starts_with(git::GIT_PREFIX) => {
            let rest = p[git::GIT_PREFIX.len()..].to_owned();
            git::handle(services, cfg, req, &rest).await
        }
        (&Method::GET, "/api/v1/stats") => Ok(status::stats_json(&services.shard.node)),
        (&Method::GET, "/metrics") => Ok(status::metrics(&services.shard.node)),
        (&Method::GET | &Method::HEAD, "/_liveness") => Ok(status::liveness()),
        (&Method::GET | &Method::HEAD, "/_readiness") => Ok(status::readiness(&services.shard.node)),
        (_, "/api/v1/stats" | "/metrics" | "/_liveness" | "/_readiness") => {
            Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route takes GET"))
        }
        _ => Err(ApiError::not_found(format!("no route {path}; see the README for the API"))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// What RFC 9112 asks of every request that hyper lets through: HTTP/1.1
/// names its Host (3.2), and the only transfer coding understood here is
/// chunked alone; anything else (`gzip, chunked`) would be stored still
/// encoded, so it is 501 (6.1).
fn framing(req: &Request<Incoming>) -> Result<(), ApiError> {
    if req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        return Err(ApiError::bad_request("missing_host", "an HTTP/1.1 request must carry a Host header"));
    }
    let codings: Vec<&str> =
        req.headers().get_all(header::TRANSFER_ENCODING).iter().map(|v| v.to_str().unwrap_or("?")).collect();
    let chunked_alone = matches!(codings[..], [c] if c.trim().eq_ignore_ascii_case("chunked"));
    if !codings.is_empty() && !chunked_alone {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_transfer_coding",
            format!("Transfer-Encoding {:?} is not supported: send the body plain or chunked, and say Content-Encoding for compression", codings.join(", ")),
        ));
    }
    Ok(())
}
