//! Group commit on a writer thread: the writes that queue while one batch is being written are
//! committed together, by one thread that owns the pool's writing connection.
//!
//! SQLite lets one writer write at a time, and every commit writes each page it changed to the
//! WAL (a task's row, both of its indexes, the autoincrement counter, and the keyword index's
//! new segment). Writes therefore queue for the writer thread. It takes every write queued (up
//! to [`MAX_BATCH`]), runs them in one transaction, each inside its own savepoint, and commits
//! once; each write's result is sent to its caller only after that commit. The runtime's
//! threads never run a commit, so the requests they serve meanwhile are not held up by one, and
//! a busy writer goes from one batch to the next without a hand-off.
//!
//! A write's outcome is its own whatever its neighbours do: one that fails (a constraint, its
//! deadline, its request gone) is rolled back to its savepoint, and the others commit. When an
//! error rolls the whole transaction back (SQLite does so for an interrupt, a full disk or a
//! lost lock), the failed write gets its error and the others are run again from the start, so
//! none of them is reported written unless it was committed.
//!
//! A lone write runs in a transaction of its own too (without a savepoint): a statement can fail
//! after it made its change (an interrupt that lands while an `insert … returning` hands out its
//! row), and inside a transaction the failed write is rolled back whatever the statement left.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpoint::{Checkpoints, WRITER_CHECKPOINT_PAGES};
use super::{DbError, GONE, Gone, PROGRESS_INSTRUCTIONS, Shared, SqliteSettings, open};

/// The most writes one transaction takes: the rest wait for the next.
const MAX_BATCH: usize = 64;
/// A queued write's state, which its caller and the writer change by compare-and-swap.
const QUEUED: u8 = 0;
/// Taken into a batch: it will run, and its caller waits for its result. (Or [`GONE`]: its
/// caller went away, or gave up waiting while it was still queued.)
const CLAIMED: u8 = 1;

/// The writes waiting for the writer thread.
#[derive(Default)]
pub(super) struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when a write is queued or the pool closes.
    queued: Condvar,
    /// Whether the writer thread holds its connection open.
    connected: AtomicBool,
}

#[derive(Default)]
struct Pending {
    writes: Vec<Box<dyn Write>>,
    /// Set when the pool closes: the writer ends once the queue is empty.
    closing: bool,
    /// Told when the writer thread has ended.
    ended: Option<oneshot::Sender<()>>,
}

/// Starts the writer thread of a pool opened with `settings`. It ends when [`Queue::close`] is
/// called (or the pool is dropped) and the queue is empty.
pub(super) fn start(queue: &Arc<Queue>, settings: SqliteSettings) -> oneshot::Receiver<()> {
    let (ended, on_end) = oneshot::channel();
    if let Ok(mut pending) = queue.pending.lock() {
        pending.ended = Some(ended);
    }
    let writing = Arc::clone(queue);
    let spawned = std::thread::Builder::new()
        .name("sqlite-writer".to_owned())
        .spawn(move || writer(&writing, &settings));
    if let Err(err) = spawned {
        // Every write then waits out the acquire timeout (503); closing does not wait.
        tracing::error!(error = %err, "cannot start the SQLite writer thread");
        drop(
            queue
                .pending
                .lock()
                .ok()
                .and_then(|mut pending| pending.ended.take()),
        );
    }
    on_end
}

/// Runs `operation` as a write: queued, then committed with the writes queued beside it.
///
/// The caller waits up to the acquire timeout for its write to be taken into a batch (then it
/// gets [`DbError::PoolTimedOut`] and the write never runs), and once taken, for its result.
/// Dropping the returned future stops the write at its next progress check, or before it
/// starts.
pub(super) async fn write<T, F>(shared: &Arc<Shared>, operation: F) -> Result<T, DbError>
where
    F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let deadline = Instant::now() + shared.settings.statement_timeout;
    let state = Arc::new(AtomicU8::new(QUEUED));
    let (reply, mut result) = oneshot::channel();
    let queued = Box::new(Queued {
        operation,
        deadline,
        state: Arc::clone(&state),
        result: None,
        settled: false,
        reply,
    });
    if !shared.writes.push(queued) {
        return Err(DbError::PoolClosed);
    }
    let gone = Gone(Arc::clone(&state));
    let patience = tokio::time::sleep(shared.settings.acquire_timeout);
    tokio::pin!(patience);
    loop {
        tokio::select! {
            biased;
            outcome = &mut result => {
                gone.finish();
                return outcome.unwrap_or_else(|_| {
                    Err(DbError::Worker("the write ended without a result".to_owned()))
                });
            }
            () = &mut patience, if state.load(Ordering::Acquire) == QUEUED => {
                if state
                    .compare_exchange(QUEUED, GONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    gone.finish();
                    return Err(DbError::PoolTimedOut);
                }
            }
        }
    }
}

