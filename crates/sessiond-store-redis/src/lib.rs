//! The Redis store: sessiond on many nodes sharing one Redis deployment (standalone,
//! Sentinel or Cluster; Valkey too).
//!
//! # Client: redis-rs
//!
//! We use the `redis` crate (redis-rs, the workspace's 0.27) rather than `fred`:
//!
//! - **Pipelining**: its multiplexed connection writes every concurrent request on one
//!   socket without waiting for earlier replies, so N callers cost one round trip, not
//!   N, and a batch ([`sessiond_core::SessionStore::touch_sessions`]) is simply N concurrent
//!   requests.
//! - **Auto-reconnect**: `ConnectionManager` swaps in a new connection in the
//!   background with capped exponential backoff ([`RedisConfig::reconnect_max_delay`]);
//!   the store never has to be rebuilt after an outage.
//! - **Cluster**: the async cluster client routes by slot, follows MOVED/ASK and loads
//!   scripts on every master (`SCRIPT LOAD` is fanned out), so one code path serves
//!   both topologies.
//! - **Sentinel**: it resolves the master through the sentinels; [`conn`] re-resolves on
//!   failover (READONLY or connection errors).
//! - `Script` runs EVALSHA with a transparent EVAL fallback.
//!
//! `fred` offers much the same, but redis-rs is the Redis client the workspace already
//! declares (one client in the build for the store and pub/sub), its API is smaller,
//! and 0.27's `ConnectionManager`, cluster client and `Script` cover every need above.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessiond_store_redis::RedisError> {
//! use sessiond_store_redis::{RedisConfig, RedisStore};
//! use std::time::Duration;
//!
//! let config = RedisConfig::new("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
//!     .key_prefix("myapp")
//!     .command_timeout(Duration::from_millis(500));
//! let store = RedisStore::connect(config).await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! Every round trip is bounded by [`RedisConfig::command_timeout`] (default 1 s) with
//! `tokio::time::timeout`: an unreachable Redis yields `StoreError::Unavailable` within
//! about a second, never a hang.
//!
//! # Correctness without cross-slot transactions
//!
//! Every conditional write (idempotent create, token CAS, touch, ending, session data,
//! draft seq, snapshot version) is one Lua script over keys sharing a hash tag (see
//! [`keys`]), so it is atomic on Cluster too. What spans slots is an *index*, and
//! every index is a hint that readers verify:
//!
//! - the token index `P:t:<hash>` names a handle; [`sessiond_core::SessionStore::get_session_by_token`]
//!   then compares the session's own token hash in constant time, so a stale entry
//!   (rotation, purge, crash between two writes) never maps to a session. Outside
//!   Cluster the index and the session are read by one script (one round trip on the
//!   hot path); on Cluster they live in different slots and take two;
//! - the deadline index (one sorted set per bucket, see [`keys`]) holds candidates;
//!   `due_sessions` re-reads each session and drops or re-scores entries that
//!   disagree, so an expiry is never missed nor fired early;
//! - idempotent create writes the session first and claims the key second (a hash
//!   written only if absent: SET NX semantics). A loser deletes its own unreferenced
//!   session and returns the winner's record, which therefore always names a session
//!   that exists.
//!
//! Keyspace notifications are never used. TTLs are only a safety net (ended sessions
//! vanish after [`RedisConfig::ended_retention`] even if no purge runs); deadlines are
//! driven by `due_sessions`.
//!
//! # Attachments
//!
//! Attachment bytes live in Redis, one key per attachment in the principal's slot,
//! capped by the caller's `AttachmentLimits` (size and per-principal quota, enforced
//! while the body streams in). The body is appended in bounded chunks to a fresh key
//! that carries a TTL ([`RedisConfig::upload_ttl`]); the draft compare-and-set script
//! then checks the seq and quota and makes the key permanent, all at once, or the key
//! is deleted. A crash mid-upload leaves only a key that expires by itself.
//!
//! Durability is whatever the Redis deployment's persistence gives: run Redis with
//! `appendonly yes` and `appendfsync everysec` (at most a second of acknowledged writes
//! lost on a Redis crash) or `appendfsync always` (none), and size `maxmemory` for the
//! attachments you allow, with `maxmemory-policy noeviction` so Redis refuses writes
//! rather than silently dropping sessions or drafts.

