//! The inode table of a commit's base tree: built once from the tree
//! index, immutable afterwards, shared by every FUSE thread without a lock.
//!
//! Layout: one `Vec<Node>` arena (inode number = index + 1, the root is
//! inode 1), every name interned in one byte arena, and every directory's
//! children as a sorted run of one `Vec<u32>`, so a lookup is a binary
//! search and a readdir is a slice. About 60 bytes per entry plus names.
//! The few files checkout converts (`ident`, `eol=crlf`) keep what they
//! convert from in a side map, as symlinks their targets, so other
//! entries pay nothing for either.
//! A directory's size is what ext4 gives a directory of its names.
//!
//! Part 2 (the writable overlay) sits on top: the base table keeps inodes
//! 1..=len(); the overlay allocates above them and shadows base entries by
//! (parent, name), so nothing here has to change for writes.

use std::collections::HashMap;
use trove_engine::hydrate::Oid;
use trove_engine::tree::index::{Checkout, Kind, TreeIndex};

#[derive(Debug, Clone)]
pub struct Node {
    pub parent: u32,
    name_start: u32,
    name_len: u32,
    pub kind: Kind,
    /// A file's bytes as checked out; a directory's size as on ext4.
    pub size: u64,
    /// A file's content id: its blob, or its converted bytes' git id.
    pub oid: Oid,
    children_start: u32,
    children_len: u32,
    /// Subdirectories, for a directory's link count.
    pub subdirs: u32,
}

/// See the module doc.
pub struct Table {
    nodes: Vec<Node>,
    names: Vec<u8>,
    children: Vec<u32>,
    pub commit: Oid,
    /// The commit's committer time: every entry's times, the same across
    /// remounts.
    pub time: std::time::SystemTime,
    /// What converted files convert from, by inode.
    checkouts: HashMap<u64, Box<Checkout>>,
    /// Symlink targets, by inode.
    targets: HashMap<u64, Box<[u8]>>,
    /// Blob entries (files, executables, symlinks).
    pub files: u64,
    /// Bytes of all blobs, as the index says.
    pub file_bytes: u64,
}

impl Table {
    /// Builds the table. The index was already checked by its decoder
    /// (every parent is a directory listed before its children, no `..`),
    /// which also found each entry's directory (`parents`). Each path is
    /// freed as its name is copied, so paths and names are never held twice.
    pub fn build(index: TreeIndex) -> Result<Table, String> {
        let n = index.entries.len() + 1;
        if u32::try_from(n).is_err() {
            return Err(format!("{n} entries do not fit the inode table"));
        }
        if index.parents.len() != index.entries.len() || index.siblings.len() != index.entries.len() {
            return Err("the index has no directory or listing place for each entry".into());
        }
        let children = index.siblings;
        let mut nodes = Vec::with_capacity(n);
        let mut names = Vec::new();
        nodes.push(Node {
            parent: 0,
            name_start: 0,
            name_len: 0,
            kind: Kind::Dir,
            size: 0,
            oid: [0; 20],
            children_start: 0,
            children_len: 0,
            subdirs: 0,
        });
        let (mut files, mut file_bytes) = (0u64, 0u64);
        let mut checkouts = HashMap::new();
        let mut targets = HashMap::new();
        for (e, parent) in index.entries.into_iter().zip(index.parents) {
            let name = match e.path.iter().rposition(|&b| b == b'/') {
                Some(i) => &e.path[i + 1..],
                None => &e.path[..],
            };
            let Some(up) = nodes.get_mut(parent as usize) else {
                return Err("an entry's directory is not listed before it".to_owned());
            };
            if up.kind != Kind::Dir {
                return Err("an entry's directory is not a directory".to_owned());
            }
            // A submodule is an (empty) directory: it counts in its
            // parent's links, as on ext4.
            if matches!(e.kind, Kind::Dir | Kind::Submodule) {
                up.subdirs += 1;
            }
            if e.kind.is_blob() {
                files += 1;
                file_bytes += e.size;
            }
            up.size += ext4_dirent_bytes(name.len());
            if let Some(c) = e.checkout {
                checkouts.insert(nodes.len() as u64 + 1, c);
            }
            if let Some(t) = e.target {
                targets.insert(nodes.len() as u64 + 1, t);
            }
            nodes.push(Node {
                parent,
                name_start: names.len() as u32,
                name_len: name.len() as u32,
                kind: e.kind,
                size: e.size,
                oid: e.oid,
                children_start: 0,
                children_len: 0,
                subdirs: 0,
            });
            names.extend_from_slice(name);
            if u32::try_from(names.len()).is_err() {
                return Err("the names of the tree pass 4 GiB".into());
            }
        }
        names.shrink_to_fit();
        for n in nodes.iter_mut().filter(|n| matches!(n.kind, Kind::Dir | Kind::Submodule)) {
            n.size = ext4_dir_size(n.size);
        }
        // The index grouped its entries by directory, in name order (and
        // refused a name twice): each directory's children are its run.
        let mut i = 0;
        while i < children.len() {
            let parent = nodes[children[i] as usize].parent as usize;
            let start = i;
            while i < children.len() && nodes[children[i] as usize].parent as usize == parent {
                i += 1;
            }
            nodes[parent].children_start = start as u32;
            nodes[parent].children_len = (i - start) as u32;
        }
        Ok(Table {
            nodes,
            names,
            children,
            commit: index.commit,
            time: commit_time(index.time),
            checkouts,
            targets,
            files,
            file_bytes,
        })
    }

