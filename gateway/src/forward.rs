//! The request head the task service receives: the client's head with every identity claim,
//! credential and method/URL override removed, then the verified identity, the request id, the
//! trace context (the client's `traceparent` replaced by the gateway's hop) and the signed
//! assertion set.
//!
//! [`rewrite`] runs in `upstream_request_filter`, after pingora's hop-by-hop sanitiser, so a
//! `Connection: x-user-id` from the client can only remove the client's own header, never the
//! one set here.

use common::assertion::{AssertedRequest, SigningSecret, sign};
use common::headers::{
    CLIENT_IDENTITY_HEADERS, GATEWAY_ASSERTION, REQUEST_ID, USER_EMAIL, USER_ID,
};
use common::trace_context::{TRACEPARENT, TRACESTATE, TraceParent};
use http::{HeaderValue, header};
use opentelemetry::trace::TraceState;
use pingora::http::RequestHeader;

use crate::token::Principal;

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

/// What the gateway vouches for on one forwarded request.
pub struct Forwarded<'a> {
    /// The origin-form path and query that was checked; forwarded and signed byte for byte.
    pub target: &'a str,
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// The task service's parent in the trace.
    pub trace: TraceParent,
    /// The `tracestate` that came with a continued trace.
    pub trace_state: Option<&'a TraceState>,
    /// Signs the assertion.
    pub secret: &'a SigningSecret,
    /// The assertion's time, in Unix seconds.
    pub now_unix: u64,
}

/// Whether a client header (by its lower-case name) never reaches the task service: identity
/// claims, method and URL overrides, credentials (the bearer token and any browser cookie,
/// which the task service never needs), and the request id and trace context, which the
/// gateway sets itself.
fn is_dropped(name: &str) -> bool {
    CLIENT_IDENTITY_HEADERS
        .iter()
        .chain(OVERRIDE_HEADERS)
        .chain(&[
            header::AUTHORIZATION.as_str(),
            header::COOKIE.as_str(),
            REQUEST_ID,
            TRACEPARENT,
            TRACESTATE,
        ])
        .any(|dropped| *dropped == name)
}

