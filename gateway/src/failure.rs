//! How a failure to proxy is answered: pingora's error classified into the client's status and
//! the `gateway_upstream_errors_total` kind, and the JSON body of that status.

use common::error::ErrorResponse;
use http::StatusCode;
use pingora::{Error, ErrorSource, ErrorType};

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
pub fn failure_response(status: u16) -> ErrorResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = match status {
        StatusCode::BAD_GATEWAY => "Task service unreachable",
        StatusCode::SERVICE_UNAVAILABLE => "Task service unavailable",
        StatusCode::GATEWAY_TIMEOUT => "Task service timed out",
        other => other.canonical_reason().unwrap_or("Error"),
    };
    ErrorResponse::new(status, detail)
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