#![forbid(unsafe_code)]

mod audit;
mod audit_ids;
mod audited;
mod buckets;
pub mod cluster;
mod config;
pub mod conn;
mod drafts;
mod error;
pub mod keys;
mod scripts;
mod sessions;
mod snapshots;

pub use cluster::RedisCluster;
pub use config::{RedisConfig, Topology};
pub use error::RedisError;

use conn::{bounded, Pool};
use keys::Keys;
use redis::{FromRedisValue, ScriptInvocation};

/// The Redis-backed [`sessiond_core::Store`]. Cheap to share behind an `Arc`; all
/// clones of its connections multiplex onto the same sockets.
pub struct RedisStore {
    pool: Pool,
    keys: Keys,
    cfg: RedisConfig,
    /// Where scans over every bucket (purges) start, turned on each call so that a
    /// purge cut short by its limit does not always favour the first buckets.
    rotor: std::sync::atomic::AtomicUsize,
    /// Cluster: audit ids taken in batches (see [`audit_ids`]).
    audit_ids: Option<audit_ids::AuditIds>,
}

/// The key layout this code writes (see [`keys`]); recorded in `P:layout` with the
/// bucket count.
const LAYOUT: &str = "bucketed-v1";

impl RedisStore {
    /// Validates `config`, connects (bounded by `connect_timeout`) and checks that
    /// Redis answers. Fails fast when Redis is unreachable at start-up; once connected,
    /// outages are survived without rebuilding the store.
    pub async fn connect(config: RedisConfig) -> Result<RedisStore, RedisError> {
        let topology = config.validate()?;
        let pool = Pool::connect(&config, &topology).await?;
        let keys = Keys::new(&config.key_prefix, config.buckets);
        let audit_ids = pool.cluster.then(|| {
            audit_ids::AuditIds::new(keys.audit_seq(), pool.get(), config.command_timeout)
        });
        let store = RedisStore {
            pool,
            keys,
            cfg: config,
            rotor: std::sync::atomic::AtomicUsize::new(0),
            audit_ids,
        };
        let _: String = store.q(&redis::cmd("PING")).await?;
        store.check_layout().await?;
        Ok(store)
    }

