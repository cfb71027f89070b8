//! Per-role timeout policies and the SPEC's defaults.

use crate::quota::Quotas;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a session of one role may idle and live, and how its connections are watched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Inactivity after which the session ends (`idle_timeout`).
    pub idle_timeout: Duration,
    /// Lifetime from creation after which the session ends whatever happens.
    pub absolute_timeout: Duration,
    /// How long before the idle deadline connections get `expiry_warning`.
    pub warn_before: Duration,
    /// Interval of server pings and the announced client ping interval.
    pub heartbeat_interval: Duration,
    /// Intervals with nothing heard before a connection is declared lost.
    pub heartbeat_misses: u32,
    /// Room patterns every session of the role may join (see [`crate::rooms`]); empty:
    /// none, rooms then need another grant.
    pub rooms: Vec<String>,
    /// Storage limits of the role's signed-in sessions and their principals.
    pub quotas: Quotas,
    /// Storage limits of the role's anonymous sessions (not signed in).
    pub anonymous_quotas: Quotas,
}

impl Policy {
    pub const fn new(idle: u64, absolute: u64) -> Self {
        Policy {
            idle_timeout: Duration::from_secs(idle),
            absolute_timeout: Duration::from_secs(absolute),
            warn_before: Duration::from_secs(120),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_misses: 3,
            rooms: Vec::new(),
            quotas: Quotas::SIGNED_IN,
            anonymous_quotas: Quotas::ANONYMOUS,
        }
    }

    /// The limits for a session whose principal is `anonymous` or not.
    pub fn quotas_for(&self, anonymous: bool) -> &Quotas {
        if anonymous {
            &self.anonymous_quotas
        } else {
            &self.quotas
        }
    }

    pub fn idle_ms(&self) -> i64 {
        self.idle_timeout.as_millis() as i64
    }
    pub fn absolute_ms(&self) -> i64 {
        self.absolute_timeout.as_millis() as i64
    }
    pub fn warn_ms(&self) -> i64 {
        self.warn_before.as_millis() as i64
    }

    /// Rejects policies that cannot work (zero timeouts, warning longer than idle).
    pub fn validate(&self, role: &str) -> Result<(), String> {
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return Err(format!("role {role}: timeouts must be positive"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_misses == 0 {
            return Err(format!(
                "role {role}: heartbeat interval and misses must be positive"
            ));
        }
        if let Some(e) = self
            .rooms
            .iter()
            .find_map(|p| crate::rooms::validate_pattern(p).err())
        {
            return Err(format!("role {role}: {e}"));
        }
        if self.warn_before >= self.idle_timeout {
            return Err(format!(
                "role {role}: warn_before must be shorter than idle_timeout"
            ));
        }
        Ok(())
    }
}

/// Policies by role name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    pub roles: BTreeMap<String, Policy>,
    /// Role given to new (anonymous) sessions.
    pub default_role: String,
}

impl Default for Policies {
    /// The SPEC's defaults: editor idle 15 min, viewer 60 min, public 5 min; absolute
    /// 12 h (1 h for public links); warn 2 min before; heartbeat 30 s, 3 misses.
    fn default() -> Self {
        let mut roles = BTreeMap::new();
        roles.insert("editor".into(), Policy::new(15 * 60, 12 * 3600));
        roles.insert("viewer".into(), Policy::new(60 * 60, 12 * 3600));
        roles.insert("public".into(), Policy::new(5 * 60, 3600));
        Policies {
            roles,
            default_role: "editor".into(),
        }
    }
}

impl Policies {
    pub fn get(&self, role: &str) -> Option<&Policy> {
        self.roles.get(role)
    }
    pub fn validate(&self) -> Result<(), String> {
        if !self.roles.contains_key(&self.default_role) {
            return Err(format!(
                "default_role {:?} has no [roles] entry",
                self.default_role
            ));
        }
        self.roles.iter().try_for_each(|(n, p)| p.validate(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let p = Policies::default();
        assert_eq!(
            p.get("editor").unwrap().idle_timeout,
            Duration::from_secs(900)
        );
        assert_eq!(
            p.get("viewer").unwrap().idle_timeout,
            Duration::from_secs(3600)
        );
        assert_eq!(
            p.get("public").unwrap().absolute_timeout,
            Duration::from_secs(3600)
        );
        assert!(p.validate().is_ok());
    }

    #[test]
    fn warn_longer_than_idle_is_refused() {
        let mut p = Policy::new(60, 600);
        p.warn_before = Duration::from_secs(60);
        assert!(p.validate("x").is_err());
    }
}
