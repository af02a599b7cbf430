//! The tree index: a commit's whole tree, compact, for a mount to be ready
//! in O(entries).
//!
//! Format (version 2), the whole of it zstd-compressed:
//!
//! ```text
//! magic    "TROVETREE2\n"        11 bytes
//! commit   object id             20 bytes
//! time     i64 LE                the commit's committer time, seconds
//! count    entries               u64 LE
//! count x entry:
//!   kind   u8                    1 file, 2 executable, 3 symlink,
//!                                4 directory, 5 submodule (gitlink)
//!   conv   u8                    what checkout does to the blob: 0
//!                                nothing, else `checkout::Conversion`
//!                                bits (files and executables only)
//!   oid    object id             20 bytes: the blob (a directory's tree,
//!                                a submodule's commit); with conv, the
//!                                git id of the converted bytes
//!   size   u64 LE                bytes of the file as checked out; 0 for
//!                                directories, submodules
//!   with conv only:
//!     blob  object id            20 bytes: the blob to fetch and convert
//!     bsize u64 LE               its bytes
//!   len    u32 LE                path bytes
//!   path   bytes                 from the root, '/'-separated
//!   target bytes                 symlinks only: `size` bytes, the link's
//!                                target (so readlink fetches nothing)
//! ```
//!
//! Entries come breadth first: every directory before what it holds. Paths
//! are bytes (git allows any but NUL and '/'), not necessarily UTF-8.
//!
//! [`decode`] treats its input as hostile (it comes over the network):
//! the entry count, each path and all paths together are bounded
//! (TREE_INDEX_MAX_ENTRIES, TREE_PATH_MAX_BYTES, TREE_INDEX_MAX_PATH_BYTES)
//! in a first pass that keeps nothing, so what is then allocated is
//! bounded by [`MAX_MEMORY_BYTES`] (symlink targets, at most PATH_MAX
//! each, count as path bytes); every path component
//! is checked (non-empty, not `.` or `..`, no NUL; `.git` refused, as git
//! refuses it in a tree), every entry's parent must be a directory
//! listed before it, and a conversion names a blob no larger than
//! CHECKOUT_CONVERT_MAX_BYTES (the mount converts it in memory).

use crate::limits::{
    CHECKOUT_CONVERT_MAX_BYTES, TREE_INDEX_MAX_ENTRIES, TREE_INDEX_MAX_PATH_BYTES, TREE_PATH_MAX_BYTES,
};
use crate::tree::checkout::{Conversion, CONVERTED_MAX_BYTES};
use crate::tree::{TreeError, EMPTY_BLOB};
use std::io::Read;

const MAGIC: &[u8; 11] = b"TROVETREE2\n";
const HEADER_BYTES: usize = MAGIC.len() + 20 + 8 + 8;
const ENTRY_FIXED_BYTES: usize = 1 + 1 + 20 + 8 + 4;
const CHECKOUT_BYTES: usize = 20 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Executable = 2,
    Symlink = 3,
    Dir = 4,
    Submodule = 5,
}

impl Kind {
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
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

/// An entry's content as checked out, where it is not the blob's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub conv: Conversion,
    /// The blob fetched, then converted.
    pub blob: [u8; 20],
    pub blob_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// The file's content id: its blob's, or with `checkout`, the git id
    /// of the converted bytes (what the mount's blob store keys them by).
    pub oid: [u8; 20],
    /// The file's bytes as checked out.
    pub size: u64,
    pub path: Vec<u8>,
    pub checkout: Option<Box<Checkout>>,
    /// A symlink's target (`size` bytes); None for everything else.
    pub target: Option<Box<[u8]>>,
}

/// A decoded index.
#[derive(Debug)]
pub struct TreeIndex {
    pub commit: [u8; 20],
    /// The commit's committer time, seconds since the epoch.
    pub time: i64,
    pub entries: Vec<Entry>,
    /// Each entry's directory, as decode found it: 0 the root, `j + 1` the
    /// directory `entries[j]`; one per entry.
    pub parents: Vec<u32>,
    /// Every entry, as `j + 1`, grouped by directory (the root's first,
    /// then each directory's in entry order) and in name order within a
    /// directory: what a listing returns and a lookup searches.
    pub siblings: Vec<u32>,
}

impl TreeIndex {
    /// An index of no entries (a mount of an empty tree, in tests).
    pub fn empty(commit: [u8; 20]) -> TreeIndex {
        TreeIndex { commit, time: 0, entries: Vec::new(), parents: Vec::new(), siblings: Vec::new() }
    }

