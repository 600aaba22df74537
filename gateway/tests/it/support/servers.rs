//! The servers a test stands up on 127.0.0.1:0: an echo upstream that records what reached it,
//! a Better Auth-like JWKS server, the real task service, and an OTLP/HTTP collector that keeps
//! the spans both tiers export.

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
use super::{PATIENCE, SIGNING_SECRET, eventually};

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

    /// Serves `app` on `listener` until stopped.
    pub fn axum(listener: TcpListener, app: Router) -> Self {
        Self::spawn(|shutdown| async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        })
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
        let running = Running::axum(listener, app);
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

/// One exported span, as an OTLP/HTTP collector received it.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Attributes with their values rendered as text.
    pub attributes: Vec<(String, String)>,
    /// Every other text the span carries: its events' names and attributes, the resource's
    /// attributes, the `tracestate`.
    pub other_text: Vec<String>,
}

impl ExportedSpan {
    /// The value of attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Every text the span holds, for checking what it must not.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        [
            &self.name,
            &self.trace_id,
            &self.span_id,
            &self.parent_span_id,
        ]
        .into_iter()
        .map(String::as_str)
        .chain(
            self.attributes
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        )
        .chain(self.other_text.iter().map(String::as_str))
    }
}

/// An OTLP/HTTP collector: accepts `POST /v1/traces` (protobuf) and keeps every span.
pub struct Collector {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    _running: Running,
}

impl Collector {
    /// Starts on a fresh port.
    pub async fn start() -> Self {
        use axum::body::Bytes;
        use axum::http::{StatusCode, header};
        use axum::routing::post;
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        use prost::Message;

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let addr = listener.local_addr().expect("local address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
                };
                kept.lock()
                    .expect("spans lock")
                    .extend(flatten_export(request));
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
                    .into_response()
            }),
        );
        let running = Running::axum(listener, app);
        Self {
            addr,
            spans,
            _running: running,
        }
    }

    /// `http://127.0.0.1:port`, the value of `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits until a span matches `wanted`, and returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        wanted: impl Fn(&ExportedSpan) -> bool,
    ) -> ExportedSpan {
        let mut found = None;
        eventually(what, || {
            found = self.spans().into_iter().find(&wanted);
            std::future::ready(found.is_some())
        })
        .await;
        found.expect("found")
    }
}

/// The spans of one export request, each with its resource's service name.
fn flatten_export(
    request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Vec<ExportedSpan> {
    use opentelemetry_proto::tonic::common::v1::KeyValue;

    fn text_of(pairs: &[KeyValue]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|pair| {
                let value = pair
                    .value
                    .as_ref()
                    .and_then(|value| value.value.as_ref())
                    .map(any_value_text)
                    .unwrap_or_default();
                (pair.key.clone(), value)
            })
            .collect()
    }
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = text_of(
            &resource_spans
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default(),
        );
        let service = resource
            .iter()
            .find(|(key, _)| key == "service.name")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let resource_text: Vec<String> = resource
            .into_iter()
            .flat_map(|(key, value)| [key, value])
            .collect();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let mut other_text = resource_text.clone();
                other_text.push(span.trace_state.clone());
                for event in &span.events {
                    other_text.push(event.name.clone());
                    other_text.extend(
                        text_of(&event.attributes)
                            .into_iter()
                            .flat_map(|(key, value)| [key, value]),
                    );
                }
                for link in &span.links {
                    other_text.extend(
                        text_of(&link.attributes)
                            .into_iter()
                            .flat_map(|(key, value)| [key, value]),
                    );
                }
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: lower_hex(&span.trace_id),
                    span_id: lower_hex(&span.span_id),
                    parent_span_id: lower_hex(&span.parent_span_id),
                    attributes: text_of(&span.attributes),
                    other_text,
                });
            }
        }
    }
    spans
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An OTLP attribute value as text (arrays and maps by their debug form).
fn any_value_text(value: &opentelemetry_proto::tonic::common::v1::any_value::Value) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value {
        Value::StringValue(text) => text.clone(),
        Value::BoolValue(flag) => flag.to_string(),
        Value::IntValue(number) => number.to_string(),
        Value::DoubleValue(number) => number.to_string(),
        Value::BytesValue(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    }
}
