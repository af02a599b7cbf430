//! `snapshot.tar.zst`, `snapshot.bundle` and `ensure-refs` under
//! `/git/{host}/{repo}/`.
//!
//! A stored snapshot or bundle is served like any object (ETag, Range,
//! If-Match, If-None-Match), with `X-Trove-Snapshot-Commit` and, when the
//! mirror is ahead of the snapshot, `X-Trove-Bundle-Url`. A snapshot still
//! being built streams as it is written, chunked and without an ETag; such
//! a response ignores Range (RFC 9110 allows it) and fails If-Match.

use crate::body::RespBody;
use crate::error::repo_error;
use crate::error::ApiError;
use crate::object;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use std::rc::Rc;
use trove_engine::mirrors::Mirrors;
use trove_engine::objects::Objects;
use trove_engine::repo::names::parse_sha;
use trove_engine::repo::{Need, RepoKey};
use trove_engine::snapshots::{BundleAnswer, SnapshotAnswer, Snapshots};
use trove_engine::Secret;

pub const SNAPSHOT_TYPE: &str = "application/zstd";
pub const BUNDLE_TYPE: &str = "application/x-git-bundle";
/// Largest ensure-refs request body.
const ENSURE_REFS_BODY_MAX_BYTES: usize = 64 * 1024;
/// Most refs plus commits one ensure-refs request may name.
const ENSURE_REFS_MAX_NAMES: usize = 256;

pub async fn snapshot(
    (snapshots, mirrors, objects): (&Rc<Snapshots>, &Mirrors, &Rc<Objects>),
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let mut stale = None;
    // Twice at most: a stored snapshot found missing is built again.
    for _ in 0..2 {
        let answer = snapshots.snapshot(key, auth.clone(), stale.take()).await.map_err(repo_error)?;
        match answer {
            SnapshotAnswer::Stored { commit, object, head, cold, private, file_len } => {
                mirrors.check_access(key, private, auth.as_ref()).await.map_err(repo_error)?;
                let mut resp = match object::get_sized(objects, req, &object, file_len).await {
                    Err(e) if e.status == StatusCode::NOT_FOUND => {
                        tracing::warn!(repo = %key, commit = %commit, "stored snapshot not found; building again");
                        stale = Some(commit);
                        continue;
                    }
                    r => r?,
                };
                decorate(&mut resp, key, &commit, head.as_deref(), SNAPSHOT_TYPE);
                if let Some(cold) = cold {
                    resp = resp.map(|b| b.keep_alive(Box::new(cold)));
                }
                return Ok(resp);
            }
            SnapshotAnswer::Building { build, head, private } => {
                mirrors.check_access(key, private, auth.as_ref()).await.map_err(repo_error)?;
                if req.headers().contains_key(header::IF_MATCH) {
                    return Err(ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "precondition_failed",
                        "the snapshot is being rebuilt; start the download again without If-Match",
                    ));
                }
                let mut b = Response::builder().status(StatusCode::OK).header(header::ACCEPT_RANGES, "none");
                if let Some(len) = build.len_if_done() {
                    b = b.header(header::CONTENT_LENGTH, len);
                }
                let commit = build.commit.clone();
                let body = if req.method() == Method::HEAD {
                    RespBody::Empty
                } else {
                    let stream = build.follow().map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "io_error",
                            format!("following the build: {e}"),
                        )
                    })?;
                    RespBody::bytes_stream(stream)
                };
                let mut resp = b.body(body).expect("valid");
                decorate(&mut resp, key, &commit, head.as_deref(), SNAPSHOT_TYPE);
                return Ok(resp);
            }
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "snapshot_lost", "the snapshot vanished twice; retry"))
}

/// The snapshot headers: content type, commit, and the bundle on offer.
fn decorate(resp: &mut Response<RespBody>, key: &RepoKey, commit: &str, head: Option<&str>, content_type: &str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("static type"));
    h.insert("x-trove-snapshot-commit", HeaderValue::from_str(commit).expect("hex"));
    if let Some(head) = head.filter(|h| *h != commit) {
        let url = format!("/git/{}/snapshot.bundle?base={commit}", key.canonical());
        h.insert("x-trove-bundle-url", HeaderValue::from_str(&url).expect("repo keys are URL-safe"));
        h.insert("x-trove-head-commit", HeaderValue::from_str(head).expect("hex"));
    }
}

