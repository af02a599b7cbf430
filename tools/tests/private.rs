//! Private repos: a real `git http-backend` upstream behind a gateway that
//! demands one bearer token. The cache must pass a client's credentials
//! on (through the environment, never argv), never log them, and never
//! hand the private mirror to a client the upstream would turn away.

use crate::git::{git, Upstream};
use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const SECRET: &str = "tr0ve-s3cret-7f3a9c";

/// What the gateway saw.
#[derive(Default)]
struct Seen {
    authorized: usize,
    refused: usize,
    /// Command lines that held the secret while a request was in flight.
    secret_in_argv: Vec<String>,
}

/// Whom the gateway serves without the token.
#[derive(Clone, Copy)]
enum Anonymous {
    /// Nobody: 401 (a private repo).
    Refused,
    /// Everybody, after 503 to the first `n` anonymous requests (a public
    /// repo behind a flaky front).
    ServedAfterFailing(usize),
}

/// `git http-backend` (CGI) over HTTP/1.1, for requests that carry
/// `Authorization: Bearer SECRET`, and for the rest as `Anonymous` says.
struct PrivateUpstream {
    server: TcpServer,
    seen: Arc<Mutex<Seen>>,
}

impl PrivateUpstream {
    fn start(root: &Path) -> PrivateUpstream {
        PrivateUpstream::start_with(root, Anonymous::Refused)
    }

    fn start_with(root: &Path, anonymous: Anonymous) -> PrivateUpstream {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let failures_left = Arc::new(std::sync::atomic::AtomicUsize::new(match anonymous {
            Anonymous::Refused => 0,
            Anonymous::ServedAfterFailing(n) => n,
        }));
        let (st, root) = (seen.clone(), root.to_owned());
        let server = TcpServer::start(move |conn| serve(conn, &root, &st, anonymous, &failures_left));
        PrivateUpstream { server, seen }
    }
}

fn serve(
    conn: TcpStream,
    root: &Path,
    seen: &Mutex<Seen>,
    anonymous: Anonymous,
    failures_left: &std::sync::atomic::AtomicUsize,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = read_body(&mut reader, header("content-length"), header("transfer-encoding"));
    // Whoever asked is running now: no command line may hold the secret.
    let leaks = command_lines_holding(SECRET);
    let mut conn = conn;
    let authorized = header("authorization").as_deref() == Some(&format!("Bearer {SECRET}"));
    let fail = |n: &usize| (*n > 0).then(|| n - 1);
    if !authorized && matches!(anonymous, Anonymous::ServedAfterFailing(_)) {
        if failures_left
            .fetch_update(std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire, |n| fail(&n))
            .is_ok()
        {
            let _ =
                conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
    } else if !authorized {
        let mut s = seen.lock().expect("seen");
        s.refused += 1;
        s.secret_in_argv.extend(leaks);
        drop(s);
        let _ = conn.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"private\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    {
        let mut s = seen.lock().expect("seen");
        s.authorized += 1;
        s.secret_in_argv.extend(leaks);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path.contains("/info/lfs/") {
        // A Git LFS server's part: say what reached it.
        let echo = serde_json::json!({
            "method": method, "path": path, "body": String::from_utf8_lossy(&body),
            "accept": header("accept"), "cookie": header("cookie"),
        })
        .to_string();
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.git-lfs+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
                echo.len()
            )
            .as_bytes(),
        );
        return;
    }
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        // An authenticated user: http-backend takes pushes from one.
        .env("REMOTE_USER", "trove-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (h, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = header(h) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn().expect("git http-backend");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).expect("read CGI output");
    let _ = feeder.join();
    let _ = child.wait();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else { return };
    let head = String::from_utf8_lossy(&out[..at]).into_owned();
    let mut status = "200 OK".to_owned();
    let mut resp = Vec::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((n, v)) if n.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            Some(_) => resp.push(h.trim_end().to_owned()),
            None => {}
        }
    }
    let payload = &out[at + sep..];
    let mut msg = format!("HTTP/1.1 {status}\r\n");
    for h in resp {
        msg.push_str(&h);
        msg.push_str("\r\n");
    }
    msg.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", payload.len()));
    let _ = conn.write_all(msg.as_bytes());
    let _ = conn.write_all(payload);
}

