//! One async lock per key (a session handle, a principal), so a quota's check and the
//! write it admits run one at a time for that key while other keys go on. The table
//! holds only keys in use: the last holder to leave removes its entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// Locks by key; cheap when uncontended (one map lookup).
#[derive(Default)]
pub struct KeyedLocks {
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while the key is locked; dropping it unlocks (and forgets the key if nobody
/// else holds or waits for it).
pub struct KeyGuard {
    guard: Option<OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    key: String,
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl KeyedLocks {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn lock(&self, key: &str) -> KeyGuard {
        let lock = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        KeyGuard {
            guard: Some(guard),
            lock,
            key: key.to_owned(),
            map: self.map.clone(),
        }
    }

    /// Keys currently held or waited for (tests).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are taken under the map lock, so two references (the map's and ours)
        // mean nobody else holds or waits for this key.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn serialises_one_key_and_forgets_it() {
        let locks = Arc::new(KeyedLocks::new());
        let g = locks.lock("a").await;
        // Another key is free.
        drop(locks.lock("b").await);
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { drop(l2.lock("a").await) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
        assert!(locks.is_empty());
    }
}
