//! Prehydration (`trove mount --prehydrate BUDGET`): once the mount is
//! ready, the tree's small files (up to PREHYDRATE_FILE_MAX_BYTES each)
//! are fetched in the background, in walk order, until their bytes reach
//! the budget, so that what a build or an agent opens later is local.
//!
//! This module only chooses them. The owner's hydration queue fetches
//! them below every read and prefetch, each once, none while the node is
//! down (`Hydrator::prehydrate`). It never fetches, never blocks on the
//! node and never runs on a FUSE thread.

use crate::limits::PREHYDRATE_FILE_MAX_BYTES;
use crate::table::Table;
use crate::walk_order::WalkOrder;
use std::collections::HashSet;
use trove_engine::hydrate::blobstore::BlobStore;
use trove_engine::hydrate::Oid;
use trove_engine::tree::index::Kind;

/// The blobs to fetch, in walk order: each small file's blob (what its
/// first read would fetch: a converted file's source blob) that is not
/// local yet, each once, while their sizes fit in `budget` bytes (a file
/// that does not fit is passed over for smaller ones after it).
pub(crate) fn plan(table: &Table, walk: &WalkOrder, store: &BlobStore, budget: u64) -> Vec<(Oid, u64)> {
    let mut left = budget;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for ino in walk.files(0..walk.len()) {
        if left == 0 {
            break;
        }
        let Some(node) = table.node(ino) else { continue };
        if !matches!(node.kind, Kind::File | Kind::Executable)
            || node.size == 0
            || node.size > PREHYDRATE_FILE_MAX_BYTES
        {
            continue;
        }
        let (oid, size) = table.checkout(ino).map_or((node.oid, node.size), |c| (c.blob, c.blob_size));
        if size > left || store.contains(&node.oid) || store.contains(&oid) || !seen.insert(oid) {
            continue;
        }
        left -= size;
        out.push((oid, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::hydrate::blobstore::SmallBlobs;
    use trove_engine::tree::index::{Entry, TreeIndex};

    #[test]
    fn small_files_not_yet_local_in_walk_order_within_the_budget_each_blob_once() {
        let file = |path: &str, id: u8, size: u64| Entry {
            kind: Kind::File,
            oid: [id; 20],
            size,
            path: path.as_bytes().to_vec(),
            checkout: None,
            target: None,
        };
        let entries = vec![
            file("a", 1, 10),
            Entry { kind: Kind::Dir, size: 0, ..file("d", 0, 0) },
            file("d/big", 2, PREHYDRATE_FILE_MAX_BYTES + 1),
            file("d/local", 3, 5),
            file("d/same-as-a", 1, 10),
            file("d/too-much", 4, 40),
            file("d/fits", 5, 20),
            file("z", 6, 5),
        ];
        let index = TreeIndex::from_parts([0; 20], 0, entries, vec![0, 0, 2, 2, 2, 2, 2, 0]).expect("an index");
        let table = Table::build(index).expect("a table");
        let walk = WalkOrder::of(&table);
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("store");
        store.land(&[([3; 20], &b"local"[..])]).expect("land");
        let ids = |budget| plan(&table, &walk, &store, budget).iter().map(|(o, _)| o[0]).collect::<Vec<u8>>();
        // Walk order: a, d/big, d/fits, d/local, d/same-as-a, d/too-much, z.
        assert_eq!(ids(35), [1, 5, 6], "too-much is passed over for z, which fits");
        assert_eq!(ids(1 << 30), [1, 5, 4, 6], "never the big file, the local one, or a's blob twice");
        assert!(ids(4).is_empty(), "nothing fits");
    }
}