    /// An index of `entries` whose directories are `parents` (as decode
    /// finds them), with their [`siblings`](Self::siblings) ordered;
    /// refused if a directory holds one name twice.
    pub fn from_parts(
        commit: [u8; 20],
        time: i64,
        entries: Vec<Entry>,
        parents: Vec<u32>,
    ) -> Result<TreeIndex, TreeError> {
        let siblings = sibling_order(&entries, &parents)?;
        Ok(TreeIndex { commit, time, entries, parents, siblings })
    }
}

/// The entries grouped by directory and in name order within each, found
/// in linear time for an index that lists each directory's entries in
/// name order (as git's trees do; anything else is sorted): a count per
/// directory places each entry, and each directory's run is checked to
/// be in order, and sorted only if it is not. A name twice is refused.
fn sibling_order(entries: &[Entry], parents: &[u32]) -> Result<Vec<u32>, TreeError> {
    if parents.len() != entries.len() || parents.iter().any(|&p| p as usize > entries.len()) {
        return Err(bad("an entry's directory is not in the index"));
    }
    let name = |j: u32| {
        let path = &entries[j as usize - 1].path;
        match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[i + 1..],
            None => &path[..],
        }
    };
    // starts[d]: where directory d's run begins (d = 0 the root).
    let mut starts = vec![0u32; entries.len() + 2];
    for &p in parents {
        starts[p as usize + 2] += 1;
    }
    for d in 2..starts.len() {
        starts[d] += starts[d - 1];
    }
    let mut order = vec![0u32; entries.len()];
    for (j, &p) in parents.iter().enumerate() {
        let at = &mut starts[p as usize + 1];
        order[*at as usize] = j as u32 + 1;
        *at += 1;
    }
    // Now starts[d + 1] is where d's run ends and starts[d] where it began.
    for d in 0..=entries.len() {
        let run = &mut order[starts[d] as usize..starts[d + 1] as usize];
        if !run.windows(2).all(|w| name(w[0]) < name(w[1])) {
            run.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
            if let Some(w) = run.windows(2).find(|w| name(w[0]) == name(w[1])) {
                return Err(bad(&format!(
                    "the name {:?} appears twice in one directory",
                    String::from_utf8_lossy(name(w[0]))
                )));
            }
        }
    }
    Ok(order)
}

/// Raw bytes of an index (before compression) at most: the fixed part and
/// a conversion of every entry at TREE_INDEX_MAX_ENTRIES, plus
/// TREE_INDEX_MAX_PATH_BYTES.
pub const MAX_RAW_BYTES: u64 = HEADER_BYTES as u64
    + TREE_INDEX_MAX_ENTRIES as u64 * (ENTRY_FIXED_BYTES + CHECKOUT_BYTES) as u64
    + TREE_INDEX_MAX_PATH_BYTES;

/// Memory a decoded index and the mount's table of it take at most while
/// the table is built, for `entries` entries whose paths hold `path_bytes`
/// bytes: each entry's record, its path (with the allocator's overhead),
/// its parent, its place among its siblings (which the table keeps as
/// its children), a directory count while those are placed, its
/// conversion (boxed, if any), and the table's node. The
/// names the table keeps are the last components of paths it frees as it
/// goes, so paths and names together stay under `path_bytes` plus the
/// overhead. Measured in the README (a 4M-entry directory).
pub const fn memory_bound_bytes(entries: u64, path_bytes: u64) -> u64 {
    const PER_ENTRY: u64 =
        std::mem::size_of::<Entry>() as u64 + 16 + 4 + 4 + (std::mem::size_of::<Checkout>() as u64 + 16) + 16 + 64 + 4;
    entries * PER_ENTRY + path_bytes
}

/// The most any index the decoder accepts takes, by [`memory_bound_bytes`].
pub const MAX_MEMORY_BYTES: u64 = memory_bound_bytes(TREE_INDEX_MAX_ENTRIES as u64, TREE_INDEX_MAX_PATH_BYTES);
const _: () = assert!(MAX_MEMORY_BYTES <= 3 << 29, "an index at the format's maxima must fit 1.5 GiB");

