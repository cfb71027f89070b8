//! A bounded set of shared strings, so many records can hold one copy of a value that
//! few distinct clients send (a browser's user agent).

use std::collections::HashSet;
use std::sync::Arc;

/// Hands out one shared copy per distinct string, keeping at most `max` of them.
///
/// Values come from clients, so the set is bounded: when it fills, the strings no
/// record holds any more are dropped, and if more than half are still held (many
/// distinct values, as a client making them up would send) it starts over. A string
/// dropped from the set stays valid wherever it is held; only later copies of it are
/// no longer shared with those. Both paths run at most once per `max / 2` new strings.
#[derive(Debug)]
pub struct Interner {
    set: HashSet<Arc<str>>,
    max: usize,
}

impl Interner {
    /// An interner keeping at most `max` distinct strings (never fewer than 2).
    pub fn new(max: usize) -> Self {
        Interner {
            set: HashSet::new(),
            max: max.max(2),
        }
    }

    /// The shared copy of `s`: an earlier one equal to it, or `s` itself, now shared.
    pub fn intern(&mut self, s: Arc<str>) -> Arc<str> {
        if let Some(kept) = self.set.get(&*s) {
            return Arc::clone(kept);
        }
        if self.set.len() >= self.max {
            self.set.retain(|k| Arc::strong_count(k) > 1);
            if self.set.len() > self.max / 2 {
                self.set.clear();
            }
        }
        self.set.insert(Arc::clone(&s));
        s
    }

    /// How many distinct strings it holds.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let mut i = Interner::new(8);
        let a = i.intern(Arc::from("Mozilla/5.0 (X11; Linux x86_64)"));
        let b = i.intern(Arc::from("Mozilla/5.0 (X11; Linux x86_64)"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.intern(Arc::from("curl/8.5.0"));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn it_stays_bounded_and_keeps_what_records_still_hold() {
        let mut i = Interner::new(4);
        let held = i.intern(Arc::from("held"));
        for n in 0..1000 {
            let _ = i.intern(Arc::from(format!("made-up/{n}")));
            assert!(i.len() <= 4, "{} strings kept", i.len());
        }
        // The made-up ones were dropped when it filled; the one a record holds was kept.
        let again = i.intern(Arc::from("held"));
        assert!(Arc::ptr_eq(&held, &again));
    }

    #[test]
    fn many_held_strings_start_it_over_without_invalidating_them() {
        let mut i = Interner::new(4);
        let held: Vec<Arc<str>> = (0..4)
            .map(|n| i.intern(Arc::from(format!("ua/{n}"))))
            .collect();
        let fresh = i.intern(Arc::from("ua/new"));
        assert_eq!(i.len(), 1, "all four were held, so it started over");
        assert_eq!(&*held[0], "ua/0");
        assert!(Arc::ptr_eq(&fresh, &i.intern(Arc::from("ua/new"))));
    }
}