impl Queue {
    /// Queues a write for the writer thread; false once the pool is closing.
    fn push(&self, write: Box<dyn Write>) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        if pending.closing {
            return false;
        }
        pending.writes.push(write);
        drop(pending);
        self.queued.notify_one();
        true
    }

    /// Waits for writes, and claims the first ones queued (up to [`MAX_BATCH`]) whose callers
    /// still wait. Empty once the pool is closing and every write queued before has run.
    fn next_batch(&self) -> Vec<Box<dyn Write>> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        loop {
            if !pending.writes.is_empty() {
                let first = pending.writes.len().min(MAX_BATCH);
                let batch: Vec<_> = pending
                    .writes
                    .drain(..first)
                    .filter(|write| write.claim())
                    .collect();
                if !batch.is_empty() {
                    return batch;
                }
                continue;
            }
            if pending.closing {
                return Vec::new();
            }
            pending = match self.queued.wait(pending) {
                Ok(pending) => pending,
                Err(_) => return Vec::new(),
            };
        }
    }

    /// Refuses new writes; the writer thread ends once those queued have run.
    pub(super) fn close(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.closing = true;
        }
        self.queued.notify_all();
    }

    /// Whether the writer thread's connection is open.
    pub(super) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The writer thread: runs batch after batch on its own connection (opened when first needed,
/// again after it failed to open), with the busy timeout for another process's writer.
fn writer(queue: &Queue, settings: &SqliteSettings) {
    let checkpoints = Checkpoints::start(settings);
    let mut connection: Option<Connection> = None;
    loop {
        let mut batch = queue.next_batch();
        if batch.is_empty() {
            break;
        }
        if connection.is_none() {
            match open(settings).and_then(|opened| {
                opened.busy_timeout(settings.busy_timeout)?;
                opened.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
                Ok(opened)
            }) {
                Ok(opened) => {
                    connection = Some(opened);
                    queue.connected.store(true, Ordering::Relaxed);
                }
                Err(err) => {
                    settle_each(&mut batch, || DbError::Open(clone_error(&err)));
                    deliver(batch);
                    continue;
                }
            }
        }
        if let Some(writing) = &connection {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_batch(writing, &mut batch)
            }));
            if matches!(ran, Ok(true)) {
                checkpoints.committed();
            }
            if ran.is_err() {
                // A write panicked: none of the batch is known to be committed or not, and the
                // connection may be mid-transaction. It is dropped (rolling back what is open)
                // and a new one opened for the next batch.
                for write in &mut batch {
                    write.settle(DbError::Worker("a write panicked".to_owned()));
                }
                connection = None;
                queue.connected.store(false, Ordering::Relaxed);
            }
        }
        deliver(batch);
    }
    drop(checkpoints);
    if let Some(connection) = connection {
        let _ = connection.close();
        queue.connected.store(false, Ordering::Relaxed);
    }
    let ended = queue
        .pending
        .lock()
        .ok()
        .and_then(|mut pending| pending.ended.take());
    if let Some(ended) = ended {
        let _ = ended.send(());
    }
}

/// Runs the batch's writes in one transaction, each in a savepoint of its own when there are
/// several, and commits. True when a transaction was committed.
fn run_batch(connection: &Connection, batch: &mut [Box<dyn Write>]) -> bool {
    loop {
        let running = batch.iter().filter(|write| !write.settled()).count();
        if running == 0 {
            return false;
        }
        let together = running > 1;
        if let Err(err) = connection.execute_batch("begin immediate") {
            settle_each(batch, || DbError::Sqlite(clone_error(&err)));
            return false;
        }
        let mut restart = false;
        for write in batch.iter_mut().filter(|write| !write.settled()) {
            if !run_one(connection, write.as_mut(), together) {
                restart = true;
                break;
            }
        }
        if restart {
            continue;
        }
        if connection.is_autocommit() {
            // A lone write failed, and its transaction is rolled back.
            return false;
        }
        if let Err(err) = connection.execute_batch("commit") {
            rollback(connection);
            settle_each(batch, || DbError::Sqlite(clone_error(&err)));
            return false;
        }
        return true;
    }
}

