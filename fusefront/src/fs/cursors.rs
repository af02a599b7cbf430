//! Prefetch's cursors: for each reader followed, how far ahead of it the
//! walk was queued and how wide its window has grown (`prefetch.rs` says
//! how they move). Plain data under the caller's lock: nothing here
//! fetches.

use crate::limits::*;
use std::ops::Range;

/// How far ahead of one reader the walk was queued.
struct Cursor {
    /// Where the reader was when it started.
    from: usize,
    /// The walk is queued up to here (exclusive).
    until: usize,
    window: usize,
    /// When a read last moved it (`Cursors::tick`).
    used: u64,
}

#[derive(Default)]
pub(super) struct Cursors {
    list: Vec<Cursor>,
    tick: u64,
}

impl Cursors {
    /// What to queue for a first read at walk position `p`, whose
    /// directory's subtree ends at `subtree_end`, on a walk of `len`
    /// files: the positions not queued yet, or None while what is queued
    /// still runs far enough ahead.
    pub(super) fn advance(&mut self, p: usize, subtree_end: usize, len: usize) -> Option<Range<usize>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(c) = self.list.iter_mut().find(|c| c.from <= p && p < c.until.max(c.from + 1)) {
            c.used = tick;
            if p + c.window / 4 < c.until {
                return None;
            }
            c.window = (c.window * 2).min(PREFETCH_WALK_MAX);
            let start = c.until.max(p + 1);
            c.until = (p + 1 + c.window).min(len).max(c.until);
            return (start < c.until).then_some(start..c.until);
        }
        // A reader new here: the rest of its directory's subtree, a first
        // window of it.
        let until = (p + 1 + PREFETCH_WALK_FIRST).min(subtree_end.max(p + 1)).min(len);
        if self.list.len() >= PREFETCH_WALKERS {
            let stalest = self.list.iter().enumerate().min_by_key(|(_, c)| c.used).map(|(i, _)| i);
            if let Some(i) = stalest {
                self.list.swap_remove(i);
            }
        }
        self.list.push(Cursor { from: p, until, window: PREFETCH_WALK_FIRST, used: tick });
        (p + 1 < until).then_some(p + 1..until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walker_gets_a_growing_window_and_a_random_read_a_small_one() {
        let f = PREFETCH_WALK_FIRST;
        let mut c = Cursors::default();
        // A first read at 0 of a directory whose subtree ends before a
        // first window would.
        assert_eq!(c.advance(0, f / 2 + 1, 100_000), Some(1..f / 2 + 1), "the first window stays in the subtree");
        // Reads well within it: nothing new.
        assert_eq!(c.advance(f / 4, f / 2 + 1, 100_000), None);
        // Nearing its end: doubled, past the subtree.
        let next = c.advance(f / 2, f / 2 + 1, 100_000).expect("more");
        assert_eq!(next, f / 2 + 1..f / 2 + 1 + 2 * f);
        // Walking on keeps it ahead, up to the most.
        let mut until = next.end;
        let mut at = 0;
        for _ in 0..20 {
            at = until - 1;
            if let Some(r) = c.advance(at, 10, 100_000) {
                assert_eq!(r.start, until, "never queued twice");
                until = r.end;
            }
        }
        assert!(until - at <= PREFETCH_WALK_MAX + 1, "at most PREFETCH_WALK_MAX ahead");
        assert!(until - at > PREFETCH_WALK_MAX / 2, "and it grew that far");
        // A read elsewhere is another reader, with a small window.
        assert!(until < 90_000);
        assert_eq!(c.advance(90_000, 95_000, 100_000), Some(90_001..90_001 + f));
        // A file alone in its directory: nothing.
        assert_eq!(c.advance(70_000, 70_001, 100_000), None);
        // The walk's end bounds every window.
        assert_eq!(c.advance(99_998, 100_000, 100_000), Some(99_999..100_000));
    }

    #[test]
    fn past_the_most_walkers_the_stalest_makes_room() {
        let mut c = Cursors::default();
        for i in 0..PREFETCH_WALKERS + 1 {
            c.advance(i * 1000, i * 1000 + 500, 1 << 30);
        }
        assert_eq!(c.list.len(), PREFETCH_WALKERS);
        assert!(c.list.iter().all(|k| k.from != 0), "the first, least recently moved, went");
    }
}
