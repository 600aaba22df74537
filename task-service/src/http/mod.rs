//! The HTTP surface: the router, its shared state, the fallbacks that keep every reply JSON, and
//! the middleware that gives each request an id, a place in its trace, a metrics sample and an
//! access-log line.

mod auth;
mod error;
mod extract;
mod health;
mod openapi;
mod tasks;
mod trace;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use common::assertion::AssertionVerifier;
use common::error::JSON_CONTENT_TYPE;
use common::headers::{REQUEST_ID, request_id};
use common::metrics::method_label;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use self::error::ApiError;
use self::openapi::ApiDoc;
use crate::metrics::Metrics;
use crate::store::Store;

/// Request bodies above this size get a 413: a task is at most a few kilobytes.
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// What every handler can reach; cloned for every request (by the router and by each
/// extractor that takes it), so one reference count rather than one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    store: Store,
    verifier: Arc<AssertionVerifier>,
    metrics: Metrics,
    searches: Arc<tasks::SearchSlots>,
}

impl AppState {
    /// Bundles the parts the handlers share.
    pub fn new(store: Store, verifier: AssertionVerifier, metrics: Metrics) -> Self {
        Self(Arc::new(Shared {
            store,
            verifier: Arc::new(verifier),
            metrics,
            searches: Arc::default(),
        }))
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// This instance's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The keyword searches running now, per user.
    pub fn searches(&self) -> &Arc<tasks::SearchSlots> {
        &self.0.searches
    }
}

/// What the `User` extractor takes from the state.
impl FromRef<AppState> for Arc<AssertionVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.0.verifier)
    }
}

/// The whole service: the task API (documented at `/openapi.json`), health and metrics.
pub fn router(state: AppState) -> Result<Router, serde_json::Error> {
    let (api, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tasks::router())
        .split_for_parts();
    // Rendered once: the document never changes while the process runs.
    let document = Bytes::from(document.to_json()?);
    let router = api
        .merge(health::router())
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, JSON_CONTENT_TYPE)], document) }),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        // Applies to the routes registered above, so it must come after them.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    Ok(router)
}

/// Gives the request an id (the gateway's, or a new one) and a trace ([`trace`]: the gateway's,
/// or a new one), runs it inside a span carrying that id, then records its metrics, writes one
/// access-log line with both and returns the id to the client.
/// Every reply, success or error, from a handler, an extractor or a fallback, says
/// `Cache-Control: no-store`: most carry a user's tasks, and no cache between the tiers or in a
/// browser may keep them.
///
/// Added with `Router::layer`, so it runs after routing: the matched route template is known,
/// and the metrics are labelled by it rather than by the concrete path (which holds a user id).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let method = method_label(request.method());
    let route = route_label(request.extensions().get::<MatchedPath>());
    let path = request.uri().path().to_owned();
    // Each gateway probes every replica every second: at info those lines would bury the rest,
    // and as traces (with the scrapes) the requests.
    let probe = matches!(route.as_str(), "/healthz" | "/readyz");
    let trace = trace::start(
        request.headers(),
        method,
        &route,
        probe || route == "/metrics",
    );
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next
        .run(request)
        .instrument(trace::handler_span(&trace))
        .instrument(span.clone())
        .await;

    let elapsed = started.elapsed();
    let status = response.status();
    trace::finish(&trace, status.as_u16());
    let metrics = state.metrics();
    metrics
        .http
        .observe(&route, method, status.as_u16(), elapsed);
    span.in_scope(|| {
        macro_rules! access_line {
            ($level:expr) => {
                tracing::event!(
                    target: "access",
                    $level,
                    method,
                    route,
                    path,
                    status = status.as_u16(),
                    latency_ms = elapsed.as_secs_f64() * 1000.0,
                    trace_id = %trace.trace_id(),
                    "request"
                )
            };
        }
        if probe {
            access_line!(tracing::Level::DEBUG);
        } else {
            access_line!(tracing::Level::INFO);
        }
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The route template a request's metrics and access-log line are labelled with, spelled as the
/// gateway spells it (`/api/{user_id}/tasks/{id}`), so that both tiers' series join on `route`.
/// The OpenAPI document and the 422 `loc` keep the public name `{task_id}`.
fn route_label(matched: Option<&MatchedPath>) -> String {
    matched.map_or_else(
        || "unmatched".to_owned(),
        |matched| matched.as_str().replace("{task_id}", "{id}"),
    )
}
