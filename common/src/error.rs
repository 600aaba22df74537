//! The JSON error body both tiers answer with, shaped as FastAPI writes it so that a frontend
//! written for the original backend reads it unchanged.
//!
//! Most errors are `{"detail": "message"}`; validation errors (422) are
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// The 403 `detail` for a request whose user is not the `{user_id}` in its path, worded the same
/// whichever tier refuses it.
pub const USER_MISMATCH: &str = "Not authorized to access this user's tasks";

/// One entry of a 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationIssue {
    /// Where the problem is, e.g. `["body", "title"]` or `["path", "task_id"]`.
    pub loc: Vec<serde_json::Value>,
    /// A human-readable message.
    pub msg: String,
    /// A machine-readable kind, e.g. `string_too_long`, `missing`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ValidationIssue {
    /// An issue at a location given as path segments (`["body", "title"]`).
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            loc: loc
                .iter()
                .map(|part| serde_json::Value::String((*part).to_owned()))
                .collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// The `detail` field: a message, or a list of validation issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Message(String),
    Validation(Vec<ValidationIssue>),
}

/// An error reply: a status and the body that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: StatusCode,
    pub detail: Detail,
}

#[derive(Serialize)]
struct Body<'a> {
    detail: &'a Detail,
}

impl ErrorResponse {
    /// A reply with a plain message in `detail`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: Detail::Message(message.into()),
        }
    }

    /// A 422 reply listing validation issues.
    pub fn validation(issues: Vec<ValidationIssue>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: Detail::Validation(issues),
        }
    }

    /// The JSON body, e.g. `{"detail":"Not authenticated"}`.
    pub fn body(&self) -> Vec<u8> {
        // Serializing a string or a list of plain structs cannot fail; fall back to a fixed body
        // rather than panic if it ever did.
        serde_json::to_vec(&Body {
            detail: &self.detail,
        })
        .unwrap_or_else(|_| br#"{"detail":"Internal Server Error"}"#.to_vec())
    }
}

/// The content type of every error body.
pub const JSON_CONTENT_TYPE: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_body_is_fastapi_shaped() {
        let err = ErrorResponse::new(StatusCode::UNAUTHORIZED, "Not authenticated");
        assert_eq!(err.body(), br#"{"detail":"Not authenticated"}"#);
    }

    #[test]
    fn validation_body_lists_issues() {
        let err = ErrorResponse::validation(vec![ValidationIssue::new(
            &["body", "title"],
            "String should have at most 200 characters",
            "string_too_long",
        )]);
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            String::from_utf8(err.body()).expect("utf-8"),
            r#"{"detail":[{"loc":["body","title"],"msg":"String should have at most 200 characters","type":"string_too_long"}]}"#
        );
    }
}
