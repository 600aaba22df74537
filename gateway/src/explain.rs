//! `POST /explain`: the decision the gateway would take for a request, and why, without
//! forwarding anything.
//!
//! The body `{"method", "path", "authorization"}` becomes a request head, which goes through the
//! very [`authorize`] the proxy calls, with the same token verifier and rate limit. Only two things
//! differ, and neither changes a decision: the token is verified from scratch with a recording
//! [`Trace`] instead of through the verified-token cache (which remembers only tokens that passed
//! these same checks, and is neither read nor written here), and the rate limit is asked whether
//! it would admit the user without counting a request. An unknown `kid` may cause the JWKS
//! refetch the request path would cause, under the same single-flight rate limit.
//!
//! The answer lists each check in the order the gateway takes them. The token's header fields
//! and claims may be shown; the signature and the token itself never are.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::error::{Detail, ErrorResponse, ValidationIssue};
use http::{Method, StatusCode, header};
use pingora::http::RequestHeader;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::authorize::{Decision, Denial, authorize, bearer_token};
use crate::rate_limit::UserRateLimit;
use crate::revocation::Revocations;
use crate::token::trace::STEPS;
use crate::token::{Outcome, Step, Trace, Verifier};

/// Largest `/explain` body read; the Authorization header it carries is capped at 8 KiB anyway.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The canonical path check on the raw target.
const PATH: &str = "path";
/// The method and path name one of the API's routes.
const ROUTE: &str = "route";
/// Exactly one `Authorization: Bearer <token>`.
const AUTHORIZATION: &str = "authorization";
/// The token's session, id and issue time are not revoked.
const REVOCATION: &str = "revocation";
/// The per-user rate limit.
const RATE_LIMIT: &str = "rate_limit";
/// The path's `{user_id}` is the token's `sub`.
const USER_BINDING: &str = "user_binding";

/// The parts of the gateway an explanation consults.
pub struct Explainer {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) rate_limit: Option<Arc<UserRateLimit>>,
    pub(crate) revocations: Arc<Revocations>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `allow` (forwarded to the task service) or `deny` (answered by the gateway).
    pub decision: &'static str,
    /// The status the gateway answers a denial with; `null` when forwarded (the task service
    /// answers).
    pub status: Option<u16>,
    /// The denial's reason, as in `gateway_auth_denials_total{reason}`; `null` when forwarded.
    pub reason: Option<&'static str>,
    /// The denial's `detail`, as the client would read it; for a forwarded request, for whom.
    pub detail: String,
    /// The token's claims, decoded but not trusted unless the signature check passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Value>,
    pub checks: Vec<Step>,
}

/// The request body.
#[derive(Debug)]
pub struct ExplainRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

impl ExplainRequest {
    /// Reads the body the way FastAPI validates one: every problem listed in a 422.
    pub fn parse(body: &[u8]) -> Result<Self, ErrorResponse> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
            ErrorResponse::validation(vec![ValidationIssue::new(
                &["body"],
                format!("JSON decode error: {err}"),
                "json_invalid",
            )])
        })?;
        let Some(object) = value.as_object() else {
            return Err(ErrorResponse::validation(vec![ValidationIssue::new(
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )]));
        };
        let mut issues = Vec::new();
        let mut field = |name: &str, required: bool| match object.get(name) {
            Some(serde_json::Value::String(value)) => Some(value.clone()),
            None | Some(serde_json::Value::Null) if !required => None,
            None => {
                issues.push(ValidationIssue::new(
                    &["body", name],
                    "Field required",
                    "missing",
                ));
                None
            }
            Some(_) => {
                issues.push(ValidationIssue::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
        };
        let method = field("method", true);
        let path = field("path", true);
        let authorization = field("authorization", false);
        match (method, path) {
            (Some(method), Some(path)) if issues.is_empty() => Ok(Self {
                method,
                path,
                authorization,
            }),
            _ => Err(ErrorResponse::validation(issues)),
        }
    }

    /// The request head the proxy would see.
    fn head(&self) -> Result<RequestHeader, ErrorResponse> {
        let invalid = |field: &str, message: &str| {
            ErrorResponse::validation(vec![ValidationIssue::new(
                &["body", field],
                message,
                "value_error",
            )])
        };
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| invalid("method", "Value error, not an HTTP method"))?;
        let mut head = RequestHeader::build(method, self.path.as_bytes(), None)
            .map_err(|_| invalid("path", "Value error, not a request target"))?;
        if let Some(authorization) = &self.authorization {
            let value = http::HeaderValue::from_str(authorization)
                .map_err(|_| invalid("authorization", "Value error, not a header value"))?;
            head.insert_header(header::AUTHORIZATION, value)
                .map_err(|_| invalid("authorization", "Value error, not a header value"))?;
        }
        Ok(head)
    }
}