    /// Records the key layout and bucket count in a fresh keyspace, or checks that an
    /// existing one was written with the same: nodes disagreeing on the buckets would
    /// each see part of every index, and a keyspace of the single-slot layout (before
    /// buckets) would have its indexes ignored. Either refuses to start, with what to do.
    async fn check_layout(&self) -> Result<(), RedisError> {
        let want = format!("{LAYOUT} buckets={}", self.keys.buckets.len());
        let key = self.keys.layout();
        let p = &self.cfg.key_prefix;
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let found = match self.q::<Option<String>>(&get).await? {
            Some(v) => v,
            None => {
                for old in self.keys.legacy_indexes() {
                    let mut exists = redis::cmd("EXISTS");
                    exists.arg(&old);
                    if self.q::<i64>(&exists).await? > 0 {
                        return Err(RedisError::Layout(format!(
                            "the Redis keyspace under prefix {p:?} was written by an older \
                             sessiond (single-slot indexes, e.g. {old:?}); this version \
                             partitions them into buckets and cannot read them. Reset that \
                             prefix or use a new redis.key_prefix (docs/operations.md, \
                             \"Upgrading the Redis key layout\")"
                        )));
                    }
                }
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(&want).arg("NX");
                match self.q::<Option<String>>(&set).await {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => {}
                    // A read-only replica (a tool reading one): nothing to record, and it
                    // cannot write an index under the wrong layout either.
                    Err(RedisError::Redis(e)) if e.kind() == redis::ErrorKind::ReadOnly => {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                }
                // Another node recorded it first: compare with its figure.
                self.q::<Option<String>>(&get).await?.unwrap_or_default()
            }
        };
        if found != want {
            return Err(RedisError::Layout(format!(
                "the Redis keyspace under prefix {p:?} was written with {found:?}, this node \
                 is configured for {want:?}: every node must use the same redis.buckets \
                 (docs/operations.md, \"Upgrading the Redis key layout\")"
            )));
        }
        Ok(())
    }

    /// The key of the deadline index bucket holding `h`: for tools and tests that
    /// inspect the store.
    pub fn deadline_index_key(&self, h: &sessiond_core::Handle) -> String {
        self.keys.deadlines(self.keys.buckets.of_handle(h))
    }

    /// The audit id counter's key: the one key every audit append touches.
    pub fn audit_counter_key(&self) -> String {
        self.keys.audit_seq()
    }

    /// The first bucket a scan over every bucket visits this time.
    pub(crate) fn rotate(&self) -> usize {
        self.rotor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.keys.buckets.len()
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.pool.cluster
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// One raw command on the store's own connections, bounded by the command timeout.
    /// The cluster layer ([`cluster`]: node leases, presence registry, event
    /// publishing) uses it, so one set of connections serves a node.
    pub async fn command<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        self.q(cmd).await
    }

    /// One command, bounded by the command timeout.
    pub(crate) async fn q<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut c = self.pool.get();
        bounded(self.cfg.command_timeout, async move {
            Ok(cmd.query_async(&mut c).await?)
        })
        .await
    }

    /// Commands of one slot sent together (one round trip), bounded by the command
    /// timeout; their replies are ignored.
    pub(crate) async fn pipe(&self, p: &redis::Pipeline) -> Result<(), RedisError> {
        let mut c = self.pool.get();
        bounded(self.cfg.command_timeout, async move {
            Ok(p.query_async::<()>(&mut c).await?)
        })
        .await
    }

    /// One script, bounded by the command timeout (a first run may take two round
    /// trips: EVALSHA, then EVAL after NOSCRIPT).
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut c = self.pool.get();
        bounded(self.cfg.command_timeout, async move {
            Ok(inv.invoke_async(&mut c).await?)
        })
        .await
    }

    /// After a write a failover must not undo (an ending, a rotation, a draft or
    /// snapshot write): when `min_replicas` is set, waits until that many replicas hold
    /// it, or fails with [`RedisError::Replicas`] (503; the primary may have applied the
    /// write). `WAIT` covers the writes sent before it on its own connection, so it goes
    /// out on every connection of the pool (the write used one of them); `keys` name the
    /// slots written (Cluster sends it to each slot's master).
    pub(crate) async fn replicated(&self, keys: &[&str]) -> Result<(), RedisError> {
        let wanted = self.cfg.min_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let timeout = self.cfg.replica_timeout;
        let waits = self.pool.all().iter().flat_map(|c| {
            keys.iter().map(move |k| {
                let mut c = c.clone();
                async move { Ok::<i64, RedisError>(c.wait_replicas(k, wanted, timeout).await?) }
            })
        });
        let acked = bounded(
            self.cfg.command_timeout,
            futures::future::try_join_all(waits),
        )
        .await?
        .into_iter()
        .min()
        .unwrap_or(0);
        if acked < i64::from(wanted) {
            metrics::counter!("sessiond_redis_replica_wait_failed_total").increment(1);
            return Err(RedisError::Replicas { acked, wanted });
        }
        Ok(())
    }

    pub(crate) fn retention_ms(&self) -> i64 {
        self.cfg.ended_retention.as_millis().min(i64::MAX as u128) as i64
    }
}

/// `0` means "no limit" in listings, queries and purges (as in the other stores).
pub(crate) fn cap(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}
