//! The real `gateway` binary: configuration errors, `mint-token`, `healthcheck`, SIGTERM and
//! graceful upgrade.

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::config::GATEWAY_SIGNING_SECRET;
use gateway::config::{BETTER_AUTH_SECRET, BETTER_AUTH_URL, TASK_SERVICE_URL};
use serde_json::Value;

use crate::support::clients::status_of;
use crate::support::processes::{
    GATEWAY_BINARY, assert_graceful_upgrade, binary_vars, serve, signal, wait_exit,
};
use crate::support::servers::EchoUpstream;
use crate::support::tokens::{claims_for, hs256};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, eventually};

fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(GATEWAY_BINARY)
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    let short = "short-secret";
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[(BETTER_AUTH_SECRET, HMAC_SECRET)], GATEWAY_SIGNING_SECRET),
        (
            &[
                (GATEWAY_SIGNING_SECRET, SIGNING_SECRET),
                (BETTER_AUTH_SECRET, short),
            ],
            BETTER_AUTH_SECRET,
        ),
        (
            &[(GATEWAY_SIGNING_SECRET, SIGNING_SECRET)],
            BETTER_AUTH_SECRET,
        ),
        (
            &[
                (GATEWAY_SIGNING_SECRET, SIGNING_SECRET),
                (BETTER_AUTH_SECRET, HMAC_SECRET),
                (TASK_SERVICE_URL, "https://task:8081"),
            ],
            TASK_SERVICE_URL,
        ),
    ];
    for (vars, variable) in cases {
        let output = run(&[], vars);
        assert!(!output.status.success(), "{variable}: exited successfully");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{variable}: {stderr}");
        assert!(lines[0].contains(variable), "{variable}: {stderr}");
        assert!(
            !stderr.contains(short)
                && !stderr.contains(HMAC_SECRET)
                && !stderr.contains(SIGNING_SECRET)
        );
    }
    // With no token source at all, the message says what would do.
    let output = run(&[], &[(GATEWAY_SIGNING_SECRET, SIGNING_SECRET)]);
    assert!(String::from_utf8_lossy(&output.stderr).contains(BETTER_AUTH_URL));
}

#[test]
fn mint_token_prints_an_hs256_token() {
    let output = run(
        &[
            "mint-token",
            "--sub",
            "alice",
            "--email",
            "alice@example.com",
            "--ttl",
            "2h",
        ],
        &[
            (BETTER_AUTH_SECRET, HMAC_SECRET),
            (BETTER_AUTH_URL, "http://localhost:3000"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let token = token.trim();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["email"], "alice@example.com");
    assert_eq!(payload["iss"], "http://localhost:3000");
    assert_eq!(payload["aud"], "http://localhost:3000");
    let lifetime = payload["exp"].as_u64().expect("exp") - payload["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 7200);

    let without_secret = run(&["mint-token", "--sub", "alice"], &[]);
    assert!(!without_secret.status.success());
    assert!(String::from_utf8_lossy(&without_secret.stderr).contains(BETTER_AUTH_SECRET));
}

#[tokio::test]
async fn healthcheck_asks_the_configured_admin_listener() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (vars, _listen, admin) = binary_vars(&upstream, &dir.path().join("upgrade.sock"));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Nothing listens there yet: unhealthy, with one line naming the address it asked.
    let before = run(&["healthcheck"], &pairs);
    assert!(!before.status.success());
    let stderr = String::from_utf8_lossy(&before.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("http://{admin}/readyz")),
        "{stderr}"
    );

    let _served = serve(&vars, false);
    let client = reqwest::Client::new();
    eventually("the binary to be ready", || async {
        status_of(&client, &format!("http://{admin}/readyz"), "").await == 200
    })
    .await;
    let ready = run(&["healthcheck"], &pairs);
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_within_seconds() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (vars, listen, admin) = binary_vars(&upstream, &dir.path().join("upgrade.sock"));
    let mut served = serve(&vars, false);
    let client = reqwest::Client::new();
    let token = hs256(&claims_for("alice"));
    let api = format!("http://{listen}/api/alice/tasks");
    eventually("the binary to serve", || async {
        status_of(&client, &format!("http://{admin}/readyz"), "").await == 200
            && status_of(&client, &api, &token).await == 200
    })
    .await;
    signal(&served.child, "TERM");
    let took = wait_exit(&mut served, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test]
async fn graceful_upgrade_hands_over_the_listening_socket() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("upgrade.sock");
    let (vars, listen, _admin) = binary_vars(&upstream, &sock);
    assert_graceful_upgrade(&vars, listen, &sock).await;
}
