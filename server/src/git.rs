//! Git smart HTTP from the mirrors: `info/refs` and `git-upload-pack`,
//! protocol v0 and v2, served with `git upload-pack --stateless-rpc`.
//!
//! Order of a POST: read the whole request (bounded, gzip undone with a
//! bound), check its pkt-line framing, make sure every `want` is in the
//! mirror (one fetch from the upstream if not), take an upload-pack slot
//! (503 with Retry-After at once when the queue is full), then stream the
//! process's stdout as the response. A clone (wants, no haves) goes to
//! `shared_pack.rs` instead: identical clones share one run. Pushes and
//! Git LFS go to the upstream (`passthrough.rs`). The client's Authorization header goes to
//! the engine for the upstream and is never logged.

use crate::body::RespBody;
use crate::budget::Reservation;
use crate::error::ApiError;
use crate::limits::{UPLOAD_PACK_BODY_MAX_BYTES, UPLOAD_PACK_READ_BYTES};
use crate::passthrough::Kind;
use crate::ServerConfig;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::io::Read;
use std::rc::Rc;
use std::time::Duration;
use trove_engine::repo::git::Git;
use trove_engine::repo::{Need, RepoError, RepoKey};
use trove_engine::stats::bump;
use trove_engine::{Secret, Shard};

pub const GIT_PREFIX: &str = "/git/";

/// Retry-After given with a 503 when every upload-pack slot and the queue
/// are taken, in seconds.
const RETRY_AFTER_SECS: u64 = 5;
/// Longest a ref advertisement or a want check may take.
const ADVERTISE_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves everything under `/git/`.
pub async fn handle(
    shard: &Rc<Shard>,
    cfg: &ServerConfig,
    req: Request<Incoming>,
    rest: &str,
) -> Result<Response<RespBody>, ApiError> {
    let (host, tail) = rest.split_once('/').ok_or_else(|| bad_path(rest))?;
    if let Some((repo, lfs)) = tail.split_once("/info/lfs/") {
        // Git LFS talks to `{remote}.git/info/lfs/...`: the upstream's.
        let key = RepoKey::parse(host, repo).map_err(repo_error)?;
        let suffix = format!(".git/info/lfs/{lfs}");
        return crate::passthrough::pass(shard, req, &key, Kind::Lfs, &suffix).await;
    }
    let (repo, action) = split_action(tail).ok_or_else(|| {
        ApiError::not_found(format!(
            "no git route /git/{rest}; served: info/refs, git-upload-pack, git-receive-pack, info/lfs/..., snapshot.tar.zst, snapshot.bundle, ensure-refs"
        ))
    })?;
    let key = RepoKey::parse(host, repo).map_err(repo_error)?;
    // Refuse hosts not served before anything else.
    shard.config().repo.upstreams.url(&key).map_err(repo_error)?;
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(Secret::new);
    match (req.method(), action) {
        (&Method::GET, "info/refs") => {
            let service = query_param(req.uri().query().unwrap_or(""), "service");
            match service.as_deref() {
                Some("git-upload-pack") => advertise(shard, &req, &key, auth).await,
                Some("git-receive-pack") => crate::passthrough::pass(shard, req, &key, Kind::Push, "/info/refs").await,
                _ => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "dumb_http_unsupported",
                    "only smart HTTP is served: use a git client that sends ?service=git-upload-pack",
                )),
            }
        }
        (&Method::POST, "git-upload-pack") => upload_pack(shard, cfg, req, &key, auth).await,
        (&Method::GET | &Method::HEAD, "snapshot.tar.zst") => crate::snapshot::snapshot(shard, &req, &key, auth).await,
        (&Method::GET | &Method::HEAD, "snapshot.bundle") => crate::snapshot::bundle(shard, &req, &key, auth).await,
        (&Method::POST, "ensure-refs") => crate::snapshot::ensure_refs(shard, req, &key, auth).await,
        (&Method::POST, "git-receive-pack") => {
            crate::passthrough::pass(shard, req, &key, Kind::Push, "/git-receive-pack").await
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "info/refs, snapshot.tar.zst and snapshot.bundle take GET; git-upload-pack, git-receive-pack and ensure-refs take POST",
        )),
    }
}

