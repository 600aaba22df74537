//! The servers a test stands up on 127.0.0.1:0: an echo upstream that records what reached it,
//! a Better Auth-like JWKS server, and the real task service.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use common::config::{Env, GATEWAY_SIGNING_SECRET};
use serde_json::{Value, json};
use task_service::config::DATABASE_URL;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::stack::CANARY_REQUEST;
use super::{PATIENCE, SIGNING_SECRET};

/// A server task that stops when told (or when dropped), closing its connections gracefully.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Spawns `serve`, which must return once the future it is given resolves.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(futures::future::BoxFuture<'static, ()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        Self {
            stop: Some(stop),
            task: Some(tokio::spawn(serve(shutdown))),
        }
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(PATIENCE, task).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An upstream that answers every request with what it received: method, target and headers.
/// `x-test-delay-ms` makes it wait before answering (to provoke gateway timeouts).
pub struct EchoUpstream {
    pub addr: SocketAddr,
    /// Requests other than health checks.
    pub requests: Arc<AtomicUsize>,
    /// Health checks (`GET /healthz`).
    pub health_checks: Arc<AtomicUsize>,
    /// `METHOD target` of every request other than health checks, in arrival order.
    pub seen: Arc<Mutex<Vec<String>>>,
    running: Running,
}

async fn echo(request: Request) -> impl IntoResponse {
    if let Some(delay) = request
        .headers()
        .get("x-test-delay-ms")
        .and_then(|value| value.to_str().ok()?.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({
        "method": request.method().as_str(),
        "target": request.uri().to_string(),
        "headers": headers,
    }))
}

impl EchoUpstream {
    /// Starts on a fresh port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts on `addr` (to bring a stopped upstream back on the same port).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind echo upstream");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(AtomicUsize::new(0));
        let health_checks = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (api_counter, health_counter) = (Arc::clone(&requests), Arc::clone(&health_checks));
        let log = Arc::clone(&seen);
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(echo)
            .layer(axum::middleware::from_fn(
                move |request: Request, next: axum::middleware::Next| {
                    let counter = if request.uri().path() == "/healthz" {
                        Arc::clone(&health_counter)
                    } else {
                        log.lock().expect("log lock").push(format!(
                            "{} {}",
                            request.method(),
                            request.uri()
                        ));
                        Arc::clone(&api_counter)
                    };
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        next.run(request).await
                    }
                },
            ));
        let running = Running::spawn(|shutdown| async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Self {
            addr,
            requests,
            health_checks,
            seen,
            running,
        }
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Requests received so far, other than health checks.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `METHOD target` of each request received so far, other than health checks.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log lock").clone()
    }

    /// [`Self::seen`] without the requests of [`assert_still_serving`].
    pub fn seen_besides_canary(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|request| !request.starts_with(CANARY_REQUEST))
            .collect()
    }
}

/// The headers an echo upstream reports having received, lower-cased names.
pub fn echoed_headers(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("name").to_ascii_lowercase(),
                pair[1].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

/// Serves `{"keys": [...]}` at `/api/auth/jwks`, like Better Auth's JWT plugin, and counts
/// fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), keys).await
    }

    /// Starts on `addr` (to bring up an endpoint the gateway was already configured with).
    pub async fn start_on(addr: SocketAddr, keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind JWKS");
        let addr = listener.local_addr().expect("local address");
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (Arc::clone(&keys), Arc::clone(&fetches));
        let app = Router::new().route(
            "/api/auth/jwks",
            get(move || {
                let keys = served.lock().expect("keys lock").clone();
                counter.fetch_add(1, Ordering::SeqCst);
                async move { Json(json!({ "keys": keys })) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            keys,
            fetches,
            task,
        }
    }

    /// The Better Auth base URL: `iss` and `aud` of its tokens.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("keys lock") = keys;
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real task service (`task_service::run`) on 127.0.0.1:0.
pub struct TaskService {
    pub addr: SocketAddr,
    running: Running,
}

impl TaskService {
    /// On a SQLite file in `data`.
    pub async fn start(data: &Path) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), data).await
    }

    /// On a SQLite file in `data`, at `addr` (to restart a stopped service on its port).
    pub async fn start_on(addr: SocketAddr, data: &Path) -> Self {
        let url = format!("sqlite://{}", data.join("tasks.db").display());
        Self::start_with_database(addr, &url).await
    }

    /// On any `DATABASE_URL`; the database must be reachable at start.
    pub async fn start_with_database(addr: SocketAddr, database_url: &str) -> Self {
        let env = Env::from_pairs([
            (GATEWAY_SIGNING_SECRET, SIGNING_SECRET),
            (DATABASE_URL, database_url),
        ]);
        let config = task_service::Config::from_env(&env).expect("task-service configuration");
        let listener = TcpListener::bind(addr).await.expect("bind task service");
        let addr = listener.local_addr().expect("local address");
        let running = Running::spawn(|shutdown| async move {
            if let Err(err) = task_service::run(listener, config, shutdown).await {
                panic!("task service failed: {err}");
            }
        });
        Self { addr, running }
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it, letting in-flight requests finish.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}
