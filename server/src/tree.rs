//! What a lazy mount asks of a node: a commit's tree index
//! (`GET /git/{host}/{repo}/tree/{commit}`, or `.../tree?ref=NAME`),
//! blobs by id (`POST /git/{host}/{repo}/blobs`), and while it waits for a
//! repo the node is cloning, how far the clone got
//! (`GET /git/{host}/{repo}/progress`). Formats are the engine's
//! (`trove_engine::tree::{index, blobs}`); this module maps them to HTTP.
//!
//! A tree index is served like any stored object (ETag, Range,
//! conditionals); by commit it is immutable. Both routes pass the repo's
//! access check. The blob stream holds at most `BLOBS_READ_AHEAD` pieces
//! ahead of the client, each charged to the node's blob memory.

use crate::body::RespBody;
use crate::error::repo_error;
use crate::error::ApiError;
use crate::query::query_param;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::rc::Rc;
use trove_engine::indexes::TreeIndexes;
use trove_engine::mirrors::Mirrors;
use trove_engine::objects::Objects;
use trove_engine::repo::{Need, RepoError, RepoKey};
use trove_engine::tree::blobs::Piece;
use trove_engine::Secret;

pub const TREE_TYPE: &str = "application/x-trove-tree";
pub const BLOBS_TYPE: &str = "application/x-trove-blobs";
/// Largest `POST .../blobs` body: the most ids, a line each.
const BLOBS_BODY_MAX_BYTES: usize = trove_engine::limits::BLOBS_PER_REQUEST_MAX * 42 + 1024;

/// `GET .../tree/{commit}`, or with `commit` None, `.../tree?ref=NAME`.
pub async fn tree(
    (indexes, mirrors, objects): (&Rc<TreeIndexes>, &Rc<Mirrors>, &Rc<Objects>),
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
    commit: Option<&str>,
) -> Result<Response<RespBody>, ApiError> {
    let (commit, by_ref) = match commit {
        Some(c) => (c.to_ascii_lowercase(), false),
        None => (resolve_ref(mirrors, req, key, auth.clone()).await?, true),
    };
    if trove_engine::tree::parse_oid(&commit).is_none() {
        return Err(ApiError::bad_request("invalid_commit", format!("{commit:?} is not a commit id (40 hex digits)")));
    }
    // The access check on every request; a stored index is then read here,
    // once, and only a miss asks the index's owner to make it.
    mirrors.repo(key, auth.clone(), Need::Ready).await.map_err(repo_error)?;
    let object = trove_engine::repo::names::tree_object(key, &commit);
    let mut resp = match crate::object::get(objects, req, &object).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            indexes.make_tree_index(key, auth, &commit).await.map_err(repo_error)?;
            crate::object::get(objects, req, &object).await?
        }
        r => r?,
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TREE_TYPE));
    h.insert("x-trove-tree-commit", HeaderValue::from_str(&commit).expect("hex"));
    let cache = if by_ref { "no-cache" } else { "private, max-age=31536000, immutable" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(resp)
}

/// The commit `?ref=NAME` names in the mirror, its refs checked first.
async fn resolve_ref(
    mirrors: &Rc<Mirrors>,
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<String, ApiError> {
    let name = query_param(req.uri().query().unwrap_or(""), "ref").ok_or_else(|| {
        ApiError::bad_request("missing_commit", "name the commit: .../tree/{commit} or .../tree?ref=NAME")
    })?;
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if !ok {
        return Err(ApiError::bad_request("invalid_ref", format!("{name:?} is not a ref name this node resolves")));
    }
    let mirror = mirrors.repo(key, auth, Need::Fresh).await.map_err(repo_error)?;
    let found =
        trove_engine::repo::plumbing::resolve(&mirror, &[format!("{name}^{{commit}}")]).await.map_err(repo_error)?;
    found.into_iter().next().flatten().ok_or_else(|| ApiError::not_found(format!("the repo has no ref {name:?}")))
}

/// `POST .../blobs`. 503 at once when the node's blob memory
/// (`--blob-memory`) is spent, before anything is read.
pub async fn blobs(
    mirrors: &Rc<Mirrors>,
    cfg: &crate::ServerConfig,
    req: Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let body = read_small(req.into_body()).await?;
    let ids = trove_engine::tree::blobs::parse_request(&body).map_err(|e| ApiError::bad_request("invalid_blobs", e))?;
    let mirror = mirrors.repo(key, auth, Need::Ready).await.map_err(repo_error)?;
    if !cfg.blob_memory.has_room(trove_engine::limits::BLOB_STREAM_CHUNK_BYTES as u64) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "the node holds as many blob bytes for slow readers as it may ({} bytes, --blob-memory); retry after \
                 the Retry-After seconds",
                cfg.blob_memory.max_bytes()
            ),
        )
        .retry_after(2));
    }
    trove_engine::stats::bump(&mirrors.shard().stats().blob_requests, 1);
    let shard = mirrors.shard();
    let stats = shard.node.stats[usize::from(shard.id)].clone();
    let cache = (cfg.blob_cache.clone(), key.hash());
    let rx = trove_engine::tree::blobs::spawn_reader(mirror, ids, stats, cfg.blob_memory.clone(), cache)
        .map_err(|e| repo_error(RepoError::Io(format!("starting the blob reader: {e}"))))?;
    // A piece's charge is given back once hyper asks for the next one: by
    // then it holds the bytes for the socket, and at most that one piece.
    let stream = futures_lite::stream::unfold((rx.on_shard(), None), |(mut rx, passed)| async move {
        drop::<Option<Piece>>(passed);
        let piece = rx.recv().await?;
        Some((Ok::<Bytes, std::io::Error>(piece.bytes.clone()), (rx, Some(piece))))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, BLOBS_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(RespBody::bytes_stream(stream))
        .expect("static response parts are valid"))
}

async fn read_small(mut body: Incoming) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("bad_body", format!("reading the body failed: {e}")))?;
        if let Some(d) = frame.data_ref() {
            if out.len() + d.len() > BLOBS_BODY_MAX_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("a blobs request is at most {BLOBS_BODY_MAX_BYTES} bytes: one object id per line"),
                ));
            }
            out.extend_from_slice(d);
        }
    }
    Ok(out)
}

/// `GET .../progress`: `{"cloning": true, "bytes_received": N, "seconds":
/// S}` while this node clones the repo, else `{"cloning": false}`. A clone
/// made with credentials is told only to a request with the same ones, so
/// nobody learns of a private repo they cannot read. It waits for nothing.
pub fn progress(mirrors: &Rc<Mirrors>, key: &RepoKey, auth: Option<&Secret>) -> Response<RespBody> {
    let body = match mirrors.node_state().cloning(key.hash(), auth) {
        Some((bytes, seconds)) => serde_json::json!({ "cloning": true, "bytes_received": bytes, "seconds": seconds }),
        None => serde_json::json!({ "cloning": false }),
    }
    .to_string();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(RespBody::full(body))
        .expect("valid")
}
