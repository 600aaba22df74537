//! WAL checkpoints on a thread of their own, beside the writer thread.
//!
//! A commit appends the pages it changed to the WAL; a checkpoint copies them back into the
//! database file and syncs both files. By default SQLite checkpoints inside the commit that
//! takes the WAL past 1,000 pages, so the writer thread would stop for the copy and two
//! `fsync`s while writes queue behind it, and the batch that triggered it would wait for them
//! too. Here the writer only says that it committed; this thread runs a passive checkpoint (one
//! that never blocks the writer or a reader) on its own connection shortly after, so one
//! checkpoint covers the commits of that moment. The writer's connection still checkpoints by
//! itself past [`WRITER_CHECKPOINT_PAGES`], should this thread not keep up or be unable to open
//! its connection.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{SqliteSettings, open};

/// How long after a commit the checkpoint runs: the commits made meanwhile are copied by the
/// same checkpoint.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);
/// The WAL size, in pages, past which the writer's own commit checkpoints (SQLite's default is
/// 1,000): a backstop that bounds the WAL if this thread falls behind.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// The checkpoint thread of one pool, started by the writer thread; dropping this ends it.
pub(super) struct Checkpoints {
    signals: Arc<Signals>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Signals {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The writer committed since the last checkpoint began.
    committed: bool,
    closing: bool,
}

impl Checkpoints {
    /// Starts the checkpoint thread, which opens a connection of its own to the pool's database.
    pub(super) fn start(settings: &SqliteSettings) -> Self {
        let signals = Arc::new(Signals::default());
        let running = Arc::clone(&signals);
        let settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpointer(&running, &settings))
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot start the SQLite checkpoint thread; the writer checkpoints by itself");
            })
            .ok();
        Self { signals, thread }
    }

    /// Tells the thread that the writer committed.
    pub(super) fn committed(&self) {
        if let Ok(mut state) = self.signals.state.lock()
            && !state.committed
        {
            state.committed = true;
            self.signals.changed.notify_one();
        }
    }
}

impl Drop for Checkpoints {
    /// Ends the thread, waiting for a checkpoint it is running (the last connection to close
    /// checkpoints whatever is left).
    fn drop(&mut self) {
        if let Ok(mut state) = self.signals.state.lock() {
            state.closing = true;
        }
        self.signals.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Signals {
    /// Waits for a commit, then [`CHECKPOINT_DELAY`] more; false once closing.
    fn next(&self) -> bool {
        let Ok(state) = self.state.lock() else {
            return false;
        };
        let Ok(state) = self
            .changed
            .wait_while(state, |state| !state.committed && !state.closing)
        else {
            return false;
        };
        let Ok((mut state, _)) =
            self.changed
                .wait_timeout_while(state, CHECKPOINT_DELAY, |state| !state.closing)
        else {
            return false;
        };
        if state.closing {
            return false;
        }
        state.committed = false;
        true
    }
}

/// The checkpoint thread: a passive checkpoint shortly after each burst of commits, on a
/// connection opened when first needed and again after a failure.
fn checkpointer(signals: &Signals, settings: &SqliteSettings) {
    let mut connection: Option<Connection> = None;
    let mut failing = false;
    while signals.next() {
        let outcome = match &connection {
            Some(open) => checkpoint(open),
            None => open(settings).and_then(|opened| {
                checkpoint(&opened)?;
                connection = Some(opened);
                Ok(())
            }),
        };
        match outcome {
            Ok(()) => failing = false,
            Err(err) => {
                // Once per run of failures: the writer's own checkpoints cover meanwhile.
                if !failing {
                    tracing::warn!(error = %err, "SQLite WAL checkpoint failed");
                }
                failing = true;
                connection = None;
            }
        }
    }
}

/// Copies what it can of the WAL into the database without waiting for any lock.
fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    connection.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(()))
}
