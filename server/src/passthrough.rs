//! What a cache cannot answer itself, passed through to the repo's
//! upstream: pushes (`git-receive-pack`, its `info/refs` and its POST) and
//! the Git LFS API (`{repo}.git/info/lfs/...`), so that the `insteadOf`
//! recipe, which sends every URL of a host to the node, keeps `git push`
//! and `git lfs push` working.
//!
//! Both ways are streamed: the client's body goes to the upstream as it
//! arrives and the upstream's answer comes back as it arrives; nothing is
//! buffered whole. The client's `Authorization` goes to the upstream and
//! nowhere else (never logged). Each direction has the upstream's
//! no-progress deadline (`--upstream-timeout`): a silent upstream gets the
//! client a 504, or a cut stream, never a hang. After a push the upstream
//! accepted, the mirror fetches before the answer ends, so a fetch through
//! the node right after `git push` sees what was pushed.
//!
//! Only http(s) upstreams can be passed through; any other gets 501 with
//! what to do. This module never touches a mirror except through
//! `Mirrors::repo`.

use crate::body::RespBody;
use crate::error::ApiError;
use bytes::Bytes;
use http::{header, HeaderName, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use trove_engine::mirrors::Mirrors;
use trove_engine::remote::http::{send_body, ClientOptions};
use trove_engine::repo::{Need, RepoKey};
use trove_engine::RemoteError;

/// Request headers the upstream sees. Hop-by-hop ones, `Host` and
/// everything else stay behind.
static REQUEST_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::USER_AGENT,
    HeaderName::from_static("git-protocol"),
];

/// Response headers the client sees.
static RESPONSE_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CACHE_CONTROL,
    header::WWW_AUTHENTICATE,
    header::EXPIRES,
    HeaderName::from_static("lfs-authenticate"),
];

/// Longest the mirror's fetch after a push may hold the push's answer.
const FETCH_AFTER_PUSH_WAIT: Duration = Duration::from_secs(10);

/// What is passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `info/refs?service=git-receive-pack` or `POST git-receive-pack`.
    Push,
    /// `info/lfs/...`.
    Lfs,
}

/// Passes `req` for `key` through to `upstream/{key's path}{suffix}`.
pub async fn pass(
    mirrors: &Rc<Mirrors>,
    req: Request<Incoming>,
    key: &RepoKey,
    kind: Kind,
    suffix: &str,
) -> Result<Response<RespBody>, ApiError> {
    let base = mirrors.shard().config().repo.upstreams.url(key).map_err(crate::error::repo_error)?;
    let target = upstream_url(&base, suffix, kind, req.uri().query())?;
    let deadline = mirrors.shard().config().repo.upstream_timeout;
    let headers: Vec<(&str, String)> = REQUEST_HEADERS
        .iter()
        .filter_map(|n| Some((n.as_str(), req.headers().get(n)?.to_str().ok()?.to_owned())))
        .collect();
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(trove_engine::Secret::new);
    let is_push_post = kind == Kind::Push && req.method() == Method::POST;
    let method = req.method().clone();
    let progress = Rc::new(Cell::new(Instant::now()));
    let body = Progressed { inner: req.into_body(), progress: progress.clone() };
    let client = client(target.scheme(), deadline)?;
    let op = match kind {
        Kind::Push => "push pass-through",
        Kind::Lfs => "Git LFS pass-through",
    };
    let sent = futures_lite::future::or(
        async { send_body(op, method, &target, &headers, body, &client).await.map_err(|e| upstream_error(kind, e)) },
        stalled(&progress, deadline, kind),
    )
    .await?;
    trove_engine::stats::bump(&mirrors.shard().stats().passthrough_requests, 1);
    let (parts, body) = sent.into_parts();
    if parts.status.is_redirection() {
        // Not relayed: the client would follow it with its credentials to
        // wherever it points. Say where it leads instead.
        let to = parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(without_userinfo);
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_redirect",
            format!(
                "the upstream answered {op} with a redirect (HTTP {}) to {}; the node does not follow or relay \
                 upstream redirects: point --upstream at that URL, or {} there directly",
                parts.status.as_u16(),
                to.as_deref().unwrap_or("nowhere it named"),
                if kind == Kind::Push { "push" } else { "use Git LFS" },
            ),
        ));
    }
    let mut resp = Response::builder().status(parts.status);
    for name in &RESPONSE_HEADERS {
        for v in parts.headers.get_all(name) {
            resp = resp.header(name, v);
        }
    }
    let after = (is_push_post && parts.status.is_success()).then(|| FetchAfterPush {
        mirrors: mirrors.clone(),
        key: key.clone(),
        auth,
    });
    let stream = UpstreamStream::new(body, deadline, after);
    let body = RespBody::bytes_stream(futures_lite::stream::unfold(stream, UpstreamStream::next));
    // A Content-Length from upstream is the body's: keep it (an empty LFS
    // reply must not turn into a chunked one).
    Ok(resp.body(body).expect("headers copied from a valid response are valid"))
}

