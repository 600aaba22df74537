//! The service trusts nothing but a valid, fresh gateway assertion made for exactly this
//! request: anything else is a 401 that changes nothing.

use common::assertion::{MAX_AGE, SigningSecret};
use common::config::GATEWAY_SIGNING_SECRET_PREVIOUS;
use common::headers::{GATEWAY_ASSERTION, USER_ID};
use reqwest::Method;
use serde_json::json;

use crate::support::{
    ALICE, Backend, SECRET, TestApp, backend_tests, detail, now_unix, send, task_path, tasks_path,
};

const NOT_THROUGH_GATEWAY: &str = "Request did not come through the gateway";

async fn requests_without_a_valid_assertion_are_refused_and_change_nothing(app: TestApp) {
    let task = app.create_task(ALICE, "mine").await;
    let item = task_path(ALICE, &task);
    let before = app.snapshot(ALICE).await;
    let now = now_unix();
    let secret = SigningSecret::new(SECRET).expect("long enough");
    let wrong_secret =
        SigningSecret::new("another-secret-another-secret-0000").expect("long enough");
    let sign = |secret: &SigningSecret, time: u64, user: &str, method: &Method, path: &str| {
        app.assertion(secret, time, user, method, path)
    };

    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let path = if method == Method::PATCH {
            format!("{item}/complete")
        } else {
            item.clone()
        };
        let other_method = if method == Method::GET {
            Method::DELETE
        } else {
            Method::GET
        };
        let attempts: Vec<(&str, Option<String>)> = vec![
            ("forged user id, no assertion", None),
            (
                "wrong secret",
                Some(sign(&wrong_secret, now, ALICE, &method, &path)),
            ),
            (
                "expired",
                Some(sign(&secret, now - MAX_AGE - 30, ALICE, &method, &path)),
            ),
            (
                "from the future",
                Some(sign(&secret, now + 3600, ALICE, &method, &path)),
            ),
            (
                "made for another method",
                Some(sign(&secret, now, ALICE, &other_method, &path)),
            ),
            (
                "made for another path",
                Some(sign(
                    &secret,
                    now,
                    ALICE,
                    &method,
                    &format!("{}/424242", tasks_path(ALICE)),
                )),
            ),
            (
                "made for another query",
                Some(sign(
                    &secret,
                    now,
                    ALICE,
                    &method,
                    &format!("{path}?status=all"),
                )),
            ),
            (
                "made for another user",
                Some(sign(&secret, now, "mallory", &method, &path)),
            ),
            ("garbage", Some("t=1,v1=00".to_owned())),
        ];
        for (what, assertion) in attempts {
            let mut request = app
                .client()
                .request(method.clone(), app.url(&path))
                .header(USER_ID, ALICE)
                .json(&json!({"title": "hijacked", "completed": true}));
            if let Some(assertion) = assertion {
                request = request.header(GATEWAY_ASSERTION, assertion);
            }
            let reply = send(request).await;
            reply.expect_status(401);
            assert_eq!(
                reply.json(),
                detail(NOT_THROUGH_GATEWAY),
                "{method}: {what}"
            );
        }
    }
    // The same for creating and listing, which would otherwise leak or plant data.
    for method in [Method::GET, Method::POST] {
        let reply = send(
            app.client()
                .request(method.clone(), app.url(&tasks_path(ALICE)))
                .header(USER_ID, ALICE)
                .header("x-forwarded-user", ALICE)
                .json(&json!({"title": "planted"})),
        )
        .await;
        reply.expect_status(401);
        assert_eq!(reply.json(), detail(NOT_THROUGH_GATEWAY), "{method}");
    }
    // A valid assertion without the user id header it was made for.
    let headerless = send(app.client().get(app.url(&item)).header(
        GATEWAY_ASSERTION,
        sign(&secret, now, ALICE, &Method::GET, &item),
    ))
    .await;
    headerless.expect_status(401);

    assert_eq!(app.snapshot(ALICE).await, before);
}

async fn an_assertion_is_checked_before_the_path_or_body(app: TestApp) {
    // Even a malformed request learns nothing without an assertion.
    let reply = send(
        app.client()
            .put(app.url(&format!("{}/not-a-number", tasks_path(ALICE))))
            .header("content-type", "application/json")
            .body("{broken"),
    )
    .await;
    reply.expect_status(401);
    assert_eq!(reply.json(), detail(NOT_THROUGH_GATEWAY));
}

backend_tests!(
    requests_without_a_valid_assertion_are_refused_and_change_nothing,
    an_assertion_is_checked_before_the_path_or_body
);

#[tokio::test]
async fn the_previous_secret_is_accepted_during_a_rotation() {
    let old = "the-previous-secret-0123456789abcdef";
    let app = TestApp::spawn_with(Backend::Sqlite, &[(GATEWAY_SIGNING_SECRET_PREVIOUS, old)]).await;
    let path = tasks_path(ALICE);
    let signed_with_old = app.assertion(
        &SigningSecret::new(old).expect("long enough"),
        now_unix(),
        ALICE,
        &Method::GET,
        &path,
    );
    let reply = send(
        app.client()
            .get(app.url(&path))
            .header(USER_ID, ALICE)
            .header(GATEWAY_ASSERTION, signed_with_old),
    )
    .await;
    reply.expect_status(200);
}
