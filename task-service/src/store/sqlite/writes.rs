//! Group commit: the writes that queue while one is being written are committed together.
//!
//! SQLite lets one writer write at a time, and every commit writes each page it changed to the
//! WAL (a task's row, both of its indexes, the autoincrement counter, and the keyword index's
//! new segment). Writes therefore queue for the pool's writer lock. Whoever takes the lock runs
//! every write queued by then in one transaction, each inside its own savepoint, and commits
//! once; each write's result is sent to its caller only after that commit.
//!
//! A write's outcome is its own whatever its neighbours do: one that fails (a constraint, its
//! deadline, its request gone) is rolled back to its savepoint, and the others commit. When an
//! error rolls the whole transaction back (SQLite does so for an interrupt, a full disk or a
//! lost lock), the failed write gets its error and the others are run again from the start, so
//! none of them is reported written unless it was committed.
//!
//! A lone write runs in a transaction of its own too (without a savepoint). A statement can fail
//! after it made its change: an interrupt that lands while an `insert … returning` hands out
//! its row stops the statement but, in autocommit mode, may leave the row committed. Inside a
//! transaction, the failed write is rolled back whatever the statement left, so a write stopped
//! on the calling thread and run again on a blocking thread is written once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, oneshot};

use super::{DbError, GONE, Gone, INLINE_BUDGET, PROGRESS_INSTRUCTIONS, Shared};

/// The most writes one transaction takes: the rest wait for the next.
const MAX_BATCH: usize = 64;
/// A queued write's state, which its caller and the writer change by compare-and-swap.
const QUEUED: u8 = 0;
/// Taken into a batch: it will run, and its caller waits for its result. (Or [`GONE`]: its
/// caller went away, or gave up waiting while it was still queued.)
const CLAIMED: u8 = 1;

/// The writes waiting for the writer, and the writer's lock.
#[derive(Default)]
pub(super) struct Queue {
    pending: Mutex<Vec<Box<dyn Pending>>>,
    pub(super) writer: Arc<tokio::sync::Mutex<()>>,
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
    shared.writes.push(Box::new(Write {
        operation,
        deadline,
        state: Arc::clone(&state),
        result: None,
        settled: false,
        reply,
    }));
    let gone = Gone(Arc::clone(&state));
    let lock = Arc::clone(&shared.writes.writer).lock_owned();
    tokio::pin!(lock);
    let patience = tokio::time::sleep(shared.settings.acquire_timeout);
    tokio::pin!(patience);
    let mut locked = false;
    loop {
        tokio::select! {
            biased;
            outcome = &mut result => {
                gone.finish();
                return outcome.unwrap_or_else(|_| {
                    Err(DbError::Worker("the write ended without a result".to_owned()))
                });
            }
            guard = &mut lock, if !locked => {
                // The write is still queued (or was run by the writer before, and its result
                // is taken next): this caller commits the queue.
                locked = true;
                lead(shared, guard);
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
    fn push(&self, write: Box<dyn Pending>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(write);
        }
    }

    /// The writes queued first (up to [`MAX_BATCH`]) whose callers still wait, claimed for a
    /// batch.
    fn claim(&self) -> Vec<Box<dyn Pending>> {
        let queued: Vec<_> = match self.pending.lock() {
            Ok(mut pending) => {
                let first = pending.len().min(MAX_BATCH);
                pending.drain(..first).collect()
            }
            Err(_) => Vec::new(),
        };
        queued.into_iter().filter(|write| write.claim()).collect()
    }
}

/// Commits the queue, holding the writer lock (`guard`) until every result is sent. On an idle
/// connection the batch is first tried on the calling thread, within [`INLINE_BUDGET`] and
/// without waiting for another process's writer; otherwise (or when that does not suffice) it
/// runs on a blocking thread. Nothing here waits, so the batch is never left half-run by a
/// caller that goes away.
fn lead(shared: &Arc<Shared>, guard: OwnedMutexGuard<()>) {
    let mut batch = shared.writes.claim();
    if batch.is_empty() {
        return;
    }
    let Some(permit) = shared.slots.try_permit() else {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            match shared.slots.permit(shared.settings.acquire_timeout).await {
                Ok(permit) => in_blocking_thread(shared, guard, permit, None, batch),
                Err(err) => settle_all(batch, &err),
            }
        });
        return;
    };
    let Some(connection) = shared.slots.take_idle() else {
        in_blocking_thread(Arc::clone(shared), guard, permit, None, batch);
        return;
    };
    match run_batch(&connection, &mut batch, true) {
        Batch::Ran => {
            shared.slots.give_back(connection);
            deliver(batch);
            drop((permit, guard));
        }
        Batch::Retry => {
            in_blocking_thread(Arc::clone(shared), guard, permit, Some(connection), batch);
        }
    }
}