impl Explainer {
    /// Explains the decision for `request`; a request that cannot be built is a 422.
    pub async fn explain(&self, request: &ExplainRequest) -> Result<Explanation, ErrorResponse> {
        let head = request.head()?;
        let trace = Mutex::new(Trace::on());
        let (verifier, recording) = (&self.verifier, &trace);
        // A request from the body carries no `Origin`, so it is never a CORS preflight.
        let decision = authorize(
            &head,
            false,
            move |token| async move {
                verifier
                    .verify_traced(token, &mut *recording.lock().await)
                    .await
                    .map(|(principal, _exp)| Arc::new(principal))
            },
            |principal| self.revocations.is_revoked(principal),
            |principal| {
                self.rate_limit
                    .as_ref()
                    .is_none_or(|limit| limit.would_admit(principal))
            },
        )
        .await;
        let token_steps = trace.into_inner().into_steps();
        let claims = bearer_token(&head).ok().and_then(unverified_claims);
        Ok(self.describe(&decision, token_steps, claims))
    }

    fn describe(
        &self,
        decision: &Decision,
        token_steps: Vec<Step>,
        claims: Option<serde_json::Value>,
    ) -> Explanation {
        let mut checks = Checks::default();
        let denial = match decision {
            Decision::Deny { denial, .. } => Some(*denial),
            Decision::Preflight { .. } | Decision::Forward { .. } => None,
        };
        // Each step before the one that refused passed; the refusing step failed; the rest were
        // not taken. The token's own steps come from the verifier's trace.
        match denial {
            Some(Denial::BadPath(error)) => {
                checks.fail(PATH, format!("{error:?}"));
            }
            Some(Denial::NotFound | Denial::MethodNotAllowed(_)) => {
                checks.pass(PATH, "canonical");
                let detail = denial.map(|d| d.response().detail).map(message);
                checks.fail(ROUTE, detail.unwrap_or_default());
            }
            _ => {
                checks.pass(PATH, "canonical");
                checks.pass(
                    ROUTE,
                    decision.route().map(|r| r.template()).unwrap_or_default(),
                );
            }
        }
        match denial {
            Some(Denial::MissingToken) => checks.fail(AUTHORIZATION, "no Authorization header"),
            Some(Denial::TokenTooLarge) => checks.fail(AUTHORIZATION, "over 8 KiB"),
            Some(Denial::MalformedAuthorization) => checks.fail(
                AUTHORIZATION,
                "not exactly one \"Authorization: Bearer <token>\"",
            ),
            _ if checks.all_passed() => checks.pass(AUTHORIZATION, "one bearer token"),
            _ => {}
        }
        for step in token_steps {
            checks.push(step);
        }
        match denial {
            Some(Denial::Revoked) => checks.fail(
                REVOCATION,
                "the token's session, id or issue time is revoked at this gateway",
            ),
            _ if checks.all_passed() => checks.pass(REVOCATION, "not revoked"),
            _ => {}
        }
        match (denial, &self.rate_limit) {
            (Some(Denial::RateLimited), _) => checks.fail(
                RATE_LIMIT,
                "the user is over RATE_LIMIT_PER_USER_PER_SECOND in this second",
            ),
            (_, None) if checks.all_passed() => {
                checks.skip(RATE_LIMIT, "no per-user rate limit is configured")
            }
            (_, Some(_)) if checks.all_passed() => checks.pass(
                RATE_LIMIT,
                "within the user's budget (not spent by this explanation)",
            ),
            _ => {}
        }
        match (denial, decision) {
            (Some(Denial::UserMismatch), _) => {
                checks.fail(USER_BINDING, "the path's {user_id} is not the token's sub")
            }
            (_, Decision::Forward { principal, .. }) => checks.pass(
                USER_BINDING,
                format!("the path's {{user_id}} is {:?}", principal.sub),
            ),
            _ => {}
        }
        let (decision, status, reason, detail) = match (denial, decision) {
            (Some(denial), _) => (
                "deny",
                Some(denial.status().as_u16()),
                Some(denial.reason()),
                message(denial.response().detail),
            ),
            (None, Decision::Forward { principal, .. }) => (
                "allow",
                None,
                None,
                format!("forwarded to the task service as user {:?}", principal.sub),
            ),
            (None, _) => (
                "allow",
                Some(StatusCode::NO_CONTENT.as_u16()),
                None,
                String::new(),
            ),
        };
        Explanation {
            decision,
            status,
            reason,
            detail,
            claims,
            checks: checks.finish(),
        }
    }
}

