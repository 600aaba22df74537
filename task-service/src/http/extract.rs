//! Extractors that read a request the way FastAPI does: JSON bodies checked field by field,
//! integer path parameters, and every failure reported as a 422 `detail` list (`loc`, `msg`,
//! `type`) in the [`ApiError`] body rather than axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::{Json, extract::rejection::JsonRejection};
use common::error::ValidationIssue;
use serde_json::{Map, Value};

use crate::http::error::ApiError;

/// What a JSON body must contain, checked field by field.
pub trait FromJsonBody: Sized {
    /// Builds the value from the body (`None` when the request had none), listing every problem.
    fn from_json_body(body: Option<Value>) -> Result<Self, Vec<ValidationIssue>>;
}

/// A JSON request body, validated into `T`.
///
/// It reads the body through axum (so the body limit applies, 413 above it), requires a JSON
/// content type when there is a body (415 otherwise), parses it with [`Json`] (422 `json_invalid`
/// when broken), and lets `T` check the fields (422 listing each problem). An empty body is
/// handed to `T` as `None`, so a type may accept it (`PATCH …/complete` toggles on one).
pub struct JsonBody<T>(pub T);

impl<T: FromJsonBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declares_json = has_json_content_type(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::Unreadable {
                status: rejection.status(),
                message: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "Request body too large"
                } else {
                    "Could not read the request body"
                },
            })?;
        let body = if bytes.is_empty() {
            None
        } else if declares_json {
            let Json(value) = Json::<Value>::from_bytes(&bytes).map_err(invalid_json)?;
            Some(value)
        } else {
            return Err(ApiError::UnsupportedMediaType);
        };
        T::from_json_body(body)
            .map(Self)
            .map_err(ApiError::Validation)
    }
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn invalid_json(rejection: JsonRejection) -> ApiError {
    tracing::debug!(%rejection, "request body is not valid JSON");
    ApiError::invalid(&["body"], "JSON decode error", "json_invalid")
}

/// The `{task_id}` path parameter as an integer; otherwise 422 at `["path", "task_id"]`.
#[derive(Debug, Clone, Copy)]
pub struct TaskId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        const NAME: &str = "task_id";
        let int_parsing = || {
            ApiError::invalid(
                &["path", NAME],
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
            )
        };
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| int_parsing())?;
        let raw = params
            .iter()
            .find_map(|(name, value)| (name == NAME).then_some(value))
            .ok_or_else(|| ApiError::Internal(format!("route has no {{{NAME}}} parameter")))?;
        raw.parse().map(TaskId).map_err(|_| int_parsing())
    }
}

/// A problem with one value: the message and the pydantic error type.
pub type Problem = (String, &'static str);

/// Reads the fields of a JSON object body one by one, collecting every problem (as pydantic
/// does) so the client learns of all of them at once. Fields it is not asked for are ignored,
/// so a client sending `id` or `user_id` changes nothing.
pub struct BodyFields {
    object: Map<String, Value>,
    issues: Vec<ValidationIssue>,
}

impl BodyFields {
    /// Accepts a JSON object; a missing body or any other JSON value is a 422.
    pub fn new(body: Option<Value>) -> Result<Self, Vec<ValidationIssue>> {
        match body {
            Some(Value::Object(object)) => Ok(Self {
                object,
                issues: Vec::new(),
            }),
            None => Err(vec![ValidationIssue::new(
                &["body"],
                "Field required",
                "missing",
            )]),
            Some(_) => Err(vec![ValidationIssue::new(
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )]),
        }
    }

    /// A field that must be present; `None` when it is missing or invalid (the problem is noted).
    pub fn required<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&Value) -> Result<T, Problem>,
    ) -> Option<T> {
        match self.object.get(name) {
            None => {
                self.note(name, ("Field required".to_owned(), "missing"));
                None
            }
            Some(value) => self.check(name, parse(value)),
        }
    }

    /// A field that may be absent: `Some(None)` when absent, `Some(Some(_))` when valid, `None`
    /// when invalid (the problem is noted).
    pub fn optional<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&Value) -> Result<T, Problem>,
    ) -> Option<Option<T>> {
        match self.object.get(name) {
            None => Some(None),
            Some(value) => self.check(name, parse(value)).map(Some),
        }
    }

    /// `Ok(value)` when every field read was valid, else every problem noted.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ValidationIssue>> {
        match value {
            Some(value) if self.issues.is_empty() => Ok(value),
            _ => Err(self.issues),
        }
    }

    fn check<T>(&mut self, name: &str, parsed: Result<T, Problem>) -> Option<T> {
        parsed.map_err(|problem| self.note(name, problem)).ok()
    }

    fn note(&mut self, name: &str, (msg, kind): Problem) {
        self.issues
            .push(ValidationIssue::new(&["body", name], msg, kind));
    }
}

/// Wraps a field parser so that JSON `null` reads as `None`.
pub fn nullable<T>(
    parse: impl Fn(&Value) -> Result<T, Problem>,
) -> impl Fn(&Value) -> Result<Option<T>, Problem> {
    move |value| match value {
        Value::Null => Ok(None),
        value => parse(value).map(Some),
    }
}

/// A JSON string of at most `max` characters (Unicode scalar values, as Python counts), at least
/// `min` after trimming when `trim` is set, and without NUL; returns it trimmed or as sent.
///
/// NUL is refused because neither backend can hold it: PostgreSQL `text` rejects it outright,
/// and SQLite's `length()` and `like` stop at it, so the stored value would not be the one checked.
pub fn string(min: usize, max: usize, trim: bool) -> impl Fn(&Value) -> Result<String, Problem> {
    move |value| {
        let Value::String(text) = value else {
            return Err(("Input should be a valid string".to_owned(), "string_type"));
        };
        if text.contains('\0') {
            return Err((
                "String should not contain NUL characters".to_owned(),
                "string_pattern_mismatch",
            ));
        }
        let text = if trim { text.trim() } else { text.as_str() };
        let chars = text.chars().count();
        if chars < min {
            let unit = if min == 1 { "character" } else { "characters" };
            Err((
                format!("String should have at least {min} {unit}"),
                "string_too_short",
            ))
        } else if chars > max {
            Err((
                format!("String should have at most {max} characters"),
                "string_too_long",
            ))
        } else {
            Ok(text.to_owned())
        }
    }
}

/// A JSON boolean (strictly: no `"yes"` or `1`).
pub fn boolean(value: &Value) -> Result<bool, Problem> {
    value
        .as_bool()
        .ok_or_else(|| ("Input should be a valid boolean".to_owned(), "bool_type"))
}

/// One of a fixed set of strings, with pydantic's enum message
/// (`Input should be 'a', 'b' or 'c'`).
pub fn one_of<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, Problem> {
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(*value);
    }
    let quoted: Vec<String> = choices
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    let listed = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err((format!("Input should be {listed}"), "enum"))
}