/// Runs the batch on a blocking thread with the busy timeout, then sends the results.
fn in_blocking_thread(
    shared: Arc<Shared>,
    guard: OwnedMutexGuard<()>,
    permit: OwnedSemaphorePermit,
    connection: Option<Connection>,
    mut batch: Vec<Box<dyn Pending>>,
) {
    tokio::task::spawn_blocking(move || {
        let connection = match connection {
            Some(connection) => connection,
            None => match shared.take() {
                Ok(connection) => connection,
                Err(err) => {
                    settle_all(batch, &err);
                    drop((permit, guard));
                    return;
                }
            },
        };
        match connection.busy_timeout(shared.settings.busy_timeout) {
            Ok(()) => {
                run_batch(&connection, &mut batch, false);
                match connection.busy_timeout(Duration::ZERO) {
                    Ok(()) => shared.slots.give_back(connection),
                    Err(_) => shared.slots.closed(),
                }
                deliver(batch);
            }
            Err(err) => {
                shared.slots.give_back(connection);
                settle_all(batch, &DbError::Sqlite(err));
            }
        }
        drop((permit, guard));
    });
}

/// How running a batch ended.
enum Batch {
    /// Every write has its outcome.
    Ran,
    /// Tried on the calling thread: a write was stopped at the inline budget or the batch met
    /// another process's writer, and nothing was committed; run it again on a blocking thread.
    Retry,
}

/// Runs the batch's writes in one transaction, each in a savepoint of its own when there are
/// several, and commits. `inline` (on the calling thread), gives up ([`Batch::Retry`]) rather
/// than let one write run past [`INLINE_BUDGET`] or wait for a lock.
fn run_batch(connection: &Connection, batch: &mut [Box<dyn Pending>], inline: bool) -> Batch {
    loop {
        let running = batch.iter().filter(|write| !write.settled()).count();
        if running == 0 {
            return Batch::Ran;
        }
        let together = running > 1;
        if let Err(err) = connection.execute_batch("begin immediate") {
            if inline && is_busy(&err) {
                return Batch::Retry;
            }
            for write in batch.iter_mut() {
                write.settle(DbError::Sqlite(clone_error(&err)));
            }
            return Batch::Ran;
        }
        let mut restart = false;
        for write in batch.iter_mut().filter(|write| !write.settled()) {
            match run_one(connection, write.as_mut(), together, inline) {
                Step::Ran => {}
                Step::Retry => {
                    rollback(connection);
                    return Batch::Retry;
                }
                Step::RolledBack => {
                    restart = true;
                    break;
                }
            }
        }
        if restart {
            continue;
        }
        if connection.is_autocommit() {
            // A lone write failed, and its transaction is rolled back.
            return Batch::Ran;
        }
        match connection.execute_batch("commit") {
            Ok(()) => return Batch::Ran,
            Err(err) => {
                rollback(connection);
                if inline && is_busy(&err) {
                    return Batch::Retry;
                }
                for write in batch.iter_mut() {
                    write.settle(DbError::Sqlite(clone_error(&err)));
                }
                return Batch::Ran;
            }
        }
    }
}

/// How one write of a batch ended.
enum Step {
    /// It has a result (kept until the commit) or its error.
    Ran,
    /// Stopped at the inline budget or by another process's writer.
    Retry,
    /// It failed, and its error rolled the whole transaction back.
    RolledBack,
}

