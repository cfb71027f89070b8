//! Configuration of the Redis store: where Redis is (standalone, Cluster, Sentinel),
//! the key prefix, and the time limits. Builder methods over documented defaults.

use crate::error::RedisError;
use std::time::Duration;

/// How to reach Redis and how to use it. Build with [`RedisConfig::new`] and the
/// builder methods; every field has a documented default.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS),
    /// `redis+cluster://[user:pass@]host1:port,host2:port` (`rediss+cluster://` for TLS),
    /// or `redis+sentinel://[user:pass@]sentinel1:port,sentinel2:port/master-name`
    /// (the credentials are the master's; sentinels are reached without them).
    pub url: String,
    /// Prepended to every key, so several deployments can share one Redis.
    /// Default `sessiond`. Must not contain `{`, `}` or whitespace.
    pub key_prefix: String,
    /// Upper bound on every round trip; past it the call fails with
    /// `StoreError::Unavailable` instead of waiting. Default 1 s.
    pub command_timeout: Duration,
    /// Upper bound on establishing a connection (and on `connect` as a whole). Default 2 s.
    pub connect_timeout: Duration,
    /// Longest pause between reconnection attempts while Redis is away. Default 1 s,
    /// so service resumes within about a second of Redis coming back.
    pub reconnect_max_delay: Duration,
    /// Multiplexed connections per standalone or Sentinel deployment, used in turn.
    /// One already pipelines every concurrent request; a second helps only when one
    /// socket's single reader thread on the client side becomes the bottleneck. Default 1.
    pub connections: usize,
    /// How long the keys of an ended session survive if no purge runs (a safety-net
    /// TTL; purges normally remove them much earlier). Default 30 days.
    pub ended_retention: Duration,
    /// How long the bytes of an unfinished upload survive a crash of the node that was
    /// streaming them. Default 1 h.
    pub upload_ttl: Duration,
    /// Replicas that must acknowledge (`WAIT`) an ending, a rotation, a draft or a
    /// snapshot write before it returns; fewer within [`RedisConfig::replica_timeout`]
    /// fail the call with `StoreError::Unavailable` (the primary may still have applied
    /// it). Default 0: no waiting, replication stays asynchronous.
    pub min_replicas: u32,
    /// How long a write waits for `min_replicas` acknowledgements; shorter than
    /// `command_timeout`. Default 500 ms.
    pub replica_timeout: Duration,
    /// Buckets each global index (deadlines, the handle listing, ended sessions, draft
    /// and snapshot retention, the audit trail) is split into, each under its own hash
    /// tag, so that on Cluster they spread over the masters (see the store's `buckets` module).
    /// Every node must use the same figure: the store records it and refuses to start
    /// with another. Default 64, at most 1024. Each bucket costs a round trip in the
    /// scans that read them all (due sessions, purges, counts).
    pub buckets: usize,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: "sessiond".into(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(1),
            connections: 1,
            ended_retention: Duration::from_secs(30 * 24 * 3600),
            upload_ttl: Duration::from_secs(3600),
            min_replicas: 0,
            replica_timeout: Duration::from_millis(500),
            buckets: 64,
        }
    }
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = d;
        self
    }
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    pub fn reconnect_max_delay(mut self, d: Duration) -> Self {
        self.reconnect_max_delay = d;
        self
    }
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }
    pub fn ended_retention(mut self, d: Duration) -> Self {
        self.ended_retention = d;
        self
    }
    pub fn upload_ttl(mut self, d: Duration) -> Self {
        self.upload_ttl = d;
        self
    }
    pub fn buckets(mut self, n: usize) -> Self {
        self.buckets = n;
        self
    }
    /// `n` replicas must acknowledge the durable writes within `timeout` (see
    /// [`RedisConfig::min_replicas`]).
    pub fn min_replicas(mut self, n: u32, timeout: Duration) -> Self {
        self.min_replicas = n;
        self.replica_timeout = timeout;
        self
    }

    /// Checks everything that can be checked without connecting.
    pub fn validate(&self) -> Result<Topology, RedisError> {
        let p = &self.key_prefix;
        if p.is_empty()
            || p.len() > 64
            || p.chars().any(|c| c == '{' || c == '}' || c.is_whitespace())
        {
            return Err(RedisError::Config(format!(
                "key_prefix {p:?} must be 1-64 characters without braces or whitespace"
            )));
        }
        for (name, d) in [
            ("command_timeout", self.command_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(RedisError::Config(format!("{name} must be positive")));
            }
        }
        if self.min_replicas > 0
            && (self.replica_timeout.is_zero() || self.replica_timeout >= self.command_timeout)
        {
            return Err(RedisError::Config(
                "replica_timeout must be positive and shorter than command_timeout".into(),
            ));
        }
        if self.buckets == 0 || self.buckets > crate::buckets::MAX_BUCKETS {
            return Err(RedisError::Config(format!(
                "buckets must be 1-{}",
                crate::buckets::MAX_BUCKETS
            )));
        }
        if self.connections == 0 || self.connections > 64 {
            return Err(RedisError::Config("connections must be 1-64".into()));
        }
        Topology::parse(&self.url)
    }
}

