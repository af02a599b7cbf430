//! Git smart HTTP from the mirrors: the `/git/` router, `info/refs` and
//! `git-upload-pack`, protocol v0 and v2, served with `git upload-pack
//! --stateless-rpc`. What its sibling routes share lives elsewhere
//! (`error.rs`, `query.rs`, `upload_pack.rs`).
//!
//! Order of a POST: read the request as far as its wants
//! (`pack_request.rs`: bounded, gzip undone as it comes, framing checked),
//! make sure every `want` is in the mirror (one fetch from the upstream if
//! not), take an upload-pack slot (503 with Retry-After at once when the
//! queue is full), then stream the rest of the request into the process
//! and the process's stdout out as the response. A clone (wants, no
//! haves) goes to `shared_pack.rs` instead: identical clones share one
//! run. Pushes and Git LFS go to the upstream (`passthrough.rs`). The
//! client's Authorization header goes to the engine for the upstream and
//! is never logged.

use crate::body::RespBody;
use crate::error::{repo_error, ApiError};
use crate::limits::UPLOAD_PACK_READ_BYTES;
use crate::pack_request::PackRequest;
use crate::passthrough::Kind;
use crate::query::query_param;
use crate::upload_pack::{git_protocol, upload_pack_cmd, upload_pack_slot};
use crate::ServerConfig;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::rc::Rc;
use std::time::Duration;
use trove_engine::mirrors::Mirrors;
use trove_engine::repo::{Need, RepoError, RepoKey};
use trove_engine::stats::bump;
use trove_engine::{NodeServices, Secret};

pub const GIT_PREFIX: &str = "/git/";

/// Longest a ref advertisement or a want check may take.
const ADVERTISE_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves everything under `/git/`.
pub async fn handle(
    services: &Rc<NodeServices>,
    cfg: &ServerConfig,
    req: Request<Incoming>,
    rest: &str,
) -> Result<Response<RespBody>, ApiError> {
    let (host, tail) = rest.split_once('/').ok_or_else(|| bad_path(rest))?;
    if let Some((repo, lfs)) = tail.split_once("/info/lfs/") {
        // Git LFS talks to `{remote}.git/info/lfs/...`: the upstream's.
        let key = RepoKey::parse(host, repo).map_err(repo_error)?;
        // Only the LFS API's own routes, before anything reaches the upstream.
        crate::lfs::check(req.method(), lfs)?;
        let suffix = format!(".git/info/lfs/{lfs}");
        return crate::passthrough::pass(&services.mirrors, req, &key, Kind::Lfs, &suffix).await;
    }
    if let Some((repo, commit)) = tree_route(tail) {
        let key = RepoKey::parse(host, repo).map_err(repo_error)?;
        services.shard.config().repo.upstreams.url(&key).map_err(repo_error)?;
        let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(Secret::new);
        return match *req.method() {
            Method::GET | Method::HEAD => {
                crate::tree::tree((&services.indexes, &services.mirrors, &services.objects), &req, &key, auth, commit)
                    .await
            }
            _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "tree takes GET")),
        };
    }
    let (repo, action) = split_action(tail).ok_or_else(|| {
        ApiError::not_found(format!(
            "no git route /git/{rest}; served: info/refs, git-upload-pack, git-receive-pack, info/lfs/..., snapshot.tar.zst, snapshot.bundle, ensure-refs, tree/{{commit}}, blobs, progress"
        ))
    })?;
    let key = RepoKey::parse(host, repo).map_err(repo_error)?;
    // Refuse hosts not served before anything else.
    services.shard.config().repo.upstreams.url(&key).map_err(repo_error)?;
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(Secret::new);
    match (req.method(), action) {
        (&Method::GET, "info/refs") => {
            let service = query_param(req.uri().query().unwrap_or(""), "service");
            match service.as_deref() {
                Some("git-upload-pack") => advertise(&services.mirrors, &req, &key, auth).await,
                Some("git-receive-pack") => crate::passthrough::pass(&services.mirrors, req, &key, Kind::Push, "/info/refs").await,
                _ => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "dumb_http_unsupported",
                    "only smart HTTP is served: use a git client that sends ?service=git-upload-pack",
                )),
            }
        }
        (&Method::POST, "git-upload-pack") => upload_pack(services, cfg, req, &key, auth).await,
        (&Method::GET | &Method::HEAD, "snapshot.tar.zst") => crate::snapshot::snapshot((&services.snapshots, &services.mirrors, &services.objects), &req, &key, auth).await,
        (&Method::GET | &Method::HEAD, "snapshot.bundle") => crate::snapshot::bundle((&services.snapshots, &services.objects), &req, &key, auth).await,
        (&Method::POST, "ensure-refs") => crate::snapshot::ensure_refs(&services.mirrors, req, &key, auth).await,
        (&Method::POST, "blobs") => crate::tree::blobs(&services.mirrors, cfg, req, &key, auth).await,
        (&Method::GET, "progress") => Ok(crate::tree::progress(&services.mirrors, &key, auth.as_ref())),
        (&Method::POST, "git-receive-pack") => {
            crate::passthrough::pass(&services.mirrors, req, &key, Kind::Push, "/git-receive-pack").await
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "info/refs, snapshot.tar.zst and snapshot.bundle take GET; git-upload-pack, git-receive-pack and ensure-refs take POST",
        )),
    }
}

