//! One deadline queue for all sessions (or connections): O(log n) insert, move and pop,
//! no task per entry. Compact keys keep it near 60 bytes an entry.

use crate::clock::Timestamp;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};

/// Deadlines by key; each key has at most one pending deadline. `S` hashes the keys
/// (std's keyed hasher unless the keys are server-chosen random values:
/// [`crate::token::RandomKeys`]).
#[derive(Debug)]
pub struct DeadlineQueue<K: Copy + Eq + Hash + Ord, S = RandomState> {
    /// Ordered by (deadline, key) so the earliest pops first.
    order: BTreeSet<(Timestamp, K)>,
    /// The current deadline of each key, to find its entry in `order` on a move.
    at: HashMap<K, Timestamp, S>,
}

impl<K: Copy + Eq + Hash + Ord, S: BuildHasher + Default> Default for DeadlineQueue<K, S> {
    fn default() -> Self {
        Self {
            order: BTreeSet::new(),
            at: HashMap::default(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> DeadlineQueue<K> {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K: Copy + Eq + Hash + Ord, S: BuildHasher> DeadlineQueue<K, S> {
    /// Sets (or moves) the deadline of `key`.
    pub fn schedule(&mut self, key: K, deadline: Timestamp) {
        if let Some(old) = self.at.insert(key, deadline) {
            if old == deadline {
                return;
            }
            self.order.remove(&(old, key));
        }
        self.order.insert((deadline, key));
    }

    pub fn cancel(&mut self, key: &K) -> Option<Timestamp> {
        let old = self.at.remove(key)?;
        self.order.remove(&(old, *key));
        Some(old)
    }

    pub fn deadline(&self, key: &K) -> Option<Timestamp> {
        self.at.get(key).copied()
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Removes and returns up to `limit` keys whose deadline is `<= now`, earliest first.
    pub fn pop_due(&mut self, now: Timestamp, limit: usize) -> Vec<(K, Timestamp)> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.order.first() {
                Some(&(t, k)) if t <= now => {
                    self.order.pop_first();
                    self.at.remove(&k);
                    out.push((k, t));
                }
                _ => break,
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pops_in_order_and_moves() {
        let mut q = DeadlineQueue::new();
        q.schedule(1u64, 30);
        q.schedule(2, 10);
        q.schedule(3, 20);
        q.schedule(2, 40); // moved later
        assert_eq!(q.next_deadline(), Some(20));
        assert_eq!(q.pop_due(35, 10), vec![(3, 20), (1, 30)]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.cancel(&2), Some(40));
        assert!(q.is_empty());
    }

    proptest! {
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0u64..8, 0i64..100), 0..200)) {
            let mut q = DeadlineQueue::new();
            let mut model: HashMap<u64, i64> = HashMap::new();
            for (op, k, t) in ops {
                match op {
                    0 => { q.schedule(k, t); model.insert(k, t); }
                    1 => { prop_assert_eq!(q.cancel(&k), model.remove(&k)); }
                    _ => {
                        let mut due: Vec<_> = q.pop_due(t, usize::MAX);
                        let mut want: Vec<_> = model.iter().filter(|(_, d)| **d <= t).map(|(k, d)| (*k, *d)).collect();
                        model.retain(|_, d| *d > t);
                        due.sort(); want.sort();
                        prop_assert_eq!(due, want);
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
