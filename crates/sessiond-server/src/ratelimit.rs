//! Rate limits: each request falls in a scope (create, sign-in, renew, write, WebSocket
//! upgrade) with two GCRA limiters (`governor`): one keyed by the client IP (after
//! trusted proxies, see [`crate::client`]) and one keyed by the presented session
//! credential. The edge middleware ([`crate::routes::limits`]) checks them before any
//! handler runs, so a request over a limit (429 `rate_limited` with `Retry-After`)
//! writes nothing. The key maps are kept bounded by [`spawn_janitor`]. A leaf below the
//! state: it imports neither the state nor the routes.

use crate::config::{Rate, RateLimitsConfig};
use crate::error::ApiError;
use axum::http::Method;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sessiond_core::TokenHash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a request costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Create,
    Signin,
    Renew,
    Write,
    Ws,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Create => "create",
            Scope::Signin => "signin",
            Scope::Renew => "renew",
            Scope::Write => "write",
            Scope::Ws => "ws",
        }
    }

    /// The scope of a request, from its method and path (`None`: not limited).
    pub fn of(method: &Method, path: &str) -> Option<Scope> {
        let write = *method == Method::PUT || *method == Method::DELETE;
        match (method, path) {
            (&Method::POST, "/v1/session") => Some(Scope::Create),
            (&Method::POST, "/v1/session/signin") => Some(Scope::Signin),
            (&Method::POST, "/v1/session/renew") => Some(Scope::Renew),
            (&Method::GET, "/v1/ws") => Some(Scope::Ws),
            _ if write
                && (path.starts_with("/v1/session/data/")
                    || path.starts_with("/v1/drafts/")
                    || (path.starts_with("/v1/rooms/") && path.ends_with("/snapshot"))) =>
            {
                Some(Scope::Write)
            }
            _ => None,
        }
    }
}

/// The two limiters of one scope (`None`: that key is not limited).
struct Limiters {
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    session: Option<DefaultKeyedRateLimiter<TokenHash>>,
}

fn quota(r: Rate) -> Option<Quota> {
    let burst = NonZeroU32::new(r.burst)?;
    // Validation keeps `period / burst` at one nanosecond or more.
    Quota::with_period(r.period / r.burst).map(|q| q.allow_burst(burst))
}

impl Limiters {
    fn new(l: &crate::config::ScopeLimits) -> Limiters {
        Limiters {
            ip: quota(l.per_ip).map(DefaultKeyedRateLimiter::keyed),
            session: quota(l.per_session).map(DefaultKeyedRateLimiter::keyed),
        }
    }
}

/// Every scope's limiters; built once from `[rate_limits]`.
pub struct RateLimits {
    enabled: bool,
    scopes: [Limiters; 5],
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(c: &RateLimitsConfig) -> RateLimits {
        RateLimits {
            enabled: c.enabled,
            scopes: [
                Limiters::new(&c.create),
                Limiters::new(&c.signin),
                Limiters::new(&c.renew),
                Limiters::new(&c.write),
                Limiters::new(&c.ws),
            ],
            clock: DefaultClock::default(),
        }
    }

    /// `false` when `[rate_limits] enabled = false`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn scope(&self, s: Scope) -> &Limiters {
        &self.scopes[s as usize]
    }

    /// Takes one cell from the IP's and the session's limiter; over either limit the
    /// error says when to retry.
    pub fn check(
        &self,
        scope: Scope,
        ip: Option<IpAddr>,
        session: Option<&TokenHash>,
    ) -> Result<(), ApiError> {
        let l = self.scope(scope);
        let over = |wait: Duration| {
            metrics::counter!("sessiond_rate_limited_total", "scope" => scope.as_str())
                .increment(1);
            // Whole seconds, rounded up, so a client that waits that long gets through.
            let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64;
            ApiError::RateLimited { retry_after: secs }
        };
        if let (Some(lim), Some(ip)) = (&l.ip, ip) {
            lim.check_key(&ip)
                .map_err(|n| over(n.wait_time_from(self.clock.now())))?;
        }
        if let (Some(lim), Some(s)) = (&l.session, session) {
            lim.check_key(s)
                .map_err(|n| over(n.wait_time_from(self.clock.now())))?;
        }
        Ok(())
    }

    /// Forgets keys whose limiter is back to full (they would allow a full burst
    /// anyway), so the maps hold only recently active clients.
    fn prune(&self) {
        for l in &self.scopes {
            if let Some(m) = &l.ip {
                m.retain_recent();
                m.shrink_to_fit();
            }
            if let Some(m) = &l.session {
                m.retain_recent();
                m.shrink_to_fit();
            }
        }
    }
}

/// How often idle keys are dropped from the limiters' maps.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The janitor keeping the key maps bounded; owned by the server guard.
pub fn spawn_janitor(limits: Arc<RateLimits>, token: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => limits.prune(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_requests() {
        assert_eq!(Scope::of(&Method::POST, "/v1/session"), Some(Scope::Create));
        assert_eq!(Scope::of(&Method::GET, "/v1/session"), None);
        assert_eq!(
            Scope::of(&Method::PUT, "/v1/session/data/k"),
            Some(Scope::Write)
        );
        assert_eq!(
            Scope::of(&Method::DELETE, "/v1/drafts/c/attachments/a"),
            Some(Scope::Write)
        );
        assert_eq!(
            Scope::of(&Method::PUT, "/v1/rooms/r/snapshot"),
            Some(Scope::Write)
        );
        assert_eq!(Scope::of(&Method::GET, "/v1/drafts/c"), None);
        assert_eq!(Scope::of(&Method::GET, "/v1/ws"), Some(Scope::Ws));
    }

    #[test]
    fn retry_after_is_rounded_up() {
        let mut c = crate::config::Config::default().rate_limits;
        c.renew.per_ip = Rate {
            burst: 1,
            period: Duration::from_millis(1500),
        };
        let l = RateLimits::new(&c);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(l.check(Scope::Renew, ip, None).is_ok());
        match l.check(Scope::Renew, ip, None) {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 2),
            other => panic!("{other:?}"),
        }
        // Another IP has its own limit.
        assert!(l
            .check(Scope::Renew, Some(IpAddr::from([10, 0, 0, 2])), None)
            .is_ok());
    }
}
