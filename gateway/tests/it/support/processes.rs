//! The real `gateway` and `task-service` binaries as child processes: their environment, logs,
//! signals and exit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::telemetry::RUST_LOG;
use gateway::config::{GATEWAY_ADMIN_LISTEN, GATEWAY_LISTEN, GATEWAY_UPGRADE_SOCK};

use super::clients::status_of;
use super::eventually;
use super::servers::EchoUpstream;
use super::stack::TestGateway;
use super::tokens::{claims_for, hs256};

/// The `gateway` executable Cargo built for these tests.
pub const GATEWAY_BINARY: &str = env!("CARGO_BIN_EXE_gateway");

/// A port that was free a moment ago (the binary binds by address, not by listener).
pub fn free_port() -> SocketAddr {
    let [port] = free_ports();
    port
}

/// `N` different ports that were free a moment ago. Each is held until all are found: ports
/// taken one after the other can come out the same, and a gateway given one port for both
/// listeners would answer some public requests from its admin listener.
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"));
    held.map(|listener| listener.local_addr().expect("its address"))
}

/// The real `task-service` binary, built next to the gateway's by a workspace build.
pub fn task_service_binary() -> std::path::PathBuf {
    let path = Path::new(GATEWAY_BINARY).with_file_name("task-service");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        path.display()
    );
    path
}

/// Starts `binary` with `vars`, both output streams into `log`.
pub fn spawn_logging(binary: &Path, vars: &[(String, String)], log: &Path) -> Served {
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(binary)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    Served { child }
}

/// A running `gateway` binary, killed when dropped.
pub struct Served {
    pub child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `gateway` binary with exactly `vars` in its environment.
pub fn serve(vars: &[(String, String)], upgrade: bool) -> Served {
    serve_logging_to(vars, upgrade, Stdio::null())
}

/// [`serve`], with the binary's log (stderr) going to `log`.
pub fn serve_logging_to(vars: &[(String, String)], upgrade: bool, log: impl Into<Stdio>) -> Served {
    let mut command = Command::new(GATEWAY_BINARY);
    if upgrade {
        command.arg("--upgrade");
    }
    let child = command
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary starts");
    Served { child }
}

/// The environment of a `gateway` binary in front of `upstream` (HS256 secret), listening on
/// fresh ports, with its upgrade socket at `sock` (its directory made private, 0700); and the
/// two addresses.
pub fn binary_vars(
    upstream: &EchoUpstream,
    sock: &Path,
) -> (Vec<(String, String)>, SocketAddr, SocketAddr) {
    // The gateway refuses an upgrade socket in a directory others can enter.
    if let Some(dir) = sock.parent() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .expect("a private upgrade-socket directory");
    }
    let [listen, admin] = free_ports();
    let vars = TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(GATEWAY_LISTEN, listen.to_string())
        .var(GATEWAY_ADMIN_LISTEN, admin.to_string())
        .var(GATEWAY_UPGRADE_SOCK, sock.display().to_string())
        .var(RUST_LOG, "warn")
        .into_vars();
    (vars, listen, admin)
}

/// Sends signal `name` (`TERM`, `QUIT`…) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits until `served` exits, failing after `limit`; how long it took.
pub async fn wait_exit(served: &mut Served, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if served.child.try_wait().expect("wait").is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `program --version` runs. Without it a test says it was skipped, except in CI
/// (`CI=true`), where a missing program fails the test.
pub fn installed(program: &str, test: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI requires {program} (deploy/local/prerequisites.sh installs it)"
        );
        eprintln!("SKIPPED {test}: {program} is not installed");
    }
    found
}

/// A graceful upgrade of the binary configured by `vars` (public listener `listen`, upgrade
/// socket `sock`): the old process serves, a new one started with `--upgrade` waits on `sock`,
/// SIGQUIT hands the listening socket over, and the new process serves the same port.
pub async fn assert_graceful_upgrade(vars: &[(String, String)], listen: SocketAddr, sock: &Path) {
    let mut old = serve(vars, false);
    let client = reqwest::Client::new();
    let token = hs256(&claims_for("alice"));
    let api = format!("http://{listen}/api/alice/tasks");
    eventually("the old binary to serve", || async {
        status_of(&client, &api, &token).await == 200
    })
    .await;

    // The new binary waits on the upgrade socket for the old one's listeners.
    let _new = serve(vars, true);
    eventually("the new binary to wait for the sockets", || async {
        sock.exists()
    })
    .await;
    signal(&old.child, "QUIT");
    wait_exit(&mut old, Duration::from_secs(15)).await;
    assert_eq!(
        status_of(&client, &api, &token).await,
        200,
        "the new binary serves the same port"
    );
}

/// Waits until a gateway binary is ready (`/readyz` on `admin` answers 200) and its public
/// listener accepts connections: the admin listener may answer first, since pingora starts each
/// service on its own thread.
pub async fn wait_serving(client: &reqwest::Client, admin: SocketAddr, listen: SocketAddr) {
    eventually("the gateway (and what it needs) to be ready", || async {
        status_of(client, &format!("http://{admin}/readyz"), "").await == 200
    })
    .await;
    eventually("the gateway's public listener", || async {
        tokio::net::TcpStream::connect(listen).await.is_ok()
    })
    .await;
}
