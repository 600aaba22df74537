//! Logs at every level, also the libraries' own records at `trace`: no bearer token, cookie,
//! signed assertion or secret, in either tier. Both real binaries.

use std::path::Path;
use std::time::Duration;

use common::config::GATEWAY_SIGNING_SECRET;
use common::telemetry::RUST_LOG;
use gateway::config::{GATEWAY_ADMIN_LISTEN, GATEWAY_LISTEN};
use task_service::config::{DATABASE_URL, TASK_SERVICE_LISTEN};

use crate::support::processes::{
    GATEWAY_BINARY, free_ports, signal, spawn_logging, task_service_binary, wait_exit, wait_serving,
};
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, now};

/// Every run of 64 lowercase hex digits: the shape of an assertion's HMAC.
fn hex64_runs(text: &str) -> Vec<&str> {
    let mut runs = Vec::new();
    let bytes = text.as_bytes();
    let mut start = None;
    for (at, byte) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        let hex = byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
        match (hex, start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                if at - from == 64 {
                    runs.push(&text[from..at]);
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[tokio::test]
async fn trace_logs_of_both_tiers_carry_no_token_cookie_assertion_or_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (task_log, gateway_log) = (dir.path().join("task.log"), dir.path().join("gateway.log"));
    let [task_addr, listen, admin] = free_ports();
    let task_vars: Vec<(String, String)> = [
        (TASK_SERVICE_LISTEN, task_addr.to_string()),
        (
            DATABASE_URL,
            format!("sqlite://{}", dir.path().join("tasks.db").display()),
        ),
        (GATEWAY_SIGNING_SECRET, SIGNING_SECRET.to_owned()),
        (RUST_LOG, "trace".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let mut task = spawn_logging(&task_service_binary(), &task_vars, &task_log);

    let sock_dir = dir.path().join("run");
    let gateway_vars = TestGateway::builder(&format!("http://{task_addr}"))
        .shared_secret()
        .var(GATEWAY_LISTEN, listen.to_string())
        .var(GATEWAY_ADMIN_LISTEN, admin.to_string())
        .var("RUNTIME_DIRECTORY", sock_dir.display().to_string())
        .var(RUST_LOG, "trace")
        .into_vars();
    let mut gateway = spawn_logging(Path::new(GATEWAY_BINARY), &gateway_vars, &gateway_log);

    let client = reqwest::Client::new();
    wait_serving(&client, admin, listen).await;
    let token = hs256(&claims_for("alice"));
    let signature = token.rsplit('.').next().expect("a signature").to_owned();
    let cookie = "better-auth.session_token=cookie-value-4f1d2c9a8b7e6d5c";
    let forged = format!("t={},v1={}", now(), "ab".repeat(32));
    let api = format!("http://{listen}/api/alice/tasks");
    let created = client
        .post(&api)
        .bearer_auth(&token)
        .header("cookie", cookie)
        .header("x-gateway-assertion", &forged)
        .json(&serde_json::json!({"title": "log probe"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let listed = client
        .get(&api)
        .bearer_auth(&token)
        .header("cookie", cookie)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), 200);
    // A refused token takes another path through the code.
    let bad = format!("{}x", &token[..token.len() - 1]);
    let refused = client
        .get(&api)
        .bearer_auth(&bad)
        .send()
        .await
        .expect("401");
    assert_eq!(refused.status(), 401);

    for served in [&mut gateway, &mut task] {
        signal(&served.child, "TERM");
        wait_exit(served, Duration::from_secs(10)).await;
    }
    for (tier, log) in [("gateway", &gateway_log), ("task service", &task_log)] {
        let text = std::fs::read_to_string(log).expect("log");
        assert!(
            text.contains("\"level\":\"TRACE\""),
            "{tier} logged at trace"
        );
        assert!(text.lines().count() > 10, "{tier}: few lines:\n{text}");
        for (what, secret) in [
            ("the token's signature", signature.as_str()),
            (
                "the bad token's signature",
                bad.rsplit('.').next().unwrap_or(""),
            ),
            ("the cookie value", "cookie-value-4f1d2c9a8b7e6d5c"),
            ("the forged assertion", &forged[forged.len() - 64..]),
            ("BETTER_AUTH_SECRET", HMAC_SECRET),
            ("GATEWAY_SIGNING_SECRET", SIGNING_SECRET),
        ] {
            let leak = text.lines().find(|line| line.contains(secret));
            assert!(leak.is_none(), "{tier} logged {what}: {leak:?}");
        }
        assert!(!text.contains(&token[..40]), "{tier} logged the token");
        let hmacs = hex64_runs(&text);
        assert!(
            hmacs.is_empty(),
            "{tier} logged what looks like a signed assertion: {hmacs:?}"
        );
    }
}