    /// What file `ino` is converted from, if checkout converts it.
    pub fn checkout(&self, ino: u64) -> Option<&Checkout> {
        self.checkouts.get(&ino).map(|c| &**c)
    }

    /// Symlink `ino`'s target.
    pub fn target(&self, ino: u64) -> Option<&[u8]> {
        self.targets.get(&ino).map(|t| &**t)
    }

    /// Entries, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node of inode `ino`.
    pub fn node(&self, ino: u64) -> Option<&Node> {
        let idx = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get(idx)
    }

    pub fn name(&self, node: &Node) -> &[u8] {
        name_of(&self.names, node)
    }

    /// A directory's children, as inode numbers, in name order.
    pub fn children(&self, node: &Node) -> impl ExactSizeIterator<Item = u64> + '_ {
        let s = node.children_start as usize;
        self.children[s..s + node.children_len as usize].iter().map(|&i| u64::from(i) + 1)
    }

    /// A directory's `i`th child in name order.
    pub fn child_at(&self, node: &Node, i: usize) -> Option<u64> {
        if i >= node.children_len as usize {
            return None;
        }
        Some(u64::from(self.children[node.children_start as usize + i]) + 1)
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let p = self.node(parent)?;
        if p.kind != Kind::Dir {
            return None;
        }
        let s = p.children_start as usize;
        let run = &self.children[s..s + p.children_len as usize];
        run.binary_search_by(|&i| self.name(&self.nodes[i as usize]).cmp(name)).ok().map(|k| u64::from(run[k]) + 1)
    }
}

/// Seconds since the epoch (before it, too) as a time.
fn commit_time(secs: i64) -> std::time::SystemTime {
    let epoch = std::time::UNIX_EPOCH;
    let span = std::time::Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        epoch + span
    } else {
        epoch - span
    }
}

/// Bytes of an ext4 directory entry for a name of `len` bytes (an 8-byte
/// header and the name, to 4 bytes).
fn ext4_dirent_bytes(len: usize) -> u64 {
    (8 + len as u64 + 3) & !3
}

/// The size ext4 reports for a directory whose entries take `entries`
/// bytes: whole 4 KiB blocks, one at least, `.` and `..` included.
fn ext4_dir_size(entries: u64) -> u64 {
    (entries + 2 * ext4_dirent_bytes(2)).div_ceil(4096).max(1) * 4096
}

fn name_of<'a>(names: &'a [u8], node: &Node) -> &'a [u8] {
    &names[node.name_start as usize..(node.name_start + node.name_len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::tree::index::Entry;

    fn entry(kind: Kind, path: &[u8], size: u64) -> Entry {
        let target = (kind == Kind::Symlink).then(|| vec![b't'; size as usize].into_boxed_slice());
        Entry { kind, oid: [1; 20], size, path: path.to_vec(), checkout: None, target }
    }

    #[test]
    fn lookups_and_listings_follow_the_index() {
        let index = TreeIndex::from_parts(
            [9; 20],
            0,
            vec![
                entry(Kind::File, b"z", 1),
                entry(Kind::Dir, b"d", 0),
                entry(Kind::File, b"a", 5 << 30),
                entry(Kind::Symlink, b"d/l", 3),
                entry(Kind::Dir, b"d/e", 0),
                entry(Kind::File, b"d/e/\xff\xfe", 0),
                entry(Kind::Submodule, b"d/sub", 0),
            ],
            // Each entry's directory: 0 the root, j + 1 entry j.
            vec![0, 0, 0, 2, 2, 5, 2],
        )
        .expect("a valid index");
        let t = Table::build(index).expect("valid");
        assert_eq!(t.len(), 8);
        let names: Vec<&[u8]> =
            t.children(t.node(1).expect("root")).map(|i| t.name(t.node(i).expect("child"))).collect();
        assert_eq!(names, vec![&b"a"[..], b"d", b"z"], "children in name order");
        let d = t.lookup(1, b"d").expect("d");
        let e = t.lookup(d, b"e").expect("d/e");
        let odd = t.lookup(e, b"\xff\xfe").expect("a name that is not UTF-8");
        assert_eq!(t.node(odd).expect("node").parent as u64 + 1, e);
        assert_eq!(t.target(t.lookup(d, b"l").expect("d/l")), Some(&b"ttt"[..]), "a symlink's target");
        assert_eq!(t.node(t.lookup(1, b"a").expect("a")).expect("a").size, 5 << 30, "sizes past 4 GiB");
        assert!(t.lookup(1, b"nope").is_none());
        assert!(t.lookup(t.lookup(1, b"z").expect("z"), b"x").is_none(), "a file has no children");
        assert_eq!(t.node(d).expect("d").subdirs, 2, "d/e and the submodule d/sub");
        assert_eq!(t.node(d).expect("d").size, 4096, "a small directory is one block, as on ext4");
        assert_eq!(t.files, 4);
        assert!(t.node(0).is_none() && t.node(99).is_none());
    }
}
