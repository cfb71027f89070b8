//! A [`tower_sessions`](https://docs.rs/tower-sessions) session store backed by
//! sessiond: an existing axum app keeps its `tower_sessions::Session` code and gains
//! sessiond's idle and absolute timeouts, per-role policies, audit trail and admin API
//! (list, revoke, sign out everywhere).
//!
//! # The one-line switch
//!
//! Before, with tower-sessions' memory store:
//!
//! ```rust,ignore
//! let layer = SessionManagerLayer::new(MemoryStore::default());
//! ```
//!
//! After (the constructors are `async` because they open the database or connect):
//!
//! ```rust,ignore
//! let layer = SessionManagerLayer::new(SessiondStore::sqlite("data").await?);
//! // or: SessiondStore::redis("redis://127.0.0.1:6379").await?
//! // or: SessiondStore::from_store(an_arc_dyn_sessiond_core_store)
//! ```
//!
//! A whole app:
//!
//! ```rust
//! use axum::{routing::get, Router};
//! use tower_sessions::{Session, SessionManagerLayer};
//! use tower_sessions_sessiond_store::SessiondStore;
//!
//! async fn count(session: Session) -> String {
//!     let n: u64 = session.get("n").await.unwrap_or_default().unwrap_or(0) + 1;
//!     session.insert("n", n).await.expect("store reachable");
//!     n.to_string()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let data_dir = dir.path();
//! let store = SessiondStore::sqlite(data_dir).await?;
//! let app: Router = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionManagerLayer::new(store));
//! # Ok(())
//! # }
//! ```
//!
//! # What a record becomes
//!
//! Each tower-sessions record is a sessiond session of the store's role
//! ([`SessiondStore::with_role`], default: the policies' default role, `editor`). The
//! tower-sessions id (the cookie value) is kept only as its SHA-256, in the place
//! sessiond keeps a token's hash; the record's data lives in the session's data bag.
//! A sessiond server pointed at the same database or Redis therefore lists these
//! sessions (`GET /v1/admin/sessions`), revokes them (`DELETE
//! /v1/admin/sessions/{handle}`), signs a user out everywhere (`DELETE
//! /v1/admin/principals/user:{id}/sessions`, see [`SessiondStore::with_user_id_key`]),
//! expires them with its own scheduler, and shows their audit trail (`created`,
//! `signed_in`, `ended` with the reason). A revoked or ended session loads as absent,
//! so the app's next request gets a fresh, empty session.
//!
//! | tower-sessions | sessiond |
//! |---|---|
//! | `create` | a new session (`created` audit event) |
//! | `load` | the active session by id hash, its data; activity (see below) |
//! | `save` | the data, by compare-and-set (see below); deadlines; user binding |
//! | `delete` (`flush`, `cycle_id`) | the session ends `signed_out`; its data is removed |
//! | `delete_expired` | due sessions end (`idle_timeout`/`absolute_timeout`); sessions ended longer than the retention ago are purged |
//!
//! `cycle_id` is tower-sessions' `delete` of the old id and `create` of a new one: in
//! sessiond the old session ends (`signed_out`) and a new one, with the same data,
//! starts (with new deadlines).
//!
//! # Deadlines: the earlier one wins
//!
//! A record is alive until the earliest of its three deadlines:
//!
//! - sessiond's **idle** deadline: last activity + the role's `idle_timeout`;
//! - sessiond's **absolute** deadline: creation + the role's `absolute_timeout`, never
//!   moved;
//! - tower-sessions' **`expiry_date`** (from `Expiry::OnInactivity`, `AtDateTime`, or
//!   two weeks for `OnSessionEnd`), as of the last save.
//!
//! Every save stores the idle deadline as `min(now + idle_timeout, absolute,
//! expiry_date)`, so sessiond's scheduler (a server's, or
//! [`ExpiredDeletion::delete_expired`]) ends the session at whichever comes first; a
//! load past any of them ends the session at once (reason `absolute_timeout` past the
//! absolute deadline, else `idle_timeout`) and answers "absent". The loaded record's
//! `expiry_date` is that earliest deadline. The cookie's own lifetime is still set by
//! tower-sessions from its `Expiry`.
//!
//! Activity: a load is activity. It moves the idle deadline (never past the other two)
//! with one store write at most every [`SessiondStore::with_activity_interval`] (1 s by
//! default), so a busy session does not cost a write per request.
//!
//! # Concurrent saves never lose a key
//!
//! tower-sessions saves the whole record. Two requests of one session that loaded the
//! same revision and each set a different key would, with a plain overwrite, leave only
//! the later request's keys. Here every save is a compare-and-set on the stored
//! revision (decided inside the store, across processes and nodes):
//!
//! - if the stored revision is still the one this request loaded, the record is written
//!   as is;
//! - otherwise the save **merges per key against the revision it loaded**: the keys this
//!   request set, replaced or removed take its value; every other key keeps the stored
//!   value (a concurrent save's keys survive); a key both changed takes the later save's
//!   value. Then it tries the compare-and-set again;
//! - after [`MAX_SAVE_ATTEMPTS`] lost attempts the save fails with
//!   [`Error::Contended`] and writes nothing: never a silent loss. (Each round one of
//!   the competing saves wins, so this takes more than 32 saves of one session at
//!   the same moment.)
//!
//! A record that was not loaded in this request (new) or that the request cleared
//! (`Session::clear`) replaces what is stored. A read-modify-write of one key (a
//! counter incremented by two concurrent requests) is still last-writer-wins on that
//! key, as with any store; guard it in the application if it matters.
//!
//! To know what it loaded, a loaded record carries a marker under the reserved key
//! [`BASE_KEY`] in its data; the store removes it before writing. Applications must not
//! use that key.
//!
//! # Failures
//!
//! Store failures are [`Error`]s mapped into tower-sessions' `session_store::Error`,
//! never a panic; Redis calls are bounded by the Redis store's command timeout and
//! SQLite waits by its busy timeout, so nothing hangs. A save to a session that ended
//! meanwhile (revoked, expired) writes nothing and is not an error: the ending wins.

