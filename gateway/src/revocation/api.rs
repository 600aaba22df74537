//! The revocation endpoints of the admin listener, for the frontend's server side:
//!
//! - `POST /revocations` with `{"sid": "…"}`, `{"jti": "…"}` or `{"sub": "…", "not_before"?: <unix
//!   seconds, default the next second>}`, and an optional `"expires_at"` (unix seconds, default now +
//!   `REVOCATION_TTL_SECONDS`): 204 once stored; 202 when it is enforced here but the store is
//!   unreachable (it is written when the store is back); 422 with a FastAPI `detail` list for a
//!   bad body.
//! - `GET /revocations/stats`: `{"sid", "jti", "sub", "store", "store_up", "loaded"}`.
//!
//! Both need `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>` (401 otherwise, compared in constant
//! time) and answer 404, like any unknown path, when `GATEWAY_ADMIN_TOKEN` is unset.

use std::sync::Arc;

use common::clock::now_unix;
use common::error::{ErrorResponse, ValidationIssue};
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value};

use super::{Persisted, Revocation, Revocations, Target};
use crate::admin::{error, json};

/// The largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The longest `sid`, `jti` or `sub` accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// How far ahead `expires_at` may be: a year.
const MAX_EXPIRY_SECONDS: u64 = 366 * 24 * 3600;

/// The revocation endpoints.
pub struct RevocationApi {
    revocations: Arc<Revocations>,
}

impl RevocationApi {
    pub fn new(revocations: Arc<Revocations>) -> Self {
        Self { revocations }
    }

    /// Whether `path` is one of these endpoints.
    pub fn serves(path: &str) -> bool {
        path == "/revocations" || path.starts_with("/revocations/")
    }

