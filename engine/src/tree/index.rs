//! The tree index: a commit's whole tree, compact, for a mount to be ready
//! in O(entries).
//!
//! Format (version 1), the whole of it zstd-compressed:
//!
//! ```text
//! magic    "TROVETREE1\n"        11 bytes
//! commit   object id             20 bytes
//! count    entries               u64 LE
//! count x entry:
//!   kind   u8                    1 file, 2 executable, 3 symlink,
//!                                4 directory, 5 submodule (gitlink)
//!   oid    object id             20 bytes (a directory's tree, a
//!                                submodule's commit)
//!   size   u64 LE                blob bytes; 0 for directories, submodules
//!   len    u32 LE                path bytes
//!   path   bytes                 from the root, '/'-separated
//! ```
//!
//! Entries come breadth first: every directory before what it holds. Paths
//! are bytes (git allows any but NUL and '/'), not necessarily UTF-8.
//!
//! [`decode`] treats its input as hostile (it comes over the network):
//! sizes are bounded before anything is allocated, every path component
//! is checked (non-empty, not `.` or `..`, no NUL; `.git` refused, as git
//! refuses it in a tree), and every entry's parent must be a directory
//! listed before it.

use crate::limits::{TREE_INDEX_MAX_ENTRIES, TREE_PATH_MAX_BYTES};
use crate::tree::TreeError;
use std::collections::HashSet;
use std::io::Read;

const MAGIC: &[u8; 11] = b"TROVETREE1\n";
const ENTRY_FIXED_BYTES: usize = 1 + 20 + 8 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Executable = 2,
    Symlink = 3,
    Dir = 4,
    Submodule = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::File,
            2 => Kind::Executable,
            3 => Kind::Symlink,
            4 => Kind::Dir,
            5 => Kind::Submodule,
            _ => return None,
        })
    }

    /// Whether the entry's content is a blob (what `POST .../blobs` serves).
    pub fn is_blob(self) -> bool {
        matches!(self, Kind::File | Kind::Executable | Kind::Symlink)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub oid: [u8; 20],
    pub size: u64,
    pub path: Vec<u8>,
}

/// A decoded index.
#[derive(Debug)]
pub struct TreeIndex {
    pub commit: [u8; 20],
    pub entries: Vec<Entry>,
}

/// Encodes `entries` (breadth first) for `commit`.
pub fn encode(commit: &[u8; 20], entries: &[Entry]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(MAGIC.len() + 28 + entries.len() * 64);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(commit);
    raw.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        raw.push(e.kind as u8);
        raw.extend_from_slice(&e.oid);
        raw.extend_from_slice(&e.size.to_le_bytes());
        raw.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
        raw.extend_from_slice(&e.path);
    }
    zstd::bulk::compress(&raw, 3).expect("compressing to memory does not fail")
}