/// Encodes `entries` (breadth first) for `commit`, made at `time`.
pub fn encode(commit: &[u8; 20], time: i64, entries: &[Entry]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(HEADER_BYTES + entries.len() * 64);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(commit);
    raw.extend_from_slice(&time.to_le_bytes());
    raw.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        raw.push(e.kind as u8);
        raw.push(e.checkout.as_ref().map_or(0, |c| c.conv.bits()));
        raw.extend_from_slice(&e.oid);
        raw.extend_from_slice(&e.size.to_le_bytes());
        if let Some(c) = &e.checkout {
            raw.extend_from_slice(&c.blob);
            raw.extend_from_slice(&c.blob_size.to_le_bytes());
        }
        raw.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
        raw.extend_from_slice(&e.path);
        if e.kind == Kind::Symlink {
            let target = e.target.as_deref().unwrap_or_default();
            debug_assert_eq!(target.len() as u64, e.size, "a symlink's size is its target's");
            raw.extend_from_slice(target);
        }
    }
    zstd::bulk::compress(&raw, 3).expect("compressing to memory does not fail")
}

/// What an index holds, from a first pass that allocates nothing: its
/// entry count and the bytes of all its paths, each bounded.
struct Extent {
    count: u64,
    path_bytes: u64,
}

/// The inflated index, read as a stream (never whole in memory) and cut
/// at MAX_RAW_BYTES.
fn raw_reader(compressed: &[u8]) -> Result<impl Read + '_, TreeError> {
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| bad(&format!("zstd: {e}")))?;
    Ok(std::io::BufReader::with_capacity(64 << 10, decoder.take(MAX_RAW_BYTES + 1)))
}

fn bad(why: &str) -> TreeError {
    TreeError::BadIndex(why.to_owned())
}

/// Reads exactly `buf.len()` bytes, or says the index is truncated.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<(), TreeError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("truncated (or larger than any index trove accepts)"),
        _ => bad(&format!("zstd: {e}")),
    })
}

/// The header: magic, commit, time and entry count (bounded).
fn read_header(r: &mut impl Read) -> Result<([u8; 20], i64, u64), TreeError> {
    let mut head = [0u8; HEADER_BYTES];
    fill(r, &mut head)?;
    if &head[..11] != MAGIC {
        return Err(bad("not a trove tree index of this version (magic); node and mount must be the same release"));
    }
    let commit: [u8; 20] = head[11..31].try_into().expect("20 bytes");
    let time = i64::from_le_bytes(head[31..39].try_into().expect("8 bytes"));
    let count = u64::from_le_bytes(head[39..].try_into().expect("8 bytes"));
    if count > TREE_INDEX_MAX_ENTRIES as u64 {
        return Err(TreeError::TooManyEntries(TREE_INDEX_MAX_ENTRIES));
    }
    Ok((commit, time, count))
}

/// An entry's fixed part: kind, oid, size, conversion and path length
/// (bounded).
struct Fixed {
    kind: Kind,
    oid: [u8; 20],
    size: u64,
    checkout: Option<Box<Checkout>>,
    len: usize,
}