fn run_one(connection: &Connection, write: &mut dyn Pending, together: bool, inline: bool) -> Step {
    if write.gone() {
        write.settle(DbError::Worker("the request went away".to_owned()));
        return Step::Ran;
    }
    if together && let Err(err) = connection.execute_batch("savepoint write") {
        let rolled_back = connection.is_autocommit();
        write.settle(DbError::Sqlite(err));
        return if rolled_back {
            Step::RolledBack
        } else {
            Step::Ran
        };
    }
    let deadline = write.deadline();
    let budget_end = inline.then(|| (Instant::now() + INLINE_BUDGET).min(deadline));
    let state = write.state();
    let over_budget = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&over_budget);
    let watched = connection.progress_handler(
        PROGRESS_INSTRUCTIONS,
        Some(move || {
            let now = Instant::now();
            let over = budget_end.is_some_and(|end| now >= end);
            stopped.store(over, Ordering::Relaxed);
            over || now >= deadline || state.load(Ordering::Acquire) == GONE
        }),
    );
    let outcome = watched.and_then(|()| write.run(connection));
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    let err = match outcome {
        Ok(()) => {
            if together && let Err(err) = connection.execute_batch("release write") {
                // Its changes cannot be told apart from the others' any more.
                rollback(connection);
                write.settle(DbError::Sqlite(err));
                return Step::RolledBack;
            }
            return Step::Ran;
        }
        Err(err) => err,
    };
    if inline
        && (is_busy(&err) || (over_budget.load(Ordering::Relaxed) && Instant::now() < deadline))
    {
        return Step::Retry;
    }
    if !together {
        rollback(connection);
        write.settle(DbError::Sqlite(err));
        return Step::Ran;
    }
    if connection.is_autocommit() {
        write.settle(DbError::Sqlite(err));
        return Step::RolledBack;
    }
    let _ = connection.execute_batch("rollback to write; release write");
    // Its neighbours' uncommitted writes may be why it failed (a unique value one of them
    // took): should the batch run again, so does this write.
    write.fail(DbError::Sqlite(err));
    Step::Ran
}

/// Ends the open transaction, if one is open.
fn rollback(connection: &Connection) {
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("rollback");
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// Sends every write's outcome to its caller.
fn deliver(batch: Vec<Box<dyn Pending>>) {
    for write in batch {
        write.deliver();
    }
}

/// Ends every write of the batch with `err`, and sends it.
fn settle_all(mut batch: Vec<Box<dyn Pending>>, err: &DbError) {
    for write in &mut batch {
        write.settle(clone_db_error(err));
    }
    deliver(batch);
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

fn clone_db_error(err: &DbError) -> DbError {
    match err {
        DbError::Sqlite(err) => DbError::Sqlite(clone_error(err)),
        DbError::Open(err) => DbError::Open(clone_error(err)),
        DbError::PoolTimedOut => DbError::PoolTimedOut,
        DbError::PoolClosed => DbError::PoolClosed,
        other => DbError::Worker(other.to_string()),
    }
}

/// A queued write, whatever its result's type.
trait Pending: Send {
    /// Takes it into a batch, unless its caller has gone.
    fn claim(&self) -> bool;
    /// Whether its caller has gone since.
    fn gone(&self) -> bool;
    fn deadline(&self) -> Instant;
    fn state(&self) -> Arc<AtomicU8>;
    /// Whether its outcome is decided: an error, whatever the commit does or whether the
    /// batch runs again.
    fn settled(&self) -> bool;
    /// Runs it, keeping its result for [`Pending::deliver`].
    fn run(&mut self, connection: &Connection) -> rusqlite::Result<()>;
    /// It failed with `err` in this run of the batch; if the batch runs again, so does it.
    fn fail(&mut self, err: DbError);
    /// Decides its outcome: `err`.
    fn settle(&mut self, err: DbError);
    /// Sends its outcome to its caller.
    fn deliver(self: Box<Self>);
}

struct Write<T, F> {
    operation: F,
    deadline: Instant,
    state: Arc<AtomicU8>,
    /// `Ok` once run (valid if the batch commits), `Err` once it failed.
    result: Option<Result<T, DbError>>,
    /// The error in `result` stands whatever happens next.
    settled: bool,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> Pending for Write<T, F>
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