/// `org/repo/tree/{commit}` -> (`org/repo`, Some(commit)); `org/repo/tree`
/// -> (`org/repo`, None), the commit named by `?ref=`.
fn tree_route(tail: &str) -> Option<(&str, Option<&str>)> {
    if let Some(repo) = tail.strip_suffix("/tree").or_else(|| tail.strip_suffix("/tree/")) {
        return Some((repo, None));
    }
    let (repo, commit) = tail.rsplit_once("/tree/")?;
    (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then_some((repo, Some(commit)))
}

/// `org/repo/info/refs` -> (`org/repo`, `info/refs`).
fn split_action(tail: &str) -> Option<(&str, &str)> {
    [
        "info/refs",
        "git-upload-pack",
        "git-receive-pack",
        "snapshot.tar.zst",
        "snapshot.bundle",
        "ensure-refs",
        "blobs",
        "progress",
    ]
    .into_iter()
    .find_map(|a| tail.strip_suffix(a).and_then(|r| r.strip_suffix('/')).map(|r| (r, a)))
}

fn bad_path(rest: &str) -> ApiError {
    ApiError::bad_request("invalid_repo", format!("/git/{rest}: the path must be /git/{{host}}/{{repo}}/..."))
}

async fn advertise(
    mirrors: &Rc<Mirrors>,
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let mirror = mirrors.repo(key, auth, Need::Fresh).await.map_err(repo_error)?;
    let protocol = git_protocol(req);
    let v2 = protocol.as_deref().is_some_and(|p| p.split(':').any(|x| x == "version=2"));
    // An advertisement is an upload-pack run too: it takes a slot.
    let permit = upload_pack_slot(mirrors).await?;
    let out = upload_pack_cmd(protocol.as_deref(), &["--advertise-refs"], &mirror)
        .run(Vec::new(), ADVERTISE_TIMEOUT)
        .await
        .map_err(repo_error)?;
    drop(permit);
    if !out.ok() {
        return Err(repo_error(RepoError::Git { what: "git upload-pack --advertise-refs".into(), stderr: out.stderr }));
    }
    let mut body = Vec::with_capacity(out.stdout.len() + 40);
    if !v2 {
        body.extend_from_slice(b"001e# service=git-upload-pack\n0000");
    }
    body.extend_from_slice(&out.stdout);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-git-upload-pack-advertisement")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_LENGTH, body.len())
        .body(RespBody::full(body))
        .expect("static response parts are valid"))
}

