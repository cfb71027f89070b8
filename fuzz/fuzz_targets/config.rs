//! The configuration loader: a TOML file plus `SESSIOND_*` environment variables, loaded
//! by the real `Config::load`, then everything the server builder derives from it before
//! any IO (cookie name, validation, policies, ticket keys, the drafts keyring, rate
//! limiters, trusted proxies). Bad input is an error naming its key, never a panic.
//!
//! Input: the TOML text, then optionally a NUL and `NAME=value` lines set as environment
//! variables (libFuzzer runs the target on one thread, so setting them is sound here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_server::config::Config;
use sessiond_server::crypto::Keyring;
use sessiond_server::ratelimit::RateLimits;
use sessiond_server::tickets::Tickets;
use std::cell::RefCell;
use std::path::PathBuf;

thread_local! {
    static SET: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn file() -> PathBuf {
    std::env::temp_dir().join(format!("sessiond-fuzz-config-{}.toml", std::process::id()))
}

fn set_env(lines: &str) {
    SET.with(|set| {
        let mut set = set.borrow_mut();
        for k in set.drain(..) {
            std::env::remove_var(k);
        }
        for line in lines.lines().take(16) {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            // Only the loader's own prefix, and only names the platform accepts.
            let name = format!("SESSIOND_{k}");
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                continue;
            }
            std::env::set_var(&name, v);
            set.push(name);
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    set_env(env);
    let path = file();
    std::fs::write(&path, toml).expect("write the config file");
    let Ok(mut config) = Config::load(Some(&path)) else {
        return;
    };
    config.cookie.name = config.cookie_name();
    let valid = config.validate();
    // Debug must print without panicking (and redacts secrets: checked in the suite).
    let _ = format!("{config:?}");
    if valid.is_err() {
        return;
    }
    let policies = config.policies();
    assert!(policies.validate().is_ok());
    let _ = Tickets::from_config(&config);
    let _ = Keyring::from_config(&config);
    let _ = RateLimits::new(&config.rate_limits);
    let _ = sessiond_server::client::parse_trusted(&config.trusted_proxies);
});
