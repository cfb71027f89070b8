//! Who is calling: the client IP (after trusted proxies) and user agent.

use axum::http::HeaderMap;
use ipnet::IpNet;
use sessiond_core::lifecycle::ClientInfo;
use std::net::{IpAddr, SocketAddr};

pub use crate::sessions::Seen;

/// The longest user agent kept (audit rows stay small).
const MAX_UA: usize = 512;

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let xff: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        xff.into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

pub fn client_info(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> ClientInfo {
    client_seen(peer, headers, trusted).info()
}

/// [`client_info`] borrowed from the request: the hot path's form.
pub fn client_seen<'h>(
    peer: Option<SocketAddr>,
    headers: &'h HeaderMap,
    trusted: &[IpNet],
) -> Seen<'h> {
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| match s.char_indices().nth(MAX_UA) {
            Some((end, _)) => &s[..end],
            None => s,
        });
    Seen {
        ip: client_ip(peer, headers, trusted),
        user_agent,
    }
}

/// The caller as seen by the server (peer address after trusted proxies, user agent).
/// Works with or without `ConnectInfo` (a router embedded without it sees no peer).
pub struct Client(pub ClientInfo);

impl axum::extract::FromRequestParts<crate::state::AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Client(client_info(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// Parses `trusted_proxies` entries (plain IPs become /32 or /128).
pub fn parse_trusted(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        assert_eq!(
            client_ip(Some(peer), &h, &[]),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn trusted_peer_uses_rightmost_untrusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let t = parse_trusted(&["10.0.0.0/8".into()]);
        assert_eq!(
            client_ip(Some(peer), &h, &t),
            Some("1.2.3.4".parse().unwrap())
        );
    }
}
