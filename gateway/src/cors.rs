//! CORS for the browser frontend: exact-origin allow list, preflights answered by the gateway
//! without a token, and the response headers a browser needs to read replies (errors included).

use std::collections::HashSet;

use common::headers::single_value;
use http::{Method, header};
use pingora::http::{RequestHeader, ResponseHeader};

/// Request headers the frontend may send.
pub const ALLOWED_HEADERS: &str = "authorization, content-type";
/// Methods of the API.
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, PATCH";
/// Response headers the frontend may read.
pub const EXPOSED_HEADERS: &str = "X-Request-Id, X-Total-Count, Location, WWW-Authenticate";
/// How long a browser may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// The configured origins.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: HashSet<String>,
}

impl CorsPolicy {
    /// A policy allowing exactly `origins`.
    pub fn new(origins: &[String]) -> Self {
        Self {
            origins: origins.iter().cloned().collect(),
        }
    }

    /// The request's `Origin`, when there is exactly one and it is allowed.
    pub fn allowed_origin(&self, request: &RequestHeader) -> Option<String> {
        let origin = single_value(&request.headers, header::ORIGIN)?
            .to_str()
            .ok()?;
        self.origins.contains(origin).then(|| origin.to_owned())
    }

    /// Whether the request has an `Origin` header at all (allowed or not).
    pub fn has_origin(request: &RequestHeader) -> bool {
        request.headers.contains_key(header::ORIGIN)
    }
}

/// The method a CORS preflight asks about, when the request is one.
pub fn preflight_method(request: &RequestHeader) -> Option<Method> {
    if request.method != Method::OPTIONS || !CorsPolicy::has_origin(request) {
        return None;
    }
    let requested = request
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
        .as_bytes();
    // An unparsable method still makes this a preflight; it just matches no route.
    Some(Method::from_bytes(requested).unwrap_or(Method::OPTIONS))
}

/// Adds the headers that let the page at `origin` read this response.
pub fn add_response_headers(response: &mut ResponseHeader, origin: &str) -> pingora::Result<()> {
    response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
    response.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS)?;
    response.append_header(header::VARY, "Origin")?;
    Ok(())
}

/// The headers a successful preflight answer adds to those of [`add_response_headers`].
pub fn preflight_headers() -> [(header::HeaderName, String); 3] {
    [
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            ALLOWED_METHODS.to_owned(),
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            ALLOWED_HEADERS.to_owned(),
        ),
        (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build(method, b"/api/alice/tasks", None).expect("head");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn only_a_single_listed_origin_is_allowed() {
        let policy = CorsPolicy::new(&["http://localhost:3000".to_owned()]);
        let allowed = request("GET", &[("origin", "http://localhost:3000")]);
        assert_eq!(
            policy.allowed_origin(&allowed).as_deref(),
            Some("http://localhost:3000")
        );
        for headers in [
            &[("origin", "http://evil.example")][..],
            &[("origin", "http://localhost:3000.evil.example")],
            &[("origin", "null")],
            &[
                ("origin", "http://localhost:3000"),
                ("origin", "http://evil.example"),
            ],
            &[],
        ] {
            assert_eq!(policy.allowed_origin(&request("GET", headers)), None);
        }
    }

    #[test]
    fn preflights_are_options_with_origin_and_requested_method() {
        let preflight = request(
            "OPTIONS",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
            ],
        );
        assert_eq!(preflight_method(&preflight), Some(Method::POST));
        let plain_options = request("OPTIONS", &[("origin", "http://localhost:3000")]);
        assert_eq!(preflight_method(&plain_options), None);
        let not_options = request(
            "GET",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
            ],
        );
        assert_eq!(preflight_method(&not_options), None);
    }
}