/// Decodes and checks an index.
pub fn decode(compressed: &[u8]) -> Result<TreeIndex, TreeError> {
    let bad = |why: &str| TreeError::BadIndex(why.to_owned());
    // Bounded before it is inflated: a small bomb cannot take the memory.
    let max_raw =
        (MAGIC.len() + 28) as u64 + TREE_INDEX_MAX_ENTRIES as u64 * (ENTRY_FIXED_BYTES + TREE_PATH_MAX_BYTES) as u64;
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| bad(&format!("zstd: {e}")))?
        .take(max_raw + 1)
        .read_to_end(&mut raw)
        .map_err(|e| bad(&format!("zstd: {e}")))?;
    if raw.len() as u64 > max_raw {
        return Err(bad("larger than any index trove writes"));
    }
    let mut r = Reader { buf: &raw, pos: 0 };
    if r.take(MAGIC.len()).ok_or_else(|| bad("truncated"))? != MAGIC {
        return Err(bad("not a trove tree index (magic)"));
    }
    let commit: [u8; 20] = r.take(20).ok_or_else(|| bad("truncated"))?.try_into().expect("20 bytes");
    let count = r.u64().ok_or_else(|| bad("truncated"))?;
    if count > TREE_INDEX_MAX_ENTRIES as u64 {
        return Err(TreeError::TooManyEntries(TREE_INDEX_MAX_ENTRIES));
    }
    // Every entry takes at least its fixed part: a count the bytes cannot
    // hold is refused before the vector is made.
    if count as usize * ENTRY_FIXED_BYTES > raw.len() {
        return Err(bad("more entries than bytes"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for _ in 0..count {
        let kind = Kind::from_u8(r.take(1).ok_or_else(|| bad("truncated"))?[0]).ok_or_else(|| bad("unknown kind"))?;
        let oid: [u8; 20] = r.take(20).ok_or_else(|| bad("truncated"))?.try_into().expect("20 bytes");
        let size = r.u64().ok_or_else(|| bad("truncated"))?;
        let len = u32::from_le_bytes(r.take(4).ok_or_else(|| bad("truncated"))?.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > TREE_PATH_MAX_BYTES {
            return Err(bad("a path is empty or too long"));
        }
        let path = r.take(len).ok_or_else(|| bad("truncated"))?.to_vec();
        check_path(&path).map_err(|why| bad(&format!("{why}: {:?}", String::from_utf8_lossy(&path))))?;
        if let Some(cut) = path.iter().rposition(|&b| b == b'/') {
            if !dirs.contains(&path[..cut]) {
                return Err(bad("an entry comes before its directory"));
            }
        }
        if !seen.insert(path.clone()) {
            return Err(bad("a path is listed twice"));
        }
        if kind == Kind::Dir {
            dirs.insert(path.clone());
        }
        if !kind.is_blob() && size != 0 {
            return Err(bad("a directory or submodule with a size"));
        }
        entries.push(Entry { kind, oid, size, path });
    }
    if r.pos != raw.len() {
        return Err(bad("bytes after the last entry"));
    }
    Ok(TreeIndex { commit, entries })
}

/// What git itself refuses in a tree's names, and what would escape a
/// mount: empty components, `.`, `..`, NUL, `.git`.
fn check_path(path: &[u8]) -> Result<(), &'static str> {
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" => return Err("an empty path component"),
            b"." | b".." => return Err("a '.' or '..' component"),
            _ if c.contains(&0) => return Err("a NUL in a path"),
            _ if c.eq_ignore_ascii_case(b".git") => return Err("a .git component"),
            _ => {}
        }
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, path: &[u8], size: u64) -> Entry {
        Entry { kind, oid: [7; 20], size, path: path.to_vec() }
    }

    #[test]
    fn round_trips_and_keeps_non_utf8_names() {
        let entries = vec![
            e(Kind::File, b"README", 12),
            e(Kind::Dir, b"src", 0),
            e(Kind::Submodule, b"vendor", 0),
            e(Kind::Executable, b"src/run\xff.sh", 5 << 30),
            e(Kind::Symlink, b"src/link", 6),
        ];
        let got = decode(&encode(&[1; 20], &entries)).expect("valid");
        assert_eq!((got.commit, got.entries), ([1; 20], entries));
    }

    #[test]
    fn hostile_indexes_are_refused() {
        let cases: Vec<(&str, Vec<Entry>)> = vec![
            ("dotdot", vec![e(Kind::File, b"../x", 1)]),
            ("dot git", vec![e(Kind::Dir, b".GIT", 0)]),
            ("orphan", vec![e(Kind::File, b"a/b", 1)]),
            ("file as dir", vec![e(Kind::File, b"a", 1), e(Kind::File, b"a/b", 1)]),
            ("twice", vec![e(Kind::File, b"a", 1), e(Kind::File, b"a", 1)]),
            ("absolute", vec![e(Kind::File, b"/etc", 1)]),
            ("nul", vec![e(Kind::File, b"a\0b", 1)]),
        ];
        for (what, entries) in cases {
            assert!(decode(&encode(&[0; 20], &entries)).is_err(), "{what}");
        }
        // A count no bytes back, and garbage.
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&[0; 20]);
        raw.extend_from_slice(&(u64::MAX).to_le_bytes());
        assert!(decode(&zstd::bulk::compress(&raw, 1).expect("zstd")).is_err());
        assert!(decode(b"not zstd").is_err());
    }
}
