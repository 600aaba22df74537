//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is up),
//! `/readyz` (keys loaded when a JWKS is configured, the revocation set loaded, and at least one
//! healthy replica), and behind `GATEWAY_ADMIN_TOKEN` `POST /explain` ([`crate::explain`]) and
//! the revocation endpoints of [`crate::revocation::api`].
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
use crate::revocation::Revocations;
use crate::revocation::api::{MAX_BODY_BYTES as REVOCATION_MAX_BODY_BYTES, RevocationApi};
use crate::token::jwks::JwksStore;
use crate::upstream::Upstreams;

/// Whether the gateway can serve: what `/readyz` reports.
#[derive(Clone)]
pub struct Readiness {
    pub(crate) jwks: Option<Arc<JwksStore>>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) revocations: Arc<Revocations>,
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
        if !self.revocations.is_loaded() {
            return Err("revocation set not loaded yet");
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
    /// `GATEWAY_ADMIN_TOKEN`: guards `POST /explain` and the revocation endpoints, which answer
    /// 404 when it is unset.
    pub(crate) admin_token: Option<secrecy::SecretString>,
    pub(crate) explainer: Explainer,
    pub(crate) revocations: RevocationApi,
}

/// A JSON reply that is never cached.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
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

/// A FastAPI-shaped `{"detail": …}` reply.
pub(crate) fn error(status: StatusCode, detail: &str) -> Response<Vec<u8>> {
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
    /// The refusal of an admin request without the admin token (404 when the admin API is off),
    /// or `None` when it carries it. Checked before the body is read.
    fn admin_refusal(&self, request: &pingora::http::RequestHeader) -> Option<Response<Vec<u8>>> {
        let Some(token) = &self.admin_token else {
            return Some(error(StatusCode::NOT_FOUND, "Not Found"));
        };
        if is_admin(&request.headers, token) {
            return None;
        }
        let mut response = error(StatusCode::UNAUTHORIZED, "Not authenticated");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        Some(response)
    }

    /// `POST /explain`, once the admin token is checked.
    async fn explain(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let body = match read_body(session, explain::MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let explained = match ExplainRequest::parse(&body) {
            Ok(request) => self.explainer.explain(&request).await,
            Err(refusal) => Err(refusal),
        };
        match explained {
            Ok(explanation) => json(StatusCode::OK, explain::body(&explanation)),
            Err(refusal) => json(refusal.status, refusal.body()),
        }
    }

    /// A revocation endpoint, once the admin token is checked.
    async fn revocation_response(
        &self,
        session: &mut ServerSession,
        method: &http::Method,
        path: &str,
    ) -> Response<Vec<u8>> {
        match read_body(session, REVOCATION_MAX_BODY_BYTES).await {
            Ok(body) => self.revocations.respond(method, path, &body).await,
            Err(refusal) => refusal,
        }
    }
}

/// The request body, at most `limit` bytes (413 beyond; 400 when the client breaks off).
async fn read_body(
    session: &mut ServerSession,
    limit: usize,
) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= limit => {
                body.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                ));
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(error(StatusCode::BAD_REQUEST, "Unreadable request body")),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let (method, path) = (request.method.clone(), request.uri.path().to_owned());
        let admin = path == "/explain" || RevocationApi::serves(&path);
        let mut response = match admin.then(|| self.admin_refusal(request)) {
            Some(Some(refusal)) => refusal,
            Some(None) if path == "/explain" => self.explain(session).await,
            Some(None) => self.revocation_response(session, &method, &path).await,
            None => self.respond(&method, &path),
        };
        let length = response.body().len();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, http::HeaderValue::from(length));
        response
    }
}
