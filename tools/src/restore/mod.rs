//! `trove restore`: a working tree from a node's snapshot, faster than a
//! clone.
//!
//! 1. GET `snapshot.tar.zst` with a first range. A stored snapshot answers
//!    206 with its ETag and length: the rest comes in parallel ranges, each
//!    pinned with If-Match, so a snapshot replaced mid-download is noticed
//!    (412) and the download starts over. A snapshot still being built
//!    answers 200 and streams whole.
//! 2. The bytes are unpacked as they arrive (streaming zstd + tar) into a
//!    staging directory beside the target, refusing any entry that would
//!    land outside it, then renamed into place: the target appears whole
//!    or not at all.
//! 3. The bundle the node advertises (`X-Trove-Bundle-Url`) is applied as
//!    a fast-forward; with `--ref` or `--commit`, `ensure-refs` makes the
//!    node fetch what is missing and git fetches it from the node.
//!
//! Files: `exit.rs` the exit codes, `node_http.rs` the client and the
//! ranged download, `download.rs` steps 1 and 2, `git_steps.rs` step 3;
//! none imports this file.
//!
//! The node is not trusted to run code here: of the archive's `.git` only
//! refs, objects, HEAD and the index are unpacked (never hooks, never its
//! config); restore writes the config a clone would, with the origin URL
//! read from the archive's config and checked; and every git step runs
//! with hooks, fsmonitor and filter drivers off.

mod download;
mod exit;
mod git_steps;
mod node_http;

use crate::client::ClientFailure;
use anyhow::Result;
use download::download_and_unpack;
pub use exit::codes;
use exit::fail;
use git_steps::{apply_bundle, ensure, git, write_git_config};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The repo: an upstream URL (https://github.com/org/repo) or host/org/repo.
    pub repo: String,
    /// Directory to create the working tree in; it must not exist or be empty.
    pub dir: PathBuf,
    /// Node to restore from.
    #[arg(long, env = "TROVE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Check out this branch or tag (fetched through the node if the snapshot lacks it).
    #[arg(long, conflicts_with = "commit")]
    pub r#ref: Option<String>,
    /// Check out this commit (fetched through the node if the snapshot lacks it).
    #[arg(long)]
    pub commit: Option<String>,
    /// Ranged GETs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Threads creating the small files. On a fresh ext4 here 2 restored 1.15x faster than 1; on ext4 without a journal right after mass deletes, up to 2x slower (they contend for inodes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub writers: u16,
    /// Never draw a progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
    /// Leave the index without stat data (git then hashes every file on its
    /// first status).
    #[arg(long)]
    pub no_refresh: bool,
}

/// `https://github.com/a/b.git`, `github.com/a/b` -> `github.com/a/b`.
pub(crate) fn repo_path(repo: &str) -> Result<String> {
    let r = repo.split_once("://").map_or(repo, |(_, rest)| rest);
    let r = r.rsplit_once('@').map_or(r, |(_, rest)| rest).trim_end_matches('/');
    let (host, path) =
        r.split_once('/').ok_or_else(|| fail(2, format!("{repo:?}: expected host/org/repo or a URL")))?;
    trove_engine::repo::RepoKey::parse(host, path).map_err(|e| fail(2, e.to_string()))?;
    Ok(format!("{host}/{path}"))
}