fn read_body(r: &mut impl BufRead, len: Option<String>, te: Option<String>) -> Vec<u8> {
    let mut body = Vec::new();
    if te.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2]; // data and its CRLF
            if r.read_exact(&mut chunk).is_err() || n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len.and_then(|l| l.parse::<usize>().ok()) {
        body.resize(n, 0);
        let _ = r.read_exact(&mut body);
    }
    body
}

/// Every process's command line that contains `needle`.
fn command_lines_holding(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(needle) {
                found.push(line);
            }
        }
    }
    found
}

/// git as a client, with `Authorization` passed through the environment
/// (so the test's own command lines never hold it either).
fn git_with(dir: &Path, authorization: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_CONFIG_GLOBAL", "/dev/null");
    if let Some(a) = authorization {
        c.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {a}"));
    }
    c.output().expect("run git")
}

fn status_with(url: &str, authorization: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
    http("GET", url, &headers, Vec::new()).status
}

#[test]
fn a_private_repo_is_served_only_to_clients_the_upstream_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    let gateway = PrivateUpstream::start(&up.root);
    let upstream = format!("private.test=http://127.0.0.1:{}", gateway.server.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream]);
    let url = node.url("/git/private.test/org/repo");
    let refs = format!("{url}/info/refs?service=git-upload-pack");
    let good = format!("Bearer {SECRET}");

    // Cold, no credentials: 401 with a challenge, and no backoff for others.
    let anon = http("GET", &refs, &[], Vec::new());
    assert_eq!(anon.status, 401, "{}", String::from_utf8_lossy(&anon.body));
    assert!(anon.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")));

    // With the token: stock git clones through the cache.
    let clone: PathBuf = dir.path().join("clone");
    let out = git_with(dir.path(), Some(&good), &["clone", "-q", &url, clone.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);

    // The mirror is warm now, and private: only the upstream's yes counts.
    assert_eq!(status_with(&refs, None), 401);
    assert_eq!(status_with(&refs, Some("Bearer wrong")), 401);
    assert_eq!(status_with(&refs, Some(&good)), 200);
    let denied = git_with(dir.path(), None, &["clone", "-q", &url, dir.path().join("denied").to_str().expect("utf8")]);
    assert!(!denied.status.success());
    let snapshot = format!("{url}/snapshot.tar.zst");
    assert_eq!(status_with(&snapshot, None), 401);
    assert_eq!(status_with(&snapshot, Some(&good)), 200);
    assert_eq!(status_with(&format!("{url}/snapshot.bundle?base={head}"), None), 401);

    let seen = gateway.seen.lock().expect("seen");
    assert!(seen.authorized >= 2, "the clone and the access checks reached the upstream with the token");
    assert!(seen.refused >= 1, "the anonymous-access probe and bad tokens were refused upstream");
    assert!(seen.secret_in_argv.is_empty(), "credentials in a command line: {:?}", seen.secret_in_argv);
    assert!(!node.log_text().contains(SECRET), "credentials in the node's log");
    assert!(!node.log_text().contains("Bearer"), "an Authorization header in the node's log");
}

#[test]
fn one_failed_probe_does_not_make_a_public_repo_private_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    // Public, but the first anonymous request (the node's probe) gets 503.
    let gateway = PrivateUpstream::start_with(&up.root, Anonymous::ServedAfterFailing(1));
    let upstream = format!("flaky.test=http://127.0.0.1:{}", gateway.server.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream, "--refs-ttl", "1s"]);
    let url = node.url("/git/flaky.test/org/repo");
    let refs = format!("{url}/info/refs?service=git-upload-pack");

    // A client with a token makes the mirror: the probe without it fails.
    let good = format!("Bearer {SECRET}");
    let clone = dir.path().join("clone");
    let out = git_with(dir.path(), Some(&good), &["clone", "-q", &url, clone.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Until a probe decides, it is served as private (fail closed); then
    // the next probe finds it public, and anonymous clients are served.
    wait_until("the mirror is found public", std::time::Duration::from_secs(20), || status_with(&refs, None) == 200);
    assert!(node.log_text().contains("anonymous-access probe failed"), "{}", node.log_text());
    let anon = dir.path().join("anon");
    let out = git_with(dir.path(), None, &["clone", "-q", &url, anon.to_str().expect("utf8")]);
    assert!(out.status.success(), "an anonymous clone: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(git(&anon, &["rev-parse", "HEAD"]), head);
}

/// git as a client of `https://private.test/...`, sent to the node by the
/// `insteadOf` recipe, with `Authorization` through the environment.
fn git_via_recipe(dir: &Path, node: &Node, authorization: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut config = vec![
        (format!("url.{}.insteadOf", node.url("/git/private.test/")), "https://private.test/".to_owned()),
        ("user.email".to_owned(), "t@trove.test".to_owned()),
        ("user.name".to_owned(), "trove test".to_owned()),
    ];
    if let Some(a) = authorization {
        config.push(("http.extraHeader".to_owned(), format!("Authorization: {a}")));
    }
    let mut c = Command::new("git");
    c.current_dir(dir).args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_CONFIG_GLOBAL", "/dev/null");
    c.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (k, v)) in config.iter().enumerate() {
        c.env(format!("GIT_CONFIG_KEY_{i}"), k).env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    c.output().expect("run git")
}

#[test]
fn a_push_through_the_recipe_reaches_the_upstream_and_the_mirror_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let gateway = PrivateUpstream::start(&up.root);
    let upstream = format!("private.test=http://127.0.0.1:{}", gateway.server.port);
    // Refs stay good for an hour: only the fetch after the push can show it.
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream, "--refs-ttl", "1h"]);
    let good = format!("Bearer {SECRET}");
    let clone = dir.path().join("clone");
    let out = git_via_recipe(
        dir.path(),
        &node,
        Some(&good),
        &["clone", "-q", "https://private.test/org/repo", clone.to_str().expect("utf8")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(clone.join("pushed"), "through the cache").expect("write");
    git(&clone, &["add", "pushed"]);
    git(&clone, &["-c", "user.email=t@trove.test", "-c", "user.name=t", "commit", "-qm", "pushed"]);
    let new = git(&clone, &["rev-parse", "HEAD"]);

    // Without credentials the upstream's 401 comes back and nothing lands.
    let anon = git_via_recipe(&clone, &node, None, &["push", "origin", "HEAD:main"]);
    assert!(!anon.status.success());
    assert_ne!(git(&up.bare(), &["rev-parse", "main"]), new);

    // With them, the push lands upstream.
    let push = git_via_recipe(&clone, &node, Some(&good), &["push", "origin", "HEAD:main"]);
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    assert_eq!(git(&up.bare(), &["rev-parse", "main"]), new);

    // And the mirror has it at once, within the hour-long refs TTL.
    let ls = git_via_recipe(&clone, &node, Some(&good), &["ls-remote", "origin", "refs/heads/main"]);
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
    assert!(String::from_utf8_lossy(&ls.stdout).starts_with(&new), "{}", String::from_utf8_lossy(&ls.stdout));
    let again = dir.path().join("again");
    let out = git_via_recipe(
        dir.path(),
        &node,
        Some(&good),
        &["clone", "-q", "https://private.test/org/repo", again.to_str().expect("utf8")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(again.join("pushed")).expect("pushed file"), "through the cache");

    // Git LFS's batch API goes to `{repo}.git/info/lfs/...` upstream, with
    // the client's credentials, and the upstream's answer comes back.
    let batch = r#"{"operation":"upload","objects":[{"oid":"ab","size":1}]}"#;
    let lfs_url = node.url("/git/private.test/org/repo.git/info/lfs/objects/batch");
    let lfs_headers = [
        ("Authorization", good.as_str()),
        ("Accept", "application/vnd.git-lfs+json"),
        ("Content-Type", "application/vnd.git-lfs+json"),
        ("Cookie", "session=not-for-the-upstream"),
    ];
    let r = http("POST", &lfs_url, &lfs_headers, batch.as_bytes().to_vec());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/vnd.git-lfs+json"));
    let echo = r.json();
    assert_eq!(echo["path"], "/org/repo.git/info/lfs/objects/batch");
    assert_eq!((echo["method"].as_str(), echo["body"].as_str()), (Some("POST"), Some(batch)));
    assert_eq!(echo["accept"], "application/vnd.git-lfs+json");
    assert!(echo["cookie"].is_null(), "only the headers the upstream needs are passed on");
    let r = http("POST", &lfs_url, &lfs_headers[1..], batch.as_bytes().to_vec());
    assert_eq!(r.status, 401, "the upstream's refusal is the answer");

    assert!(!node.log_text().contains(SECRET), "credentials in the node's log");
    // Two pushes (the anonymous one ended at its advertisement) and two LFS.
    assert!(node.stats()["git"]["passthrough_requests"].as_u64() >= Some(5), "{}", node.stats());
}

#[test]
fn a_private_repos_tree_and_blobs_need_what_its_clone_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    let blob = git(&up.work, &["rev-parse", "HEAD:f1"]);
    let gateway = PrivateUpstream::start(&up.root);
    let upstream = format!("private.test=http://127.0.0.1:{}", gateway.server.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream]);
    let url = node.url("/git/private.test/org/repo");
    let good = format!("Bearer {SECRET}");
    let tree = format!("{url}/tree/{head}");
    assert_eq!(status_with(&tree, None), 401, "cold, anonymous");
    assert_eq!(status_with(&tree, Some(&good)), 200);
    // Stored now: still only for clients the upstream accepts.
    assert_eq!(status_with(&tree, None), 401);
    assert_eq!(status_with(&tree, Some("Bearer wrong")), 401);
    assert_eq!(status_with(&format!("{url}/tree?ref=main"), None), 401);
    let blobs = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http("POST", &format!("{url}/blobs"), &headers, format!("{blob}\n").into_bytes())
    };
    assert_eq!(blobs(None).status, 401);
    let r = blobs(Some(&good));
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[29..29 + 10_000], bytes(1, 10_000).as_slice(), "f1's bytes");
    assert!(!node.log_text().contains(SECRET), "credentials in the node's log");
}

