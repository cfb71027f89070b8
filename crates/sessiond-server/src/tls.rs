//! TLS for the listeners (`[tls]`, `[internal_tls]`): a certificate chain and a private
//! key read from PEM files, served through rustls with HTTP/2 offered by ALPN, and
//! reloaded in place (on [`CertReloader::reload`], which the binary calls on SIGHUP, and
//! when the files' modification time or size changes) without touching the
//! connections already open: only new handshakes see the new certificate. A replacement
//! that does not load (unreadable, not PEM, key not matching the certificate) is logged
//! and the certificate in use is kept.
//!
//! rustls with its `ring` provider: it builds with a C compiler alone (aws-lc-rs needs
//! cmake and, on some targets, NASM), and `ring` is already what the Redis store's
//! and reqwest's rustls use, so the binary carries one TLS stack and one crypto library.

use crate::config::TlsConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// A certificate or key file that cannot be used; the message names the setting and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}: cannot read {}: {source}", path.display())]
    Read {
        section: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{section}: {} is not a PEM certificate chain: {reason}", path.display())]
    Certificate {
        section: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}: {} is not a usable PEM private key: {reason}", path.display())]
    Key {
        section: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}: the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    Mismatch {
        section: &'static str,
        cert: PathBuf,
        key: PathBuf,
    },
    #[error("{section}: {reason}")]
    Setup {
        section: &'static str,
        reason: String,
    },
}

/// Most bytes read from a certificate or key file: real chains are a few kilobytes, and
/// a path pointed at something huge by mistake must not be read whole.
const MAX_PEM_FILE: u64 = 1 << 20;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_bounded(section: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_err = |source| TlsError::Read {
        section,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(read_err(std::io::Error::other(format!(
            "larger than {MAX_PEM_FILE} bytes"
        ))));
    }
    Ok(bytes)
}

/// Reads and checks one certificate chain and key: both parse, the chain is not empty,
/// and the key is the one the first (leaf) certificate names.
pub fn load(section: &'static str, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_bounded(section, cert)?;
    let cert_err = |reason: String| TlsError::Certificate {
        section,
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let key_pem = read_bounded(section, key)?;
    let key_err = |reason: String| TlsError::Key {
        section,
        path: key.to_owned(),
        reason,
    };
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The provider cannot tell this key's public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            section,
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
        Err(e) => Err(cert_err(e.to_string())),
    }
}

/// What the poller compares to notice a replaced file: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// One listener's certificate: the one every new handshake gets, swapped on reload.
pub struct CertReloader {
    section: &'static str,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when they were last read, so a failed load is not retried
    /// until one of them changes again.
    seen: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("section", &self.section)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertReloader {
    /// Loads the files `config` names (`section` is its name in messages); `None` when
    /// the section sets no certificate.
    pub fn from_config(
        section: &'static str,
        config: &TlsConfig,
    ) -> Result<Option<Arc<CertReloader>>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        let seen = (stamp(&config.cert), stamp(&config.key));
        let certified = load(section, &config.cert, &config.key)?;
        Ok(Some(Arc::new(CertReloader {
            section,
            cert: config.cert.clone(),
            key: config.key.clone(),
            interval: config.reload_interval,
            current: RwLock::new(Arc::new(certified)),
            seen: Mutex::new(seen),
        })))
    }

    /// Reads the files again; on success new handshakes get the new certificate, on
    /// failure the error is logged and returned and the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            (stamp(&self.cert), stamp(&self.key));
        match load(self.section, &self.cert, &self.key) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
                metrics::counter!("sessiond_tls_reloads_total", "result" => "ok").increment(1);
                tracing::info!(section = self.section, cert = %self.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("sessiond_tls_reloads_total", "result" => "error").increment(1);
                tracing::warn!(section = self.section, error = %e, "TLS certificate not reloaded: keeping the one in use");
                Err(e)
            }
        }
    }

    /// Reloads if either file changed since it was last read.
    fn poll(&self) {
        let now = (stamp(&self.cert), stamp(&self.key));
        // A file missing for a moment (replaced by rename) is not a change yet.
        if now.0.is_none() || now.1.is_none() {
            return;
        }
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            let _ = self.reload();
        }
    }

    /// The rustls configuration serving this certificate: TLS 1.2 and 1.3, ALPN `h2`
    /// then `http/1.1` (a client that offers neither gets HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup {
                section: self.section,
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Polls the files every `reload_interval` until `token` is cancelled.
    pub fn spawn_watch(self: &Arc<Self>, token: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = token.cancelled() => return,
                }
                // Reading files blocks; off the async workers.
                let me = this.clone();
                let _ = tokio::task::spawn_blocking(move || me.poll()).await;
            }
        })
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The certificates of both listeners, for reloading them together (SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct TlsReload {
    pub(crate) listeners: Vec<Arc<CertReloader>>,
}

impl TlsReload {
    /// Whether any listener serves TLS.
    pub fn is_enabled(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// Reloads every listener's certificate; the first failure is returned (each
    /// failing listener keeps its current certificate and logs why).
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut first = None;
        for l in &self.listeners {
            if let Err(e) = l.reload() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Checks the files of both TLS sections as the server would load them at start
/// (`sessiond config check`); returns how many sections are on.
pub fn check(config: &crate::config::Config) -> Result<usize, TlsError> {
    let mut on = 0;
    for (section, c) in [("tls", &config.tls), ("internal_tls", &config.internal_tls)] {
        if c.enabled() {
            load(section, &c.cert, &c.key)?;
            on += 1;
        }
    }
    Ok(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for localhost and its key, as PEM.
    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    fn serial(r: &CertReloader) -> Vec<u8> {
        r.current
            .read()
            .unwrap()
            .end_entity_cert()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn polling_reloads_changed_files_once_and_keeps_the_old_pair_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c1, k1) = self_signed();
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let config = TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval: Duration::from_secs(1),
        };
        let r = CertReloader::from_config("tls", &config).unwrap().unwrap();
        let first = serial(&r);
        r.poll();
        assert_eq!(serial(&r), first, "nothing changed, nothing reloaded");

        // A certificate without its key: refused, the first pair stays.
        let (c2, k2) = self_signed();
        std::fs::write(&cert, &c2).unwrap();
        r.poll();
        assert_eq!(serial(&r), first);
        // The key arrives: both files now belong together and are taken.
        std::fs::write(&key, &k2).unwrap();
        r.poll();
        let second = serial(&r);
        assert_ne!(second, first);

        // A file that vanishes for a moment (replaced by rename) is no change yet.
        std::fs::remove_file(&key).unwrap();
        r.poll();
        assert_eq!(serial(&r), second);
    }

    #[test]
    fn load_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c, k) = self_signed();
        std::fs::write(&cert, &c).unwrap();
        std::fs::write(&key, &k).unwrap();
        assert!(load("tls", &cert, &key).is_ok());
        // The key file given as the certificate: it has no CERTIFICATE block.
        let e = load("tls", &key, &key).unwrap_err().to_string();
        assert!(
            e.starts_with("tls: ") && e.contains("no CERTIFICATE block"),
            "{e}"
        );
        let e = load("internal_tls", &cert, &cert).unwrap_err().to_string();
        assert!(
            e.contains("internal_tls") && e.contains("private key"),
            "{e}"
        );
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; MAX_PEM_FILE as usize + 1]).unwrap();
        let e = load("tls", &big, &key).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        // Disabled config: no reloader, nothing read.
        assert!(CertReloader::from_config("tls", &TlsConfig::default())
            .unwrap()
            .is_none());
    }
}
