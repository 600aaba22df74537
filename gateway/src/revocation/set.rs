//! The revoked entries in memory: three maps under one lock, each entry with its expiry.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use super::{Revocation, Target};
use crate::token::Principal;

/// Counts of live entries by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sid: usize,
    pub jti: usize,
    pub sub: usize,
}

#[derive(Default)]
struct Entries {
    /// `sid` → `expires_at`
    sessions: HashMap<String, u64>,
    /// `jti` → `expires_at`
    tokens: HashMap<String, u64>,
    /// `sub` → (`not_before`, `expires_at`)
    users: HashMap<String, (u64, u64)>,
    /// The earliest `expires_at` of any entry (`u64::MAX` when empty): a sweep before then has
    /// nothing to drop.
    next_expiry: u64,
}

/// The revoked entries, in memory.
pub struct RevocationSet {
    entries: RwLock<Entries>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self {
            entries: RwLock::new(Entries {
                next_expiry: u64::MAX,
                ..Entries::default()
            }),
        }
    }
}

impl RevocationSet {
    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (each update is one insert), so a poisoned lock is still used.
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a verified token is revoked at `now`: its session, itself, or every token of its
    /// user issued before a cut-off. A token without `iat` cannot prove it is newer than a
    /// cut-off, so a user entry refuses it.
    pub fn is_revoked(&self, principal: &Principal, now: u64) -> bool {
        let entries = self.read();
        let live = |expires_at: Option<&u64>| expires_at.is_some_and(|at| *at > now);
        principal
            .sid
            .as_deref()
            .is_some_and(|sid| live(entries.sessions.get(sid)))
            || principal
                .jti
                .as_deref()
                .is_some_and(|jti| live(entries.tokens.get(jti)))
            || entries
                .users
                .get(principal.sub.as_str())
                .is_some_and(|(not_before, expires_at)| {
                    *expires_at > now && principal.iat.is_none_or(|iat| iat < *not_before)
                })
    }

    /// Adds `revocation`, merged with what is known (the later expiry, the later cut-off).
    /// Returns whether anything changed; an expired revocation changes nothing.
    pub fn apply(&self, revocation: &Revocation, now: u64) -> bool {
        if revocation.expires_at <= now {
            return false;
        }
        let expires_at = revocation.expires_at;
        let mut entries = self.write();
        let changed = match &revocation.target {
            Target::Session(sid) => merge_expiry(&mut entries.sessions, sid, expires_at),
            Target::Token(jti) => merge_expiry(&mut entries.tokens, jti, expires_at),
            Target::User { sub, not_before } => {
                let entry = entries.users.entry(sub.clone()).or_insert((0, 0));
                let merged = (entry.0.max(*not_before), entry.1.max(expires_at));
                let changed = merged != *entry;
                *entry = merged;
                changed
            }
        };
        entries.next_expiry = entries.next_expiry.min(expires_at);
        changed
    }

    /// Drops the entries expired at `now`; returns how many.
    pub fn sweep(&self, now: u64) -> usize {
        if self.read().next_expiry > now {
            return 0;
        }
        let mut entries = self.write();
        let before = entries.sessions.len() + entries.tokens.len() + entries.users.len();
        entries.sessions.retain(|_, at| *at > now);
        entries.tokens.retain(|_, at| *at > now);
        entries.users.retain(|_, (_, at)| *at > now);
        entries.next_expiry = entries
            .sessions
            .values()
            .chain(entries.tokens.values())
            .copied()
            .chain(entries.users.values().map(|(_, at)| *at))
            .min()
            .unwrap_or(u64::MAX);
        before - (entries.sessions.len() + entries.tokens.len() + entries.users.len())
    }

    /// Every entry, for writing the whole set to a store.
    pub fn snapshot(&self) -> Vec<Revocation> {
        let entries = self.read();
        let sessions = entries.sessions.iter().map(|(sid, at)| Revocation {
            target: Target::Session(sid.clone()),
            expires_at: *at,
        });
        let tokens = entries.tokens.iter().map(|(jti, at)| Revocation {
            target: Target::Token(jti.clone()),
            expires_at: *at,
        });
        let users = entries
            .users
            .iter()
            .map(|(sub, (not_before, at))| Revocation {
                target: Target::User {
                    sub: sub.clone(),
                    not_before: *not_before,
                },
                expires_at: *at,
            });
        sessions.chain(tokens).chain(users).collect()
    }

    /// How many entries of each kind are held (expired ones until the next sweep).
    pub fn counts(&self) -> Counts {
        let entries = self.read();
        Counts {
            sid: entries.sessions.len(),
            jti: entries.tokens.len(),
            sub: entries.users.len(),
        }
    }
}

fn merge_expiry(map: &mut HashMap<String, u64>, id: &str, expires_at: u64) -> bool {
    match map.get_mut(id) {
        Some(at) if *at >= expires_at => false,
        Some(at) => {
            *at = expires_at;
            true
        }
        None => {
            map.insert(id.to_owned(), expires_at);
            true
        }
    }
}