/// A request's first line, its headers read past (a stand-in server's
/// start); None when the client went away.
fn request_line(conn: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            return Some(line);
        }
    }
}

/// An upstream host that answers every request with a redirect to `to`
/// (same path and query), counting what reached it.
fn redirector(to: String, hits: Arc<Mutex<usize>>) -> TcpServer {
    TcpServer::start(move |conn| {
        let Some(line) = request_line(&conn) else { return };
        *hits.lock().expect("hits") += 1;
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut conn = conn;
        let _ = conn.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    })
}

#[test]
fn an_upstream_redirect_to_another_host_is_never_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The other host serves a real repo (what would be mirrored under the
    // allowed name) and logs every request, so a credential or a clone
    // that reached it shows.
    let other = Upstream::new(&dir.path().join("other"));
    let elsewhere = PrivateUpstream::start_with(&other.root, Anonymous::ServedAfterFailing(0));
    let hits = Arc::new(Mutex::new(0));
    let front = redirector(elsewhere.server.url(), hits.clone());
    let upstream = format!("redirect.test=http://127.0.0.1:{}", front.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream]);
    let url = node.url("/git/redirect.test/org/repo");
    let good = format!("Bearer {SECRET}");

    // Anonymous and with a token: the node asks its upstream, is
    // redirected, refuses, and says why.
    for auth in [None, Some(good.as_str())] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = http("GET", &format!("{url}/info/refs?service=git-upload-pack"), &headers, Vec::new());
        assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
        let body = r.json();
        assert!(
            body["code"] == "upstream_redirect" || body["error"].as_str().is_some_and(|e| e.contains("redirect")),
            "the client is told it was a redirect: {body}"
        );
    }
    let clone = dir.path().join("clone");
    let out = git_with(dir.path(), Some(&good), &["clone", "-q", &url, clone.to_str().expect("utf8")]);
    assert!(!out.status.success(), "nothing from the other host is served");
    // A tree index and blobs go through the same upstream jobs.
    assert_eq!(http("GET", &format!("{url}/tree?ref=main"), &[], Vec::new()).status, 502);

    assert!(*hits.lock().expect("hits") >= 1, "the node did ask its upstream");
    let seen = elsewhere.seen.lock().expect("seen");
    assert_eq!((seen.authorized, seen.refused), (0, 0), "nothing, credential or clone, reached the other host");
    assert!(!node.log_text().contains(SECRET), "credentials in the node's log");
}

