//! TLS on the public listener: the certificate from `GATEWAY_TLS_CERT`/`GATEWAY_TLS_KEY`, served
//! through rustls (TLS 1.2 and 1.3) with ALPN `h2` and `http/1.1`, and replaced without a restart.
//!
//! The rustls server config never holds a certificate itself: it asks a [`CertificateStore`]
//! on every handshake, which answers with the certified key it holds now. A [`TlsReloader`]
//! polls the two files' modification times; when either changes it loads and checks the pair
//! (the key must be the certificate's), and only a good pair replaces the one held. A bad pair
//! is logged in one line and counted (`gateway_tls_certificate_reloads_total{result="error"}`),
//! and the old certificate keeps being served. Open connections are never touched: a new
//! certificate is used by the handshakes that follow.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert, ServerConfig, version};

use crate::config::TlsConfig;
use crate::metrics::Metrics;

/// Why a certificate and key pair could not be used; each names the variable of the file at
/// fault (`GATEWAY_TLS_CERT`, `GATEWAY_TLS_KEY`).
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("GATEWAY_TLS_CERT: cannot read {path}: {reason}")]
    UnreadableCert { path: String, reason: String },
    #[error("GATEWAY_TLS_KEY: cannot read {path}: {reason}")]
    UnreadableKey { path: String, reason: String },
    #[error("GATEWAY_TLS_CERT: {path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("GATEWAY_TLS_KEY: {path} holds no PEM private key")]
    NoKey { path: String },
    #[error("GATEWAY_TLS_KEY: the key cannot serve the certificate: {reason}")]
    Unusable { reason: String },
}

/// The certificate the public listener serves now, and the files it came from.
pub struct CertificateStore {
    config: TlsConfig,
    current: ArcSwap<CertifiedKey>,
    /// The files' modification times when `current` was last loaded or refused, and the times
    /// of a change seen once and waiting to be seen again unchanged.
    seen: Mutex<Seen>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateStore")
            .field("cert_path", &self.config.cert_path)
            .field("key_path", &self.config.key_path)
            .finish_non_exhaustive()
    }
}

/// What says a file changed: its modification time, length and inode (a file renamed over it
/// is a new inode even within one clock tick).
type FileStamp = Option<(SystemTime, u64, u64)>;
type FileTimes = (FileStamp, FileStamp);

#[derive(Default)]
struct Seen {
    loaded: Option<FileTimes>,
    pending: Option<FileTimes>,
}

impl CertificateStore {
    /// Loads the configured pair; a bad one is a start error (there is no old one to keep).
    pub fn load(config: &TlsConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, CertificateError> {
        let times = file_times(config);
        let key = load_pair(&config.cert_path, &config.key_path)?;
        Ok(Arc::new(Self {
            config: config.clone(),
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(Seen {
                loaded: Some(times),
                pending: None,
            }),
            metrics,
        }))
    }

    /// Reloads the pair once either file has changed and then stayed unchanged for one more
    /// look (so a certificate and key replaced one after the other are read as a pair). Returns
    /// whether a new certificate is now served; a bad pair leaves the current one in place and
    /// is logged, once per change.
    pub fn reload_if_changed(&self) -> bool {
        let times = file_times(&self.config);
        {
            let Ok(mut seen) = self.seen.lock() else {
                return false;
            };
            if seen.loaded == Some(times) {
                seen.pending = None;
                return false;
            }
            if seen.pending != Some(times) {
                seen.pending = Some(times);
                return false;
            }
            seen.loaded = Some(times);
            seen.pending = None;
        }
        match load_pair(&self.config.cert_path, &self.config.key_path) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                self.metrics
                    .tls_certificate_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(
                    cert = %self.config.cert_path.display(),
                    "TLS certificate reloaded"
                );
                true
            }
            Err(err) => {
                self.metrics
                    .tls_certificate_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(error = %err, "TLS certificate not reloaded; the previous one is kept");
                false
            }
        }
    }

    /// A rustls server config for the public listener: TLS 1.2+, ALPN `h2` then `http/1.1`,
    /// the certificate asked of this store on every handshake.
    pub fn server_config(self: &Arc<Self>) -> ServerConfig {
        pingora::tls::install_default_crypto_provider();
        let mut config =
            ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    /// The acceptor for listeners the caller bound ([`crate::Gateway::serve`]).
    pub fn acceptor(self: &Arc<Self>) -> Acceptor {
        Acceptor::from_server_config(Arc::new(self.server_config()))
    }

    /// The settings for a pingora TLS listener ([`crate::Gateway::run_server`]): the same
    /// resolver, versions and ALPN.
    pub fn listener_settings(self: &Arc<Self>) -> Result<TlsSettings, Box<pingora::Error>> {
        // Paths are ignored once a resolver is set.
        let mut settings = TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        settings.enable_h2();
        Ok(settings)
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Polls the certificate files every `GATEWAY_TLS_RELOAD_MS`.
pub struct TlsReloader {
    pub store: Arc<CertificateStore>,
}

#[async_trait]
impl BackgroundService for TlsReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(self.store.config.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            // File reads are small and rare; they do not need a blocking thread.
            self.store.reload_if_changed();
        }
    }
}

fn file_times(config: &TlsConfig) -> FileTimes {
    use std::os::unix::fs::MetadataExt;
    let modified = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
    };
    (modified(&config.cert_path), modified(&config.key_path))
}

/// Reads a PEM certificate chain and its private key and checks that they belong together.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, CertificateError> {
    use pingora::tls::{CertificateDer, PrivateKeyDer};
    use rustls_pki_types::pem::PemObject;

    let cert_name = cert_path.display().to_string();
    let key_name = key_path.display().to_string();
    let cert_pem = std::fs::read(cert_path).map_err(|err| CertificateError::UnreadableCert {
        path: cert_name.clone(),
        reason: err.to_string(),
    })?;
    let key_pem = std::fs::read(key_path).map_err(|err| CertificateError::UnreadableKey {
        path: key_name.clone(),
        reason: err.to_string(),
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())
        .ok_or(CertificateError::NoCertificate { path: cert_name })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| CertificateError::NoKey { path: key_name })?;
    let provider = crypto_provider()?;
    CertifiedKey::from_der(chain, key, &provider).map_err(|err| CertificateError::Unusable {
        reason: err.to_string(),
    })
}

/// The process's rustls provider: ring's, which pingora installs.
fn crypto_provider() -> Result<Arc<CryptoProvider>, CertificateError> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| CertificateError::Unusable {
            reason: "no rustls crypto provider is installed".to_owned(),
        })
}
