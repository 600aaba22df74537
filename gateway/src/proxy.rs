//! The gateway's `ProxyHttp` implementation: one phase per concern.
//!
//! - `request_filter`: drops any protocol upgrade, then runs the access decision
//!   ([`crate::authorize`]); preflights and refusals are answered here as JSON, with CORS headers
//!   for an allowed origin.
//! - `upstream_peer`: a healthy task-service replica, or a JSON 503.
//! - `upstream_request_filter`: the head the task service receives ([`crate::forward`]).
//! - `response_filter`: CORS headers and the request id on proxied replies.
//! - `fail_to_proxy`: JSON 502/503/504 ([`crate::failure`]) instead of pingora's bare default.
//! - `logging`: metrics and one JSON access-log line per request, with its trace id
//!   ([`crate::trace_context`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use common::assertion::SigningSecret;
use common::clock::now_unix;
use common::error::JSON_CONTENT_TYPE;
use common::headers::{REQUEST_ID, request_id};
use common::metrics::method_label;
use http::{StatusCode, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use tracing::Instrument;

use crate::authorize::{Decision, Denial, authorize};
use crate::client_limit::FailedTokenLimit;
use crate::cors::{self, CorsPolicy};
use crate::failure::{classify_failure, failure_response};
use crate::forward::{self, Forwarded};
use crate::metrics::Metrics;
use crate::path::RouteName;
use crate::rate_limit::UserRateLimit;
use crate::revocation::Revocations;
use crate::token::{Principal, Verifier};
use crate::trace_context::GatewayTrace;
use crate::upstream::Upstreams;

/// The proxy: shared by every request.
pub struct GatewayProxy {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) cors: CorsPolicy,
    pub(crate) signing_secret: SigningSecret,
    pub(crate) metrics: Arc<Metrics>,
    /// The per-user limit, when `RATE_LIMIT_PER_USER_PER_SECOND` is set.
    pub(crate) rate_limit: Option<Arc<UserRateLimit>>,
    /// Revoked sessions, tokens and users, checked on every request (cached tokens too).
    pub(crate) revocations: Arc<Revocations>,
    /// Failed verifications per client address, unless `FAILED_AUTH_PER_ADDRESS_PER_MINUTE=0`.
    pub(crate) failed_token_limit: Option<Arc<FailedTokenLimit>>,
    /// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`): without, a request creates
    /// none, and its trace context is only passed on and logged.
    pub(crate) exporting: bool,
}

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
    /// The request's trace, from `request_filter` on.
    trace: Option<GatewayTrace>,
}

impl GatewayProxy {
    /// Verifies a request's token, through the failed-verification limit of its client address
    /// when that limit is on.
    async fn verify(
        &self,
        peer: Option<IpAddr>,
        request: &RequestHeader,
        token: &str,
    ) -> Result<Arc<Principal>, Denial> {
        match &self.failed_token_limit {
            Some(limit) => {
                let client = limit.client_of(peer, request);
                limit.verify(client, token, &self.verifier).await
            }
            None => self.verifier.verify(token).await.map_err(Denial::Token),
        }
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

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    /// No downstream modules: pingora's default adds a response-compression module (disabled)
    /// that every request would still set up and run through.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

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
            trace: None,
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
        // A request pipelined behind this one is served after it, in order (RFC 9112 §9.3.2).
        // Pingora's default closes the connection after this answer without `Connection:
        // close`, silently dropping the request the client already sent.
        session.set_pipelining_enabled(true);
        let peer = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        let request = session.req_header();
        ctx.request_id = request_id(&request.headers);
        ctx.origin = self.cors.allowed_origin(request);
        let trace = ctx
            .trace
            .insert(GatewayTrace::start(request, self.exporting));
        let decision = authorize(
            request,
            ctx.origin.is_some(),
            |token| {
                self.verify(peer, request, token)
                    .instrument(trace.verify_span())
            },
            |principal| self.revocations.is_revoked(principal),
            |principal| {
                self.rate_limit
                    .as_ref()
                    .is_none_or(|limit| limit.admit(principal))
            },
        )
        .await;
        ctx.route = decision.route();
        match decision {
            Decision::Forward {
                target, principal, ..
            } => {
                ctx.forwarded_target = target;
                ctx.principal = Some(principal);
                Ok(false)
            }
            Decision::Preflight { .. } => {
                let headers = cors::preflight_headers();
                self.reply(session, ctx, StatusCode::NO_CONTENT, None, &headers)
                    .await
                    .map(|()| true)
            }
            Decision::Deny { denial, .. } => self.deny(session, ctx, denial).await.map(|()| true),
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
        if let Some(trace) = &mut ctx.trace {
            trace.start_upstream();
        }
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
        let (Some(principal), Some(trace)) = (&ctx.principal, &ctx.trace) else {
            // request_filter only lets verified requests through; fail closed regardless.
            return Error::e_explain(ErrorType::InternalError, "no verified principal");
        };
        let (trace, trace_state) = trace.upstream_context();
        let forwarded = Forwarded {
            target: &ctx.forwarded_target,
            principal,
            request_id: &ctx.request_id,
            trace,
            trace_state,
            secret: &self.signing_secret,
            now_unix: now_unix(),
        };
        forward::rewrite(upstream_request, &forwarded)
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
        let trace_id = ctx.trace.as_mut().map(|trace| {
            trace.finish(route, status, ctx.denial, ctx.upstream_error);
            trace.trace_id()
        });
        tracing::info!(
            target: "gateway::access",
            request_id = %ctx.request_id,
            trace_id = trace_id.map(tracing::field::display),
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
