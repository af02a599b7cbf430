//! `/api/v1/object/{namespace}/{key}`: GET, HEAD, PUT, DELETE.
//!
//! GET answers from the engine's verified stream; the first block is read
//! and checked before the status line is sent, so a corrupt small object
//! is never answered 200 (it is removed and looked up again). Range,
//! If-Range, If-None-Match (304) and If-Match (412) follow RFC 9110
//! (`precondition.rs`; a conditional header that cannot be parsed is 400).

use crate::body::RespBody;
use crate::error::ApiError;
use crate::precondition::{self, etag_list};
use crate::range::{self, RangeAnswer};
use crate::ttl;
use futures_lite::StreamExt;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::rc::Rc;
use trove_engine::objects::Objects;
use trove_engine::stats::bump;
use trove_engine::{EngineError, ObjectKey, ObjectMeta, SealedObject, Tier};

pub async fn handle(
    objects: &Rc<Objects>,
    req: Request<Incoming>,
    ns: &str,
    key: &str,
) -> Result<Response<RespBody>, ApiError> {
    let key = ObjectKey::from_encoded(ns, key).map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))?;
    if trove_engine::repo::names::is_reserved_namespace(key.namespace()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reserved_namespace",
            format!(
                "namespace {} belongs to trove's git face: use /git/{{host}}/{{repo}}/snapshot.tar.zst and snapshot.bundle, or another namespace",
                key.namespace()
            ),
        ));
    }
    match *req.method() {
        Method::GET | Method::HEAD => get(objects, &req, &key).await,
        Method::PUT => put(objects, req, &key).await,
        Method::DELETE => delete(objects, &req, &key).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "objects take GET, HEAD, PUT or DELETE",
        )),
    }
}

/// Answers a GET or HEAD of `key` (also for the git face's stored
/// snapshots and bundles).
pub async fn get(
    objects: &Rc<Objects>,
    req: &Request<Incoming>,
    key: &ObjectKey,
) -> Result<Response<RespBody>, ApiError> {
    get_sized(objects, req, key, None).await
}

/// [`get`], told the stored file's length when a snapshot pointer says it
/// (a cold fetch then asks S3 for the tail and the first range at once).
pub async fn get_sized(
    objects: &Rc<Objects>,
    req: &Request<Incoming>,
    key: &ObjectKey,
    file_len: Option<u64>,
) -> Result<Response<RespBody>, ApiError> {
    // A corrupt first block has its file dropped before the error comes
    // back (stream_object); the second look finds the remote copy or nothing.
    for _attempt in 0..2 {
        let Some((obj, tier)) = objects.open_object_sized(key, file_len).await? else {
            return Err(ApiError::not_found(format!("no object {}/{}", key.namespace(), key.key())));
        };
        match respond(objects, req, obj, tier).await {
            Err(ApiError { code: "corrupt", .. }) => continue,
            other => return other,
        }
    }
    Err(ApiError::not_found(format!("no intact copy of {}/{}", key.namespace(), key.key())))
}

async fn respond(
    objects: &Rc<Objects>,
    req: &Request<Incoming>,
    obj: SealedObject,
    tier: Tier,
) -> Result<Response<RespBody>, ApiError> {
    let meta = &obj.meta;
    let etag = meta.etag_header();
    let h = req.headers();
    let (im, inm) = (etag_list(h, header::IF_MATCH)?, etag_list(h, header::IF_NONE_MATCH)?);
    if im.as_ref().is_some_and(|l| !l.matches_strong(&etag)) {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("If-Match does not match the current ETag {etag}"),
        ));
    }
    if inm.as_ref().is_some_and(|l| l.matches_weak(&etag)) {
        return Ok(base(StatusCode::NOT_MODIFIED, meta, &etag, tier).body(RespBody::Empty).expect("valid"));
    }
    let len = meta.data_len;
    // A Range under an If-Range that does not hold is ignored (RFC 9110 13.1.5).
    let range = if precondition::if_range_holds(h, &etag)? { header_str(h, header::RANGE) } else { None };
    let (status, start, end) = match range::answer(range, len) {
        RangeAnswer::Whole => (StatusCode::OK, 0, len),
        RangeAnswer::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAnswer::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the object is {len} bytes"),
            )
            .into_response();
            r.headers_mut().insert(header::CONTENT_RANGE, format!("bytes */{len}").parse().expect("valid"));
            return Ok(r);
        }
    };
    let mut builder = base(status, meta, &etag, tier).header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", start, end - 1, len));
    }
    if req.method() == Method::HEAD || start == end {
        return Ok(builder.body(RespBody::Empty).expect("valid"));
    }
    if let Some(bytes) = obj.memory_bytes(start, end) {
        bump(&objects.shard().stats().local_bytes_read, bytes.len() as u64);
        return Ok(builder.body(RespBody::full(bytes)).expect("valid"));
    }
    let mut stream = Box::pin(objects.stream_object(obj, start, end));
    // Check the first block before committing to a status.
    let first = match stream.next().await {
        Some(Ok(c)) => c,
        Some(Err(EngineError::Corrupt { .. })) => {
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", "corrupt"))
        }
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", "the object ended early")),
    };
    let all = futures_lite::stream::once(Ok(first)).chain(stream);
    let counter_shard = objects.shard().clone();
    let body = RespBody::stream(all, end - start, move |n| bump(&counter_shard.stats().local_bytes_read, n));
    Ok(builder.body(body).expect("valid"))
}

