//! The tower-sessions Redis baseline: `tower-sessions-redis-store`'s `RedisStore`, ported
//! command for command onto redis-rs, because its only release (0.16) implements
//! tower-sessions-core 0.14's `SessionStore` and the workspace is on 0.15. Like the
//! original it keeps one MessagePack value per session (`SET id record EXAT expiry`, `NX`
//! on create and `XX` on save, `GET` on load, `DEL` on delete) and spreads commands over
//! a pool of multiplexed connections, as fred's `Pool` does in the crate's example.

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::{session_store, SessionStore};

/// Connections in the pool: the size the upstream crate's example gives fred's `Pool`.
pub const POOL_SIZE: usize = 6;

/// The `SessionStore` of `tower-sessions-redis-store`, over redis-rs.
#[derive(Clone)]
pub struct RedisStore {
    pool: Arc<[MultiplexedConnection]>,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connections", &self.pool.len())
            .finish()
    }
}

fn backend(e: redis::RedisError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl RedisStore {
    /// Connects `POOL_SIZE` multiplexed connections to `url`.
    pub async fn connect(url: &str) -> redis::RedisResult<RedisStore> {
        let client = redis::Client::open(url)?;
        let mut pool = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            pool.push(client.get_multiplexed_async_connection().await?);
        }
        Ok(RedisStore {
            pool: pool.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next connection in turn (fred's pool is round-robin too).
    fn conn(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].clone()
    }

    /// `SET id <msgpack record> EXAT <expiry> NX|XX`; whether it was set.
    async fn save_with(&self, record: &Record, condition: &str) -> session_store::Result<bool> {
        let value =
            rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let set: Option<String> = redis::cmd("SET")
            .arg(record.id.to_string())
            .arg(value)
            .arg("EXAT")
            .arg(record.expiry_date.unix_timestamp())
            .arg(condition)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while !self.save_with(record, "NX").await? {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.save_with(record, "XX").await?;
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let data: Option<Vec<u8>> = redis::cmd("GET")
            .arg(session_id.to_string())
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        data.map(|d| {
            rmp_serde::from_slice(&d).map_err(|e| session_store::Error::Decode(e.to_string()))
        })
        .transpose()
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let _: i64 = redis::cmd("DEL")
            .arg(session_id.to_string())
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