/// Runs one write of a batch, in a savepoint when the batch has several. False when it failed
/// and its error rolled the whole transaction back: the batch must run again.
fn run_one(connection: &Connection, write: &mut dyn Write, together: bool) -> bool {
    if write.gone() {
        write.settle(DbError::Worker("the request went away".to_owned()));
        return true;
    }
    if together && let Err(err) = connection.execute_batch("savepoint write") {
        let rolled_back = connection.is_autocommit();
        write.settle(DbError::Sqlite(err));
        return !rolled_back;
    }
    let deadline = write.deadline();
    let state = write.state();
    let watched = connection.progress_handler(
        PROGRESS_INSTRUCTIONS,
        Some(move || Instant::now() >= deadline || state.load(Ordering::Acquire) == GONE),
    );
    let outcome = watched.and_then(|()| write.run(connection));
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    let err = match outcome {
        Ok(()) => {
            if together && let Err(err) = connection.execute_batch("release write") {
                // Its changes cannot be told apart from the others' any more.
                rollback(connection);
                write.settle(DbError::Sqlite(err));
                return false;
            }
            return true;
        }
        Err(err) => err,
    };
    if !together {
        rollback(connection);
        write.settle(DbError::Sqlite(err));
        return true;
    }
    if connection.is_autocommit() {
        write.settle(DbError::Sqlite(err));
        return false;
    }
    let _ = connection.execute_batch("rollback to write; release write");
    // Its neighbours' uncommitted writes may be why it failed (a unique value one of them
    // took): should the batch run again, so does this write.
    write.fail(DbError::Sqlite(err));
    true
}

/// Ends the open transaction, if one is open.
fn rollback(connection: &Connection) {
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("rollback");
    }
}

/// Sends every write's outcome to its caller.
fn deliver(batch: Vec<Box<dyn Write>>) {
    for write in batch {
        write.deliver();
    }
}

/// Ends every write of the batch with the error `err` makes.
fn settle_each(batch: &mut [Box<dyn Write>], err: impl Fn() -> DbError) {
    for write in batch {
        write.settle(err());
    }
}

/// The same error again, for each write of a batch that one error ended.
fn clone_error(err: &rusqlite::Error) -> rusqlite::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// A queued write, whatever its result's type.
trait Write: Send {
    /// Takes it into a batch, unless its caller has gone.
    fn claim(&self) -> bool;
    /// Whether its caller has gone since.
    fn gone(&self) -> bool;
    fn deadline(&self) -> Instant;
    fn state(&self) -> Arc<AtomicU8>;
    /// Whether its outcome is decided: an error, whatever the commit does or whether the
    /// batch runs again.
    fn settled(&self) -> bool;
    /// Runs it, keeping its result for [`Write::deliver`].
    fn run(&mut self, connection: &Connection) -> rusqlite::Result<()>;
    /// It failed with `err` in this run of the batch; if the batch runs again, so does it.
    fn fail(&mut self, err: DbError);
    /// Decides its outcome: `err`.
    fn settle(&mut self, err: DbError);
    /// Sends its outcome to its caller.
    fn deliver(self: Box<Self>);
}

struct Queued<T, F> {
    operation: F,
    deadline: Instant,
    state: Arc<AtomicU8>,
    /// `Ok` once run (valid if the batch commits), `Err` once it failed.
    result: Option<Result<T, DbError>>,
    /// The error in `result` stands whatever happens next.
    settled: bool,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> Write for Queued<T, F>
where
    F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn claim(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn gone(&self) -> bool {
        self.state.load(Ordering::Acquire) == GONE
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn state(&self) -> Arc<AtomicU8> {
        Arc::clone(&self.state)
    }

    fn settled(&self) -> bool {
        self.settled
    }

    fn run(&mut self, connection: &Connection) -> rusqlite::Result<()> {
        let value = (self.operation)(connection)?;
        self.result = Some(Ok(value));
        Ok(())
    }

    fn fail(&mut self, err: DbError) {
        self.result = Some(Err(err));
    }

    fn settle(&mut self, err: DbError) {
        self.result = Some(Err(err));
        self.settled = true;
    }

    fn deliver(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(DbError::Worker("the write was not run".to_owned())));
        let _ = self.reply.send(result);
    }
}
