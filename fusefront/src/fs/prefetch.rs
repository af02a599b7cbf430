//! Prefetch: the files a reader will read next, fetched ahead of it,
//! below every read. It follows reads, never listings.
//!
//! Files are taken in walk order (`crate::walk_order`: depth first, by
//! name, as `grep -r`, rg and builds read). A first read starts a cursor
//! that queues the next PREFETCH_WALK_FIRST files of its directory's
//! subtree; each first read that lands within what a cursor queued moves
//! it on, and once the reader comes within a quarter of its end the
//! window doubles (up to PREFETCH_WALK_MAX) and may leave the subtree: the
//! reader has shown it walks. Random reads each fetch a few files more;
//! a walker never meets a directory it has to wait for. Up to
//! PREFETCH_WALKERS cursors follow readers in different parts of the tree.
//!
//! The cursors are `cursors.rs`. It never fetches itself (wants go to the
//! hydrator, which puts reads first) and never blocks on the node.

use super::state::Shared;
use crate::limits::*;
use crate::table::Table;
use trove_engine::hydrate::{Priority, Want};
use trove_engine::tree::index::Kind;

impl Shared {
    /// The order a walk reads files in, made once.
    pub(crate) fn prepare_walk(&self, table: &Table) -> Option<&crate::walk_order::WalkOrder> {
        self.options.prefetch.then(|| self.walk.get_or_init(|| crate::walk_order::WalkOrder::of(table)))
    }

    /// Called on each first read of file `read` (fetched or already
    /// local): queues what its reader reads next that is small and not
    /// local, as prefetches.
    pub(super) fn prefetch(&self, table: &Table, read: u64) {
        let Some(walk) = self.prepare_walk(table) else { return };
        let Some(node) = table.node(read) else { return };
        let (Some(p), Some(end)) = (walk.position(read), walk.position(u64::from(node.parent) + 1)) else {
            return;
        };
        let range = {
            let mut cursors = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
            cursors.advance(p, end, walk.len())
        };
        let Some(range) = range else { return };
        let store = self.hydrator.store();
        // A converted file's blob is what is fetched; it is converted on
        // its first read.
        let files = walk
            .files(range)
            .filter_map(|i| Some((table.node(i)?, table.checkout(i))))
            .filter(|(n, _)| matches!(n.kind, Kind::File | Kind::Executable))
            .filter(|(n, _)| n.size > 0 && n.size <= PREFETCH_FILE_MAX_BYTES && !store.contains(&n.oid))
            .map(|(n, c)| c.map_or((n.oid, n.size), |c| (c.blob, c.blob_size)));
        for (oid, size) in files {
            self.hydrator.want(Want { oid, size, priority: Priority::Prefetch, done: None });
        }
    }
}
