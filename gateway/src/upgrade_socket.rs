//! The graceful-upgrade socket: where a new `gateway --upgrade` waits for the running gateway's
//! listening sockets.
//!
//! Whoever receives those sockets serves the public port and reads every client's bearer token,
//! so the socket must be reachable by the gateway's own user only. Pingora binds it (in the new
//! process) with mode 0666 and connects to it by path (in the old process) without asking who
//! listens, so the protection is the directory it lives in:
//!
//! - the default is a private runtime directory, never a predictable name in `/tmp`:
//!   `$RUNTIME_DIRECTORY/upgrade.sock` (systemd's `RuntimeDirectory=`), else
//!   `/run/gateway/upgrade.sock` for root, `$XDG_RUNTIME_DIR/gateway/upgrade.sock`, or a per-uid
//!   `$TMPDIR/gateway-<uid>/upgrade.sock`;
//! - at start the directory is created 0700 when missing, and refused (one line naming
//!   `GATEWAY_UPGRADE_SOCK`) when it is not a real directory owned by the gateway's uid, or when
//!   group or others have any access to it: write access would let them put their own listener
//!   at the path, search access would let them connect to the new process and hand it sockets of
//!   their own;
//! - `gateway --upgrade` first binds the path itself, so one that cannot says so and exits;
//! - on SIGQUIT the old process hands its sockets over only when the socket at the path is a
//!   socket owned by its own uid (the uid that bound it) in a directory that is still private.
//!   Otherwise it refuses the upgrade, logs why and keeps serving.
//!
//! Pingora accepts and connects inside its own code, so `SO_PEERCRED` cannot be read on those
//! connections; the owner of a socket file is the effective uid of the process that bound it,
//! and only that uid (or root) can create one in the private directory.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use common::config::{ConfigError, Env};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::GATEWAY_UPGRADE_SOCK;

/// The socket's file name inside the default directories.
const SOCKET_NAME: &str = "upgrade.sock";

/// Group and other permission bits: none may be set on the socket's directory.
const NOT_OWNER_BITS: u32 = 0o077;

/// How long the old process waits, after SIGQUIT, for the new one's socket to appear.
const WAIT_FOR_NEW_PROCESS: Duration = Duration::from_secs(5);

/// The upgrade socket's path from `GATEWAY_UPGRADE_SOCK`, or the private default; `None` when
/// the variable is `off` (Kubernetes replaces pods instead of upgrading them in place).
pub fn from_env(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    match env.get(GATEWAY_UPGRADE_SOCK)? {
        Some("off") => Ok(None),
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(ConfigError::new(
                    GATEWAY_UPGRADE_SOCK,
                    format!("{} must be an absolute file path", path.display()),
                ));
            }
            Ok(Some(path))
        }
        None => Ok(Some(default_path(
            env.get("RUNTIME_DIRECTORY")?,
            env.get("XDG_RUNTIME_DIR")?,
            env.get("TMPDIR")?,
            nix::unistd::geteuid().as_raw(),
        ))),
    }
}

/// The default socket path for a process of `euid`, given its runtime-directory variables.
pub fn default_path(
    runtime_directory: Option<&str>,
    xdg_runtime_dir: Option<&str>,
    tmpdir: Option<&str>,
    euid: u32,
) -> PathBuf {
    fn absolute(dir: Option<&str>) -> Option<&str> {
        dir.filter(|dir| dir.starts_with('/'))
    }
    // systemd lists several directories separated by colons when several are configured.
    if let Some(dir) = absolute(runtime_directory.and_then(|dirs| dirs.split(':').next())) {
        return Path::new(dir).join(SOCKET_NAME);
    }
    if euid == 0 {
        return Path::new("/run/gateway").join(SOCKET_NAME);
    }
    if let Some(dir) = absolute(xdg_runtime_dir) {
        return Path::new(dir).join("gateway").join(SOCKET_NAME);
    }
    let tmp = absolute(tmpdir).unwrap_or("/tmp");
    Path::new(tmp)
        .join(format!("gateway-{euid}"))
        .join(SOCKET_NAME)
}