#![deny(missing_docs)]

mod envelope;
mod error;

pub use envelope::BASE_KEY;
pub use error::Error;
pub use sessiond_core::policy::{Policies, Policy};
pub use sessiond_core::{Clock, Session as SessiondSession, Store, SystemClock};
pub use sessiond_store_redis::RedisConfig;

use async_trait::async_trait;
use envelope::{merge, Base, Data, Envelope, DATA_KEY};
use serde_json::Value;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::lifecycle::{self, ClientInfo};
use sessiond_core::store::Touch;
use sessiond_core::{EndReason, Principal, Timestamp, TokenHash};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// Compare-and-set attempts of one save before it fails with [`Error::Contended`].
pub const MAX_SAVE_ATTEMPTS: usize = 32;

/// Fresh ids tried by `create` when an id is taken.
const MAX_ID_ATTEMPTS: usize = 8;

/// Rows per call and calls per [`ExpiredDeletion::delete_expired`] run, so one run
/// stays bounded; the rest waits for the next run.
const EXPIRY_BATCH: usize = 1000;
const EXPIRY_MAX_BATCHES: usize = 50;

/// A [`tower_sessions_core::SessionStore`] (and [`ExpiredDeletion`]) over a sessiond
/// [`Store`]: SQLite, Redis, or any store implementing [`sessiond_core::Store`].
///
/// Cheap to clone: clones share the store. See the [crate documentation](crate) for
/// how records map to sessiond sessions, the deadline rule and the concurrent-save rule.
///
/// ```rust
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
/// use std::time::Duration;
/// use tower_sessions_sessiond_store::SessiondStore;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = SessiondStore::sqlite(dir.path())
///     .await?
///     .with_role("viewer")?
///     .with_user_id_key("user_id")
///     .with_activity_interval(Duration::from_secs(5));
/// assert_eq!(store.role(), "viewer");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessiondStore {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policies: Arc<Policies>,
    role: String,
    activity_interval_ms: Timestamp,
    user_id_key: Option<String>,
    ended_retention: Duration,
}

