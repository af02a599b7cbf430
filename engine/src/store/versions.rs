//! Change counters for sealed object files, shared by every shard.
//!
//! The memory tier (hot.rs) of any shard may hold a copy of any object, but
//! only the owner shard changes an object's file. So the owner, after each
//! change to a file (publish by rename, remove, evict), bumps the counter of
//! the object's slot; a memory copy remembers the counter it saw *before*
//! its file was opened, and is served only while the counter is unchanged.
//! A hit costs one atomic load instead of a path lookup (`statx` and the
//! path it needs were 13% of a shard's CPU at 36k small GETs/s).
//!
//! Objects share a slot when their hashes agree in the low bits: a change
//! to one then also drops the others' copies, which costs a re-read, never a
//! stale answer. The counters only see changes made by this process: the
//! data dir is locked to one node (lock.rs), and a file changed behind the
//! node's back is caught by its checksums when read from disk, not here.
//!
//! The owner also uses them to tell whether a file a reader found corrupt
//! or expired is still the one there: it removes it only if the counter the
//! reader saw before its open has not moved. A publish therefore bumps
//! before its rename as well as after (the bump after is the one the memory
//! tier relies on).
//!
//! This module must never let a counter move before the change it stands
//! for is visible in the filesystem without moving again after it, nor ever
//! move backwards.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots: 64 Ki counters, 512 KiB for the whole node.
const SLOTS: usize = 1 << 16;

pub struct FileVersions {
    slots: Box<[AtomicU64]>,
}

impl Default for FileVersions {
    fn default() -> Self {
        Self { slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl FileVersions {
    fn slot(&self, hash: u128) -> &AtomicU64 {
        &self.slots[hash as usize & (SLOTS - 1)]
    }

    /// The counter of `hash`'s slot. Read it before opening the file whose
    /// bytes will be remembered against it.
    pub fn current(&self, hash: u128) -> u64 {
        self.slot(hash).load(Ordering::SeqCst)
    }

    /// Records a change to `hash`'s file; call once the change is done (and,
    /// for a publish, also before it starts).
    pub fn bump(&self, hash: u128) {
        self.slot(hash).fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_changes_the_slot_and_only_the_slots_sharing_its_low_bits() {
        let v = FileVersions::default();
        let (a, same_slot, other) = (0x1234_u128, 0x1234_u128 | (7 << 64), 0x1235_u128);
        let (seen_a, seen_other) = (v.current(a), v.current(other));
        v.bump(a);
        assert_ne!(v.current(a), seen_a);
        assert_ne!(v.current(same_slot), seen_a, "a shared slot drops both copies");
        assert_eq!(v.current(other), seen_other);
    }
}