#[test]
fn only_the_lfs_api_routes_reach_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let gateway = PrivateUpstream::start(&up.root);
    let upstream = format!("private.test=http://127.0.0.1:{}", gateway.server.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream]);
    let reached = || {
        let s = gateway.seen.lock().expect("seen");
        s.authorized + s.refused
    };
    // Raw requests: an HTTP client would normalize the dots itself.
    let ask = |method: &str, path: &str| -> u16 {
        let req = format!(
            "{method} /git/private.test/org/repo.git/info/lfs/{path} HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {SECRET}\r\nContent-Type: application/vnd.git-lfs+json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let out = raw(node.port, req.as_bytes(), std::time::Duration::from_secs(20));
        let head = String::from_utf8_lossy(&out);
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    for (method, path) in [
        ("POST", "../../../../org/repo/git-receive-pack"),
        ("GET", "%2e%2e/%2e%2e/%2e%2e/admin"),
        ("POST", "objects/batch/..%2f..%2f..%2fadmin"),
        ("POST", "..\\..\\..\\admin"),
        ("POST", "objects//batch"),
        ("GET", "//evil.example/x"),
        ("POST", "objects/0123"),
        ("DELETE", "locks"),
        ("PUT", "objects/batch"),
        ("GET", "objects/batch"),
        ("PATCH", "locks/1/unlock"),
        ("POST", "locks/../../../x/unlock"),
    ] {
        let status = ask(method, path);
        assert!(matches!(status, 400 | 404 | 405), "{method} {path}: {status}");
    }
    assert_eq!(reached(), 0, "nothing outside the LFS API reached the upstream");
    // The API's own routes still pass, with their methods.
    for (method, path) in
        [("POST", "objects/batch"), ("GET", "locks"), ("POST", "locks/verify"), ("POST", "locks/7/unlock")]
    {
        assert_eq!(ask(method, path), 200, "{method} {path}");
    }
    assert_eq!(reached(), 4);
}

#[test]
fn a_passed_through_redirect_is_a_clear_502_and_a_trickling_answer_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An LFS server that redirects the batch and trickles the locks list.
    let upstream = TcpServer::start(|conn| {
        let Some(line) = request_line(&conn) else { return };
        let mut conn = conn;
        if line.contains("objects/batch") {
            let _ = conn.write_all(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: https://user:pw@elsewhere.example/lfs\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.git-lfs+json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
        if conn.write_all(head).is_ok() {
            trickle(&mut conn, std::iter::repeat(b' '));
        }
    });
    let spec = format!("lfs.test=http://127.0.0.1:{}", upstream.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", &spec, "--upstream-timeout", "2s"]);
    let base = node.url("/git/lfs.test/org/repo.git/info/lfs");
    let r = http(
        "POST",
        &format!("{base}/objects/batch"),
        &[("Content-Type", "application/vnd.git-lfs+json")],
        b"{}".to_vec(),
    );
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["code"], "upstream_redirect");
    let said = body["error"].as_str().unwrap_or_default();
    assert!(said.contains("https://elsewhere.example/lfs"), "it says where: {said}");
    assert!(!said.contains("pw"), "without the credentials in the location: {said}");

    let started = std::time::Instant::now();
    let r = http("GET", &format!("{base}/locks"), &[], Vec::new());
    assert!(r.body.len() < 100, "the trickle was cut: {} bytes", r.body.len());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "within windows of --upstream-timeout: {:?}",
        started.elapsed()
    );
}