/// What the serving process checks at start: the directory is private and, for
/// `gateway --upgrade`, the socket can be bound.
pub fn prepare(socket: Option<&Path>, upgrade: bool) -> Result<(), ConfigError> {
    match socket {
        Some(socket) => {
            prepare_directory(socket)?;
            if upgrade {
                check_bindable(socket)?;
            }
            Ok(())
        }
        None if upgrade => Err(refused("is off, so --upgrade has nothing to take over")),
        None => Ok(()),
    }
}

fn refused(message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(GATEWAY_UPGRADE_SOCK, message)
}

/// Creates the socket's directory (0700) when it is missing and checks that it is private to
/// this process's uid. Run once at start, before anything listens.
pub fn prepare_directory(socket: &Path) -> Result<(), ConfigError> {
    let dir = directory_of(socket);
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) => {
            return Err(refused(format!(
                "cannot create the directory {}: {err}",
                dir.display()
            )));
        }
    }
    check_directory(dir).map_err(refused)
}

fn directory_of(socket: &Path) -> &Path {
    socket
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
}

/// The metadata of `path` itself (a symlink is not followed), which must be of the kind
/// `is_kind` accepts (`kind` names it) and owned by this process's effective uid.
fn owned_entry(
    path: &Path,
    is_kind: fn(&fs::FileType) -> bool,
    kind: &str,
) -> Result<fs::Metadata, String> {
    let shown = path.display();
    let metadata =
        fs::symlink_metadata(path).map_err(|err| format!("cannot inspect {shown}: {err}"))?;
    if !is_kind(&metadata.file_type()) {
        return Err(format!("{shown} is not a {kind}"));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if metadata.uid() != euid {
        return Err(format!(
            "{shown} is owned by uid {}, not by the gateway's uid {euid}",
            metadata.uid()
        ));
    }
    Ok(metadata)
}

/// The socket's directory must be a directory (not a symlink to one), owned by this uid, with no
/// access for group or others.
fn check_directory(dir: &Path) -> Result<(), String> {
    let metadata = owned_entry(dir, fs::FileType::is_dir, "directory")?;
    let mode = metadata.mode() & 0o777;
    if mode & NOT_OWNER_BITS != 0 {
        return Err(format!(
            "{} has mode {mode:o}: group and others must have no access (chmod 700; \
             with systemd, RuntimeDirectoryMode=0700)",
            dir.display()
        ));
    }
    Ok(())
}

/// For `gateway --upgrade`: the socket can be bound at `socket`. A stale socket of ours there is
/// removed (pingora removes it too before binding); anything else there is refused.
pub fn check_bindable(socket: &Path) -> Result<(), ConfigError> {
    let shown = socket.display();
    match fs::symlink_metadata(socket) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            fs::remove_file(socket)
                .map_err(|err| refused(format!("cannot remove the old socket {shown}: {err}")))?;
        }
        Ok(_) => {
            return Err(refused(format!(
                "cannot bind {shown}: something else than a socket is there"
            )));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(refused(format!("cannot inspect {shown}: {err}"))),
    }
    let listener =
        UnixListener::bind(socket).map_err(|err| refused(format!("cannot bind {shown}: {err}")))?;
    drop(listener);
    fs::remove_file(socket).map_err(|err| refused(format!("cannot remove {shown}: {err}")))
}

/// For the old process on SIGQUIT: the socket at `socket` was bound by a process of this uid, in
/// a directory that is still private.
pub fn check_peer_socket(socket: &Path) -> Result<(), String> {
    check_directory(directory_of(socket))?;
    // The owner of a socket file is the effective uid of the process that bound it.
    owned_entry(socket, FileTypeExt::is_socket, "socket").map(drop)
}