pub fn run(args: RestoreArgs) -> Result<()> {
    let started = Instant::now();
    let repo = repo_path(&args.repo)?;
    let node = args.url.trim_end_matches('/').to_owned();
    let base = format!("{node}/git/{repo}");
    let staging = prepare_target(&args.dir)?;
    let result = (|| {
        let progress = progress_bar(!args.quiet && std::io::stderr().is_terminal());
        let snap = download_and_unpack(
            &format!("{base}/snapshot.tar.zst"),
            &staging,
            args.parallel.max(1),
            usize::from(args.writers),
            &progress,
        )?;
        progress.finish();
        write_git_config(&staging, &snap.git_config, &repo)?;
        // Filter drivers off for every git step below: the tree's
        // .gitattributes are the node's to write (info/ attributes win).
        let attributes = staging.join(".git/info/attributes");
        std::fs::create_dir_all(staging.join(".git/info"))
            .and_then(|()| std::fs::write(&attributes, "* -filter\n"))
            .map_err(|e| fail(codes::TARGET, format!("writing {}: {e}", attributes.display())))?;
        if !args.no_refresh {
            // As a checkout does: the index learns the stat data of the
            // files just written, so git compares stat data, not contents
            // (also in the fast-forward below).
            if let Err(e) = crate::index_stat::fill(&staging, &snap.stats) {
                eprintln!("warning: {e}; refreshing the index with git instead");
                git(&staging, &["update-index", "-q", "--refresh"]).ok();
            }
        }
        if let Some(url) = &snap.bundle_url {
            apply_bundle(&format!("{node}{url}"), &staging)?;
        }
        if let Some(r) = &args.r#ref {
            ensure(&base, serde_json::json!({ "refs": [r] }))?;
            git(&staging, &["fetch", "-q", &base, &format!("+{r}:refs/trove/want")])?;
            git(&staging, &["checkout", "-q", "--detach", "refs/trove/want"])?;
            git(&staging, &["update-ref", "-d", "refs/trove/want"])?;
        } else if let Some(c) = &args.commit {
            let have = git(&staging, &["cat-file", "-e", &format!("{c}^{{commit}}")]).is_ok();
            if !have {
                ensure(&base, serde_json::json!({ "commits": [c] }))?;
                git(&staging, &["fetch", "-q", &base, c])?;
            }
            git(&staging, &["checkout", "-q", "--detach", c])?;
        }
        std::fs::remove_file(&attributes)
            .map_err(|e| fail(codes::TARGET, format!("removing {}: {e}", attributes.display())))?;
        std::fs::rename(&staging, &args.dir)
            .map_err(|e| fail(codes::TARGET, format!("moving the tree into {}: {e}", args.dir.display())))?;
        let head = git(&args.dir, &["rev-parse", "HEAD"]).unwrap_or_else(|_| snap.commit.clone());
        eprintln!("restored {repo} at {} into {} in {:.2?}", short(head.trim()), args.dir.display(), started.elapsed());
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map_err(|e| redact_userinfo(e, &args.url))
}

/// `e` with the `user:token` of `url` (if it has one) hidden wherever the
/// message repeats it: git and the HTTP client both quote the URL.
fn redact_userinfo(e: anyhow::Error, url: &str) -> anyhow::Error {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest).split('/').next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@').filter(|(u, _)| !u.is_empty()) else { return e };
    let hide = |m: &str| m.replace(userinfo, "***");
    match e.downcast::<ClientFailure>() {
        Ok(f) => ClientFailure { code: f.code, message: hide(&f.message) }.into(),
        Err(e) => anyhow::anyhow!(hide(&format!("{e:#}"))),
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Checks the target and makes a staging directory beside it.
fn prepare_target(dir: &Path) -> Result<PathBuf> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(fail(
                codes::TARGET,
                format!("{} exists and is not empty; pick a new directory", dir.display()),
            ));
        }
        std::fs::remove_dir(dir).map_err(|e| fail(codes::TARGET, format!("{}: {e}", dir.display())))?;
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| fail(codes::TARGET, format!("creating {}: {e}", parent.display())))?;
    let name = dir.file_name().ok_or_else(|| fail(2, format!("{}: not a directory name", dir.display())))?;
    let parent = parent.canonicalize().map_err(|e| fail(codes::TARGET, format!("{}: {e}", parent.display())))?;
    let staging = parent.join(format!(".{}.trove-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| fail(codes::TARGET, format!("creating {}: {e}", staging.display())))?;
    Ok(staging)
}

/// The download's progress bar on stderr, drawn only on a terminal
/// (indicatif, redrawn ten times a second).
fn progress_bar(on: bool) -> ProgressBar {
    if !on {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec} {elapsed}").expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::repo_path;

    #[test]
    fn the_progress_bar_templates_are_valid() {
        // with_template panics on a bad template only when a bar is drawn.
        let bar = super::progress_bar(true);
        super::download::set_total(&bar, 1 << 20);
        bar.inc(4096);
        assert_eq!((bar.position(), bar.length()), (4096, Some(1 << 20)));
        bar.finish_and_clear();
    }

    #[test]
    fn a_token_in_the_node_url_never_reaches_an_error() {
        let url = "http://ci:s3cr3t-t0ken@127.0.0.1:9/x";
        let e = super::fail(5, format!("downloading {url} failed: connection refused (ci:s3cr3t-t0ken)"));
        let shown = format!("{:#}", super::redact_userinfo(e, url));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("http://***@127.0.0.1:9/x"), "{shown}");
        let plain = super::redact_userinfo(anyhow::anyhow!("at http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(format!("{plain:#}"), "at http://127.0.0.1:9");
    }

    #[test]
    fn repo_urls_and_paths_are_accepted() {
        assert_eq!(repo_path("https://github.com/a/b.git").expect("valid"), "github.com/a/b.git");
        assert_eq!(repo_path("github.com/a/b").expect("valid"), "github.com/a/b");
        assert_eq!(repo_path("https://user:tok@github.com/a/b").expect("valid"), "github.com/a/b");
        assert!(repo_path("nohost").is_err());
        assert!(repo_path("github.com/../x").is_err());
    }
}