pub async fn bundle(
    (snapshots, objects): (&Rc<Snapshots>, &Rc<Objects>),
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let raw = crate::query::query_param(req.uri().query().unwrap_or(""), "base")
        .ok_or_else(|| ApiError::bad_request("invalid_sha", "snapshot.bundle needs ?base=<commit sha>"))?;
    let base = parse_sha(&raw).ok_or_else(|| {
        ApiError::bad_request("invalid_sha", format!("base {raw:?} is not a full commit id (40 or 64 hex digits)"))
    })?;
    match snapshots.bundle(key, auth, &base).await.map_err(repo_error)? {
        BundleAnswer::UpToDate => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header("x-trove-head-commit", base)
            .body(RespBody::Empty)
            .expect("valid")),
        BundleAnswer::Stored(object) => {
            let mut resp = object::get(objects, req, &object).await?;
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(BUNDLE_TYPE));
            Ok(resp)
        }
    }
}

/// The body of `POST ensure-refs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnsureRefs {
    #[serde(default)]
    refs: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
}

pub async fn ensure_refs(
    mirrors: &Rc<Mirrors>,
    req: Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let body = http_body_util::Limited::new(req.into_body(), ENSURE_REFS_BODY_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                format!("reading the body failed (limit {ENSURE_REFS_BODY_MAX_BYTES} bytes): {e}"),
            )
        })?
        .to_bytes();
    let want: EnsureRefs = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("bad_body", format!("expected JSON {{\"refs\": [names], \"commits\": [shas]}}: {e}"))
    })?;
    if want.refs.len() + want.commits.len() > ENSURE_REFS_MAX_NAMES {
        return Err(ApiError::bad_request("bad_body", format!("at most {ENSURE_REFS_MAX_NAMES} refs and commits")));
    }
    for r in &want.refs {
        if !valid_ref(r) {
            return Err(ApiError::bad_request("invalid_ref", format!("{r:?} is not a valid ref name")));
        }
    }
    let mut commits = Vec::with_capacity(want.commits.len());
    for c in &want.commits {
        commits.push(
            parse_sha(c)
                .ok_or_else(|| ApiError::bad_request("invalid_sha", format!("{c:?} is not a full commit id")))?,
        );
    }
    let names: Vec<String> =
        want.refs.iter().cloned().chain(commits.iter().map(|c| format!("{c}^{{commit}}"))).collect();
    let mirror = mirrors.repo(key, auth.clone(), Need::Fresh).await.map_err(repo_error)?;
    let resolved = mirrors.resolve_fetching(key, auth, &mirror, &names).await.map_err(repo_error)?;
    let (found, fetched) = (resolved.ids, resolved.fetched);
    let (ref_ids, commit_ids) = found.split_at(want.refs.len());
    let refs: serde_json::Map<String, serde_json::Value> =
        want.refs.iter().zip(ref_ids).map(|(r, id)| (r.clone(), serde_json::json!(id))).collect();
    let present: serde_json::Map<String, serde_json::Value> =
        commits.iter().zip(commit_ids).map(|(c, id)| (c.clone(), serde_json::json!(id.is_some()))).collect();
    let missing = found.iter().filter(|f| f.is_none()).count();
    let body =
        serde_json::json!({ "refs": refs, "commits": present, "fetched": fetched, "missing": missing }).to_string();
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(RespBody::full(body))
        .expect("valid"))
}

/// A ref name as `git check-ref-format --allow-onelevel` would take it,
/// restricted further to what needs no quoting anywhere.
fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 256
        && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-+".contains(&b))
        && !r.starts_with(['-', '/', '.'])
        && !r.ends_with(['/', '.'])
        && !r.contains("..")
        && !r.contains("//")
        && !r.ends_with(".lock")
}

#[cfg(test)]
mod tests {
    use super::valid_ref;

    #[test]
    fn ref_names_are_checked() {
        for ok in ["main", "refs/heads/main", "v1.0", "feature/x-y_z"] {
            assert!(valid_ref(ok), "{ok}");
        }
        for bad in ["", "-x", "/a", "a/", "a..b", "a//b", "x.lock", "a b", "a\nb", "a^{commit}", "HEAD~1"] {
            assert!(!valid_ref(bad), "{bad:?}");
        }
    }
}