    /// The reply to a request that carried the admin token.
    pub async fn respond(&self, method: &Method, path: &str, body: &[u8]) -> Response<Vec<u8>> {
        match (path, method) {
            ("/revocations", &Method::POST) => {
                match parse(body, now_unix(), |now| self.revocations.default_expiry(now)) {
                    Ok(revocation) => match self.revocations.revoke(revocation).await {
                        Persisted::Stored => json(StatusCode::NO_CONTENT, Vec::new()),
                        Persisted::Pending => error(
                            StatusCode::ACCEPTED,
                            "Revoked at this gateway; the revocation store is unreachable and \
                         receives it when it is back",
                        ),
                    },
                    Err(issues) => {
                        let response = ErrorResponse::validation(issues);
                        json(response.status, response.body())
                    }
                }
            }
            ("/revocations/stats", &Method::GET) => {
                let counts = self.revocations.set().counts();
                let body = serde_json::json!({
                    "sid": counts.sid,
                    "jti": counts.jti,
                    "sub": counts.sub,
                    "store": self.revocations.store_name(),
                    "store_up": self.revocations.metrics.revocation_store_up.get() == 1,
                    "loaded": self.revocations.is_loaded(),
                });
                json(StatusCode::OK, body.to_string().into_bytes())
            }
            ("/revocations", _) => method_not_allowed("POST"),
            ("/revocations/stats", _) => method_not_allowed("GET"),
            _ => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Vec<u8>> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Reads a `POST /revocations` body, listing every problem as FastAPI would.
pub fn parse(
    body: &[u8],
    now: u64,
    default_expiry: impl FnOnce(u64) -> u64,
) -> Result<Revocation, Vec<ValidationIssue>> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        vec![ValidationIssue::new(
            &["body"],
            format!("JSON decode error: {err}"),
            "json_invalid",
        )]
    })?;
    let Value::Object(fields) = value else {
        return Err(vec![ValidationIssue::new(
            &["body"],
            "Input should be a valid dictionary",
            "dict_type",
        )]);
    };
    let mut issues = Vec::new();
    for name in fields.keys() {
        if !matches!(
            name.as_str(),
            "sid" | "jti" | "sub" | "not_before" | "expires_at"
        ) {
            issues.push(ValidationIssue::new(
                &["body", name],
                "Extra inputs are not permitted",
                "extra_forbidden",
            ));
        }
    }
    let sid = identifier(&fields, "sid", &mut issues);
    let jti = identifier(&fields, "jti", &mut issues);
    let sub = identifier(&fields, "sub", &mut issues);
    let not_before = seconds(&fields, "not_before", &mut issues);
    let expires_at = seconds(&fields, "expires_at", &mut issues);
    let named = ["sid", "jti", "sub"]
        .into_iter()
        .filter(|name| fields.contains_key(*name))
        .count();
    if named == 0 {
        issues.push(ValidationIssue::new(
            &["body"],
            "One of sid, jti or sub is required",
            "missing",
        ));
    } else if named > 1 {
        issues.push(ValidationIssue::new(
            &["body"],
            "Give exactly one of sid, jti or sub",
            "value_error",
        ));
    }
    if fields.contains_key("not_before") && !fields.contains_key("sub") {
        issues.push(ValidationIssue::new(
            &["body", "not_before"],
            "not_before applies only with sub",
            "value_error",
        ));
    }
    if let Some(at) = expires_at {
        if at <= now {
            issues.push(ValidationIssue::new(
                &["body", "expires_at"],
                "expires_at must be in the future",
                "greater_than",
            ));
        } else if at > now.saturating_add(MAX_EXPIRY_SECONDS) {
            issues.push(ValidationIssue::new(
                &["body", "expires_at"],
                "expires_at must be within a year",
                "less_than_equal",
            ));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let target = match (sid, jti, sub) {
        (Some(sid), None, None) => Target::Session(sid),
        (None, Some(jti), None) => Target::Token(jti),
        // `iat` has whole seconds, so a token issued earlier in this very second cannot be told
        // from one issued after the revocation: by default, this second's tokens are cut off too.
        (None, None, Some(sub)) => Target::User {
            sub,
            not_before: not_before.unwrap_or(now + 1),
        },
        // Every other combination was listed as an issue above.
        _ => {
            return Err(vec![ValidationIssue::new(
                &["body"],
                "Give exactly one of sid, jti or sub",
                "value_error",
            )]);
        }
    };
    Ok(Revocation {
        target,
        expires_at: expires_at.unwrap_or_else(|| default_expiry(now)),
    })
}

fn identifier(
    fields: &Map<String, Value>,
    name: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<String> {
    match fields.get(name)? {
        Value::String(id) if id.is_empty() => {
            issues.push(ValidationIssue::new(
                &["body", name],
                "String should have at least 1 character",
                "string_too_short",
            ));
            None
        }
        Value::String(id) if id.len() > MAX_ID_BYTES => {
            issues.push(ValidationIssue::new(
                &["body", name],
                format!("String should have at most {MAX_ID_BYTES} characters"),
                "string_too_long",
            ));
            None
        }
        Value::String(id) => Some(id.clone()),
        _ => {
            issues.push(ValidationIssue::new(
                &["body", name],
                "Input should be a valid string",
                "string_type",
            ));
            None
        }
    }
}

fn seconds(
    fields: &Map<String, Value>,
    name: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<u64> {
    let value = fields.get(name)?;
    let parsed = value.as_u64();
    if parsed.is_none() {
        issues.push(ValidationIssue::new(
            &["body", name],
            "Input should be a valid integer (Unix seconds)",
            "int_type",
        ));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn parsed(body: &str) -> Result<Revocation, Vec<(String, String)>> {
        parse(body.as_bytes(), NOW, |now| now + 100).map_err(|issues| {
            issues
                .into_iter()
                .map(|issue| {
                    let loc: Vec<String> = issue
                        .loc
                        .iter()
                        .map(|part| part.as_str().unwrap_or_default().to_owned())
                        .collect();
                    (loc.join("."), issue.kind)
                })
                .collect()
        })
    }

    #[test]
    fn each_kind_with_its_defaults() {
        assert_eq!(
            parsed(r#"{"sid":"s1"}"#),
            Ok(Revocation {
                target: Target::Session("s1".into()),
                expires_at: NOW + 100
            })
        );
        assert_eq!(
            parsed(&format!(r#"{{"jti":"j1","expires_at":{}}}"#, NOW + 5)),
            Ok(Revocation {
                target: Target::Token("j1".into()),
                expires_at: NOW + 5
            })
        );
        assert_eq!(
            parsed(r#"{"sub":"u1"}"#),
            Ok(Revocation {
                target: Target::User {
                    sub: "u1".into(),
                    not_before: NOW + 1
                },
                expires_at: NOW + 100
            })
        );
        assert_eq!(
            parsed(r#"{"sub":"u1","not_before":12}"#).map(|r| r.target),
            Ok(Target::User {
                sub: "u1".into(),
                not_before: 12
            })
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let issues = |body: &str| parsed(body).expect_err("refused");
        assert_eq!(issues("{"), [("body".into(), "json_invalid".into())]);
        assert_eq!(issues("[]"), [("body".into(), "dict_type".into())]);
        assert_eq!(issues("{}"), [("body".into(), "missing".into())]);
        assert_eq!(
            issues(r#"{"sid":"a","jti":"b"}"#),
            [("body".into(), "value_error".into())]
        );
        assert_eq!(
            issues(r#"{"sid":1,"extra":true,"expires_at":"soon"}"#),
            [
                ("body.extra".into(), "extra_forbidden".into()),
                ("body.sid".into(), "string_type".into()),
                ("body.expires_at".into(), "int_type".into()),
            ]
        );
        assert_eq!(
            issues(r#"{"sid":"","not_before":5}"#),
            [
                ("body.sid".into(), "string_too_short".into()),
                ("body.not_before".into(), "value_error".into()),
            ]
        );
        assert_eq!(
            issues(&format!(r#"{{"sid":"a","expires_at":{NOW}}}"#)),
            [("body.expires_at".into(), "greater_than".into())]
        );
        assert_eq!(
            issues(&format!(r#"{{"sub":"{}"}}"#, "x".repeat(MAX_ID_BYTES + 1))),
            [("body.sub".into(), "string_too_long".into())]
        );
    }
}
