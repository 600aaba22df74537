//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is up),
//! `/readyz` (the public listener bound, keys loaded when a JWKS is configured,
//! the revocation set loaded, and at least one healthy replica), and behind `GATEWAY_ADMIN_TOKEN` `POST /explain` ([`crate::explain`]) and
//! the revocation endpoints of [`crate::revocation::api`].
//!
//! Keys older than `JWKS_MAX_AGE_SECONDS` (Better Auth unreachable, or answering with no usable
//! key, for that long) do not make the gateway unready: every replica would fail together and
//! take the whole API down during an auth-server outage, although the keys held still verify
//! every current token. `/readyz` stays 200 and says `"jwks_stale": true` with the age, and
//! `gateway_jwks_age_seconds` lets an alert fire.
//! It is meant for the internal network only and carries no user data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    pub(crate) public: Arc<PublicListener>,
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
        if !self.public.is_listening() {
            return Err("public listener not bound yet");
        }
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

/// Whether the public listener is bound yet. Pingora binds each service's listeners on that
/// service's own thread, so the admin listener can answer before the public one exists; until
/// this process is seen listening on the public port, the gateway is not ready. The check
/// reads the kernel's socket tables (`/proc/net/tcp*`, `/proc/self/fd`) rather than
/// connecting, which a TLS listener would log as a failed handshake.
#[derive(Debug)]
pub struct PublicListener {
    /// The port to look for; `None` when there is nothing to wait for.
    port: Option<u16>,
    listening: AtomicBool,
}

impl PublicListener {
    /// A listener bound before serving starts (tests and embedding).
    pub fn bound() -> Self {
        Self {
            port: None,
            listening: AtomicBool::new(true),
        }
    }

    /// A listener that pingora binds at `listen`. Port 0 cannot be looked for (the bound port
    /// is pingora's to know).
    pub fn at(listen: SocketAddr) -> Self {
        let port = (listen.port() != 0).then_some(listen.port());
        Self {
            listening: AtomicBool::new(port.is_none()),
            port,
        }
    }

    /// Whether the listener has been seen bound.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Looks for the listener unless it has already been seen.
    pub fn look(&self) {
        let Some(port) = self.port.filter(|_| !self.is_listening()) else {
            return;
        };
        // Without the kernel's tables there is no way to know; do not hold readiness back.
        if listening_on(port).unwrap_or(true) {
            self.listening.store(true, Ordering::Release);
        }
    }
}

/// Whether this process holds a TCP socket listening on `port`; `None` when the socket tables
/// cannot be read.
fn listening_on(port: u16) -> Option<bool> {
    const LISTEN: &str = "0A";
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if *state == LISTEN && local_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let descriptors = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(descriptors.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    }))
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
        if path == "/readyz" {
            self.readiness.public.look();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }

    #[test]
    fn the_public_listener_counts_once_this_process_listens_on_its_port() {
        let port = closed_port();
        let public = PublicListener::at(SocketAddr::from(([0, 0, 0, 0], port)));
        public.look();
        assert!(!public.is_listening(), "nothing listens on {port} yet");

        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind again");
        public.look();
        assert!(public.is_listening());
        drop(listener);
        public.look();
        assert!(
            public.is_listening(),
            "once seen, it is not looked for again"
        );
    }

    #[test]
    fn a_connected_socket_on_the_port_is_not_a_listener() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = server.local_addr().expect("address").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
        let client_port = client.local_addr().expect("address").port();
        assert_eq!(listening_on(client_port), Some(false));
        assert_eq!(listening_on(server_port), Some(true));
    }

    #[test]
    fn listeners_that_cannot_be_looked_for_do_not_hold_readiness_back() {
        assert!(PublicListener::bound().is_listening());
        assert!(PublicListener::at(SocketAddr::from(([127, 0, 0, 1], 0))).is_listening());
        assert!(!PublicListener::at(SocketAddr::from(([127, 0, 0, 1], 8080))).is_listening());
    }
}
