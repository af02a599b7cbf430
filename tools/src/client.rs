//! `trove put|get|stat|delete`: the object API from the command line.
//! Bodies stream from and to files (or stdin/stdout with `-`); nothing is
//! held whole in memory.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Exit codes of the client commands (documented in the README).
pub mod exit {
    pub const NOT_FOUND: i32 = 3;
    pub const PRECONDITION: i32 = 4;
    pub const UNREACHABLE: i32 = 5;
    pub const SERVER_ERROR: i32 = 1;
}

/// A failure that carries its exit code.
#[derive(Debug)]
pub struct ClientFailure {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientFailure {}

pub struct Target {
    pub url: String,
    pub namespace: String,
    pub key: String,
}

impl Target {
    /// Checks the name with the node's own rules, so a bad name fails here
    /// with the reason instead of after an upload has started.
    pub fn validate(&self) -> Result<()> {
        trove_engine::ObjectKey::new(&self.namespace, &self.key).map(|_| ()).map_err(|e| {
            ClientFailure { code: exit::SERVER_ERROR, message: format!("invalid object name: {e}") }.into()
        })
    }

    fn object_url(&self) -> String {
        let enc = |s: &str| percent_encode(s);
        format!("{}/api/v1/object/{}/{}", self.url.trim_end_matches('/'), enc(&self.namespace), enc(&self.key))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(5)).build()
}

/// A request to `url`, carrying `TROVE_API_TOKEN` as a bearer token when
/// it is set (a node admits writes from other hosts with one). The token
/// comes from the environment, never argv, where `ps` would show it.
fn request(method: &str, url: &str) -> ureq::Request {
    let req = agent().request(method, url);
    match std::env::var("TROVE_API_TOKEN") {
        Ok(t) if !t.is_empty() => req.set("Authorization", &format!("Bearer {t}")),
        _ => req,
    }
}

/// Turns a ureq error into a message with the server's own words.
pub(crate) fn failure(e: ureq::Error, what: &str) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::Read::take(resp.into_reader(), 64 << 10), &mut body);
            let msg = trove_engine::node_error::node_message(&body);
            let exit = match code {
                404 => exit::NOT_FOUND,
                412 => exit::PRECONDITION,
                _ => exit::SERVER_ERROR,
            };
            ClientFailure { code: exit, message: format!("{what}: {code}: {msg}") }.into()
        }
        ureq::Error::Transport(t) => ClientFailure {
            code: exit::UNREACHABLE,
            message: format!("{what}: cannot reach the node ({t}); is `trove serve` running at that --url?"),
        }
        .into(),
    }
}

pub fn put(t: &Target, file: Option<PathBuf>, ttl: Option<String>) -> Result<()> {
    let mut req = request("PUT", &t.object_url());
    if let Some(ttl) = &ttl {
        req = req.set("Time-To-Live", ttl);
    }
    let resp = match file.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let len = f.metadata()?.len();
            req.set("Content-Length", &len.to_string()).send(f)
        }
        None => req.send(std::io::stdin().lock()),
    };
    let resp = resp.map_err(|e| failure(e, "put"))?;
    println!("{}", resp.into_string()?);
    Ok(())
}

pub fn get(t: &Target, file: Option<PathBuf>) -> Result<()> {
    let resp = request("GET", &t.object_url()).call().map_err(|e| failure(e, "get"))?;
    let mut reader = resp.into_reader();
    match file.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            // Write beside the target, then rename: no half-written file on error.
            let tmp = p.with_extension("trove-partial");
            let mut out = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            std::io::copy(&mut reader, &mut out).context("downloading")?;
            out.sync_all()?;
            std::fs::rename(&tmp, p)?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut reader, &mut out).context("downloading")?;
            out.flush()?;
        }
    }
    Ok(())
}

pub fn stat(t: &Target) -> Result<()> {
    let resp = request("HEAD", &t.object_url()).call().map_err(|e| failure(e, "stat"))?;
    let h = |n: &str| resp.header(n).unwrap_or("").to_owned();
    let out = serde_json::json!({
        "size": h("content-length").parse::<u64>().unwrap_or(0),
        "etag": h("etag").trim_matches('"'),
        "tier": h("x-trove-tier"),
        "time_to_live": h("time-to-live").parse::<u64>().ok(),
    });
    println!("{out}");
    let mut sink = Vec::new();
    resp.into_reader().read_to_end(&mut sink)?;
    Ok(())
}

pub fn delete(t: &Target) -> Result<()> {
    request("DELETE", &t.object_url()).call().map_err(|e| failure(e, "delete"))?;
    Ok(())
}
