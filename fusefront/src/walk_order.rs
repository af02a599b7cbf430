//! The base tree's files in the order a tree walk reads them: depth
//! first, each directory's entries by name, a subdirectory's files where
//! its name falls (the order of `grep -r` and `find`, and of `git
//! ls-files` up to how `/` sorts). Prefetch reads ahead of a walker in
//! this order. Made once, on first use, from the table: 8 bytes per
//! entry. Plain data: it never fetches and never locks.

use crate::table::Table;
use std::ops::Range;
use trove_engine::tree::index::Kind;

pub struct WalkOrder {
    /// File inodes (less one) in walk order.
    files: Vec<u32>,
    /// Per inode (less one): a file's position in `files`; a directory's
    /// end, the position after its subtree's last file.
    at: Vec<u32>,
}

impl WalkOrder {
    pub fn of(table: &Table) -> WalkOrder {
        let mut files = Vec::with_capacity(usize::try_from(table.files).unwrap_or(0));
        let mut at = vec![0u32; table.len()];
        // Each directory on the way down, with its next child.
        let mut stack: Vec<(u64, usize)> = vec![(1, 0)];
        while let Some(top) = stack.last_mut() {
            let (dir, next) = *top;
            let node = table.node(dir).expect("a directory on the walk is a node");
            let Some(child) = table.child_at(node, next) else {
                at[(dir - 1) as usize] = files.len() as u32;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match table.node(child).expect("children are nodes").kind {
                Kind::File | Kind::Executable => {
                    at[(child - 1) as usize] = files.len() as u32;
                    files.push((child - 1) as u32);
                }
                Kind::Dir => stack.push((child, 0)),
                Kind::Symlink | Kind::Submodule => {}
            }
        }
        WalkOrder { files, at }
    }

    /// Files on the walk.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// File `ino`'s position on the walk; for a directory, the position
    /// the walk leaves its subtree at.
    pub fn position(&self, ino: u64) -> Option<usize> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.at.get(i).map(|&p| p as usize)
    }

    /// The inodes of the files at `range` on the walk.
    pub fn files(&self, range: Range<usize>) -> impl Iterator<Item = u64> + '_ {
        let range = range.start.min(self.files.len())..range.end.min(self.files.len());
        self.files[range].iter().map(|&i| u64::from(i) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::tree::index::{Entry, TreeIndex};

    #[test]
    fn files_come_depth_first_in_name_order_and_each_directory_knows_its_end() {
        let entry = |kind, path: &[u8]| Entry {
            kind,
            oid: [1; 20],
            size: if kind == Kind::Symlink { 1 } else { 0 },
            path: path.to_vec(),
            checkout: None,
            target: (kind == Kind::Symlink).then(|| vec![b't'].into_boxed_slice()),
        };
        let index = TreeIndex::from_parts(
            [9; 20],
            0,
            vec![
                entry(Kind::File, b"z"),
                entry(Kind::Dir, b"d"),
                entry(Kind::File, b"a"),
                entry(Kind::File, b"d/b"),
                entry(Kind::Dir, b"d/c"),
                entry(Kind::Symlink, b"d/l"),
                entry(Kind::File, b"d/c/x"),
                entry(Kind::File, b"d/e"),
            ],
            vec![0, 0, 0, 2, 2, 2, 5, 2],
        )
        .expect("a valid index");
        let t = Table::build(index).expect("valid");
        let w = WalkOrder::of(&t);
        let path = |ino: u64| {
            let mut parts = Vec::new();
            let mut at = ino;
            while at != 1 {
                let n = t.node(at).expect("node");
                parts.push(String::from_utf8_lossy(t.name(n)).into_owned());
                at = u64::from(n.parent) + 1;
            }
            parts.reverse();
            parts.join("/")
        };
        let order: Vec<String> = w.files(0..w.len()).map(path).collect();
        assert_eq!(order, ["a", "d/b", "d/c/x", "d/e", "z"], "depth first, by name; no symlink");
        let d = t.lookup(1, b"d").expect("d");
        assert_eq!(w.position(d), Some(4), "the walk leaves d/ before z");
        assert_eq!(w.position(t.lookup(d, b"e").expect("d/e")), Some(3));
        assert_eq!(w.position(1), Some(5), "the root ends the walk");
        assert_eq!(w.files(4..99).count(), 1, "a range past the end is cut");
    }
}