/// Rewrites `request` into the head the task service receives.
pub fn rewrite(request: &mut RequestHeader, forwarded: &Forwarded<'_>) -> pingora::Result<()> {
    // One pass over the client's few headers finds those to drop; looking each of the ~40
    // names up in the header map instead costs more than the rest of the rewrite.
    let dropped: Vec<header::HeaderName> = request
        .headers
        .keys()
        .filter(|name| is_dropped(name.as_str()))
        .cloned()
        .collect();
    for name in &dropped {
        request.remove_header(name);
    }
    request.set_raw_path(forwarded.target.as_bytes())?;

    let principal = forwarded.principal;
    request.insert_header(USER_ID, principal.sub.as_str())?;
    if let Some(email) = &principal.email {
        // An email that cannot be a header value is left out rather than failing the call.
        if let Ok(value) = HeaderValue::from_str(email) {
            request.insert_header(USER_EMAIL, value)?;
        }
    }
    request.insert_header(REQUEST_ID, forwarded.request_id)?;
    request.insert_header(TRACEPARENT, forwarded.trace.to_string())?;
    if let Some(state) = forwarded.trace_state {
        request.insert_header(TRACESTATE, state.header())?;
    }
    let assertion = sign(
        forwarded.secret,
        forwarded.now_unix,
        &AssertedRequest {
            method: request.method.as_str(),
            path_and_query: forwarded.target,
            user_id: &principal.sub,
        },
    );
    request.insert_header(GATEWAY_ASSERTION, assertion)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use common::assertion::AssertionVerifier;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> SigningSecret {
        SigningSecret::new("a-signing-secret-of-at-least-32-bytes!").expect("secret")
    }

    /// The gateway's hop in the trace the task service continues.
    const HOP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";

    fn rewritten(headers: &[(&str, &str)], email: Option<&str>) -> RequestHeader {
        rewritten_in_trace(headers, email, None)
    }

    fn rewritten_in_trace(
        headers: &[(&str, &str)],
        email: Option<&str>,
        trace_state: Option<&TraceState>,
    ) -> RequestHeader {
        let mut request =
            RequestHeader::build("PUT", b"/api/alice/tasks/7?x=1", None).expect("request head");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        let principal = Principal {
            sub: "alice".to_owned(),
            email: email.map(str::to_owned),
            sid: None,
            jti: None,
            iat: None,
        };
        let secret = secret();
        let forwarded = Forwarded {
            target: "/api/alice/tasks/7?x=1",
            principal: &principal,
            request_id: "req-1",
            trace: TraceParent::parse(HOP.as_bytes()).expect("traceparent"),
            trace_state,
            secret: &secret,
            now_unix: NOW,
        };
        rewrite(&mut request, &forwarded).expect("rewrite");
        request
    }

    fn values<'a>(request: &'a RequestHeader, name: &str) -> Vec<&'a [u8]> {
        request
            .headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }

    #[test]
    fn client_identity_credentials_and_overrides_never_pass() {
        let request = rewritten(
            &[
                ("X-User-Id", "mallory"),
                ("x-user-id", "mallory"),
                ("X-Forwarded-User", "mallory"),
                ("X-Gateway-Assertion", "t=1,v1=00"),
                ("Authorization", "Bearer a.b.c"),
                ("Cookie", "better-auth.session_token=x"),
                ("X-HTTP-Method-Override", "DELETE"),
                ("X-Original-URL", "/admin"),
                ("X-Request-Id", "client-chosen"),
                ("Accept", "application/json"),
            ],
            None,
        );
        for name in CLIENT_IDENTITY_HEADERS
            .iter()
            .chain(OVERRIDE_HEADERS)
            .filter(|name| ![USER_ID, GATEWAY_ASSERTION].contains(name))
        {
            assert!(values(&request, name).is_empty(), "{name} was forwarded");
        }
        assert!(values(&request, "authorization").is_empty());
        assert!(values(&request, "cookie").is_empty());
        assert_eq!(values(&request, USER_ID), [b"alice"]);
        assert_eq!(values(&request, REQUEST_ID), [b"req-1"]);
        assert_eq!(values(&request, "accept"), [b"application/json"]);
    }

    #[test]
    fn the_assertion_covers_method_target_and_user() {
        let request = rewritten(&[], Some("alice@example.com"));
        assert_eq!(request.raw_path(), b"/api/alice/tasks/7?x=1");
        assert_eq!(values(&request, USER_EMAIL), [b"alice@example.com"]);
        let [assertion] = values(&request, GATEWAY_ASSERTION)[..] else {
            panic!("one assertion expected");
        };
        let assertion = std::str::from_utf8(assertion).expect("ascii");
        let verifier = AssertionVerifier::new(secret(), None);
        let signed = |method, path_and_query, user_id| AssertedRequest {
            method,
            path_and_query,
            user_id,
        };
        let verify = |request| verifier.verify(assertion, &request, NOW);
        assert_eq!(
            verify(signed("PUT", "/api/alice/tasks/7?x=1", "alice")),
            Ok(())
        );
        assert!(verify(signed("DELETE", "/api/alice/tasks/7?x=1", "alice")).is_err());
        assert!(verify(signed("PUT", "/api/alice/tasks/8?x=1", "alice")).is_err());
        assert!(verify(signed("PUT", "/api/alice/tasks/7?x=1", "bob")).is_err());
    }

    #[test]
    fn an_email_that_is_no_header_value_is_left_out() {
        let request = rewritten(&[], Some("alice\n@example.com"));
        assert!(values(&request, USER_EMAIL).is_empty());
        assert_eq!(values(&request, USER_ID), [b"alice"]);
    }

    #[test]
    fn dropped_names_are_written_as_header_names_are_compared() {
        // `is_dropped` compares with `HeaderName::as_str`, which is lower case: a name written
        // with a capital here would never match, and that header would reach the task service.
        for name in CLIENT_IDENTITY_HEADERS.iter().chain(OVERRIDE_HEADERS) {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(is_dropped(name), "{name}");
        }
        for kept in ["host", "content-type", "accept", "x-user-id-extra"] {
            assert!(!is_dropped(kept), "{kept}");
        }
    }

    #[test]
    fn the_trace_context_is_the_gateways() {
        let client = [
            (
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            ),
            ("traceparent", "garbage"),
            ("tracestate", "client=chosen"),
        ];
        let request = rewritten(&client, None);
        assert_eq!(values(&request, TRACEPARENT), [HOP.as_bytes()]);
        assert!(values(&request, TRACESTATE).is_empty());

        let state: TraceState = "congo=t61rcWkgMzE".parse().expect("tracestate");
        let request = rewritten_in_trace(&client, None, Some(&state));
        assert_eq!(values(&request, TRACEPARENT), [HOP.as_bytes()]);
        assert_eq!(values(&request, TRACESTATE), [b"congo=t61rcWkgMzE"]);
    }
}