/// Every check the gateway can take, in order; those not reached are reported as skipped.
fn all_checks() -> impl Iterator<Item = &'static str> {
    [PATH, ROUTE, AUTHORIZATION]
        .into_iter()
        .chain(STEPS)
        .chain([REVOCATION, RATE_LIMIT, USER_BINDING])
}

#[derive(Default)]
struct Checks {
    steps: Vec<Step>,
}

impl Checks {
    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn add(&mut self, check: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.push(Step {
            check,
            outcome,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.add(check, Outcome::Pass, detail);
    }

    fn fail(&mut self, check: &'static str, detail: impl Into<String>) {
        self.add(check, Outcome::Fail, detail);
    }

    fn skip(&mut self, check: &'static str, detail: impl Into<String>) {
        self.add(check, Outcome::Skipped, detail);
    }

    fn all_passed(&self) -> bool {
        self.steps.iter().all(|step| step.outcome != Outcome::Fail)
    }

    /// The checks taken, then every later one as not reached.
    fn finish(mut self) -> Vec<Step> {
        let failed = !self.all_passed();
        for check in all_checks() {
            if !self.steps.iter().any(|step| step.check == check) {
                let detail = if failed {
                    "not reached: an earlier check failed"
                } else {
                    "not taken"
                };
                self.skip(check, detail);
            }
        }
        // Keep the gateway's order whatever order the steps were added in.
        let position = |check: &str| all_checks().position(|known| known == check);
        self.steps.sort_by_key(|step| position(step.check));
        self.steps
    }
}

fn message(detail: Detail) -> String {
    match detail {
        Detail::Message(message) => message,
        Detail::Validation(_) => String::new(),
    }
}

/// The payload of a compact JWS, decoded without verifying anything. Never the signature.
fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    let mut segments = token.split('.');
    let (_header, payload) = (segments.next()?, segments.next()?);
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<serde_json::Value>(&json)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// How `/explain` answers an [`ErrorResponse`] or an [`Explanation`].
pub fn body(explanation: &Explanation) -> Vec<u8> {
    serde_json::to_vec(explanation).unwrap_or_else(|_| {
        ErrorResponse::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").body()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_validated_like_fastapi() {
        let ok =
            ExplainRequest::parse(br#"{"method":"GET","path":"/api/a/tasks"}"#).expect("valid");
        assert_eq!(ok.authorization, None);
        let cases: [(&[u8], &[&str]); 5] = [
            (b"{", &["json_invalid"]),
            (b"[1]", &["model_attributes_type"]),
            (b"{}", &["missing", "missing"]),
            (br#"{"method":1,"path":"/"}"#, &["string_type"]),
            (
                br#"{"method":"GET","path":"/","authorization":7}"#,
                &["string_type"],
            ),
        ];
        for (body, kinds) in cases {
            let error = ExplainRequest::parse(body).expect_err("refused");
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
            let Detail::Validation(issues) = error.detail else {
                panic!("not a validation error");
            };
            let got: Vec<&str> = issues.iter().map(|issue| issue.kind.as_str()).collect();
            assert_eq!(got, kinds, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn claims_are_read_from_the_payload_only() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#);
        let claims = unverified_claims(&format!("e30.{payload}.c2lnbmF0dXJl")).expect("claims");
        assert_eq!(claims, serde_json::json!({"sub": "alice"}));
        assert_eq!(unverified_claims("e30"), None);
        assert_eq!(
            unverified_claims(&format!("e30.{}.x", URL_SAFE_NO_PAD.encode("[1]"))),
            None
        );
    }
}
