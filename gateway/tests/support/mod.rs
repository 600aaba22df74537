//! Test support: the real gateway, the real task service, an echo upstream, a Better Auth-like
//! JWKS server and token makers, all on 127.0.0.1:0, plus raw-socket HTTP for the bytes a client
//! library would normalise away. Shared by the integration tests and the benchmarks.
#![allow(dead_code)]

pub mod invariants;
pub mod redis;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::config::Env;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use gateway::{Config, Gateway};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The assertion secret shared by the gateway and the upstreams in tests.
pub const SIGNING_SECRET: &str = "test-signing-secret-0123456789abcdef";
/// The HS256 secret (`BETTER_AUTH_SECRET`) in tests.
pub const HMAC_SECRET: &str = "test-better-auth-secret-0123456789abcd";
/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Logs only when `TEST_LOG` is set.
pub fn init_logs() {
    common::telemetry::init_for_tests();
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Polls `condition` every 20 ms until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Upstreams

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

// ---------------------------------------------------------------------------------------------
// Better Auth stand-in: a JWKS endpoint and Ed25519 keys

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

/// An Ed25519 signing key, as Better Auth's JWT plugin makes by default.
pub struct Ed25519Key {
    pub kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

impl Ed25519Key {
    pub fn generate(kid: &str) -> Self {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = signing.to_pkcs8_der().expect("PKCS#8");
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: signing.verifying_key().to_bytes(),
        }
    }

    /// The public JWK, exactly as Better Auth publishes it (no `use`).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": "EdDSA",
        })
    }

    /// The raw public key bytes (what an algorithm-confusion attacker would use as an HMAC key).
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as SubjectPublicKeyInfo PEM and DER, the other encodings an attacker
    /// might try as an HMAC key.
    pub fn public_pem_and_der(&self) -> (String, Vec<u8>) {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.public).expect("public key");
        let pem = key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("PEM");
        let der = key.to_public_key_der().expect("DER").as_bytes().to_vec();
        (pem, der)
    }

    /// A token with any header JSON (odd `kid`s, `jku`, embedded `jwk`…), signed with this key.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        sign_raw(header, claims, &self.encoding, Algorithm::EdDSA)
    }

    /// A token signed with this key: header `{"alg":"EdDSA","kid":...}`, no `typ`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signed with this key but naming another `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = None;
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign EdDSA")
    }
}

/// A P-521 key, as Better Auth's JWT plugin makes when configured for ES512.
pub struct P521Key {
    pub kid: String,
    signing: p521::ecdsa::SigningKey,
}

impl P521Key {
    pub fn generate(kid: &str) -> Self {
        use rand::RngCore;
        // Below 2^520, so always less than the group order.
        let mut secret = [0_u8; 66];
        rand::rngs::OsRng.fill_bytes(&mut secret[1..]);
        Self {
            kid: kid.to_owned(),
            signing: p521::ecdsa::SigningKey::from_slice(&secret).expect("a P-521 scalar"),
        }
    }

    /// The public JWK as Better Auth (jose) exports it: 66-byte `x` and `y`.
    pub fn jwk(&self) -> Value {
        let point = self.signing.verifying_key().to_sec1_point(false);
        json!({
            "kty": "EC",
            "crv": "P-521",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
            "kid": self.kid,
            "alg": "ES512",
        })
    }

    /// A token with any header JSON, signed with this key (ES512: SHA-512, r || s).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        use p521::ecdsa::signature::Signer;
        let signing_input = signing_input(header, claims);
        let signature: p521::ecdsa::Signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// A token signed with this key: header `{"alg":"ES512","kid":...}`, no `typ`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({"alg": "ES512", "kid": self.kid}), claims)
    }
}

/// The payload Better Auth's JWT plugin signs by default: the user object, `sub`, `iat`, a
/// 15-minute `exp`, and `iss` = `aud` = the base URL.
pub fn better_auth_claims(base_url: &str, user_id: &str) -> Value {
    let iat = now();
    json!({
        "id": user_id,
        "name": "Alice Example",
        "email": format!("{user_id}@example.com"),
        "emailVerified": true,
        "image": null,
        "createdAt": "2026-11-01T10:00:00.000Z",
        "updatedAt": "2026-11-02T10:00:00.000Z",
        "sub": user_id,
        "iat": iat,
        "exp": iat + 15 * 60,
        "iss": base_url,
        "aud": base_url,
    })
}

/// Plain claims for an HS256 token: `sub`, `iat`, `exp` in 15 minutes.
pub fn claims_for(sub: &str) -> Value {
    json!({"sub": sub, "email": format!("{sub}@example.com"), "iat": now(), "exp": now() + 900})
}

