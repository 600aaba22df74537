//! The gateway's `ProxyHttp` implementation: one phase per concern.
//!
//! - `request_filter`: drops any protocol upgrade, then CORS preflight, the canonical path and
//!   route, the token, its revocation, the per-user rate limit and the user binding; refusals are answered here
//!   as JSON, with CORS headers for an allowed origin.
//! - `upstream_peer`: a healthy task-service replica, or a JSON 503.
//! - `upstream_request_filter`: strips every client-sent identity header, the credentials and
//!   the method/URL override headers, then sets the verified identity, the request id and the
//!   signed assertion. It runs after
//!   pingora's hop-by-hop sanitiser, so a `Connection: x-user-id` from the client can only remove
//!   the client's own header, never the one set here.
//! - `response_filter`: CORS headers and the request id on proxied replies.
//! - `fail_to_proxy`: JSON 502/503/504 instead of pingora's bare default.
//! - `logging`: metrics and one JSON access-log line per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use common::assertion::{AssertedRequest, SigningSecret, sign};
use common::error::{ErrorResponse, JSON_CONTENT_TYPE};
use common::headers::{
    CLIENT_IDENTITY_HEADERS, GATEWAY_ASSERTION, REQUEST_ID, USER_EMAIL, USER_ID,
};
use common::metrics::method_label;
use http::{StatusCode, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType};

use crate::authorize::{self, Denial};
use crate::cors::{self, CorsPolicy};
use crate::metrics::Metrics;
use crate::path::RouteName;
use crate::rate_limit::UserRateLimit;
use crate::request_id::request_id;
use crate::revocation::Revocations;
use crate::token::{Principal, Verifier, now_unix};
use crate::upstream::Upstreams;

/// The proxy: shared by every request.
pub struct GatewayProxy {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) cors: CorsPolicy,
    pub(crate) signing_secret: SigningSecret,
    pub(crate) metrics: Arc<Metrics>,
    /// The per-user limit, when `RATE_LIMIT_PER_USER_PER_SECOND` is set.
    pub(crate) rate_limit: Option<UserRateLimit>,
    /// Revoked sessions, tokens and users, checked on every request (cached tokens too).
    pub(crate) revocations: Arc<Revocations>,
}

/// Headers with which some frameworks and proxies let a client replace the method or the URL
/// that was routed (`X-HTTP-Method-Override: DELETE` on a POST, `X-Original-URL: /admin`). The
/// gateway authorized the method and target on the request line, so these never reach the task
/// service: should it ever sit behind such a framework, it could not be steered past that
/// decision.
pub const OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
];

/// What one request has learned so far.
pub struct RequestCtx {
    started: Instant,
    request_id: String,
    /// The request's `Origin`, when it is allowed.
    origin: Option<String>,
    route: Option<RouteName>,
    /// The origin-form target that is forwarded and signed.
    forwarded_target: String,
    principal: Option<Arc<Principal>>,
    denial: Option<&'static str>,
    /// The replica chosen last.
    upstream: Option<SocketAddr>,
    /// Replicas this request could not connect to; a retry picks another. A failure on a
    /// reused connection does not land here, so its retry may use the same replica afresh.
    unreachable: Vec<SocketAddr>,
    upstream_started: Option<Instant>,
    upstream_error: Option<&'static str>,
}

/// How `request_filter` ends when it answers the request itself.
enum EarlyReply {
    /// A CORS preflight from an allowed origin.
    Preflight,
    Denied(Denial),
}

impl GatewayProxy {
    /// Runs the access decision over the request head, filling `ctx` on the way.
    async fn decide(
        &self,
        request: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), EarlyReply> {
        if let Some(requested) = cors::preflight_method(request) {
            if ctx.origin.is_none() {
                return Err(EarlyReply::Denied(Denial::OriginNotAllowed));
            }
            let (_, route) =
                authorize::resolve(&requested, request.raw_path()).map_err(EarlyReply::Denied)?;
            ctx.route = Some(route.name);
            return Err(EarlyReply::Preflight);
        }
        let (target, route) =
            authorize::resolve(&request.method, request.raw_path()).map_err(EarlyReply::Denied)?;
        ctx.route = Some(route.name);
        ctx.forwarded_target = target.origin_form.to_owned();
        let principal = authorize::authenticate(request, &self.verifier)
            .await
            .map_err(EarlyReply::Denied)?;
        if self.revocations.is_revoked(&principal) {
            return Err(EarlyReply::Denied(Denial::Revoked));
        }
        // Counted before the user binding, so every request a user authenticates counts against
        // their own budget, whichever path it names.
        if let Some(limit) = &self.rate_limit
            && !limit.admit(&principal)
        {
            return Err(EarlyReply::Denied(Denial::RateLimited));
        }
        authorize::bind(&route, &principal).map_err(EarlyReply::Denied)?;
        ctx.principal = Some(principal);
        Ok(())
    }

