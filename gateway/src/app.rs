//! Assembling the gateway from its configuration, and running it.
//!
//! [`Gateway::build`] makes every part once: the token verifier (with its JWKS store and
//! verified-token cache), the replica balancer, the proxy, the admin app and the background
//! tasks. Two drivers run those same parts:
//!
//! - [`Gateway::run_server`], for `main`: a pingora `Server` with the proxy and admin services
//!   and the background tasks, which handles SIGTERM (short drain) and SIGQUIT with `--upgrade`
//!   (graceful binary upgrade handing over the listening sockets);
//! - [`Gateway::serve`], for tests and embedding: already-bound tokio listeners (port 0 works)
//!   fed to the same proxy and admin apps, until a shutdown future resolves.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::{BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{AdminApp, PublicListener, Readiness};
use crate::client_limit::FailedTokenLimit;
use crate::config::Config;
use crate::cors::CorsPolicy;
use crate::drain::Draining;
use crate::explain::Explainer;
use crate::metrics::Metrics;
use crate::proxy::GatewayProxy;
use crate::rate_limit::UserRateLimit;
use crate::revocation::api::RevocationApi;
use crate::revocation::{LoadError, RevocationSync, Revocations};
use crate::tls::{CertificateError, CertificateStore, TlsReloader};
use crate::token::Verifier;
use crate::token::cache::TokenCache;
use crate::token::jwks::{JwksRefresher, JwksStore};
use crate::upgrade_socket::CheckedUpgradeSignals;
use crate::upstream::Upstreams;