/// Where Redis is, parsed from [`RedisConfig::url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of several): the URL as the driver takes it.
    Standalone(String),
    /// Seed nodes of a Cluster, each as a `redis://` or `rediss://` URL.
    Cluster(Vec<String>),
    /// Sentinels (as `redis://` URLs), the master's name, and the master's credentials.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        tls: bool,
        username: Option<String>,
        password: Option<String>,
    },
}

/// Splits `[user:pass@]h1:p1,h2:p2[/rest]` into credentials, hosts and the rest.
fn split_authority(s: &str) -> (Option<&str>, Vec<&str>, &str) {
    let (authority, rest) = match s.find('/') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let (auth, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    (
        auth,
        hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect(),
        rest,
    )
}

impl Topology {
    pub fn parse(url: &str) -> Result<Topology, RedisError> {
        let bad = |why: &str| RedisError::Config(format!("redis url: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        match scheme {
            "redis" | "rediss" => {
                // Let the driver validate the rest (host, port, db, credentials).
                redis::Client::open(url).map_err(|e| bad(&e.to_string()))?;
                Ok(Topology::Standalone(url.to_owned()))
            }
            "redis+cluster" | "rediss+cluster" => {
                let (auth, hosts, _) = split_authority(rest);
                if hosts.is_empty() {
                    return Err(bad("a cluster url needs at least one host:port"));
                }
                let base = if scheme.starts_with("rediss") {
                    "rediss"
                } else {
                    "redis"
                };
                let nodes: Vec<String> = hosts
                    .iter()
                    .map(|h| match auth {
                        Some(a) => format!("{base}://{a}@{h}"),
                        None => format!("{base}://{h}"),
                    })
                    .collect();
                for n in &nodes {
                    redis::Client::open(n.as_str()).map_err(|e| bad(&e.to_string()))?;
                }
                Ok(Topology::Cluster(nodes))
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (auth, hosts, rest) = split_authority(rest);
                let master = rest.trim_end_matches('/');
                if hosts.is_empty() || master.is_empty() || master.contains('/') {
                    return Err(bad(
                        "a sentinel url is redis+sentinel://host:port[,host:port…]/master-name",
                    ));
                }
                let sentinels: Vec<String> = hosts.iter().map(|h| format!("redis://{h}")).collect();
                for s in &sentinels {
                    redis::Client::open(s.as_str()).map_err(|e| bad(&e.to_string()))?;
                }
                let (username, password) = match auth.map(|a| a.split_once(':').unwrap_or(("", a)))
                {
                    Some((u, p)) => (
                        (!u.is_empty()).then(|| u.to_owned()),
                        (!p.is_empty()).then(|| p.to_owned()),
                    ),
                    None => (None, None),
                };
                Ok(Topology::Sentinel {
                    sentinels,
                    master: master.to_owned(),
                    tls: scheme.starts_with("rediss"),
                    username,
                    password,
                })
            }
            other => Err(bad(&format!(
                "unknown scheme {other:?} (redis, rediss, redis+cluster, redis+sentinel)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6380/2").unwrap(),
            Topology::Standalone("redis://127.0.0.1:6380/2".into())
        );
        assert_eq!(
            Topology::parse("redis+cluster://:pw@a:7000,b:7001").unwrap(),
            Topology::Cluster(vec![
                "redis://:pw@a:7000".into(),
                "redis://:pw@b:7001".into()
            ])
        );
        assert_eq!(
            Topology::parse("redis+sentinel://u:pw@s1:26379,s2:26379/mymaster").unwrap(),
            Topology::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                master: "mymaster".into(),
                tls: false,
                username: Some("u".into()),
                password: Some("pw".into()),
            }
        );
        assert!(Topology::parse("memcached://x").is_err());
        assert!(Topology::parse("redis+cluster://").is_err());
        assert!(Topology::parse("redis+sentinel://s1:26379").is_err());
        assert!(Topology::parse("localhost:6379").is_err());
    }

    #[test]
    fn prefix_is_checked() {
        assert!(RedisConfig::new("redis://x:1")
            .key_prefix("a{b}")
            .validate()
            .is_err());
        assert!(RedisConfig::new("redis://x:1")
            .key_prefix("")
            .validate()
            .is_err());
        assert!(RedisConfig::new("redis://x:1").validate().is_ok());
    }
}