    /// Writes a reply of the gateway's own: JSON body (if any), request id, CORS headers for
    /// an allowed origin, and `extra` headers.
    async fn reply(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        status: StatusCode,
        body: Option<Vec<u8>>,
        extra: &[(header::HeaderName, String)],
    ) -> pingora::Result<()> {
        let mut response = ResponseHeader::build(status, Some(8))?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        response.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(origin) = &ctx.origin {
            cors::add_response_headers(&mut response, origin)?;
        }
        for (name, value) in extra {
            response.insert_header(name.clone(), value.as_str())?;
        }
        match body {
            Some(body) => {
                response.insert_header(header::CONTENT_TYPE, JSON_CONTENT_TYPE)?;
                response.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
                session
                    .write_response_header(Box::new(response), false)
                    .await?;
                session
                    .write_response_body(Some(Bytes::from(body)), true)
                    .await
            }
            None => {
                response.insert_header(header::CONTENT_LENGTH, "0")?;
                session
                    .write_response_header(Box::new(response), true)
                    .await
            }
        }
    }

    async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        denial: Denial,
    ) -> pingora::Result<()> {
        ctx.denial = Some(denial.reason());
        self.metrics
            .auth_denials
            .with_label_values(&[denial.reason()])
            .inc();
        let mut extra = Vec::new();
        if let Some(challenge) = denial.www_authenticate() {
            extra.push((header::WWW_AUTHENTICATE, challenge.to_owned()));
        }
        if let Some(allow) = denial.allow() {
            extra.push((header::ALLOW, allow));
        }
        if let Some(seconds) = denial.retry_after() {
            extra.push((header::RETRY_AFTER, seconds));
        }
        // Close rather than drain the body of a request that is not going anywhere.
        session.set_keepalive(None);
        let response = denial.response();
        self.reply(session, ctx, response.status, Some(response.body()), &extra)
            .await
    }

    fn count_upstream_error(&self, ctx: &mut RequestCtx, kind: &'static str) {
        ctx.upstream_error = Some(kind);
        self.metrics
            .upstream_errors
            .with_label_values(&[kind])
            .inc();
    }
}

/// How a proxying failure is answered: the status (0 for none, the client is gone) and, for
/// failures of the task tier, the metrics kind.
pub fn classify_failure(error: &Error) -> (u16, Option<&'static str>) {
    use ErrorType::*;
    if let HTTPStatus(code) = error.etype() {
        return (*code, None);
    }
    if error.esource() == &ErrorSource::Downstream {
        return match error.etype() {
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => (0, None),
            _ => (400, None),
        };
    }
    match error.etype() {
        ConnectTimedout => (504, Some("connect_timeout")),
        ReadTimedout => (504, Some("read_timeout")),
        WriteTimedout => (504, Some("write_timeout")),
        ConnectRefused => (502, Some("connect_refused")),
        ConnectNoRoute | ConnectError | SocketError | BindError => (502, Some("connect_error")),
        ConnectionClosed | ReadError | WriteError => (502, Some("connection_closed")),
        InvalidHTTPHeader | H1Error | H2Error | InvalidH2 | H2Downgrade => {
            (502, Some("protocol_error"))
        }
        _ if error.esource() == &ErrorSource::Upstream => (502, Some("other")),
        _ => (500, None),
    }
}