/// `claims` with `changes` applied; a `null` change removes the claim.
pub fn with_claims(mut claims: Value, changes: &Value) -> Value {
    for (key, value) in changes.as_object().expect("changes are an object") {
        if value.is_null() {
            claims
                .as_object_mut()
                .expect("claims are an object")
                .remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

/// Signs `claims` with `alg` (an HMAC algorithm) and `secret`.
pub fn hmac_token(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign HMAC")
}

/// An HS256 token with the test secret.
pub fn hs256(claims: &Value) -> String {
    hmac_token(Algorithm::HS256, HMAC_SECRET.as_bytes(), claims)
}

/// A compact JWS with any header and claims JSON, signed with `key` under `alg` (which the header
/// need not name: that is the point of some attacks).
pub fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let signing_input = signing_input(header, claims);
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).expect("sign raw JWS");
    format!("{signing_input}.{signature}")
}

/// `header.payload`, each base64url JSON: what a JWS signature covers.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A token with the given header and claims and an empty signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

// ---------------------------------------------------------------------------------------------
// The gateway

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
        Self::start_unready_on(vars, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a gateway whose admin listener is at `admin` (an address another process was told
    /// before the gateway started), and waits until it is ready.
    pub async fn start_with_admin(vars: Vec<(String, String)>, admin: SocketAddr) -> Self {
        let gateway = Self::start_unready_on(vars, admin).await;
        gateway.wait_ready().await;
        gateway
    }

    async fn start_unready_on(vars: Vec<(String, String)>, admin: SocketAddr) -> Self {
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

// ---------------------------------------------------------------------------------------------
// The real task service

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
            ("GATEWAY_SIGNING_SECRET", SIGNING_SECRET),
            ("DATABASE_URL", database_url),
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

/// A user of the system: a path user id and a bearer token, with helpers that read like the API.
pub struct User<'a> {
    pub gateway: &'a TestGateway,
    pub id: String,
    pub token: String,
}

impl<'a> User<'a> {
    /// A user with an HS256 token for `id`.
    pub fn new(gateway: &'a TestGateway, id: &str) -> Self {
        Self {
            gateway,
            id: id.to_owned(),
            token: hs256(&claims_for(id)),
        }
    }

    /// `method /api/{id}/tasks{path}` with this user's token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .gateway
            .client
            .request(
                method,
                self.gateway.url(&format!("/api/{}/tasks{path}", self.id)),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("gateway reachable")
    }

    /// Creates a task; returns its id.
    pub async fn create(&self, title: &str) -> i64 {
        let response = self
            .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
            .await;
        assert_eq!(response.status(), 201, "create {title:?}");
        let task: Value = response.json().await.expect("task JSON");
        task["id"].as_i64().expect("task id")
    }

    /// Every task of this user, as the exact bytes the API returns (to compare before and after
    /// an attack).
    pub async fn snapshot(&self) -> String {
        let response = self
            .call(
                reqwest::Method::GET,
                "?sort=created&order=asc&limit=500",
                None,
            )
            .await;
        assert_eq!(response.status(), 200, "list");
        response.text().await.expect("list body")
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// The `gateway` executable Cargo built for these tests.
pub const GATEWAY_BINARY: &str = env!("CARGO_BIN_EXE_gateway");

/// A port that was free a moment ago (the binary binds by address, not by listener).
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// A running `gateway` binary, killed when dropped.
pub struct Served {
    pub child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `gateway` binary with exactly `vars` in its environment.
pub fn serve(vars: &[(String, String)], upgrade: bool) -> Served {
    let mut command = Command::new(GATEWAY_BINARY);
    if upgrade {
        command.arg("--upgrade");
    }
    let child = command
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    Served { child }
}

/// The environment of a `gateway` binary in front of `upstream` (HS256 secret), listening on
/// fresh ports, with its upgrade socket at `sock`; and the two addresses.
pub fn binary_vars(
    upstream: &EchoUpstream,
    sock: &Path,
) -> (Vec<(String, String)>, SocketAddr, SocketAddr) {
    let (listen, admin) = (free_port(), free_port());
    let mut vars = shared_secret_vars(&upstream.url());
    vars.extend([
        ("GATEWAY_LISTEN".to_owned(), listen.to_string()),
        ("GATEWAY_ADMIN_LISTEN".to_owned(), admin.to_string()),
        (
            "GATEWAY_UPGRADE_SOCK".to_owned(),
            sock.display().to_string(),
        ),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ]);
    (vars, listen, admin)
}

/// Sends signal `name` (`TERM`, `QUIT`…) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits until `served` exits, failing after `limit`; how long it took.
pub async fn wait_exit(served: &mut Served, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if served.child.try_wait().expect("wait").is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP, for the bytes reqwest would normalise away

/// One HTTP/1.1 response, read by `Content-Length`.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name` (any case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Writes `request` to `addr` and reads one response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end;
            }
            let read = stream.read(&mut chunk).await.expect("read response");
            assert!(read > 0, "connection closed before a response head");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let (mut response, length) =
            parse_head(&buffer[..head_end]).expect("an HTTP/1.x status line");
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let read = stream.read(&mut chunk).await.expect("read body");
            assert!(read > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..read]);
        }
        body.truncate(length);
        response.body = body;
        response
    })
    .await
    .expect("a response in time")
}

/// A response head (without the blank line) as a response with no body yet, and its
/// `Content-Length` (0 when absent); `None` when the first line is not an HTTP/1.x status line.
fn parse_head(head: &[u8]) -> Option<(RawResponse, usize)> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    Some((response, length))
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

/// Writes `request` on one connection and reads until the server closes it or goes quiet for
/// `quiet`, then parses every response it sent (for pipelining and smuggling probes, where the
/// number of responses is the finding). Returns them and whether the server closed.
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    quiet: Duration,
) -> (Vec<RawResponse>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything; that is not an error here.
    let _ = stream.write_all(request).await;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + PATIENCE;
    let closed = loop {
        assert!(Instant::now() < deadline, "the server kept talking");
        match tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) => break false,
        }
    };
    (parse_responses(&buffer), closed)
}

/// Every complete HTTP/1.x response in `bytes`, in order (bodies framed by `Content-Length`).
pub fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while let Some(head_end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
        let Some((mut response, length)) = parse_head(&bytes[..head_end]) else {
            break;
        };
        let body_end = (head_end + 4 + length).min(bytes.len());
        response.body = bytes[head_end + 4..body_end].to_vec();
        responses.push(response);
        bytes = &bytes[body_end..];
    }
    responses
}
