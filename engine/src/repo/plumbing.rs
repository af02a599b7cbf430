//! Git plumbing run against a mirror's directory: fetch, resolve names,
//! read HEAD and the refs, index for serving, publish by rename, and what
//! an upstream's failure means. Stateless: which mirror, and when, is the
//! mirrors service's call. This module never speaks HTTP.

use crate::repo::error::RepoError;
use crate::repo::git::Git;
use crate::repo::key::RepoKey;
use crate::secret::Secret;
use std::path::Path;
use std::time::Duration;

/// Longest a ref check or a catalogue command may run.
pub const SHORT_GIT_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn fetch_mirror(
    key: &RepoKey,
    auth: Option<&Secret>,
    path: &Path,
    (timeout, no_progress): (Duration, Duration),
) -> Result<(), RepoError> {
    let out = Git::new(["fetch", "--prune", "--quiet", "origin"])
        .dir(path)
        .auth(auth)
        .upstream(no_progress)
        .run(Vec::new(), timeout)
        .await?;
    if !out.ok() {
        return Err(upstream_error(key, "git fetch", &out.stderr, no_progress));
    }
    Ok(())
}

/// What each of `names` (refs, or object expressions like `<sha>^{commit}`)
/// resolves to in `dir`, in order; None where it does not. One process for
/// all of them. Names must not hold whitespace (the caller validates).
///
/// Its memory grows with the names (a request may name 10^6 wants):
/// [`RESOLVE_BYTES_PER_NAME`] bounds what it holds at once for each.
pub async fn resolve(dir: &Path, names: &[String]) -> Result<Vec<Option<String>>, RepoError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        input.extend_from_slice(n.as_bytes());
        input.push(b'\n');
    }
    let out = Git::new(["cat-file", "--batch-check=%(objectname)"]).dir(dir).run(input, SHORT_GIT_TIMEOUT).await?;
    if !out.ok() {
        return Err(RepoError::Git { what: "git cat-file --batch-check".into(), stderr: out.stderr });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::with_capacity(names.len());
    for l in text.lines() {
        found.push((!l.ends_with(" missing") && !l.ends_with(" ambiguous")).then(|| l.trim().to_owned()));
    }
    if found.len() != names.len() {
        return Err(RepoError::Git { what: "git cat-file --batch-check".into(), stderr: "short output".into() });
    }
    Ok(found)
}

/// The most [`resolve`] (and `Mirrors::resolve_fetching`, which holds one
/// answer at a time) holds at once for each name of 40 hex digits, beyond
/// the name: its input line (41), cat-file's output line (at most `<name>
/// missing`, 49) in a buffer that grows by doubling (98), the answer (a
/// 24-byte slot and a 40-byte id in a 48-byte allocation) and the list of
/// names missing (8, doubling: 16). A caller that resolves names a client
/// sent charges this to its budget.
pub const RESOLVE_BYTES_PER_NAME: u64 = 41 + 98 + 24 + 48 + 16;

/// What HEAD points to in `dir` (None for a repo with no commits) and a
/// hash of HEAD and every ref with what it points to, in one process.
pub async fn refs_state(dir: &Path) -> Result<(Option<String>, u64), RepoError> {
    let out = Git::new(["show-ref", "--head"]).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
    // Exit 1: no refs at all (an empty repo), which is a state too.
    if !out.ok() && out.status.code() != Some(1) {
        return Err(RepoError::Git { what: "git show-ref".into(), stderr: out.stderr });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let head = text.lines().find_map(|l| l.strip_suffix(" HEAD")).map(str::to_owned);
    Ok((head, xxhash_rust::xxh3::xxh3_64(&out.stdout)))
}

/// The commit HEAD names in `dir`; None for a repo with no commits.
pub async fn head_of(dir: &Path) -> Result<Option<String>, RepoError> {
    let out =
        Git::new(["rev-parse", "--verify", "-q", "HEAD^{commit}"]).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
    Ok(out.ok().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Commit-graph and a multi-pack-index bitmap: what makes serving fast.
pub async fn index_mirror(dir: &Path) -> Result<(), RepoError> {
    for args in [&["commit-graph", "write", "--reachable"][..], &["multi-pack-index", "write", "--bitmap"][..]] {
        let out = Git::new(args.iter().copied()).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT * 10).await?;
        if !out.ok() {
            return Err(RepoError::Git { what: format!("git {}", args.join(" ")), stderr: out.stderr });
        }
    }
    Ok(())
}

/// Renames the whole directory `from` to `to`, then syncs the parent.
pub fn publish(from: &Path, to: &Path) -> Result<(), RepoError> {
    let io = |e: std::io::Error| RepoError::Io(format!("publishing {}: {e}", to.display()));
    let parent = to.parent().expect("mirror paths have a parent");
    std::fs::create_dir_all(parent).map_err(io)?;
    std::fs::rename(from, to).map_err(io)?;
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io)
}

pub fn upstream_error(key: &RepoKey, what: &str, stderr: &str, no_progress: Duration) -> RepoError {
    let s = stderr.to_ascii_lowercase();
    // curl's low-speed abort (http.lowSpeedTime) and connect timeouts: the
    // same no-progress bound the watchdog keeps, hit first.
    if s.contains("operation too slow") || s.contains("timed out") {
        return RepoError::Stalled(what.to_owned(), no_progress);
    }
    if let Some(status) = crate::repo::git::redirect_status(stderr) {
        return RepoError::Redirected { key: key.canonical(), what: what.to_owned(), status };
    }
    // http(s) and ssh hosts say "not found"; file:// "does not appear to be
    // a git repository" or "does not exist"; git daemon "not exported".
    if s.contains("not found")
        || s.contains("does not appear to be a git repository")
        || s.contains("does not exist")
        || s.contains("repository not exported")
    {
        return RepoError::UpstreamNotFound(key.canonical());
    }
    if s.contains("authentication failed") || s.contains("could not read username") {
        return RepoError::Unauthorized(key.canonical());
    }
    RepoError::Git { what: what.to_owned(), stderr: stderr.trim().lines().last().unwrap_or("").to_owned() }
}
