//! The canonical path check and the route table: which request targets the gateway forwards.
//!
//! The gateway decides on exactly the bytes it forwards (`RequestHeader::raw_path()`, the request
//! target as it came off the wire). Pingora does not normalise paths, and the task service's router
//! decodes percent-escapes, so any target the two could read differently is refused with 400
//! before authorization: `.`/`..` segments, empty segments, percent-encoded `/` `\` `.` or control
//! bytes, `;` parameters, raw `\`, `#`, control or non-ASCII bytes, and a `{user_id}` that one
//! round of percent-decoding would change. (A `#` never belongs in a request target (RFC 9112
//! §3.2), and a URI parser cuts the target there. Pingora already drops a fragment before the
//! gateway sees the target; refusing it here keeps this check sound on its own.)
//!
//! An absolute-form target (`GET http://host/api/...`, which RFC 9112 obliges a server to accept)
//! is checked on its path and query, and is forwarded in origin-form: the task service receives,
//! and the assertion signs, exactly the `path?query` checked here.

use http::Method;

/// Why a request target was refused (always a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form or absolute-form `http(s)://authority/path`.
    UnsupportedTargetForm,
    /// A raw byte that must never appear: control, non-ASCII, `\` or `#`.
    ForbiddenByte,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A percent-encoded `/`, `\`, `.` or control byte.
    EncodedSeparator,
    /// An empty segment: `//` or a trailing `/`.
    EmptySegment,
    /// A `.` or `..` segment.
    DotSegment,
    /// A `;` in the path (matrix parameters).
    Semicolon,
    /// The `{user_id}` segment changes under one round of percent-decoding.
    EncodedUserId,
}

/// A request target that passed the canonical check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The origin-form `path[?query]` that is forwarded and signed.
    pub origin_form: &'a str,
    /// The path alone.
    pub path: &'a str,
}

impl<'a> Target<'a> {
    /// The path's segments, without the leading `/`.
    pub fn segments(&self) -> impl Iterator<Item = &'a str> + 'a {
        let path: &'a str = self.path;
        path.strip_prefix('/')
            .unwrap_or(path)
            .split('/')
            .filter(|segment| !segment.is_empty())
    }
}

/// Checks a raw request target and returns the origin-form bytes to forward.
pub fn check_target(raw: &[u8]) -> Result<Target<'_>, PathError> {
    // Anything outside printable ASCII, and a backslash or a fragment mark anywhere, is refused
    // before parsing: the task service's parser and ours must never disagree on where a segment
    // or the target ends.
    if raw
        .iter()
        .any(|&byte| !(0x21..0x7f).contains(&byte) || matches!(byte, b'\\' | b'#'))
    {
        return Err(PathError::ForbiddenByte);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PathError::ForbiddenByte)?;
    let origin_form = strip_absolute_form(text)?;
    let path = origin_form
        .split_once('?')
        .map_or(origin_form, |(path, _query)| path);
    check_path(path)?;
    Ok(Target { origin_form, path })
}

/// Returns the `path[?query]` of an origin-form or absolute-form target.
fn strip_absolute_form(target: &str) -> Result<&str, PathError> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| {
            target
                .get(..scheme.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
        })
        .map(|scheme| scheme.len())
        .ok_or(PathError::UnsupportedTargetForm)?;
    let rest = &target[scheme_len..];
    let path_start = rest.find('/').ok_or(PathError::UnsupportedTargetForm)?;
    let authority = &rest[..path_start];
    let plain_authority = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain_authority {
        return Err(PathError::UnsupportedTargetForm);
    }
    Ok(&rest[path_start..])
}

/// The segment rules of the contract, applied to the path alone.
fn check_path(path: &str) -> Result<(), PathError> {
    if path == "/" {
        return Ok(());
    }
    let segments = path
        .strip_prefix('/')
        .ok_or(PathError::UnsupportedTargetForm)?;
    for (index, segment) in segments.split('/').enumerate() {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        if segment.contains(';') {
            return Err(PathError::Semicolon);
        }
        let has_escapes = check_escapes(segment)?;
        // `/api/{user_id}/...`: the user id is compared byte for byte with the token's subject
        // and the task service decodes it once, so it must read the same either way.
        if index == 1 && has_escapes {
            return Err(PathError::EncodedUserId);
        }
    }
    Ok(())
}

/// Checks each `%XX` escape; returns whether the segment has any.
fn check_escapes(segment: &str) -> Result<bool, PathError> {
    let bytes = segment.as_bytes();
    let mut found = false;
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| b == b'%') {
        let at = index + offset;
        let decoded = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or(PathError::BadPercentEncoding)?;
        if matches!(decoded, b'/' | b'\\' | b'.' | 0x00..=0x1f | 0x7f) {
            return Err(PathError::EncodedSeparator);
        }
        found = true;
        index = at + 3;
    }
    Ok(found)
}

