//! Step 1 and 2 of restore: the snapshot downloaded (ranges when it is
//! stored, whole while it builds) and unpacked as it arrives into the
//! staging directory, with a progress bar.

use super::exit::{codes, fail};
use super::node_http::{agent, capped, get, node_path, Ranges, SNAPSHOT_CHANGED};
use crate::client::exit;
use crate::limits::{RANGE_BYTES, SNAPSHOT_STREAM_MAX_BYTES};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use trove_engine::repo::unpack::unpack_safely;
use trove_engine::repo::untrusted;

pub(crate) struct Snapshot {
    pub commit: String,
    pub bundle_url: Option<String>,
    /// Stat data of every file unpacked, for the index.
    pub stats: Vec<(PathBuf, rustix::fs::Stat)>,
    /// The archive's `.git/config`, never written: read for its origin.
    pub git_config: Vec<u8>,
}

pub(crate) fn download_and_unpack(
    url: &str,
    staging: &Path,
    parallel: usize,
    writers: usize,
    progress: &ProgressBar,
) -> Result<Snapshot> {
    // A snapshot replaced mid-download (412) is started over, once.
    for attempt in 0..2 {
        let agent = agent();
        let first_range = format!("bytes=0-{}", RANGE_BYTES - 1);
        let resp = get(&agent, url, &[("Range", &first_range)])?;
        let commit = resp.header("x-trove-snapshot-commit").unwrap_or("").to_owned();
        let bundle_url = match resp.header("x-trove-bundle-url") {
            Some(u) if node_path(u) => Some(u.to_owned()),
            Some(u) => {
                return Err(fail(exit::SERVER_ERROR, format!("the node sent a bundle URL that is not a path: {u:?}")))
            }
            None => None,
        };
        let mut snap = Snapshot { commit, bundle_url, stats: Vec::new(), git_config: Vec::new() };
        let reader: Box<dyn Read + Send> = if resp.status() == 206 {
            let total = resp
                .header("content-range")
                .and_then(|v| v.rsplit('/').next())
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| fail(exit::SERVER_ERROR, "a 206 without a Content-Range length"))?;
            let etag = resp.header("etag").ok_or_else(|| fail(exit::SERVER_ERROR, "a 206 without an ETag"))?.to_owned();
            set_total(progress, total);
            Box::new(Ranges::start(agent, url.to_owned(), etag, total, resp.into_reader(), parallel))
        } else {
            let length = resp.header("content-length").and_then(|v| v.parse().ok());
            set_total(progress, length.unwrap_or(0));
            capped(resp.into_reader(), length.unwrap_or(SNAPSHOT_STREAM_MAX_BYTES), "the snapshot")
        };
        let tap = Tap { inner: reader, progress: progress.clone(), first_error: Arc::new(Mutex::new(None)) };
        let download_error = tap.first_error.clone();
        let unpacked = unpack_safely(tap, staging, writers, untrusted::worktree_entry);
        let e = match unpacked {
            Ok(u) => {
                snap.stats = u.stats;
                let config = u.captured.into_iter().find(|(p, _)| p == Path::new(".git/config"));
                snap.git_config = config.map(|(_, c)| c).unwrap_or_default();
                return Ok(snap);
            }
            Err(e) => e,
        };
        // A failed download shows up as a broken archive: say which it was.
        let download_error = download_error.lock().expect("not poisoned").take();
        match download_error {
            Some(d) if attempt == 0 && d.contains(SNAPSHOT_CHANGED) => {
                eprintln!("the snapshot changed during the download; starting over");
                let _ = std::fs::remove_dir_all(staging);
                std::fs::create_dir(staging)?;
                progress.set_position(0);
            }
            Some(d) => return Err(fail(exit::UNREACHABLE, format!("downloading {url} failed: {d}"))),
            None => {
                use trove_engine::repo::archive::ArchiveError;
                let code = match e {
                    ArchiveError::Unsafe { .. } | ArchiveError::Corrupt(_) => codes::UNSAFE_ARCHIVE,
                    _ => codes::TARGET,
                };
                return Err(fail(code, e.to_string()));
            }
        }
    }
    Err(fail(exit::PRECONDITION, "the snapshot kept changing during the download; retry"))
}

/// The download as the unpacker reads it: counts bytes for the progress
/// bar and remembers the first error (a broken download otherwise shows up
/// only as a broken archive).
struct Tap<R> {
    inner: R,
    progress: ProgressBar,
    first_error: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        match &r {
            Ok(n) => {
                self.progress.inc(*n as u64);
            }
            Err(e) => {
                self.first_error.lock().expect("not poisoned").get_or_insert_with(|| e.to_string());
            }
        }
        r
    }
}

/// Sets the length once it is known, with a bar to fill.
pub(crate) fn set_total(bar: &ProgressBar, total: u64) {
    if total > 0 {
        bar.set_length(total);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("#>."),
        );
    }
}