fn read_fixed(r: &mut impl Read) -> Result<Fixed, TreeError> {
    let mut fixed = [0u8; ENTRY_FIXED_BYTES - 4];
    fill(r, &mut fixed)?;
    let kind = Kind::from_u8(fixed[0]).ok_or_else(|| bad("unknown kind"))?;
    let conv = Conversion::from_bits(fixed[1]).ok_or_else(|| bad("an unknown conversion"))?;
    let oid: [u8; 20] = fixed[2..22].try_into().expect("20 bytes");
    let size = u64::from_le_bytes(fixed[22..30].try_into().expect("8 bytes"));
    if !kind.is_blob() && size != 0 {
        return Err(bad("a directory or submodule with a size"));
    }
    // One blob is empty, and it has one id: an entry that says otherwise
    // lies (the kernel would show the file empty without asking).
    if matches!(kind, Kind::File | Kind::Executable) && size == 0 && conv.is_none() && oid != EMPTY_BLOB {
        return Err(bad("a file of 0 bytes names a blob that is not the empty blob"));
    }
    if kind == Kind::Symlink && size > TREE_PATH_MAX_BYTES as u64 {
        return Err(bad("a symlink target longer than PATH_MAX"));
    }
    let checkout = if conv.is_none() {
        None
    } else {
        if !matches!(kind, Kind::File | Kind::Executable) {
            return Err(bad("a conversion of what is not a file"));
        }
        let mut more = [0u8; CHECKOUT_BYTES];
        fill(r, &mut more)?;
        let blob: [u8; 20] = more[..20].try_into().expect("20 bytes");
        let blob_size = u64::from_le_bytes(more[20..].try_into().expect("8 bytes"));
        if blob_size > CHECKOUT_CONVERT_MAX_BYTES || size > CONVERTED_MAX_BYTES {
            return Err(bad("a conversion of a blob larger than any trove converts"));
        }
        Some(Box::new(Checkout { conv, blob, blob_size }))
    };
    let mut len = [0u8; 4];
    fill(r, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > TREE_PATH_MAX_BYTES {
        return Err(bad("a path is empty or too long"));
    }
    Ok(Fixed { kind, oid, size, checkout, len })
}

impl Fixed {
    /// Bytes after the fixed part: the path, and a symlink's target.
    fn variable_bytes(&self) -> usize {
        self.len + if self.kind == Kind::Symlink { self.size as usize } else { 0 }
    }
}

/// The first pass: sizes only, nothing kept.
fn measure(compressed: &[u8]) -> Result<Extent, TreeError> {
    let mut r = raw_reader(compressed)?;
    let (_, _, count) = read_header(&mut r)?;
    let mut path_bytes = 0u64;
    let mut skip = vec![0u8; TREE_PATH_MAX_BYTES];
    for _ in 0..count {
        let fixed = read_fixed(&mut r)?;
        path_bytes += fixed.variable_bytes() as u64;
        if path_bytes > TREE_INDEX_MAX_PATH_BYTES {
            return Err(TreeError::PathBytes(TREE_INDEX_MAX_PATH_BYTES));
        }
        fill(&mut r, &mut skip[..fixed.len])?;
        if fixed.kind == Kind::Symlink {
            fill(&mut r, &mut skip[..fixed.size as usize])?;
        }
    }
    if r.read(&mut [0u8; 1]).map_err(|e| bad(&format!("zstd: {e}")))? != 0 {
        return Err(bad("bytes after the last entry"));
    }
    Ok(Extent { count, path_bytes })
}

/// Decodes and checks an index. Two passes over the compressed bytes:
/// the first bounds the entry count and the bytes of all paths without
/// keeping anything (a small bomb costs a little CPU, no memory), the
/// second keeps each path once, in its entry. Directories are found by a
/// hash of their path pointing at their entry (no second copy), and a
/// name twice in a directory while ordering each directory's entries.
pub fn decode(compressed: &[u8]) -> Result<TreeIndex, TreeError> {
    let extent = measure(compressed)?;
    let mut r = raw_reader(compressed)?;
    let (commit, time, count) = read_header(&mut r)?;
    debug_assert_eq!(count, extent.count);
    let n = usize::try_from(count).map_err(|_| TreeError::TooManyEntries(TREE_INDEX_MAX_ENTRIES))?;
    let mut entries: Vec<Entry> = Vec::with_capacity(n);
    let mut parents: Vec<u32> = Vec::with_capacity(n);
    // Hash of a directory's path -> its entry number + 1.
    let mut dirs: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut path_bytes = 0u64;
    for i in 0..n {
        let fixed = read_fixed(&mut r)?;
        path_bytes += fixed.variable_bytes() as u64;
        let Fixed { kind, oid, size, checkout, len } = fixed;
        if path_bytes > extent.path_bytes {
            return Err(bad("the index changed between its two readings"));
        }
        let mut path = vec![0u8; len];
        fill(&mut r, &mut path)?;
        check_path(&path).map_err(|why| bad(&format!("{why}: {:?}", String::from_utf8_lossy(&path))))?;
        let parent = match path.iter().rposition(|&b| b == b'/') {
            None => 0,
            Some(cut) => {
                let dir = &path[..cut];
                match dirs.get(&xxh3(dir)) {
                    Some(&d) if entries[d as usize - 1].path == dir => d,
                    _ => return Err(bad("an entry comes before its directory")),
                }
            }
        };
        if kind == Kind::Dir {
            let slot = u32::try_from(i + 1).expect("entries are bounded far below u32");
            if dirs.insert(xxh3(&path), slot).is_some() {
                // The same path twice, or two paths of one hash: only a
                // hostile index has either.
                return Err(bad("a directory is listed twice"));
            }
        }
        parents.push(parent);
        let target = if kind == Kind::Symlink {
            let mut t = vec![0u8; size as usize];
            fill(&mut r, &mut t)?;
            Some(t.into_boxed_slice())
        } else {
            None
        };
        entries.push(Entry { kind, oid, size, path, checkout, target });
    }
    drop(dirs);
    TreeIndex::from_parts(commit, time, entries, parents)
}

fn xxh3(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, path: &[u8], size: u64) -> Entry {
        let target = (kind == Kind::Symlink).then(|| vec![b't'; size as usize].into_boxed_slice());
        Entry { kind, oid: [7; 20], size, path: path.to_vec(), checkout: None, target }
    }

    /// A conversion by raw bits (unknown ones too: the decoder must refuse them).
    fn converted(bits: u8, blob_size: u64) -> Checkout {
        Checkout { conv: Conversion::raw(bits), blob: [5; 20], blob_size }
    }

    #[test]
    fn round_trips_and_keeps_non_utf8_names() {
        let entries = vec![
            e(Kind::File, b"README", 12),
            e(Kind::Dir, b"src", 0),
            e(Kind::Submodule, b"vendor", 0),
            e(Kind::Executable, b"src/run\xff.sh", 5 << 30),
            e(Kind::Symlink, b"src/link", 6),
            Entry { checkout: Some(Box::new(converted(2, 12))), ..e(Kind::File, b"src/crlf.bat", 14) },
        ];
        let got = decode(&encode(&[1; 20], -5, &entries)).expect("valid");
        assert_eq!((got.commit, got.time, got.entries), ([1; 20], -5, entries));
        assert_eq!(got.parents, vec![0, 0, 0, 2, 2, 2], "each entry's directory, by entry number + 1");
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
            ("an empty file naming another blob", vec![e(Kind::File, b"f", 0)]),
            ("a link past PATH_MAX", vec![e(Kind::Symlink, b"l", 4097)]),
            ("converted link", vec![Entry { checkout: Some(Box::new(converted(2, 1))), ..e(Kind::Symlink, b"l", 1) }]),
            (
                "converted giant",
                vec![Entry {
                    checkout: Some(Box::new(converted(2, CHECKOUT_CONVERT_MAX_BYTES + 1))),
                    ..e(Kind::File, b"f", 1)
                }],
            ),
            (
                "unknown conversion",
                vec![Entry { checkout: Some(Box::new(converted(64, 1))), ..e(Kind::File, b"f", 1) }],
            ),
        ];
        for (what, entries) in cases {
            assert!(decode(&encode(&[0; 20], 0, &entries)).is_err(), "{what}");
        }
        // A count no bytes back, and garbage.
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&[0; 20]);
        raw.extend_from_slice(&0i64.to_le_bytes());
        raw.extend_from_slice(&(u64::MAX).to_le_bytes());
        assert!(decode(&zstd::bulk::compress(&raw, 1).expect("zstd")).is_err());
        assert!(decode(b"not zstd").is_err());
        assert!(decode(&encode(&[0; 20], 0, &[e(Kind::Dir, b"a", 0), e(Kind::Dir, b"a", 0)])).is_err(), "dir twice");
    }

    #[test]
    fn siblings_are_grouped_by_directory_in_name_order_whatever_the_listing_order() {
        let entries = vec![
            e(Kind::File, b"z", 1),
            e(Kind::Dir, b"d", 0),
            e(Kind::File, b"a", 1),
            e(Kind::File, b"d/y", 1),
            e(Kind::File, b"d/b", 1),
        ];
        let got = decode(&encode(&[0; 20], 0, &entries)).expect("valid");
        assert_eq!(got.siblings, vec![3, 2, 1, 5, 4], "root: a, d, z; then d: b, y");
        // A name twice, apart from each other (a sort finds it) and next
        // to each other in a directory already in order.
        for twice in [
            vec![e(Kind::Dir, b"d", 0), e(Kind::File, b"d/x", 1), e(Kind::File, b"d/a", 1), e(Kind::File, b"d/x", 1)],
            vec![e(Kind::Dir, b"d", 0), e(Kind::File, b"d/a", 1), e(Kind::File, b"d/a", 1)],
        ] {
            let err = decode(&encode(&[0; 20], 0, &twice)).expect_err("a name twice");
            assert!(err.to_string().contains("appears twice"), "{err}");
        }
        assert!(TreeIndex::from_parts([0; 20], 0, vec![e(Kind::File, b"a", 1)], vec![2]).is_err(), "no such directory");
    }
}
