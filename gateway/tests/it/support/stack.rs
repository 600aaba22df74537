//! The real gateway under test, in process on 127.0.0.1:0, started by [`GatewayBuilder`].

use std::net::SocketAddr;

use common::config::{Env, GATEWAY_SIGNING_SECRET};
use gateway::config::{
    BETTER_AUTH_SECRET, BETTER_AUTH_URL, CORS_ALLOWED_ORIGINS, HEALTH_CHECK_INTERVAL_MS,
    TASK_SERVICE_URL, UPSTREAM_CONNECT_TIMEOUT_MS,
};
use gateway::{Config, Gateway};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::clients::{RawResponse, raw_request};
use super::tokens::{claims_for, hs256};
use super::{HMAC_SECRET, PATIENCE, SIGNING_SECRET, eventually, init_logs};

/// The real gateway, serving on 127.0.0.1:0 until dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

/// A test gateway being put together, in front of one or more upstreams:
/// `TestGateway::builder(&upstream.url()).shared_secret().better_auth(&jwks.base_url())`, then
/// [`start`](Self::start) in process, or [`into_vars`](Self::into_vars) for the real binary.
pub struct GatewayBuilder {
    vars: Vec<(String, String)>,
    /// Where the admin listener binds (port 0 unless another process must know it first).
    admin: SocketAddr,
}

impl GatewayBuilder {
    /// Takes HS256 tokens signed with [`HMAC_SECRET`].
    pub fn shared_secret(self) -> Self {
        self.var(BETTER_AUTH_SECRET, HMAC_SECRET)
    }

    /// Takes tokens from the Better Auth at `base_url` (its JWKS, issuer and audience).
    pub fn better_auth(self, base_url: &str) -> Self {
        self.var(BETTER_AUTH_URL, base_url)
    }

    /// Sets one more variable (a later value wins).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.push((name.to_owned(), value.into()));
        self
    }

    /// Sets each of `vars`.
    pub fn vars(self, vars: &[(&str, &str)]) -> Self {
        vars.iter()
            .fold(self, |builder, (name, value)| builder.var(name, *value))
    }

    /// Binds the admin listener at `addr`, an address another process was told before the
    /// gateway started.
    pub fn admin_at(mut self, addr: SocketAddr) -> Self {
        self.admin = addr;
        self
    }

    /// The environment as built.
    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }

    /// Starts the gateway and waits until `/readyz` says ready.
    pub async fn start(self) -> TestGateway {
        let gateway = self.start_unready().await;
        gateway.wait_ready().await;
        gateway
    }

    /// Starts the gateway without waiting for readiness.
    pub async fn start_unready(self) -> TestGateway {
        TestGateway::launch(self.vars, self.admin).await
    }
}

impl TestGateway {
    /// A gateway in front of `upstream_url` (comma-separated replicas) with the settings every
    /// test gateway shares: the test signing secret, quick health checks and connect timeouts,
    /// and `http://localhost:3000` as the allowed CORS origin. It has no token source yet.
    pub fn builder(upstream_url: &str) -> GatewayBuilder {
        GatewayBuilder {
            vars: Vec::new(),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
        .var(GATEWAY_SIGNING_SECRET, SIGNING_SECRET)
        .var(TASK_SERVICE_URL, upstream_url)
        .var(HEALTH_CHECK_INTERVAL_MS, "100")
        .var(UPSTREAM_CONNECT_TIMEOUT_MS, "300")
        .var(CORS_ALLOWED_ORIGINS, "http://localhost:3000")
    }

    /// A gateway in front of `upstream_url` taking HS256 tokens with [`HMAC_SECRET`], ready.
    pub async fn with_shared_secret(upstream_url: &str) -> Self {
        Self::builder(upstream_url).shared_secret().start().await
    }

    async fn launch(vars: Vec<(String, String)>, admin: SocketAddr) -> Self {
        init_logs();
        let config = Config::from_env(&Env::from_pairs(vars)).expect("test configuration");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let admin = TcpListener::bind(admin).await.expect("bind admin");
        let addr = listener.local_addr().expect("local address");
        let admin_addr = admin.local_addr().expect("local address");
        let gateway = Gateway::build(&config).expect("gateway builds");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, admin, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin_addr,
            client: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("HTTP client"),
            stop: Some(stop),
        }
    }

    /// `http://gateway{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://admin{path}`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    pub async fn readyz(&self) -> u16 {
        match self.client.get(self.admin_url("/readyz")).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) {
        eventually("the gateway to be ready", || async {
            self.readyz().await == 200
        })
        .await;
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics reachable")
            .text()
            .await
            .expect("metrics body")
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("gateway reachable")
    }

    /// `GET target` (sent as written, never normalised), with a bearer token when given, on a
    /// connection of its own.
    pub async fn raw_get(&self, target: &str, token: Option<&str>) -> RawResponse {
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: gateway\r\n{authorization}Connection: close\r\n\r\n"
        );
        self.raw(request.as_bytes()).await
    }

    /// Sends raw request bytes and reads one response.
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        raw_request(self.addr, request).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The request line (without version) of [`assert_still_serving`].
pub const CANARY_REQUEST: &str = "GET /api/canary/tasks";

/// A request that must succeed after any attack: a fresh connection, a valid HS256 token for
/// `canary`, 200. Every adversarial test ends with it, so an attack that wedges the gateway (a
/// poisoned connection pool, a stuck task, a panic) fails the test that caused it.
pub async fn assert_still_serving(gateway: &TestGateway) {
    let token = hs256(&claims_for("canary"));
    let request = format!(
        "{CANARY_REQUEST} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    let response = gateway.raw(request.as_bytes()).await;
    assert_eq!(
        response.status,
        200,
        "the gateway stopped serving valid requests: {}",
        String::from_utf8_lossy(&response.body)
    );
}