/// One of the six API routes, named by its template (also the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteName {
    /// `GET /api/{user_id}/tasks`
    ListTasks,
    /// `POST /api/{user_id}/tasks`
    CreateTask,
    /// `GET /api/{user_id}/tasks/{id}`
    GetTask,
    /// `PUT /api/{user_id}/tasks/{id}`
    UpdateTask,
    /// `DELETE /api/{user_id}/tasks/{id}`
    DeleteTask,
    /// `PATCH /api/{user_id}/tasks/{id}/complete`
    CompleteTask,
}

impl RouteName {
    /// Every route, in the contract's order.
    pub const ALL: [Self; 6] = [
        Self::ListTasks,
        Self::CreateTask,
        Self::GetTask,
        Self::UpdateTask,
        Self::DeleteTask,
        Self::CompleteTask,
    ];

    /// The route's method.
    pub fn method(self) -> Method {
        match self {
            Self::ListTasks | Self::GetTask => Method::GET,
            Self::CreateTask => Method::POST,
            Self::UpdateTask => Method::PUT,
            Self::DeleteTask => Method::DELETE,
            Self::CompleteTask => Method::PATCH,
        }
    }

    /// The route template, used as a low-cardinality metrics label; the same template as the
    /// task service's (its metrics label and its OpenAPI path).
    pub fn template(self) -> &'static str {
        match self {
            Self::ListTasks | Self::CreateTask => "/api/{user_id}/tasks",
            Self::GetTask | Self::UpdateTask | Self::DeleteTask => "/api/{user_id}/tasks/{id}",
            Self::CompleteTask => "/api/{user_id}/tasks/{id}/complete",
        }
    }
}

/// A request matched to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub name: RouteName,
    /// The `{user_id}` segment, exactly as sent (it has no escapes).
    pub user_id: &'a str,
}

/// Why no route matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this path: 404.
    NotFound,
    /// The path exists but not with this method: 405, listing the allowed ones.
    MethodNotAllowed(&'static [Method]),
}

const COLLECTION_METHODS: &[Method] = &[Method::GET, Method::POST];
const ITEM_METHODS: &[Method] = &[Method::GET, Method::PUT, Method::DELETE];
const COMPLETE_METHODS: &[Method] = &[Method::PATCH];