fn base(status: StatusCode, meta: &ObjectMeta, etag: &str, tier: Tier) -> http::response::Builder {
    let mut b = Response::builder()
        .status(status)
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-trove-tier", tier.as_str());
    if meta.expires_ms != 0 {
        let left = meta.expires_ms.saturating_sub(trove_engine::now_ms()) / 1000;
        b = b.header("time-to-live", left.to_string());
    }
    b
}

async fn put(objects: &Rc<Objects>, req: Request<Incoming>, key: &ObjectKey) -> Result<Response<RespBody>, ApiError> {
    let max = objects.shard().config().max_object_bytes;
    let h = req.headers();
    if let Some(len) = header_str(h, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) {
        if len > max {
            return Err(EngineError::TooLarge { len, max }.into());
        }
    }
    let expires_ms = match header_str(h, "time-to-live") {
        Some(v) => {
            trove_engine::now_ms() + 1000 * ttl::parse_secs(v).map_err(|m| ApiError::bad_request("invalid_ttl", m))?
        }
        None => 0,
    };
    check_write_preconditions(objects, h, key).await?;
    let mut writer = objects.begin_put().await?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                writer.abandon().await;
                return Err(ApiError::bad_request("body_error", format!("reading the request body failed: {e}")));
            }
        };
        if let Some(data) = frame.data_ref() {
            if let Err(e) = writer.write(data).await {
                writer.abandon().await;
                return Err(e.into());
            }
        }
    }
    let meta = objects.finish_put(key, writer, expires_ms).await?;
    let body = serde_json::json!({ "etag": format!("{:032x}", meta.etag), "size": meta.data_len }).to_string();
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(header::ETAG, meta.etag_header())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(RespBody::full(body))
        .expect("valid"))
}

/// If-Match / If-None-Match on PUT and DELETE, against the current object.
async fn check_write_preconditions(objects: &Rc<Objects>, h: &HeaderMap, key: &ObjectKey) -> Result<(), ApiError> {
    let (im, inm) = (etag_list(h, header::IF_MATCH)?, etag_list(h, header::IF_NONE_MATCH)?);
    if im.is_none() && inm.is_none() {
        return Ok(());
    }
    let current = objects.open_object(key).await?.map(|(o, _)| o.meta.etag_header());
    let failed = match (&im, &inm, &current) {
        (Some(im), _, Some(etag)) if !im.matches_strong(etag) => true,
        (Some(_), _, None) => true,
        (_, Some(inm), Some(etag)) if inm.matches_weak(etag) => true,
        _ => false,
    };
    if failed {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the object's current ETag does not meet If-Match / If-None-Match",
        ));
    }
    Ok(())
}

async fn delete(
    objects: &Rc<Objects>,
    req: &Request<Incoming>,
    key: &ObjectKey,
) -> Result<Response<RespBody>, ApiError> {
    check_write_preconditions(objects, req.headers(), key).await?;
    let existed = objects.delete_object(key).await?;
    if !existed && objects.remote().is_none() {
        return Err(ApiError::not_found(format!("no object {}/{}", key.namespace(), key.key())));
    }
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(RespBody::Empty).expect("valid"))
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}
