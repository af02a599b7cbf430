//! A restored tree's git index gets the stat data of the files just
//! written, as `git checkout` records it, so the first `git status` compares
//! stat data instead of hashing every file.
//!
//! Owns that one rewrite of `.git/index`. It never changes what the index
//! says is in the tree (paths, ids, modes, the tree cache stays valid), and
//! an entry it has no stat data for keeps none, which git then checks by
//! content.

use rustix::fs::Stat;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Fills the index of the work tree at `tree` from `stats` (paths relative
/// to `tree`). Returns how many entries got stat data.
pub fn fill(tree: &Path, stats: &[(PathBuf, Stat)]) -> Result<usize, String> {
    let path = tree.join(".git/index");
    let mut index = gix_index::File::at(&path, gix_hash::Kind::Sha1, false, Default::default())
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let by_path: HashMap<&[u8], &Stat> = stats.iter().map(|(p, st)| (p.as_os_str().as_bytes(), st)).collect();
    let mut filled = 0;
    for (entry, name) in index.entries_mut_with_paths() {
        if let Some(st) = by_path.get(&**name) {
            entry.stat = as_index_stat(st);
            filled += 1;
        }
    }
    index.write(Default::default()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(filled)
}

/// Git keeps 32 bits of each field and drops the rest, on purpose.
fn as_index_stat(st: &Stat) -> gix_index::entry::Stat {
    use gix_index::entry::stat::Time;
    let t = |secs: i64, nsecs: u64| Time { secs: secs as u32, nsecs: nsecs as u32 };
    gix_index::entry::Stat {
        mtime: t(st.st_mtime, st.st_mtime_nsec),
        ctime: t(st.st_ctime, st.st_ctime_nsec),
        dev: st.st_dev as u32,
        ino: st.st_ino as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u32,
    }
}