/// Pingora's signal handling (SIGQUIT upgrade, SIGTERM graceful stop, SIGINT fast stop), except
/// that a SIGQUIT hands the listening sockets over only when [`check_peer_socket`] passes.
pub struct CheckedUpgradeSignals {
    /// The upgrade socket; `None` when upgrades are off.
    pub socket: Option<PathBuf>,
}

impl CheckedUpgradeSignals {
    /// Waits up to [`WAIT_FOR_NEW_PROCESS`] for the new process's socket, then checks it.
    async fn upgrade_allowed(&self) -> Result<(), String> {
        let Some(socket) = &self.socket else {
            return Err(format!(
                "graceful upgrade is off ({GATEWAY_UPGRADE_SOCK}=off)"
            ));
        };
        let deadline = tokio::time::Instant::now() + WAIT_FOR_NEW_PROCESS;
        while fs::symlink_metadata(socket).is_err() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check_peer_socket(socket)
    }
}

#[async_trait]
impl ShutdownSignalWatch for CheckedUpgradeSignals {
    async fn recv(&self) -> ShutdownSignal {
        let streams = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (Ok(mut quit), Ok(mut terminate), Ok(mut interrupt)) = streams else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => match self.upgrade_allowed().await {
                    Ok(()) => return ShutdownSignal::GracefulUpgrade,
                    Err(reason) => tracing::error!(
                        reason,
                        "SIGQUIT: refusing to hand the listening sockets over; still serving"
                    ),
                },
                _ = terminate.recv() => return ShutdownSignal::GracefulTerminate,
                _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn default_paths_are_private_runtime_directories() {
        let path = |rt, xdg, tmp, uid| default_path(rt, xdg, tmp, uid);
        assert_eq!(
            path(
                Some("/run/gw:/run/other"),
                Some("/run/user/1000"),
                None,
                1000
            ),
            Path::new("/run/gw/upgrade.sock")
        );
        assert_eq!(
            path(None, Some("/run/user/0"), None, 0),
            Path::new("/run/gateway/upgrade.sock")
        );
        assert_eq!(
            path(None, Some("/run/user/1000"), None, 1000),
            Path::new("/run/user/1000/gateway/upgrade.sock")
        );
        assert_eq!(
            path(None, None, None, 1000),
            Path::new("/tmp/gateway-1000/upgrade.sock")
        );
        assert_eq!(
            path(Some("relative"), None, Some("/var/tmp"), 7),
            Path::new("/var/tmp/gateway-7/upgrade.sock")
        );
    }

    #[test]
    fn the_variable_sets_or_turns_off_the_socket() {
        let read = |value: &str| from_env(&Env::from_pairs([(GATEWAY_UPGRADE_SOCK, value)]));
        assert_eq!(read("off").expect("off"), None);
        assert_eq!(
            read("/run/gw/u.sock").expect("a path"),
            Some(PathBuf::from("/run/gw/u.sock"))
        );
        for bad in ["relative.sock", "/"] {
            assert_eq!(read(bad).expect_err(bad).variable, GATEWAY_UPGRADE_SOCK);
        }
    }

    #[test]
    fn the_directory_is_created_private_and_checked() {
        let root = tempfile::tempdir().expect("temp dir");
        let socket = root.path().join("a/b/upgrade.sock");
        prepare_directory(&socket).expect("created");
        let mode = fs::metadata(root.path().join("a/b")).expect("dir").mode() & 0o777;
        assert_eq!(mode, 0o700);

        let open = root.path().join("open");
        fs::create_dir(&open).expect("dir");
        for mode in [0o777, 0o770, 0o755, 0o701] {
            fs::set_permissions(&open, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = prepare_directory(&open.join("upgrade.sock")).expect_err("refused");
            assert_eq!(err.variable, GATEWAY_UPGRADE_SOCK);
            assert!(err.message.contains("mode"), "{}", err.message);
        }
    }
}
