//! The real gateway under test, in process on 127.0.0.1:0, started by [`GatewayBuilder`].

use std::net::SocketAddr;

use common::config::Env;
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

/// The variables every test gateway gets, before the test's own.
pub fn base_vars(upstream: &str) -> Vec<(String, String)> {
    [
        ("GATEWAY_SIGNING_SECRET", SIGNING_SECRET),
        ("TASK_SERVICE_URL", upstream),
        ("HEALTH_CHECK_INTERVAL_MS", "100"),
        ("UPSTREAM_CONNECT_TIMEOUT_MS", "300"),
        ("CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// [`base_vars`] plus `BETTER_AUTH_SECRET`.
pub fn shared_secret_vars(upstream_url: &str) -> Vec<(String, String)> {
    let mut vars = base_vars(upstream_url);
    vars.push(("BETTER_AUTH_SECRET".into(), HMAC_SECRET.into()));
    vars
}

impl TestGateway {
    /// A gateway in front of `upstream_url` taking HS256 tokens with [`HMAC_SECRET`], ready.
    pub async fn with_shared_secret(upstream_url: &str) -> Self {
        Self::start(shared_secret_vars(upstream_url)).await
    }

    /// Starts a gateway with `vars` and waits until `/readyz` says ready.
    pub async fn start(vars: Vec<(String, String)>) -> Self {
        let gateway = Self::start_unready(vars).await;
        gateway.wait_ready().await;
        gateway
    }

    /// Starts a gateway without waiting for readiness.
    pub async fn start_unready(vars: Vec<(String, String)>) -> Self {
        init_logs();
        let config = Config::from_env(&Env::from_pairs(vars)).expect("test configuration");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
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
