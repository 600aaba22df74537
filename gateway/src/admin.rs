//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is up) and
//! `/readyz` (keys loaded when a JWKS is configured, and at least one healthy replica).
//!
//! Keys older than `JWKS_MAX_AGE_SECONDS` (Better Auth unreachable, or answering with no usable
//! key, for that long) do not make the gateway unready: every replica would fail together and
//! take the whole API down during an auth-server outage, although the keys held still verify
//! every current token. `/readyz` stays 200 and says `"jwks_stale": true` with the age, and
//! `gateway_jwks_age_seconds` lets an alert fire.
//! It is meant for the internal network only and carries no user data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::error::{ErrorResponse, JSON_CONTENT_TYPE};
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin_auth::is_admin;
use crate::explain::{self, ExplainRequest, Explainer};
use crate::metrics::Metrics;
use crate::token::jwks::JwksStore;
use crate::upstream::Upstreams;

/// Whether the gateway can serve: what `/readyz` reports.
#[derive(Clone)]
pub struct Readiness {
    pub(crate) jwks: Option<Arc<JwksStore>>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) metrics: Arc<Metrics>,
    /// Keys older than this are reported stale.
    pub(crate) jwks_max_age: Duration,
}

impl Readiness {
    /// The age of the keys in use, in seconds, when it is over the configured maximum. Also
    /// refreshes the age gauge.
    pub fn stale_jwks_age(&self) -> Option<u64> {
        let age = self.jwks.as_ref()?.age();
        self.metrics
            .jwks_age
            .set(age.map_or(-1, |age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
        age.filter(|age| *age > self.jwks_max_age)
            .map(|age| age.as_secs())
    }

    /// `Ok` when ready, else why not. Also refreshes the healthy-replica gauge.
    pub fn check(&self) -> Result<(), &'static str> {
        let healthy = self.upstreams.healthy_count();
        self.metrics
            .healthy_upstreams
            .set(i64::try_from(healthy).unwrap_or(i64::MAX));
        if self.jwks.as_ref().is_some_and(|jwks| !jwks.is_loaded()) {
            return Err("JWKS not loaded yet");
        }
        if self.upstreams.known_count() == 0 {
            return Err("no task-service replica discovered yet");
        }
        if healthy == 0 {
            return Err("no healthy task-service replica");
        }
        Ok(())
    }
}

/// The admin HTTP application.
pub struct AdminApp {
    pub(crate) readiness: Readiness,
    pub(crate) metrics: Arc<Metrics>,
    /// `POST /explain`, present when `GATEWAY_ADMIN_TOKEN` is set.
    pub(crate) explain: Option<(secrecy::SecretString, Explainer)>,
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn error(status: StatusCode, detail: &str) -> Response<Vec<u8>> {
    json(status, ErrorResponse::new(status, detail).body())
}

impl AdminApp {
    /// The reply for a method and path.
    pub fn respond(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        match path {
            "/healthz" => json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => match self.readiness.check() {
                Ok(()) => match self.readiness.stale_jwks_age() {
                    None => json(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()),
                    Some(age) => {
                        let body = serde_json::json!({
                            "status": "ready",
                            "jwks_stale": true,
                            "jwks_age_seconds": age,
                            "detail": "JWKS not refreshed within JWKS_MAX_AGE_SECONDS; serving with the keys held",
                        });
                        json(StatusCode::OK, body.to_string().into_bytes())
                    }
                },
                Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, reason),
            },
            "/metrics" => {
                // Refresh the gauges that are computed rather than counted.
                let _ = self.readiness.check();
                let _ = self.readiness.stale_jwks_age();
                let mut response = Response::new(self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            _ => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

impl AdminApp {
    /// `POST /explain`: 404 when the admin API is off, 401 without the admin token.
    async fn explain(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let Some((token, explainer)) = &self.explain else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let request = session.req_header();
        if !is_admin(&request.headers, token) {
            let mut response = error(StatusCode::UNAUTHORIZED, "Not authenticated");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        if request.method != http::Method::POST {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let body = match read_body(session, explain::MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(status) => return error(status, status.canonical_reason().unwrap_or_default()),
        };
        let explained = match ExplainRequest::parse(&body) {
            Ok(request) => explainer.explain(&request).await,
            Err(refusal) => Err(refusal),
        };
        match explained {
            Ok(explanation) => json(StatusCode::OK, explain::body(&explanation)),
            Err(refusal) => json(refusal.status, refusal.body()),
        }
    }
}

/// The request body, at most `limit` bytes (413 beyond; 400 when the client breaks off).
async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, StatusCode> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let mut response = if request.uri.path() == "/explain" {
            self.explain(session).await
        } else {
            self.respond(&request.method, request.uri.path())
        };
        let length = response.body().len();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, http::HeaderValue::from(length));
        response
    }
}
