//! The graceful-upgrade socket on a host: whoever receives the listening sockets reads every
//! client's token, so only a private directory and a peer of the gateway's own uid will do.
//! Through the real binary.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gateway::config::GATEWAY_UPGRADE_SOCK;

use crate::support::clients::status_of;
use crate::support::eventually;
use crate::support::processes::{
    GATEWAY_BINARY, Served, assert_graceful_upgrade, binary_vars, serve, signal,
};
use crate::support::servers::EchoUpstream;
use crate::support::tokens::{claims_for, hs256};

/// A uid that is not the test's: `nobody`.
const OTHER_UID: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .args([uid.to_string(), path.display().to_string()])
        .status()
        .expect("chown runs");
    assert!(status.success());
}

/// Runs the binary to completion (it should refuse to start) with `vars`.
fn run_to_exit(vars: &[(String, String)], upgrade: bool) -> Output {
    let mut command = Command::new(GATEWAY_BINARY);
    if upgrade {
        command.arg("--upgrade");
    }
    command
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("the binary runs")
}

fn assert_refused_naming_the_variable(output: &Output, why: &str) {
    assert!(!output.status.success(), "{why}: the gateway started");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{why}: {stderr}");
    assert!(lines[0].contains(GATEWAY_UPGRADE_SOCK), "{why}: {stderr}");
}

#[tokio::test]
async fn upgrade_socket_directory_open_to_others_is_refused_at_start() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    let (vars, _, _) = binary_vars(&upstream, &open.join("upgrade.sock"));
    // A directory created by someone else before the gateway's first start.
    for mode in [0o777, 0o733, 0o755] {
        chmod(&open, mode);
        let output = run_to_exit(&vars, false);
        assert_refused_naming_the_variable(&output, &format!("mode {mode:o}"));
    }
    if is_root() {
        chmod(&open, 0o700);
        chown(&open, OTHER_UID);
        let output = run_to_exit(&vars, false);
        assert_refused_naming_the_variable(&output, "another user's directory");
        assert!(String::from_utf8_lossy(&output.stderr).contains("owned by uid"));
    }
}

#[tokio::test]
async fn default_upgrade_socket_is_private_and_the_upgrade_still_works() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // As systemd's RuntimeDirectory= sets it; the directory does not exist yet.
    let runtime = dir.path().join("runtime/gateway");
    let (mut vars, listen, _) = binary_vars(&upstream, &dir.path().join("unused.sock"));
    vars.retain(|(name, _)| name != GATEWAY_UPGRADE_SOCK);
    vars.push(("RUNTIME_DIRECTORY".into(), runtime.display().to_string()));
    assert_graceful_upgrade(&vars, listen, &runtime.join("upgrade.sock")).await;
    let meta = std::fs::metadata(&runtime).expect("the runtime directory was created");
    assert_eq!(meta.mode() & 0o777, 0o700, "private to the gateway's user");
}

#[tokio::test]
async fn upgrade_that_cannot_bind_its_socket_says_so_and_exits() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Something that is not a socket already holds the path.
    let sock = dir.path().join("upgrade.sock");
    let (vars, _, _) = binary_vars(&upstream, &sock);
    std::fs::create_dir(&sock).expect("dir");
    let output = run_to_exit(&vars, true);
    assert_refused_naming_the_variable(&output, "unbindable socket");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot bind"), "{stderr}");
}

/// Binds a listener at `sock`, applies `tamper` (named `tampered`) and sends SIGQUIT to `old`:
/// the old process must keep serving and never connect to that listener.
async fn assert_sigquit_refused(
    old: &Served,
    sock: &Path,
    api: &str,
    token: &str,
    tampered: &str,
    tamper: impl FnOnce(),
) {
    let listener = UnixListener::bind(sock).expect("bind the impostor socket");
    listener.set_nonblocking(true).expect("nonblocking");
    tamper();
    signal(&old.child, "QUIT");
    // An accepted upgrade connects at once; give it ample time to try.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        matches!(listener.accept(), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
        "the old process connected to a socket it should not trust ({tampered})"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        status_of(&client, api, token).await,
        200,
        "still serving ({tampered})"
    );
    assert!(
        Path::new(&format!("/proc/{}", old.child.id())).exists(),
        "the old process kept running ({tampered})"
    );
    drop(listener);
    std::fs::remove_file(sock).expect("remove the impostor socket");
}

#[tokio::test]
async fn old_process_hands_its_sockets_only_to_its_own_uid_in_a_private_directory() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).expect("dir");
    chmod(&private, 0o700);
    let sock = private.join("upgrade.sock");
    let (vars, listen, _) = binary_vars(&upstream, &sock);
    let old = serve(&vars, false);
    let client = reqwest::Client::new();
    let token = hs256(&claims_for("alice"));
    let api = format!("http://{listen}/api/alice/tasks");
    eventually("the binary to serve", || async {
        status_of(&client, &api, &token).await == 200
    })
    .await;

    let open = "a directory anyone can write";
    assert_sigquit_refused(&old, &sock, &api, &token, open, || chmod(&private, 0o777)).await;
    chmod(&private, 0o700);
    if is_root() {
        let foreign = "a socket bound by another uid";
        assert_sigquit_refused(&old, &sock, &api, &token, foreign, || {
            chown(&sock, OTHER_UID)
        })
        .await;
    }
}
