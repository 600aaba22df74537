//! How many keyword searches one user may run at once. A search is the one request whose cost
//! the user's own data decides (a long keyword over many long, similar tasks); without a bound, a
//! user could hold every pooled connection with a handful of them and make everyone else wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Searches one user may run at the same time on one replica; further ones wait their turn.
pub const SEARCHES_PER_USER: usize = 2;
/// How long a search waits for its turn before it is refused with a 429.
pub const SEARCH_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The searches running now, per user. Entries live only while a search holds or awaits a slot.
#[derive(Debug, Default)]
pub struct SearchSlots {
    users: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One running search; dropping it frees the slot.
pub struct SearchSlot {
    slots: Arc<SearchSlots>,
    user: String,
    // Dropped before `Drop::drop` looks at the semaphore's count.
    permit: Option<OwnedSemaphorePermit>,
}

impl SearchSlots {
    /// Waits for one of `user`'s slots; `None` when none frees up within
    /// [`SEARCH_QUEUE_TIMEOUT`].
    pub async fn acquire(self: &Arc<Self>, user: &str) -> Option<SearchSlot> {
        // The guard exists before the wait, and is dropped after the semaphore handle below, so
        // a search abandoned or refused while waiting still removes its user's unused entry.
        let mut slot = SearchSlot {
            slots: Arc::clone(self),
            user: user.to_owned(),
            permit: None,
        };
        let semaphore = Arc::clone(
            self.users
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(user.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(SEARCHES_PER_USER))),
        );
        let permit = tokio::time::timeout(SEARCH_QUEUE_TIMEOUT, semaphore.acquire_owned()).await;
        slot.permit = Some(permit.ok()?.ok()?);
        Some(slot)
    }
}

impl Drop for SearchSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut users = self
            .slots
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds the semaphore: nobody runs or waits for this user's searches.
        if users
            .get(&self.user)
            .is_some_and(|semaphore| Arc::strong_count(semaphore) == 1)
        {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_a_bounded_number_of_slots_and_others_are_not_affected() {
        let slots = Arc::new(SearchSlots::default());
        let held: Vec<SearchSlot> = hold(&slots, "alice", SEARCHES_PER_USER).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), slots.acquire("alice")).await;
        assert!(waiting.is_err(), "a third search must wait");
        let bob = slots.acquire("bob").await;
        assert!(bob.is_some(), "another user is not held up");
        drop(held);
        drop(bob);
        assert!(slots.acquire("alice").await.is_some());
        assert!(
            slots.users.lock().expect("not poisoned").is_empty(),
            "no entry outlives its searches"
        );
    }

    async fn hold(slots: &Arc<SearchSlots>, user: &str, count: usize) -> Vec<SearchSlot> {
        let mut held = Vec::new();
        for _ in 0..count {
            held.push(slots.acquire(user).await.expect("a free slot"));
        }
        held
    }
}
