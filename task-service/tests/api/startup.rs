//! The real binary: a bad configuration or an unreachable database stops it at start with one
//! line naming the variable; a good one serves until SIGTERM, then exits cleanly.

use std::path::Path;
use std::process::{Output, Stdio};

use common::config::GATEWAY_SIGNING_SECRET;
use task_service::config::{DATABASE_URL, TASK_SERVICE_LISTEN};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::SECRET;

const BINARY: &str = env!("CARGO_BIN_EXE_task-service");

/// Runs the binary in `dir` with exactly `env` and waits for it to exit.
async fn run_binary(dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the task-service binary")
}

/// Asserts a failed start with exactly one stderr line that names `variable`.
#[track_caller]
fn assert_refused(output: &Output, variable: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exited successfully; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains(variable),
        "{variable} not named in: {stderr}"
    );
}

#[tokio::test]
async fn a_missing_or_short_signing_secret_stops_the_service() {
    let dir = tempfile::tempdir().expect("temporary directory");
    assert_refused(&run_binary(dir.path(), &[]).await, GATEWAY_SIGNING_SECRET);
    assert_refused(
        &run_binary(dir.path(), &[(GATEWAY_SIGNING_SECRET, "too-short")]).await,
        GATEWAY_SIGNING_SECRET,
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[tokio::test]
async fn a_bad_database_url_stops_the_service() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for url in [
        "mysql://localhost/tasks",
        "tasks.db",
        "postgres://user@db:notaport/tasks",
    ] {
        let output = run_binary(
            dir.path(),
            &[(GATEWAY_SIGNING_SECRET, SECRET), (DATABASE_URL, url)],
        )
        .await;
        assert_refused(&output, DATABASE_URL);
    }
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_stops_the_service() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // The file's "directory" is a regular file, so it can be neither created nor opened.
    std::fs::write(dir.path().join("occupied"), "").expect("create a file");
    let sqlite = format!("sqlite://{}/occupied/tasks.db", dir.path().display());
    // Nothing listens on port 1: refused at once, and reported with that cause.
    let postgres = "postgres://postgres@127.0.0.1:1/tasks";
    for url in [sqlite.as_str(), postgres] {
        let output = run_binary(
            dir.path(),
            &[
                (GATEWAY_SIGNING_SECRET, SECRET),
                (DATABASE_URL, url),
                (TASK_SERVICE_LISTEN, "127.0.0.1:0"),
            ],
        )
        .await;
        assert_refused(&output, DATABASE_URL);
    }
}

#[tokio::test]
async fn the_binary_serves_with_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(BINARY)
        .env_clear()
        .envs([
            (GATEWAY_SIGNING_SECRET, SECRET),
            (TASK_SERVICE_LISTEN, "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // The binary logs where it listens (port 0 picks a free one) once the database is open.
    let address = loop {
        let line = lines
            .next_line()
            .await
            .expect("read stderr")
            .expect("the binary logged its address before exiting");
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if record["message"] == "task service listening" {
            break record["address"]
                .as_str()
                .expect("address field")
                .to_owned();
        }
    };
    let health = reqwest::get(format!("http://{address}/healthz"))
        .await
        .expect("reach /healthz");
    assert_eq!(health.status(), 200);
    assert!(
        dir.path().join("data/tasks.db").exists(),
        "the default SQLite file is created under ./data"
    );

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().await.expect("wait for the binary");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