/// The JSON body of a failure status.
fn failure_response(status: u16) -> ErrorResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = match status {
        StatusCode::BAD_GATEWAY => "Task service unreachable",
        StatusCode::SERVICE_UNAVAILABLE => "Task service unavailable",
        StatusCode::GATEWAY_TIMEOUT => "Task service timed out",
        other => other.canonical_reason().unwrap_or("Error"),
    };
    ErrorResponse::new(status, detail)
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            origin: None,
            route: None,
            forwarded_target: String::new(),
            principal: None,
            denial: None,
            upstream: None,
            unreachable: Vec::new(),
            upstream_started: None,
            upstream_error: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        // The API has no protocol upgrades. Forwarding an `Upgrade` would let a replica that
        // answers 101 (an h2c-capable server, a websocket route added later) turn this
        // connection into a raw tunnel past every check here. Without the header pingora treats
        // the request as plain HTTP (no tunnel), and `upstream_response_filter` refuses a 101.
        // Clients that offer an upgrade (curl's h2c) get an ordinary HTTP/1.1 answer, as
        // RFC 9110 §7.8 allows.
        session.req_header_mut().remove_header(&header::UPGRADE);
        ctx.request_id = request_id(session.req_header());
        ctx.origin = self.cors.allowed_origin(session.req_header());
        match self.decide(session.req_header(), ctx).await {
            Ok(()) => Ok(false),
            Err(EarlyReply::Preflight) => {
                let headers = cors::preflight_headers();
                self.reply(session, ctx, StatusCode::NO_CONTENT, None, &headers)
                    .await
                    .map(|()| true)
            }
            Err(EarlyReply::Denied(denial)) => self.deny(session, ctx, denial).await.map(|()| true),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(address) = self.upstreams.select(&ctx.unreachable) else {
            self.count_upstream_error(ctx, "no_healthy_upstream");
            return Error::e_explain(
                ErrorType::HTTPStatus(503),
                "no healthy task-service replica",
            );
        };
        ctx.upstream = Some(address);
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(self.upstreams.peer(address)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut error: Box<Error>,
    ) -> Box<Error> {
        if let (_, Some(kind)) = classify_failure(&error) {
            self.count_upstream_error(ctx, kind);
        }
        if let Some(address) = peer.address().as_inet() {
            ctx.unreachable.push(*address);
        }
        // Nothing was sent, so any method may go to another healthy replica.
        if self.upstreams.select(&ctx.unreachable).is_some() {
            error.set_retry(true);
        }
        error
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        for name in CLIENT_IDENTITY_HEADERS.iter().chain(OVERRIDE_HEADERS) {
            upstream_request.remove_header(*name);
        }
        // The bearer token and any browser cookie are credentials the task service never needs.
        upstream_request.remove_header(&header::AUTHORIZATION);
        upstream_request.remove_header(&header::COOKIE);
        upstream_request.remove_header(REQUEST_ID);
        upstream_request.set_raw_path(ctx.forwarded_target.as_bytes())?;

        let Some(principal) = ctx.principal.clone() else {
            // request_filter only lets verified requests through; fail closed regardless.
            return Error::e_explain(ErrorType::InternalError, "no verified principal");
        };
        upstream_request.insert_header(USER_ID, principal.sub.as_str())?;
        if let Some(email) = &principal.email {
            // An email that cannot be a header value is left out rather than failing the call.
            if let Ok(value) = http::HeaderValue::from_str(email) {
                upstream_request.insert_header(USER_EMAIL, value)?;
            }
        }
        upstream_request.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        let assertion = sign(
            &self.signing_secret,
            now_unix(),
            &AssertedRequest {
                method: upstream_request.method.as_str(),
                path_and_query: &ctx.forwarded_target,
                user_id: &principal.sub,
            },
        );
        upstream_request.insert_header(GATEWAY_ASSERTION, assertion)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // No request is forwarded with an `Upgrade` (see `request_filter`), so a 101 is a replica
        // misbehaving: relaying it would tell the client a tunnel is open. A JSON 502 instead.
        if upstream_response.status == StatusCode::SWITCHING_PROTOCOLS {
            let mut error = Error::explain(
                ErrorType::InvalidHTTPHeader,
                "the task service switched protocols unasked",
            );
            error.as_up();
            return Err(error);
        }
        if let Some(started) = ctx.upstream_started {
            self.metrics
                .upstream_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(origin) = &ctx.origin {
            cors::add_response_headers(upstream_response, origin)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, kind) = classify_failure(error);
        if let Some(kind) = kind
            && ctx.upstream_error.is_none()
        {
            self.count_upstream_error(ctx, kind);
        }
        if status > 0 && session.response_written().is_none() {
            session.set_keepalive(None);
            let response = failure_response(status);
            if let Err(err) = self
                .reply(session, ctx, response.status, Some(response.body()), &[])
                .await
            {
                tracing::debug!(error = %err, "cannot send the error reply");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map_or(0, |response| response.status.as_u16());
        let route = ctx.route.map_or("unmatched", RouteName::template);
        let method = method_label(&session.req_header().method);
        let elapsed = ctx.started.elapsed();
        self.metrics.http.observe(route, method, status, elapsed);
        tracing::info!(
            target: "gateway::access",
            request_id = %ctx.request_id,
            method = %session.req_header().method,
            route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            user = ctx.principal.as_ref().map(|p| p.sub.as_str()),
            denial = ctx.denial,
            upstream = ctx.upstream.map(tracing::field::display),
            upstream_error = ctx.upstream_error,
            error = error.map(|e| e.etype().as_str()),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(etype: ErrorType) -> Box<Error> {
        Error::new_up(etype)
    }

    #[test]
    fn failures_map_to_gateway_statuses() {
        assert_eq!(
            classify_failure(&upstream(ErrorType::ConnectRefused)),
            (502, Some("connect_refused"))
        );
        assert_eq!(
            classify_failure(&upstream(ErrorType::ReadTimedout)),
            (504, Some("read_timeout"))
        );
        assert_eq!(
            classify_failure(&upstream(ErrorType::ConnectTimedout)),
            (504, Some("connect_timeout"))
        );
        assert_eq!(
            classify_failure(&upstream(ErrorType::ConnectionClosed)),
            (502, Some("connection_closed"))
        );
        assert_eq!(
            classify_failure(&Error::new(ErrorType::HTTPStatus(503))),
            (503, None)
        );
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(classify_failure(&gone), (0, None));
        let bad = Error::new_down(ErrorType::InvalidHTTPHeader);
        assert_eq!(classify_failure(&bad), (400, None));
    }

    #[test]
    fn failure_bodies_are_json_details() {
        assert_eq!(
            failure_response(504).body(),
            br#"{"detail":"Task service timed out"}"#
        );
        assert_eq!(
            failure_response(503).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