/// `url` without the user and password a URL may carry (never shown).
fn without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "an unparsable location".to_owned(),
    }
}

/// `base` (`https://host/org/repo`) joined with what the client asked for,
/// checked after normalization to lie where `kind` may reach: under
/// `{base}.git/info/lfs/` for LFS, exactly `{base}{suffix}` for a push, on
/// the base's own origin.
fn upstream_url(base: &str, suffix: &str, kind: Kind, query: Option<&str>) -> Result<url::Url, ApiError> {
    let mut s = format!("{base}{suffix}");
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    let invalid = |e: url::ParseError| ApiError::bad_request("invalid_repo", format!("{e}"));
    let url = url::Url::parse(&s).map_err(invalid)?;
    let allowed = url::Url::parse(&match kind {
        Kind::Lfs => format!("{base}.git/info/lfs/"),
        Kind::Push => format!("{base}{suffix}"),
    })
    .map_err(invalid)?;
    let inside = match kind {
        Kind::Lfs => url.path().starts_with(allowed.path()),
        Kind::Push => matches!(suffix, "/info/refs" | "/git-receive-pack") && url.path() == allowed.path(),
    };
    // Only http(s) is passed on (a file:// URL's origin is opaque, so its
    // scheme is answered first).
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "push_unsupported",
            format!(
                "this host's upstream is {}://, which the node cannot pass pushes or LFS to; push to the upstream directly (git remote set-url --push origin <upstream>)",
                url.scheme()
            ),
        ));
    }
    if !inside || url.origin() != allowed.origin() {
        return Err(ApiError::not_found(format!(
            "{suffix:?} leads outside the repo's {} routes on its upstream",
            if kind == Kind::Lfs { "Git LFS" } else { "push" }
        )));
    }
    Ok(url)
}

thread_local! {
    /// One client per shard thread: its resolver cache is the shard's.
    static CLIENTS: std::cell::RefCell<[Option<Rc<ClientOptions>>; 2]> = const { std::cell::RefCell::new([None, None]) };
}

/// The shard's upstream client for `scheme`: connect within the
/// upstream deadline; the answer's head may take as long as a clone may
/// (the no-progress watchdog, not this, catches a silent upstream).
fn client(scheme: &str, connect: Duration) -> Result<Rc<ClientOptions>, ApiError> {
    let tls = scheme == "https";
    CLIENTS.with(|c| {
        if let Some(c) = &c.borrow()[usize::from(tls)] {
            return Ok(c.clone());
        }
        let config = if tls {
            // What git trusts on this machine, as a clone of the same URL would.
            let system = std::path::Path::new(crate::limits::SYSTEM_CA_BUNDLE);
            let ca = system.exists().then_some(system);
            Some(trove_engine::remote::tls::client_config(ca).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "tls_setup", format!("TLS to the upstream: {e}"))
            })?)
        } else {
            None
        };
        let made = Rc::new(ClientOptions {
            connect,
            response: crate::limits::PASSTHROUGH_MAX,
            tls: config,
            resolver: Default::default(),
            ca_hint: "the upstream's certificate is not trusted by this machine's CA bundle",
        });
        c.borrow_mut()[usize::from(tls)] = Some(made.clone());
        Ok(made)
    })
}

/// Resolves when nothing moved for `deadline`: neither a byte of the
/// client's body went up nor the upstream's answer came.
async fn stalled(progress: &Cell<Instant>, deadline: Duration, kind: Kind) -> Result<Response<Incoming>, ApiError> {
    loop {
        let idle = progress.get().elapsed();
        if idle >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "the upstream made no progress on the {kind:?} request for {deadline:?} (see --upstream-timeout)"
                ),
            ));
        }
        glommio::timer::sleep(deadline - idle).await;
    }
}

fn upstream_error(kind: Kind, e: RemoteError) -> ApiError {
    let what = match kind {
        Kind::Push => "the push",
        Kind::Lfs => "the Git LFS request",
    };
    match e {
        RemoteError::Timeout { after, .. } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("the upstream did not answer {what} within {after:?}"),
        ),
        RemoteError::Connect { endpoint, reason } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            format!("cannot reach the upstream at {endpoint} for {what}: {reason}"),
        ),
        // The shared client's Display speaks of S3: say it for a git host.
        RemoteError::Http { reason, .. } => upstream_failed(what, &reason),
        RemoteError::Protocol { what: w, .. } => upstream_failed(what, &w),
        RemoteError::Status { status, code, .. } => upstream_failed(what, &format!("HTTP {status} {code}")),
        RemoteError::Config(c) => upstream_failed(what, &c),
        RemoteError::Corrupt(c) | RemoteError::LocalIo(c) => upstream_failed(what, &c),
    }
}

fn upstream_failed(what: &str, why: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", format!("passing {what} to the upstream failed: {why}"))
}

/// The client's request body, noting when each frame went by.
struct Progressed {
    inner: Incoming,
    progress: Rc<Cell<Instant>>,
}