/// `org/repo/info/refs` -> (`org/repo`, `info/refs`).
fn split_action(tail: &str) -> Option<(&str, &str)> {
    ["info/refs", "git-upload-pack", "git-receive-pack", "snapshot.tar.zst", "snapshot.bundle", "ensure-refs"]
        .into_iter()
        .find_map(|a| tail.strip_suffix(a).and_then(|r| r.strip_suffix('/')).map(|r| (r, a)))
}

fn bad_path(rest: &str) -> ApiError {
    ApiError::bad_request("invalid_repo", format!("/git/{rest}: the path must be /git/{{host}}/{{repo}}/..."))
}

pub fn repo_error(e: RepoError) -> ApiError {
    let msg = e.to_string();
    match e {
        RepoError::BadName(_) => ApiError::bad_request("invalid_repo", msg),
        RepoError::HostNotAllowed(_) => ApiError::new(StatusCode::FORBIDDEN, "host_not_allowed", msg),
        RepoError::UpstreamNotFound(_) | RepoError::NoCommits(_) | RepoError::UnknownCommit(_) => {
            ApiError::not_found(msg)
        }
        RepoError::Timeout(..) | RepoError::Stalled(..) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", msg)
        }
        RepoError::Backoff { .. } | RepoError::Git { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", msg)
        }
        RepoError::Unauthorized(_) => ApiError {
            authenticate: Some("Basic realm=\"trove\""),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
        },
        RepoError::ShardGone(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", msg),
        RepoError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg).retry_after(5),
        RepoError::BadUpstream(_) | RepoError::Spawn(..) | RepoError::Io(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
        }
    }
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
}

/// The `Git-Protocol` header, if it is well formed (`version=2` and the
/// like); anything else is ignored, as git itself does.
fn git_protocol<B>(req: &Request<B>) -> Option<String> {
    let v = req.headers().get("git-protocol")?.to_str().ok()?;
    let ok = v.len() <= 256 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b));
    ok.then(|| v.to_owned())
}

pub(crate) fn upload_pack_cmd(protocol: Option<&str>, extra: &[&str], dir: &std::path::Path) -> Git {
    let mut args = vec!["upload-pack", "--stateless-rpc"];
    args.extend_from_slice(extra);
    args.push(".");
    let g = Git::new(args).dir(dir);
    match protocol {
        Some(p) => g.env("GIT_PROTOCOL", p),
        None => g,
    }
}