/// Matches a checked target and a method to one of the six routes.
pub fn match_route<'a>(method: &Method, target: &Target<'a>) -> Result<Route<'a>, RouteError> {
    let segments: Vec<&'a str> = target.segments().collect();
    let (user_id, allowed) = match segments.as_slice() {
        ["api", user_id, "tasks"] => (*user_id, COLLECTION_METHODS),
        ["api", user_id, "tasks", _id] => (*user_id, ITEM_METHODS),
        ["api", user_id, "tasks", _id, "complete"] => (*user_id, COMPLETE_METHODS),
        _ => return Err(RouteError::NotFound),
    };
    let name = match (allowed, method) {
        (COLLECTION_METHODS, &Method::GET) => RouteName::ListTasks,
        (COLLECTION_METHODS, &Method::POST) => RouteName::CreateTask,
        (ITEM_METHODS, &Method::GET) => RouteName::GetTask,
        (ITEM_METHODS, &Method::PUT) => RouteName::UpdateTask,
        (ITEM_METHODS, &Method::DELETE) => RouteName::DeleteTask,
        (COMPLETE_METHODS, &Method::PATCH) => RouteName::CompleteTask,
        _ => return Err(RouteError::MethodNotAllowed(allowed)),
    };
    Ok(Route { name, user_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<&str, PathError> {
        check_target(raw.as_bytes()).map(|target| target.origin_form)
    }

    #[test]
    fn ordinary_targets_pass_unchanged() {
        for raw in [
            "/api/alice/tasks",
            "/api/alice/tasks?status=all&sort=created&order=desc",
            "/api/alice/tasks?q=a%2Fb%2e.",
            "/api/alice/tasks/42",
            "/api/alice/tasks/42/complete",
            "/api/a1b2C3d4e5f6g7h8i9j0k1l2m3n4o5p6/tasks",
            "/api/user.name_-~/tasks",
            "/",
        ] {
            assert_eq!(check(raw), Ok(raw), "{raw}");
        }
    }

    #[test]
    fn every_path_trick_is_refused() {
        use PathError::*;
        let cases: &[(&[u8], PathError)] = &[
            (b"/api/alice/../bob/tasks", DotSegment),
            (b"/api/alice/./tasks", DotSegment),
            (b"/api/bob/tasks/..", DotSegment),
            (b"/api//alice/tasks", EmptySegment),
            (b"//api/alice/tasks", EmptySegment),
            (b"/api/alice/tasks/", EmptySegment),
            (b"/api/alice%2fbob/tasks", EncodedSeparator),
            (b"/api/alice%2Fbob/tasks", EncodedSeparator),
            (b"/api/alice/tasks/%2e%2e", EncodedSeparator),
            (b"/api/alice/%2E%2E/tasks", EncodedSeparator),
            (b"/api/alice%5cbob/tasks", EncodedSeparator),
            (b"/api/alice%5C/tasks", EncodedSeparator),
            (b"/api/alice%00/tasks", EncodedSeparator),
            (b"/api/alice%0a/tasks", EncodedSeparator),
            (b"/api/alice%1F/tasks", EncodedSeparator),
            (b"/api/alice%7f/tasks", EncodedSeparator),
            (b"/api/alice;x=1/tasks", Semicolon),
            (b"/api/alice/tasks;jsessionid=1", Semicolon),
            (b"/api/al%69ce/tasks", EncodedUserId),
            (b"/api/alice%25/tasks", EncodedUserId),
            (b"/api/%C3%A9/tasks", EncodedUserId),
            (b"/api/alice%zz/tasks", BadPercentEncoding),
            (b"/api/alice%4/tasks", BadPercentEncoding),
            (b"/api/alice\\bob/tasks", ForbiddenByte),
            (b"/api/alice\x01/tasks", ForbiddenByte),
            (b"/api/alice\x7f/tasks", ForbiddenByte),
            (b"/api/al\xc3\xa9/tasks", ForbiddenByte),
            (b"/api/alice/tasks?q=\xff", ForbiddenByte),
            (b"/api/alice tasks", ForbiddenByte),
            (b"/api/alice/tasks/1#/../../bob", ForbiddenByte),
            (b"/api/alice/tasks?q=#x", ForbiddenByte),
            (b"*", UnsupportedTargetForm),
            (b"api/alice/tasks", UnsupportedTargetForm),
            (b"example.com:443", UnsupportedTargetForm),
            (b"http://user@evil/api/alice/tasks", UnsupportedTargetForm),
            (b"http://host", UnsupportedTargetForm),
            (b"ftp://host/api/alice/tasks", UnsupportedTargetForm),
            (b"http://host/api/alice/../bob/tasks", DotSegment),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                check_target(raw).map(|t| t.origin_form),
                Err(*expected),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn absolute_form_is_forwarded_in_origin_form() {
        assert_eq!(
            check("http://gateway.example:8080/api/alice/tasks?status=all"),
            Ok("/api/alice/tasks?status=all")
        );
        assert_eq!(
            check("HTTPS://gateway.example/api/alice/tasks"),
            Ok("/api/alice/tasks")
        );
    }

    fn route(method: Method, raw: &str) -> Result<(RouteName, String), RouteError> {
        let target = check_target(raw.as_bytes()).expect("canonical");
        match_route(&method, &target).map(|route| (route.name, route.user_id.to_owned()))
    }

    #[test]
    fn the_six_routes_match() {
        let alice = || "alice".to_owned();
        assert_eq!(
            route(Method::GET, "/api/alice/tasks?status=all"),
            Ok((RouteName::ListTasks, alice()))
        );
        assert_eq!(
            route(Method::POST, "/api/alice/tasks"),
            Ok((RouteName::CreateTask, alice()))
        );
        assert_eq!(
            route(Method::GET, "/api/alice/tasks/7"),
            Ok((RouteName::GetTask, alice()))
        );
        assert_eq!(
            route(Method::PUT, "/api/alice/tasks/7"),
            Ok((RouteName::UpdateTask, alice()))
        );
        assert_eq!(
            route(Method::DELETE, "/api/alice/tasks/7"),
            Ok((RouteName::DeleteTask, alice()))
        );
        assert_eq!(
            route(Method::PATCH, "/api/alice/tasks/7/complete"),
            Ok((RouteName::CompleteTask, alice()))
        );
    }

    #[test]
    fn other_paths_are_not_found_and_wrong_methods_not_allowed() {
        for raw in [
            "/",
            "/api",
            "/api/alice",
            "/api/alice/task",
            "/api/alice/tasks/7/complete/now",
            "/API/alice/tasks",
            "/api/alice/t%61sks",
            "/healthz",
            "/metrics",
        ] {
            assert_eq!(route(Method::GET, raw), Err(RouteError::NotFound), "{raw}");
        }
        assert_eq!(
            route(Method::DELETE, "/api/alice/tasks"),
            Err(RouteError::MethodNotAllowed(COLLECTION_METHODS))
        );
        assert_eq!(
            route(Method::PATCH, "/api/alice/tasks/1"),
            Err(RouteError::MethodNotAllowed(ITEM_METHODS))
        );
        assert_eq!(
            route(Method::GET, "/api/alice/tasks/1/complete"),
            Err(RouteError::MethodNotAllowed(COMPLETE_METHODS))
        );
    }
}
