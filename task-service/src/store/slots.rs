//! The bookkeeping both backends' pools share: one permit per connection that may exist, the
//! connections not in use (most recently used last), and how many are open.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::DbError;

pub(super) struct Slots<C> {
    size: u32,
    /// Held by an operation until it has ended, so that an abandoned operation keeps its
    /// connection until it has stopped.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<C>>,
    /// Connections open, in use or idle.
    open: AtomicU32,
}

impl<C> Slots<C> {
    /// Room for `size` connections (at least one), none open.
    pub fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            size,
            permits: Arc::new(Semaphore::new(size as usize)),
            idle: Mutex::new(Vec::new()),
            open: AtomicU32::new(0),
        }
    }

    /// A permit, if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// A permit, waiting up to `timeout` for one.
    pub async fn permit(&self, timeout: Duration) -> Result<OwnedSemaphorePermit, DbError> {
        match tokio::time::timeout(timeout, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(DbError::PoolClosed),
            Err(_) => Err(DbError::PoolTimedOut),
        }
    }

    /// The idle connection used last, if there is one.
    pub fn take_idle(&self) -> Option<C> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// The idle connection used longest ago, if `stale` says it has idled too long.
    pub fn take_stale(&self, stale: impl Fn(&C) -> bool) -> Option<C> {
        let mut idle = self.idle.lock().ok()?;
        if idle.first().is_some_and(stale) {
            Some(idle.remove(0))
        } else {
            None
        }
    }

    /// Counts a connection just opened.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed or dropped.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Puts a connection back among the idle ones.
    pub fn give_back(&self, connection: C) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(connection),
            Err(_) => self.closed(),
        }
    }

    /// Connections open, and how many of them are idle.
    pub fn state(&self) -> (u32, usize) {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        (self.open.load(Ordering::Relaxed), idle)
    }

    /// Refuses new operations, waits for those running to end, and hands over every idle
    /// connection (uncounted) to be closed.
    pub async fn close(&self) -> Vec<C> {
        let _all = self.permits.acquire_many(self.size).await;
        self.permits.close();
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for _ in &idle {
            self.closed();
        }
        idle
    }
}
