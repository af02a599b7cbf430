//! A weighted least-recently-used map: the one recency mechanism behind
//! the owner's index (weight: bytes on disk) and each shard's memory tier
//! (weight: bytes in memory).
//!
//! Recency is a logical clock: every insert or touch takes the next tick,
//! and `pop_lru` removes the smallest. Single-threaded by design: each
//! instance belongs to one shard.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K, V> {
    entries: HashMap<K, Slot<V>>,
    by_recency: BTreeMap<u64, K>,
    next_tick: u64,
    weight: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    weight: u64,
    tick: u64,
}

impl<K, V> Default for Lru<K, V> {
    fn default() -> Self {
        Self { entries: HashMap::new(), by_recency: BTreeMap::new(), next_tick: 0, weight: 0 }
    }
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the weights of all entries.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|s| &s.value)
    }

    /// Adds or replaces `key` as the most recently used; returns the old value.
    pub fn insert(&mut self, key: K, value: V, weight: u64) -> Option<V> {
        let old = self.remove(&key);
        let tick = self.bump();
        self.entries.insert(key, Slot { value, weight, tick });
        self.by_recency.insert(tick, key);
        self.weight += weight;
        old
    }

    /// Marks `key` used now; false if it is not here.
    pub fn touch(&mut self, key: &K) -> bool {
        let tick = self.next_tick;
        let Some(slot) = self.entries.get_mut(key) else { return false };
        self.by_recency.remove(&slot.tick);
        slot.tick = tick;
        self.by_recency.insert(tick, *key);
        self.next_tick += 1;
        true
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.by_recency.remove(&slot.tick);
        self.weight -= slot.weight;
        Some(slot.value)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        let (_, key) = self.by_recency.pop_first()?;
        let slot = self.entries.remove(&key).expect("recency and entries agree");
        self.weight -= slot.weight;
        Some((key, slot.value))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, s)| (k, &s.value))
    }

    fn bump(&mut self) -> u64 {
        let t = self.next_tick;
        self.next_tick += 1;
        t
    }
}