async fn upload_pack(
    services: &Rc<NodeServices>,
    cfg: &ServerConfig,
    req: Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let protocol = git_protocol(&req);
    let gzip = match req.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?")) {
        None | Some("identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_encoding",
                format!("Content-Encoding {other:?} is not supported; send identity or gzip"),
            ))
        }
    };
    // Held as long as the head is (moved along with it into a shared run).
    let mut reservation = cfg.body_budget.reservation();
    let mut request = PackRequest::new(req.into_body(), gzip);
    let head = request.head(&mut reservation).await?;
    let mirrors = &services.mirrors;
    let mirror = mirrors.repo(key, auth.clone(), Need::Ready).await.map_err(repo_error)?;
    // "not our ref": fetch once from the upstream (not again for the same
    // wants within the refs TTL), then serve. Looking the wants up holds
    // memory for each, from the same budget.
    let resolving = head.wants.len() as u64 * trove_engine::repo::plumbing::RESOLVE_BYTES_PER_NAME;
    reservation.grow(resolving)?;
    mirrors.resolve_fetching(key, auth, &mirror, &head.wants).await.map_err(repo_error)?;
    reservation.give_back(resolving);
    if head.whole && trove_engine::packs::shareable(&head.bytes) {
        return crate::shared_pack::serve(mirrors, &services.packs, key, &mirror, protocol, (head.bytes, reservation))
            .await;
    }
    let permit = upload_pack_slot(mirrors).await?;
    bump(&services.shard.stats().upload_pack_runs, 1);
    let mut proc = upload_pack_cmd(protocol.as_deref(), &[], &mirror).spawn_streaming().map_err(repo_error)?;
    let mut stdin = proc.stdin.take().expect("spawned with a stdin");
    glommio::spawn_local(async move {
        // upload-pack may stop reading early (an error): ignore EPIPE.
        if stdin.write_all(&head.bytes).await.is_err() {
            return;
        }
        drop((head, reservation));
        // The rest streams as it comes; a bad rest (corrupt gzip, too long)
        // cuts upload-pack's input short, and it fails the request.
        loop {
            match request.rest().await {
                Ok(Some(data)) => {
                    if stdin.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(error = %e.message, "upload-pack request body failed mid-stream");
                    return;
                }
            }
        }
        let _ = stdin.close().await;
    })
    .detach();
    // Wait for the first bytes: a process that fails before answering
    // gets a JSON error instead of an empty 200.
    let mut first = vec![0u8; UPLOAD_PACK_READ_BYTES];
    let n = proc.stdout.read(&mut first).await.unwrap_or(0);
    if n == 0 {
        let (status, stderr) = proc.exit().await.map_err(repo_error)?;
        drop(permit);
        let msg = stderr.trim().lines().last().unwrap_or("no output").to_owned();
        return Err(ApiError::bad_request(
            "upload_pack_failed",
            format!("git upload-pack refused the request ({status}): {msg}"),
        ));
    }
    first.truncate(n);
    let stream = PackStream { first: Some(Bytes::from(first)), proc: Some(proc), _permit: permit };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-git-upload-pack-result")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(RespBody::bytes_stream(futures_lite::stream::unfold(stream, PackStream::next)))
        .expect("static response parts are valid"))
}

/// upload-pack's stdout as a stream; the slot is held until it ends.
struct PackStream {
    first: Option<Bytes>,
    proc: Option<trove_engine::repo::git::Streaming>,
    _permit: trove_engine::repo::admission::Permit,
}

impl PackStream {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if let Some(b) = self.first.take() {
            return Some((Ok(b), self));
        }
        let proc = self.proc.as_mut()?;
        let mut buf = BytesMut::zeroed(UPLOAD_PACK_READ_BYTES);
        match proc.stdout.read(&mut buf).await {
            Ok(0) => {
                let proc = self.proc.take()?;
                match proc.exit().await {
                    Ok((s, _)) if s.success() => None,
                    Ok((s, err)) => {
                        tracing::warn!(status = %s, stderr = %err.trim(), "upload-pack failed mid-stream");
                        Some((Err(std::io::Error::other("upload-pack failed")), self))
                    }
                    Err(e) => Some((Err(std::io::Error::other(e.to_string())), self)),
                }
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.freeze()), self))
            }
            Err(e) => {
                self.proc = None;
                Some((Err(e), self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_repo_and_action() {
        assert_eq!(split_action("org/repo/info/refs"), Some(("org/repo", "info/refs")));
        assert_eq!(split_action("a/b/c.git/git-upload-pack"), Some(("a/b/c.git", "git-upload-pack")));
        assert_eq!(split_action("org/repo/HEAD"), None);
    }
}