/// Seconds the server keeps serving after SIGTERM before stopping, and the most it then waits
/// for in-flight requests: together well under Kubernetes' default 30 s termination grace.
const GRACE_PERIOD_SECONDS: u64 = 2;
const GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 3;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP client for the JWKS: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("{0}")]
    Pingora(#[from] Box<pingora::Error>),
    #[error("{0}")]
    Tls(#[from] CertificateError),
    #[error("{0}")]
    Revocations(#[from] LoadError),
}

/// Every part of a running gateway, built once from the configuration.
pub struct Gateway {
    proxy: GatewayProxy,
    admin: AdminApp,
    upstreams: Arc<Upstreams>,
    jwks_refresher: Option<JwksRefresher>,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
    /// The public listener's certificate, when TLS is configured.
    tls: Option<Arc<CertificateStore>>,
}

impl Gateway {
    /// Builds the parts; nothing runs or listens yet.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let tls = config
            .tls
            .as_ref()
            .map(|tls| CertificateStore::load(tls, Arc::clone(&metrics)))
            .transpose()?;
        let cache =
            TokenCache::with_budget(config.tokens.cache_capacity, config.tokens.cache_max_bytes);
        let jwks = config
            .tokens
            .jwks
            .as_ref()
            .map(|jwks| {
                JwksStore::new(
                    jwks.url.clone(),
                    jwks.fetch_timeout,
                    jwks.min_refetch_interval,
                    cache.clone(),
                    Arc::clone(&metrics),
                )
                .map(Arc::new)
            })
            .transpose()?;
        let jwks_refresher =
            config
                .tokens
                .jwks
                .as_ref()
                .zip(jwks.clone())
                .map(|(settings, store)| JwksRefresher {
                    store,
                    interval: settings.refresh_interval,
                });
        let verifier = Arc::new(Verifier::new(
            &config.tokens,
            jwks.clone(),
            cache,
            Arc::clone(&metrics),
        ));
        let upstreams = Arc::new(Upstreams::new(&config.upstream)?);
        let revocations = Arc::new(Revocations::open(&config.revocation, Arc::clone(&metrics))?);
        let rate_limit = UserRateLimit::new(config.rate_limit_per_user_per_second).map(Arc::new);
        let explainer = Explainer {
            verifier: Arc::clone(&verifier),
            rate_limit: rate_limit.clone(),
            revocations: Arc::clone(&revocations),
        };
        let proxy = GatewayProxy {
            verifier,
            upstreams: Arc::clone(&upstreams),
            cors: CorsPolicy::new(&config.cors_allowed_origins),
            signing_secret: config.signing_secret.clone(),
            metrics: Arc::clone(&metrics),
            rate_limit,
            revocations: Arc::clone(&revocations),
            failed_token_limit: FailedTokenLimit::new(&config.client_limit),
            exporting: config.tracing.is_some(),
        };
        let admin = AdminApp {
            readiness: Readiness {
                jwks,
                upstreams: Arc::clone(&upstreams),
                revocations: Arc::clone(&revocations),
                metrics: Arc::clone(&metrics),
                jwks_max_age: config
                    .tokens
                    .jwks
                    .as_ref()
                    .map_or(Duration::MAX, |jwks| jwks.max_age),
                public: Arc::new(PublicListener::at(config.listen)),
            },
            metrics: Arc::clone(&metrics),
            admin_token: config.admin_token.clone(),
            explainer,
            revocations: RevocationApi::new(Arc::clone(&revocations)),
        };
        Ok(Self {
            proxy,
            admin,
            upstreams,
            jwks_refresher,
            revocations,
            metrics,
            tls,
        })
    }

    /// The gateway's metrics registry.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs the production server until a signal stops it. With `upgrade`, the listening sockets
    /// are taken over from the running gateway at `config.upgrade_sock` (which is then sent
    /// SIGQUIT by the operator).
    pub fn run_server(self, config: &Config, upgrade: bool) -> Result<(), StartError> {
        let server_conf = ServerConf {
            threads: config.threads,
            // Unused when upgrades are off: the signal watch then never hands sockets over.
            upgrade_sock: config
                .upgrade_sock
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_default(),
            grace_period_seconds: Some(GRACE_PERIOD_SECONDS),
            graceful_shutdown_timeout_seconds: Some(GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS),
            ..ServerConf::default()
        };
        let options = Opt {
            upgrade,
            ..Opt::default()
        };
        let mut server = Server::new_with_opt_and_conf(options, server_conf);
        server.bootstrap();

        // The proxy's keep-alive connections get a drain window before shutdown closes them.
        let mut proxy = Service::new(
            "gateway".to_owned(),
            Draining::new(pingora::proxy::http_proxy(
                &server.configuration,
                self.proxy,
            )),
        );
        match &self.tls {
            Some(store) => {
                proxy.add_tls_with_settings(
                    &config.listen.to_string(),
                    None,
                    store.listener_settings()?,
                );
                server.add_service(GenBackgroundService::new(
                    "TLS certificate reload".to_owned(),
                    Arc::new(TlsReloader {
                        store: Arc::clone(store),
                    }),
                ));
            }
            None => proxy.add_tcp(&config.listen.to_string()),
        }
        let mut admin = Service::new("gateway admin".to_owned(), self.admin);
        admin.threads = Some(1);
        admin.add_tcp(&config.admin_listen.to_string());

        server.add_service(GenBackgroundService::new(
            "task-service discovery and health checks".to_owned(),
            self.upstreams.background(),
        ));
        if let Some(refresher) = self.jwks_refresher {
            server.add_service(GenBackgroundService::new(
                "JWKS refresh".to_owned(),
                Arc::new(refresher),
            ));
        }
        server.add_service(GenBackgroundService::new(
            "revocation store".to_owned(),
            Arc::new(RevocationSync(self.revocations)),
        ));
        server.add_service(proxy);
        server.add_service(admin);
        tracing::info!(
            listen = %config.listen,
            admin = %config.admin_listen,
            tls = self.tls.is_some(),
            "gateway starting"
        );
        server.run(RunArgs {
            shutdown_signal: Box::new(CheckedUpgradeSignals {
                socket: config.upgrade_sock.clone(),
            }),
        });
        Ok(())
    }

    /// Serves on already-bound listeners until `shutdown` resolves, with the background tasks
    /// running on the current tokio runtime.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        admin_listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        self.admin.readiness.public = Arc::new(PublicListener::bound());
        let (stop, stopped) = watch::channel(false);
        let proxy = Arc::new(pingora::proxy::http_proxy(
            &Arc::new(ServerConf::default()),
            self.proxy,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let acceptor = self.tls.as_ref().map(|store| Arc::new(store.acceptor()));
        tasks.spawn(accept_loop(listener, proxy, acceptor, stopped.clone()));
        tasks.spawn(accept_loop(
            admin_listener,
            Arc::new(self.admin),
            None,
            stopped.clone(),
        ));
        if let Some(store) = self.tls {
            let reloader = TlsReloader { store };
            let reloader_stop = stopped.clone();
            tasks.spawn(async move { reloader.start(reloader_stop).await });
        }
        let balancer = self.upstreams.background();
        let balancer_stop = stopped.clone();
        tasks.spawn(async move { balancer.start(balancer_stop).await });
        if let Some(refresher) = self.jwks_refresher {
            let refresher_stop = stopped.clone();
            tasks.spawn(async move { refresher.start(refresher_stop).await });
        }
        tasks.spawn(Arc::clone(&self.revocations).run(stopped.clone()));
        shutdown.await;
        // Receivers may all be gone already; then there is nothing left to stop.
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
    }
}

/// Accepts connections and hands each to `app` on its own task (after the TLS handshake, with
/// an `acceptor`), until `stopped` turns true.
async fn accept_loop<A>(
    listener: TcpListener,
    app: Arc<A>,
    acceptor: Option<Arc<Acceptor>>,
    mut stopped: watch::Receiver<bool>,
) where
    A: ServerApp + Send + Sync + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        // Small replies should not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let shutdown = stopped.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // As pingora's own listener does, so the proxy knows the client's address.
            let mut stream = pingora::protocols::l4::stream::Stream::from(stream);
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest.peer_addr.set(Some(peer.into()));
            stream.set_socket_digest(digest);
            tracing::trace!(%peer, "connection accepted");
            let stream: pingora::protocols::Stream = match acceptor {
                None => Box::new(stream),
                Some(acceptor) => match acceptor.tls_handshake(stream).await {
                    Ok(tls) => Box::new(tls),
                    Err(err) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                },
            };
            app.process_new(stream, &shutdown).await;
        });
    }
}