impl Body for Progressed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.progress.set(Instant::now());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The mirror's fetch owed once an accepted push's answer has been read.
struct FetchAfterPush {
    mirrors: Rc<Mirrors>,
    key: RepoKey,
    auth: Option<trove_engine::Secret>,
}

impl FetchAfterPush {
    async fn run(self) {
        // Only a mirror the node already keeps follows; a push does not
        // start a clone.
        if !self.mirrors.mirror_path(&self.key).exists() {
            return;
        }
        let fetch = self.mirrors.repo(&self.key, self.auth, Need::Fetch);
        let waited = futures_lite::future::or(async { Some(fetch.await) }, async {
            glommio::timer::sleep(FETCH_AFTER_PUSH_WAIT).await;
            None
        })
        .await;
        match waited {
            Some(Ok(_)) => tracing::info!(repo = %self.key, "mirror fetched after a push passed through"),
            Some(Err(e)) => tracing::warn!(repo = %self.key, error = %e, "mirror fetch after a push failed"),
            None => tracing::warn!(repo = %self.key, "mirror fetch after a push is slow; not waiting for it"),
        }
    }
}

/// The upstream's answer, a frame at a time: each window of the deadline
/// must bring `UPSTREAM_LOW_SPEED_BYTES`, as git's jobs must, so neither
/// silence nor a trickle holds the client.
struct UpstreamStream {
    body: Incoming,
    deadline: Duration,
    after: Option<FetchAfterPush>,
    window_started: Instant,
    window_bytes: u64,
}

impl UpstreamStream {
    fn new(body: Incoming, deadline: Duration, after: Option<FetchAfterPush>) -> Self {
        Self { body, deadline, after, window_started: Instant::now(), window_bytes: 0 }
    }

    /// Counts `n` bytes; false when a whole window brought too few.
    fn progressed(&mut self, n: usize) -> bool {
        self.window_bytes += n as u64;
        if self.window_started.elapsed() < self.deadline {
            return true;
        }
        let enough = self.window_bytes >= trove_engine::limits::UPSTREAM_LOW_SPEED_BYTES;
        (self.window_started, self.window_bytes) = (Instant::now(), 0);
        enough
    }

    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        loop {
            let left = self.deadline.saturating_sub(self.window_started.elapsed());
            let frame = futures_lite::future::or(async { Some(self.body.frame().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            let n = match &frame {
                Some(Some(Ok(f))) => f.data_ref().map_or(0, |d| d.len()),
                _ => 0,
            };
            if frame.is_none() || !self.progressed(n) {
                let e = std::io::Error::other(format!(
                    "the upstream sent fewer than {} bytes in {:?} (see --upstream-timeout)",
                    trove_engine::limits::UPSTREAM_LOW_SPEED_BYTES,
                    self.deadline
                ));
                self.after = None;
                return Some((Err(e), self));
            }
            match frame {
                None => unreachable!("handled above"),
                Some(None) => {
                    if let Some(after) = self.after.take() {
                        after.run().await;
                    }
                    return None;
                }
                Some(Some(Err(e))) => {
                    self.after = None;
                    return Some((Err(std::io::Error::other(e.to_string())), self));
                }
                Some(Some(Ok(frame))) => {
                    // hyper stops polling a body once its Content-Length is
                    // sent: the fetch runs before the last bytes go out.
                    if self.body.is_end_stream() {
                        if let Some(after) = self.after.take() {
                            after.run().await;
                        }
                    }
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Some((Ok(data), self));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_sent_stays_under_the_repos_lfs_routes_or_is_its_push_route() {
        let base = "https://git.example/base/org/repo";
        let ok = upstream_url(base, ".git/info/lfs/objects/batch", Kind::Lfs, None).expect("batch");
        assert_eq!(ok.as_str(), "https://git.example/base/org/repo.git/info/lfs/objects/batch");
        let q = upstream_url(base, ".git/info/lfs/locks", Kind::Lfs, Some("path=a%2Fb&cursor=1")).expect("q");
        assert_eq!(q.path(), "/base/org/repo.git/info/lfs/locks");
        for escape in [
            ".git/info/lfs/../../../../admin",
            ".git/info/lfs/%2e%2e/%2e%2e/x",
            ".git/info/lfs/..\\..\\x",
            ".git/info/lfs/.%2E/x",
            ".git/info/lfs/..//x",
            "/../../x",
        ] {
            assert!(upstream_url(base, escape, Kind::Lfs, None).is_err(), "{escape}");
        }
        assert!(upstream_url(base, "/git-receive-pack", Kind::Push, None).is_ok());
        assert!(upstream_url(base, "/git-receive-pack/../../x", Kind::Push, None).is_err());
        let file = upstream_url("file:///srv/org/repo", "/git-receive-pack", Kind::Push, None);
        assert_eq!(file.err().map(|e| e.status.as_u16()), Some(501), "other schemes: what to do instead");
    }

    #[test]
    fn a_location_is_shown_without_credentials() {
        assert_eq!(without_userinfo("https://u:p@h.example/x"), "https://h.example/x");
    }
}