impl std::fmt::Debug for SessiondStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessiondStore")
            .field("role", &self.role)
            .field("activity_interval_ms", &self.activity_interval_ms)
            .field("user_id_key", &self.user_id_key)
            .field("ended_retention", &self.ended_retention)
            .finish_non_exhaustive()
    }
}

/// How long ended sessions stay (for the admin API and audit) before
/// [`ExpiredDeletion::delete_expired`] purges them, unless set with
/// [`SessiondStore::with_ended_retention`].
pub const DEFAULT_ENDED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Minimum time between two activity writes of one session, unless set with
/// [`SessiondStore::with_activity_interval`].
pub const DEFAULT_ACTIVITY_INTERVAL: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> Timestamp {
    Timestamp::try_from(d.as_millis()).unwrap_or(Timestamp::MAX)
}

fn to_ms(t: OffsetDateTime) -> Timestamp {
    Timestamp::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(if t.year() < 1970 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

fn from_ms(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The stored hash of a tower-sessions id: SHA-256 of the cookie value, as sessiond
/// hashes its tokens.
fn id_hash(id: &Id) -> TokenHash {
    TokenHash(Sha256::digest(id.to_string().as_bytes()).into())
}

impl SessiondStore {
    /// A store over any sessiond store (memory, SQLite, Redis, or a decorated one), with
    /// sessiond's default policies (role `editor`: idle 15 min, absolute 12 h).
    ///
    /// ```rust
    /// use std::sync::Arc;
    /// use tower_sessions_sessiond_store::{SessiondStore, Store};
    ///
    /// let shared: Arc<dyn Store> = Arc::new(sessiond_store_memory::MemoryStore::new());
    /// let store = SessiondStore::from_store(shared);
    /// assert_eq!(store.role(), "editor");
    /// ```
    pub fn from_store(store: Arc<dyn Store>) -> SessiondStore {
        let policies = Policies::default();
        SessiondStore {
            store,
            clock: Arc::new(SystemClock),
            role: policies.default_role.clone(),
            policies: Arc::new(policies),
            activity_interval_ms: ms(DEFAULT_ACTIVITY_INTERVAL),
            user_id_key: None,
            ended_retention: DEFAULT_ENDED_RETENTION,
        }
    }

    /// A store on sessiond's embedded SQLite database in `data_dir` (created if
    /// missing): the same directory a sessiond server with `store = "sqlite"` and that
    /// `data_dir` uses, so both can share it.
    ///
    /// ```rust
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = tower_sessions_sessiond_store::SessiondStore::sqlite(dir.path()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sqlite(data_dir: impl AsRef<Path>) -> Result<SessiondStore, Error> {
        let dir = data_dir.as_ref().to_owned();
        let store =
            tokio::task::spawn_blocking(move || sessiond_store_sqlite::SqliteStore::open(&dir))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        Ok(SessiondStore::from_store(Arc::new(store)))
    }

    /// A store on Redis: `redis://host:port[/db]` (standalone), `rediss://` (TLS),
    /// `redis+cluster://h1:p1,h2:p2` (Cluster) or
    /// `redis+sentinel://s1:p1,s2:p2/master-name` (Sentinel), with the Redis store's
    /// defaults (key prefix `sessiond`, 1 s command timeout). Fails at once if Redis
    /// does not answer within the connect timeout (2 s).
    ///
    /// ```rust,no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
    /// let store = tower_sessions_sessiond_store::SessiondStore::redis("redis://127.0.0.1:6379").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn redis(url: &str) -> Result<SessiondStore, Error> {
        Self::redis_with(RedisConfig::new(url)).await
    }

    /// [`SessiondStore::redis`] with a full [`RedisConfig`] (key prefix, timeouts).
    ///
    /// ```rust,no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
    /// use std::time::Duration;
    /// use tower_sessions_sessiond_store::{RedisConfig, SessiondStore};
    ///
    /// let config = RedisConfig::new("redis+sentinel://10.0.0.5:26379/main")
    ///     .key_prefix("shop")
    ///     .command_timeout(Duration::from_millis(500));
    /// let store = SessiondStore::redis_with(config).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn redis_with(config: RedisConfig) -> Result<SessiondStore, Error> {
        let store = sessiond_store_redis::RedisStore::connect(config).await?;
        Ok(SessiondStore::from_store(Arc::new(store)))
    }

    /// Uses these role policies (validated). The store's role stays if `policies`
    /// has it, else it becomes `policies.default_role`.
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// use std::collections::BTreeMap;
    /// use tower_sessions_sessiond_store::{Policies, Policy, SessiondStore};
    ///
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// let mut roles = BTreeMap::new();
    /// roles.insert("shopper".to_owned(), Policy::new(30 * 60, 24 * 3600));
    /// let policies = Policies { roles, default_role: "shopper".into() };
    /// let store = store.with_policies(policies)?;
    /// assert_eq!(store.role(), "shopper");
    /// # Ok::<(), tower_sessions_sessiond_store::Error>(())
    /// ```
    pub fn with_policies(mut self, policies: Policies) -> Result<SessiondStore, Error> {
        policies.validate().map_err(Error::Config)?;
        if policies.get(&self.role).is_none() {
            self.role = policies.default_role.clone();
        }
        self.policies = Arc::new(policies);
        Ok(self)
    }

    /// The role of the sessions this store creates; its policy sets their idle and
    /// absolute timeouts. Must be one of the policies' roles.
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// let store = store.with_role("public")?;
    /// assert!(store.clone().with_role("nobody").is_err());
    /// # Ok::<(), tower_sessions_sessiond_store::Error>(())
    /// ```
    pub fn with_role(mut self, role: &str) -> Result<SessiondStore, Error> {
        if self.policies.get(role).is_none() {
            return Err(Error::Config(format!(
                "role {role:?} has no policy (known: {})",
                self.policies
                    .roles
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.role = role.to_owned();
        Ok(self)
    }

    /// Where "now" comes from for sessiond's deadlines (default: the system clock;
    /// tests pass a [`sessiond_core::ManualClock`]).
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// use tower_sessions_sessiond_store::{Clock, SystemClock};
    ///
    /// let clock = sessiond_core::ManualClock::new(SystemClock.now());
    /// let store = store.with_clock(Arc::new(clock.clone()));
    /// clock.advance_ms(60_000); // the store's deadlines see the minute pass
    /// ```
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SessiondStore {
        self.clock = clock;
        self
    }

    /// Minimum time between two activity writes of one session on load (default
    /// [`DEFAULT_ACTIVITY_INTERVAL`], 1 s): the idle deadline is exact to within it.
    /// Zero writes activity on every load.
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// let store = store.with_activity_interval(std::time::Duration::from_secs(10));
    /// ```
    pub fn with_activity_interval(mut self, interval: Duration) -> SessiondStore {
        self.activity_interval_ms = ms(interval);
        self
    }

    /// Binds sessions to a user: when a saved record holds this key with a string or
    /// number value, the sessiond session's principal becomes `user:<value>` (audited
    /// `signed_in`), so sessiond's admin API can list the user's sessions and sign the
    /// user out everywhere (`DELETE /v1/admin/principals/user:<value>/sessions`).
    /// Unset by default (sessions stay anonymous principals).
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// // The app's login handler then does `session.insert("user_id", "alice")`.
    /// let store = store.with_user_id_key("user_id");
    /// ```
    pub fn with_user_id_key(mut self, key: impl Into<String>) -> SessiondStore {
        self.user_id_key = Some(key.into());
        self
    }

    /// How long ended sessions are kept (for the admin API and the audit trail) before
    /// [`ExpiredDeletion::delete_expired`] purges them with their data (default
    /// [`DEFAULT_ENDED_RETENTION`], 30 days).
    ///
    /// ```rust
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// let store = store.with_ended_retention(std::time::Duration::from_secs(7 * 24 * 3600));
    /// ```
    pub fn with_ended_retention(mut self, retention: Duration) -> SessiondStore {
        self.ended_retention = retention;
        self
    }

    /// The role of new sessions.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The sessiond store underneath, for sessiond operations the app performs itself
    /// (listing, auditing).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sessiond session behind a tower-sessions id (ended ones included), e.g. to
    /// show its handle, which the admin API takes.
    ///
    /// ```rust
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
    /// # use std::sync::Arc;
    /// # use tower_sessions_sessiond_store::SessiondStore;
    /// # let store = SessiondStore::from_store(Arc::new(sessiond_store_memory::MemoryStore::new()));
    /// use tower_sessions::session::Id;
    /// assert!(store.sessiond_session(&Id::default()).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sessiond_session(&self, id: &Id) -> Result<Option<SessiondSession>, Error> {
        Ok(self.store.get_session_by_token(&id_hash(id)).await?)
    }

    fn policy_of(&self, role: &str) -> &Policy {
        self.policies
            .get(role)
            .or_else(|| self.policies.get(&self.policies.default_role))
            .expect("validated policies hold the default role")
    }

    /// The user a record's data names under the user-id key, if configured.
    fn user_of(&self, data: &Data) -> Option<String> {
        match data.get(self.user_id_key.as_deref()?)? {
            Value::String(s) if !s.is_empty() && s.len() <= 200 => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Ends a session once (store CAS); the winner's ending is audited with it.
    async fn end(&self, s: &SessiondSession, reason: EndReason) -> Result<(), Error> {
        let now = self.clock.now();
        let event = AuditEvent::for_session(now, AuditKind::Ended, s)
            .with_reason(reason.as_str())
            .with_detail(serde_json::json!({"via": "tower-sessions"}));
        if let Some(ended) = self
            .store
            .end_session(&s.handle, reason, now, &[event])
            .await?
        {
            tracing::info!(handle = %ended.handle, reason = reason.as_str(), "session ended");
        }
        Ok(())
    }

    /// The active session of an id; one past a stored deadline is ended now and reads
    /// as absent.
    async fn active(&self, id: &Id) -> Result<Option<SessiondSession>, Error> {
        let Some(s) = self.store.get_session_by_token(&id_hash(id)).await? else {
            return Ok(None);
        };
        if !s.is_active() {
            return Ok(None);
        }
        if let Some(reason) = lifecycle::due_reason(&s, self.clock.now()) {
            self.end(&s, reason).await?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    async fn create_record(&self, record: &mut Record) -> Result<(), Error> {
        let mut data = record.data.clone();
        Base::take(&mut data);
        let expiry_ms = to_ms(record.expiry_date);
        for _ in 0..MAX_ID_ATTEMPTS {
            let hash = id_hash(&record.id);
            if self.store.get_session_by_token(&hash).await?.is_some() {
                record.id = Id::default();
                continue;
            }
            let now = self.clock.now();
            let policy = self.policy_of(&self.role);
            // The sessiond token is never handed out: the cookie holds the tower id.
            let (mut s, _unused_token) =
                lifecycle::new_session(now, &self.role, policy, &ClientInfo::default());
            s.token_hash = hash;
            s.idle_expires_at = s.idle_expires_at.min(expiry_ms);
            let user = self.user_of(&data);
            if let Some(u) = &user {
                s.principal = Principal::user(u);
                s.user_id = Some(u.clone());
            }
            // The start (and sign-in) is audited in the same write as the insert.
            let mut events = vec![AuditEvent::for_session(now, AuditKind::Created, &s)
                .with_detail(serde_json::json!({"via": "tower-sessions"}))];
            if user.is_some() {
                events.push(AuditEvent::for_session(now, AuditKind::SignedIn, &s));
            }
            self.store.create_session(&s, None, &events).await?;
            let env = Envelope {
                rev: 1,
                expiry_ms,
                data,
            };
            if !self
                .store
                .put_data_if(&s.handle, DATA_KEY, None, &env.to_value()?)
                .await?
            {
                // Only an ending in the instant since the insert gets here.
                return Err(Error::Store(sessiond_core::StoreError::Unavailable(
                    "session ended while it was being created".into(),
                )));
            }
            return Ok(());
        }
        Err(Error::IdExhausted(MAX_ID_ATTEMPTS))
    }

    async fn load_record(&self, id: &Id) -> Result<Option<Record>, Error> {
        let Some(s) = self.active(id).await? else {
            return Ok(None);
        };
        let raw = self.store.get_data(&s.handle, DATA_KEY).await?;
        let env = Envelope::read(raw.as_ref())?;
        let now = self.clock.now();
        let mut deadline = lifecycle::next_deadline(&s).min(env.expiry_ms);
        if now >= deadline {
            let reason = if now >= s.absolute_expires_at {
                EndReason::AbsoluteTimeout
            } else {
                EndReason::IdleTimeout
            };
            self.end(&s, reason).await?;
            return Ok(None);
        }
        if now.saturating_sub(s.last_activity_at) >= self.activity_interval_ms {
            let policy = self.policy_of(&s.role);
            let idle = (now + policy.idle_ms())
                .min(s.absolute_expires_at)
                .min(env.expiry_ms)
                .max(s.idle_expires_at);
            let touched = self
                .store
                .touch_session(
                    &Touch {
                        handle: s.handle,
                        last_activity_at: now,
                        last_seen_at: now,
                        idle_expires_at: idle,
                        client_ip: None,
                        user_agent: None,
                    },
                    &[],
                )
                .await?;
            if !touched {
                // Ended between the read and the touch (revoked, expired elsewhere).
                return Ok(None);
            }
            deadline = idle.min(s.absolute_expires_at).min(env.expiry_ms);
        }
        let mut data = env.data.clone();
        let base = Base {
            rev: env.rev,
            data: env.data,
        };
        data.insert(BASE_KEY.to_owned(), base.to_value()?);
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: from_ms(deadline),
        }))
    }

    async fn save_record(&self, record: &Record) -> Result<(), Error> {
        let mut mine = record.data.clone();
        let base = Base::take(&mut mine);
        let expiry_ms = to_ms(record.expiry_date);
        for _ in 0..MAX_SAVE_ATTEMPTS {
            let Some(s) = self.active(&record.id).await? else {
                // Revoked, expired or signed out meanwhile: the ending wins over the save.
                tracing::info!("save of an ended session dropped");
                return Ok(());
            };
            let raw = self.store.get_data(&s.handle, DATA_KEY).await?;
            let stored = Envelope::read(raw.as_ref())?;
            let data = match &base {
                Some(b) if b.rev != stored.rev => merge(&b.data, &mine, &stored.data),
                _ => mine.clone(),
            };
            let next = Envelope {
                rev: stored.rev + 1,
                expiry_ms,
                data,
            };
            if self
                .store
                .put_data_if(&s.handle, DATA_KEY, raw.as_ref(), &next.to_value()?)
                .await?
            {
                return self.after_save(&s, &next).await;
            }
            // Another save (or an ending) came between the read and the write: read again.
        }
        Err(Error::Contended {
            attempts: MAX_SAVE_ATTEMPTS,
        })
    }

    /// The session's deadlines and principal after a save: the idle deadline becomes
    /// `min(now + idle, absolute, expiry_date)`, written forward by a touch or, when it
    /// must move back or the user changes, by replacing the record (only while active).
    async fn after_save(&self, s: &SessiondSession, env: &Envelope) -> Result<(), Error> {
        let now = self.clock.now();
        let policy = self.policy_of(&s.role);
        let idle = (now + policy.idle_ms())
            .min(s.absolute_expires_at)
            .min(env.expiry_ms);
        let user = self.user_of(&env.data);
        let rebind = user.is_some() && user != s.user_id;
        if idle < s.idle_expires_at || rebind {
            let mut next = s.clone();
            next.idle_expires_at = idle;
            next.last_activity_at = next.last_activity_at.max(now);
            next.last_seen_at = next.last_seen_at.max(now);
            if let Some(u) = user.as_deref().filter(|_| rebind) {
                next.principal = Principal::user(u);
                next.user_id = Some(u.to_owned());
            }
            let events: Vec<AuditEvent> = if rebind {
                vec![AuditEvent::for_session(now, AuditKind::SignedIn, &next)]
            } else {
                Vec::new()
            };
            self.store
                .update_session(&next, &s.token_hash, &events, None)
                .await?;
        } else if idle > s.idle_expires_at {
            self.store
                .touch_session(
                    &Touch {
                        handle: s.handle,
                        last_activity_at: now,
                        last_seen_at: now,
                        idle_expires_at: idle,
                        client_ip: None,
                        user_agent: None,
                    },
                    &[],
                )
                .await?;
        }
        Ok(())
    }

    async fn delete_record(&self, id: &Id) -> Result<(), Error> {
        let Some(s) = self.store.get_session_by_token(&id_hash(id)).await? else {
            return Ok(());
        };
        if s.is_active() {
            self.end(&s, EndReason::SignedOut).await?;
        }
        self.store.delete_data(&s.handle, DATA_KEY).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self) -> Result<(), Error> {
        let now = self.clock.now();
        for _ in 0..EXPIRY_MAX_BATCHES {
            let due = self.store.due_sessions(now, EXPIRY_BATCH).await?;
            for h in &due {
                if let Some(s) = self.store.get_session(h).await? {
                    if let Some(reason) = lifecycle::due_reason(&s, now) {
                        self.end(&s, reason).await?;
                    }
                }
            }
            if due.len() < EXPIRY_BATCH {
                break;
            }
        }
        let before = now.saturating_sub(ms(self.ended_retention));
        for _ in 0..EXPIRY_MAX_BATCHES {
            if self
                .store
                .purge_ended_sessions(before, EXPIRY_BATCH)
                .await?
                < EXPIRY_BATCH
            {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SessiondStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        Ok(self.create_record(record).await?)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        Ok(self.save_record(record).await?)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.load_record(session_id).await?)
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        Ok(self.delete_record(session_id).await?)
    }
}

/// Ends the sessions whose deadline passed (every due session of the store, as a
/// sessiond server's scheduler does; with a server on the same store this is already
/// done every second) and purges sessions that ended more than the retention ago, in
/// bounded batches. Run it periodically with
/// [`continuously_delete_expired`](ExpiredDeletion::continuously_delete_expired):
///
/// ```rust,no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_sessions_sessiond_store::Error> {
/// use tower_sessions_core::ExpiredDeletion;
/// # let store = tower_sessions_sessiond_store::SessiondStore::sqlite("data").await?;
/// let deletion = tokio::spawn(
///     store.clone().continuously_delete_expired(tokio::time::Duration::from_secs(60)),
/// );
/// # Ok(())
/// # }
/// ```
#[async_trait]
impl ExpiredDeletion for SessiondStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        Ok(self.delete_expired_sessions().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_conversions_round_trip_and_saturate() {
        let t = from_ms(1_700_000_000_123);
        assert_eq!(to_ms(t), 1_700_000_000_123);
        assert_eq!(to_ms(OffsetDateTime::UNIX_EPOCH), 0);
        assert_eq!(ms(Duration::MAX), Timestamp::MAX);
    }

    #[test]
    fn the_id_is_kept_only_as_its_hash() {
        let id = Id::default();
        let h = id_hash(&id);
        assert_eq!(
            h.0,
            <[u8; 32]>::from(Sha256::digest(id.to_string().as_bytes()))
        );
        assert!(!h.to_hex().contains(&id.to_string()));
    }
}
