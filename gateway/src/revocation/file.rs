//! The default store: the whole set as one JSON file (`REVOCATION_FILE`, by default
//! `data/revocations.json`), for a single gateway.
//!
//! Every change rewrites the file through a temporary file in the same directory, synced and
//! then renamed over the old one, so a crash leaves either the old set or the new one, never
//! half of either. Expired entries are left out of every write, and the background task rewrites
//! the file when a sweep dropped some, so the file shrinks as entries expire. A file that exists
//! but cannot be read stops the gateway at start: starting with an empty set would silently
//! forget every revocation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::clock::now_unix;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{LoadError, Revocation, Revocations, SWEEP_INTERVAL, StoredRevocation};
use crate::config::REVOCATION_FILE;

/// The file's layout: `{"version": 1, "entries": [...]}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    entries: Vec<StoredRevocation>,
}

const VERSION: u32 = 1;

/// The file store.
pub struct FileStore {
    path: PathBuf,
    /// One write at a time, so an older snapshot never replaces a newer one.
    writing: tokio::sync::Mutex<()>,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The unexpired entries of the file; none when it does not exist yet.
    pub fn load(&self) -> Result<Vec<Revocation>, LoadError> {
        let bad = |detail: String| LoadError {
            variable: REVOCATION_FILE,
            detail: format!("{}: {detail}", self.path.display()),
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(bad(format!("cannot be read: {err}"))),
        };
        let contents: FileContents = serde_json::from_slice(&bytes)
            .map_err(|err| bad(format!("is not a revocation file: {err}")))?;
        if contents.version != VERSION {
            return Err(bad(format!("has unknown version {}", contents.version)));
        }
        let now = now_unix();
        contents
            .entries
            .into_iter()
            .map(|stored| Revocation::try_from(stored).map_err(|err| bad(err.to_owned())))
            .filter(|entry| entry.as_ref().map_or(true, |entry| entry.expires_at > now))
            .collect()
    }

    /// Replaces the file with `entries` (the expired ones left out), atomically.
    pub async fn save(&self, entries: Vec<Revocation>) -> std::io::Result<()> {
        let _one_at_a_time = self.writing.lock().await;
        let now = now_unix();
        let contents = FileContents {
            version: VERSION,
            entries: entries
                .iter()
                .filter(|entry| entry.expires_at > now)
                .map(StoredRevocation::from)
                .collect(),
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &contents))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn write_atomically(path: &Path, contents: &FileContents) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(directory)?;
    let mut temporary = tempfile::NamedTempFile::new_in(directory)?;
    serde_json::to_writer(&mut temporary, contents)?;
    temporary.flush()?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|err| err.error)?;
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(directory)?.sync_all()
}

/// Sweeps expired entries every second, rewriting the file when some were dropped or when the
/// last write failed.
pub(super) async fn run(
    revocations: &Revocations,
    store: &FileStore,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let swept = revocations.sweep();
        if swept || revocations.dirty.swap(false, Ordering::AcqRel) {
            match store.save(revocations.set.snapshot()).await {
                Ok(()) => revocations.metrics.revocation_store_up.set(1),
                Err(err) => {
                    revocations.store_failed("write", &err);
                    revocations.dirty.store(true, Ordering::Release);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    #[tokio::test]
    async fn saves_atomically_and_loads_only_live_entries() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("nested/revocations.json");
        let store = FileStore::new(path.clone());
        assert_eq!(store.load().expect("missing file is empty"), vec![]);
        let live = Revocation {
            target: Target::Session("s1".into()),
            expires_at: now_unix() + 60,
        };
        let expired = Revocation {
            target: Target::Token("j1".into()),
            expires_at: now_unix() - 1,
        };
        store
            .save(vec![live.clone(), expired])
            .await
            .expect("written");
        assert_eq!(store.load().expect("loads"), vec![live]);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_corrupt_file_names_the_variable() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("revocations.json");
        std::fs::write(&path, b"{not json").expect("write");
        let error = FileStore::new(path).load().expect_err("refused");
        assert_eq!(error.variable, "REVOCATION_FILE");
    }
}
