//! The per-request id: the client's `X-Request-Id` when it is well formed, a new UUID otherwise.
//! It is forwarded upstream, returned to the client and written in the access log, so it must
//! be safe in all three places.

use common::headers::{REQUEST_ID, is_well_formed_request_id};
use pingora::http::RequestHeader;

/// The id for this request.
pub fn request_id(request: &RequestHeader) -> String {
    let mut values = request.headers.get_all(REQUEST_ID).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if is_well_formed_request_id(value.as_bytes()) => {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use common::headers::MAX_REQUEST_ID_LEN;

    use super::*;

    fn with_ids(ids: &[&str]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).expect("head");
        for id in ids {
            request.append_header("x-request-id", *id).expect("header");
        }
        request
    }

    #[test]
    fn a_well_formed_client_id_is_kept() {
        assert_eq!(request_id(&with_ids(&["abc-123_x.y"])), "abc-123_x.y");
    }

    #[test]
    fn other_ids_are_replaced_by_a_uuid() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for ids in [
            &[][..],
            &["has space"],
            &["inject\"quote"],
            &[long.as_str()],
            &["a", "b"],
            &[""],
        ] {
            let id = request_id(&with_ids(ids));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{ids:?} gave {id}");
        }
    }
}
