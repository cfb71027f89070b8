//! How the global indexes are partitioned: `n` buckets, each under its own hash tag,
//! so that on Redis Cluster no single slot (and no single master) carries every
//! create, touch, ending, purge or audit append.
//!
//! - Handle-keyed indexes (deadlines, the handle listing, ended sessions, pending draft
//!   moves) take the bucket from the handle's first two bytes as a *range*: bucket `i`
//!   holds handles whose prefix falls in the `i`-th of `n` equal ranges. Handles are
//!   random, so the buckets fill evenly, and a listing ordered by handle reads the
//!   buckets one after the other with no merge.
//! - Name-keyed indexes (draft changes by principal, snapshot retention by room, audit
//!   events by handle or principal) take a hash of the name.
//! - Audit events with neither a handle nor a principal take a bucket from their time.
//!
//! Each bucket's tag is chosen so its slot falls in the bucket's own `1/n` of the slot
//! space (a short deterministic search over suffixes). `redis-cli --cluster create`
//! gives each master a contiguous, equal run of slots, so the buckets divide evenly over
//! the masters instead of wherever CRC16 happens to throw them. Every node computes the
//! same tags from the prefix and `n`; the store records both (`P:layout`) and refuses to
//! start against a store written with another `n`.

use redis::cluster_routing::get_slot;
use sessiond_core::Handle;

/// Slots in a Redis Cluster.
const SLOTS: usize = 16384;
/// Largest bucket count accepted: far beyond any useful figure, small enough that each
/// bucket still owns a range of slots.
pub const MAX_BUCKETS: usize = 1024;

/// The bucket tags of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    tags: Vec<String>,
}

impl Buckets {
    /// `n` must be in `1..=MAX_BUCKETS` (checked by the config).
    pub(crate) fn new(prefix: &str, n: usize) -> Self {
        let n = n.clamp(1, MAX_BUCKETS);
        let tags = (0..n)
            .map(|i| {
                let lo = i * SLOTS / n;
                let hi = (i + 1) * SLOTS / n;
                (0u32..)
                    .map(|k| {
                        if k == 0 {
                            format!("{prefix}:b{i}")
                        } else {
                            format!("{prefix}:b{i}.{k}")
                        }
                    })
                    .find(|t| (lo..hi).contains(&(get_slot(t.as_bytes()) as usize)))
                    .unwrap_or_else(|| format!("{prefix}:b{i}"))
            })
            .collect();
        Buckets { tags }
    }

    pub(crate) fn len(&self) -> usize {
        self.tags.len()
    }

    /// The hash tag of bucket `b`, braces included.
    pub(crate) fn tag(&self, b: usize) -> String {
        format!("{{{}}}", self.tags[b % self.tags.len()])
    }

    /// Range partition on the handle's first two bytes (order-preserving).
    pub(crate) fn of_handle(&self, h: &Handle) -> usize {
        let prefix = (usize::from(h.0[0]) << 8) | usize::from(h.0[1]);
        (prefix * self.tags.len()) >> 16
    }

    /// A stable hash (FNV-1a) of a name.
    pub(crate) fn of_name(&self, name: &str) -> usize {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.as_bytes() {
            x ^= u64::from(*b);
            x = x.wrapping_mul(0x0100_0000_01b3);
        }
        (x % self.tags.len() as u64) as usize
    }

    /// For values spread by time (milliseconds).
    pub(crate) fn of_time(&self, t: i64) -> usize {
        (t.unsigned_abs() % self.tags.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_owns_its_share_of_the_slots() {
        for n in [1, 3, 16, 64, 1024] {
            let b = Buckets::new("sessiond", n);
            assert_eq!(b.len(), n);
            for i in 0..n {
                let tag = b.tag(i);
                let slot = get_slot(tag.as_bytes()) as usize;
                assert!(
                    (i * SLOTS / n..(i + 1) * SLOTS / n).contains(&slot),
                    "bucket {i} of {n}: {tag} in slot {slot}"
                );
            }
        }
    }

    #[test]
    fn handle_buckets_keep_handle_order_and_fill_evenly() {
        let b = Buckets::new("p", 16);
        let mut hs: Vec<Handle> = (0..4000).map(|_| Handle::generate()).collect();
        hs.sort();
        let bs: Vec<usize> = hs.iter().map(|h| b.of_handle(h)).collect();
        assert!(bs.windows(2).all(|w| w[0] <= w[1]), "order kept");
        let mut counts = [0usize; 16];
        for x in bs {
            counts[x] += 1;
        }
        assert!(counts.iter().all(|c| (150..350).contains(c)), "{counts:?}");
        assert_eq!(
            b.of_handle(&Handle([0xff; sessiond_core::token::HANDLE_BYTES])),
            15
        );
        assert_eq!(
            b.of_handle(&Handle([0; sessiond_core::token::HANDLE_BYTES])),
            0
        );
    }

    #[test]
    fn name_buckets_are_stable_and_in_range() {
        let b = Buckets::new("p", 64);
        assert_eq!(b.of_name("user:alice"), b.of_name("user:alice"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let x = b.of_name(&format!("user:{i}"));
            assert!(x < 64);
            seen.insert(x);
        }
        assert_eq!(seen.len(), 64);
        assert!(b.of_time(-5) < 64);
    }
}