async fn advertise(
    shard: &Rc<Shard>,
    req: &Request<Incoming>,
    key: &RepoKey,
    auth: Option<Secret>,
) -> Result<Response<RespBody>, ApiError> {
    let mirror = shard.repo(key, auth, Need::Fresh).await.map_err(repo_error)?;
    let protocol = git_protocol(req);
    let v2 = protocol.as_deref().is_some_and(|p| p.split(':').any(|x| x == "version=2"));
    // An advertisement is an upload-pack run too: it takes a slot.
    let permit = upload_pack_slot(shard).await?;
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
    shard: &Rc<Shard>,
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
    // Held as long as the body is (moved along with it into a shared run).
    let mut reservation = cfg.body_budget.reservation();
    let body = read_body(req.into_body(), &mut reservation).await?;
    let body = if gzip {
        let inflated = gunzip(&body)?;
        reservation.grow(inflated.len() as u64)?;
        inflated
    } else {
        body
    };
    let wants = parse_wants(&body)?;
    let mirror = shard.repo(key, auth.clone(), Need::Ready).await.map_err(repo_error)?;
    // "not our ref": fetch once from the upstream (not again for the same
    // wants within the refs TTL), then serve.
    shard.resolve_fetching(key, auth, &mirror, &wants).await.map_err(repo_error)?;
    if trove_engine::repo::packcache::shareable(&body) {
        return crate::shared_pack::serve(shard, key, &mirror, protocol, (body, reservation)).await;
    }
    let permit = upload_pack_slot(shard).await?;
    bump(&shard.stats().upload_pack_runs, 1);
    let mut proc = upload_pack_cmd(protocol.as_deref(), &[], &mirror).spawn_streaming().map_err(repo_error)?;
    let mut stdin = proc.stdin.take().expect("spawned with a stdin");
    glommio::spawn_local(async move {
        // upload-pack may stop reading early (an error): ignore EPIPE.
        let _ = stdin.write_all(&body).await;
        let _ = stdin.close().await;
        drop((body, reservation));
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

/// One of the node's upload-pack slots, waiting in the bounded queue; a
/// 503 with Retry-After when the queue is full.
pub(crate) async fn upload_pack_slot(shard: &Rc<Shard>) -> Result<trove_engine::repo::admission::Permit, ApiError> {
    shard.node.upload_packs.enter().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "every upload-pack slot and the queue are taken; retry after the Retry-After seconds",
        )
        .retry_after(RETRY_AFTER_SECS)
    })
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

/// Reads the whole body, each frame's bytes taken from the node's body
/// budget (`reservation`) before they are kept.
async fn read_body(mut body: Incoming, reservation: &mut Reservation) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("an upload-pack request is limited to {UPLOAD_PACK_BODY_MAX_BYTES} bytes"),
        )
    };
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request("bad_body", format!("reading the request body failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > UPLOAD_PACK_BODY_MAX_BYTES {
                return Err(too_large());
            }
            reservation.grow(data.len() as u64)?;
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(data).take(UPLOAD_PACK_BODY_MAX_BYTES as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request("bad_body", format!("the gzip request body is corrupt: {e}")))?;
    if out.len() > UPLOAD_PACK_BODY_MAX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request inflates past {UPLOAD_PACK_BODY_MAX_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// The object ids a request wants, after checking its pkt-line framing.
fn parse_wants(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let garbage =
        |why: &str| ApiError::bad_request("bad_upload_pack_request", format!("not a git upload-pack request: {why}"));
    let mut wants = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(garbage("truncated pkt-line"));
        }
        let len = std::str::from_utf8(&rest[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| garbage("bad pkt-line length"))?;
        if len < 4 {
            // flush (0000), delim (0001), response-end (0002)
            rest = &rest[4..];
            continue;
        }
        if len > rest.len() {
            return Err(garbage("pkt-line runs past the body"));
        }
        let line = &rest[4..len];
        if let Some(w) = line.strip_prefix(b"want ") {
            let sha = w.get(..40).ok_or_else(|| garbage("short want"))?;
            if !sha.iter().all(u8::is_ascii_hexdigit) {
                return Err(garbage("want is not an object id"));
            }
            wants.push(String::from_utf8_lossy(sha).into_owned());
        }
        rest = &rest[len..];
    }
    if body.is_empty() {
        return Err(garbage("empty body"));
    }
    Ok(wants)
}

/// True when the mirror has every object in `wants`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_repo_and_action() {
        assert_eq!(split_action("org/repo/info/refs"), Some(("org/repo", "info/refs")));
        assert_eq!(split_action("a/b/c.git/git-upload-pack"), Some(("a/b/c.git", "git-upload-pack")));
        assert_eq!(split_action("org/repo/HEAD"), None);
    }

    #[test]
    fn wants_are_parsed_and_garbage_refused() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let line = format!("want {sha} multi_ack side-band-64k\n");
        let body = format!("{:04x}{line}00000009done\n", line.len() + 4);
        assert_eq!(parse_wants(body.as_bytes()).expect("valid in this test"), vec![sha.to_owned()]);
        for bad in ["", "zzzz", "0fff", "000awant x\n", "0009want "] {
            assert!(parse_wants(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
