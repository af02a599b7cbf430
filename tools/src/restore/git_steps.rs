//! Step 3 of restore: the git config a clone would write, the advertised
//! bundle applied as a fast-forward, and `ensure-refs` for a ref or commit
//! the snapshot lacks. git runs with no hooks or filters.

use super::exit::{codes, fail};
use super::node_http::{agent, capped, get, refuse_redirect};
use crate::client::{exit, failure};
use crate::limits::{BUNDLE_MAX_BYTES, ENSURE_REPLY_MAX_BYTES};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use trove_engine::repo::untrusted;

/// Writes `.git/config` as `git clone` would: origin (from the archive's
/// config when it is a plain URL, else the upstream the repo name implies),
/// its fetch refspec, and HEAD's branch tracking it.
pub(crate) fn write_git_config(staging: &Path, archived: &[u8], repo: &str) -> Result<()> {
    let format = untrusted::object_format(archived)
        .ok_or_else(|| fail(codes::UNSAFE_ARCHIVE, "refused archive: its .git names an unknown object format"))?;
    let origin = match untrusted::config_value(archived, "remote.origin.url") {
        Some(u) if untrusted::safe_remote_url(&u) => u,
        Some(u) => {
            eprintln!("warning: ignoring the snapshot's origin URL {u:?}; origin is https://{repo}");
            format!("https://{repo}")
        }
        None => format!("https://{repo}"),
    };
    let mut config = untrusted::ConfigFile::repository(false, format);
    config.set("remote.origin.url", &origin).set("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*");
    let head = std::fs::read_to_string(staging.join(".git/HEAD")).unwrap_or_default();
    if let Some(branch) = head.trim().strip_prefix("ref: refs/heads/").filter(|b| plain_branch(b)) {
        config.set(&format!("branch.{branch}.remote"), "origin");
        config.set(&format!("branch.{branch}.merge"), &format!("refs/heads/{branch}"));
    }
    let path = staging.join(".git/config");
    config.write(&path).map_err(|e| fail(codes::TARGET, format!("writing {}: {e}", path.display())))
}

/// A branch name that can go into a config section name as it is.
fn plain_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with('-')
        && !b.contains("..")
        && b.len() <= 255
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"._/-".contains(&c))
}

/// Fetches the advertised bundle and fast-forwards the tree to it.
pub(crate) fn apply_bundle(url: &str, repo: &Path) -> Result<()> {
    let resp = get(&agent(), url, &[])?;
    if resp.status() == 204 {
        return Ok(());
    }
    let path = repo.join(".git/trove-restore.bundle");
    let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let max =
        resp.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(BUNDLE_MAX_BYTES).min(BUNDLE_MAX_BYTES);
    let copied = std::io::copy(&mut capped(resp.into_reader(), max, "the bundle"), &mut f);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&path);
        return Err(fail(exit::UNREACHABLE, format!("{url}: {e}")));
    }
    let p = path.to_string_lossy().into_owned();
    let applied = (|| {
        git(repo, &["fetch", "-q", &p, "HEAD"])?;
        git(repo, &["merge", "-q", "--ff-only", "FETCH_HEAD"])?;
        // The remote-tracking branch moves with it, as after a pull.
        if let Ok(branch) = git(repo, &["symbolic-ref", "-q", "--short", "HEAD"]) {
            git(repo, &["update-ref", &format!("refs/remotes/origin/{}", branch.trim()), "HEAD"])?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    applied
}

/// POSTs ensure-refs; fails when the node cannot find them upstream.
pub(crate) fn ensure(base: &str, body: serde_json::Value) -> Result<()> {
    let url = format!("{base}/ensure-refs");
    let resp = agent()
        .post(&url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .map_err(|e| failure(e, &url))?;
    refuse_redirect(&resp, &url)?;
    let v: serde_json::Value = serde_json::from_reader(capped(resp.into_reader(), ENSURE_REPLY_MAX_BYTES, "a reply"))
        .map_err(|e| fail(exit::SERVER_ERROR, format!("{url}: unreadable reply: {e}")))?;
    if v["missing"].as_u64().unwrap_or(0) > 0 {
        return Err(fail(exit::NOT_FOUND, format!("the upstream does not have {body}: {v}")));
    }
    Ok(())
}

/// Runs git in `dir`; its stderr goes into the error.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    for (k, v) in untrusted::NO_CODE_CONFIG {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| fail(codes::GIT_FAILED, format!("running git: {e}; is git installed?")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(codes::GIT_FAILED, format!("git {} failed: {}", args.join(" "), err.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
