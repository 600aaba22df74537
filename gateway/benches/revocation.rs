//! What the revocation check costs on every request, with 100,000 entries held (40,000 sessions,
//! 40,000 tokens, 20,000 users) and with none.
//!
//! `cargo bench -p gateway --bench revocation -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::revocation::{Revocation, RevocationSet, Target};
use gateway::token::Principal;

const NOW: u64 = 1_800_000_000;

/// A Better Auth-like id: 32 alphanumerics.
fn id(kind: &str, n: usize) -> String {
    format!("{kind}{n:0>29}")
}

fn full_set() -> RevocationSet {
    let set = RevocationSet::default();
    let expires_at = NOW + 7 * 24 * 3600;
    for n in 0..40_000 {
        set.apply(
            &Revocation {
                target: Target::Session(id("sid", n)),
                expires_at,
            },
            NOW,
        );
        set.apply(
            &Revocation {
                target: Target::Token(id("jti", n)),
                expires_at,
            },
            NOW,
        );
    }
    for n in 0..20_000 {
        set.apply(
            &Revocation {
                target: Target::User {
                    sub: id("sub", n),
                    not_before: NOW - 60,
                },
                expires_at,
            },
            NOW,
        );
    }
    set
}

fn principal(n: usize) -> Principal {
    Principal {
        sub: id("sub", n),
        email: Some("alice@example.com".to_owned()),
        sid: Some(id("sid", n)),
        jti: Some(id("jti", n)),
        iat: Some(NOW - 30),
    }
}

fn revocation_check(c: &mut Criterion) {
    let set = full_set();
    assert_eq!(
        set.counts().sid + set.counts().jti + set.counts().sub,
        100_000
    );
    let mut group = c.benchmark_group("revocation check");
    // The common case: a token none of whose ids is revoked, every lookup a miss.
    let allowed = principal(1_000_000);
    assert!(!set.is_revoked(&allowed, NOW));
    group.bench_function("100k entries, not revoked", |b| {
        b.iter(|| black_box(set.is_revoked(black_box(&allowed), NOW)));
    });
    // Revoked through its user's cut-off: the last of the three lookups hits.
    let by_user = Principal {
        sid: Some(id("sid-other", 1)),
        jti: Some(id("jti-other", 1)),
        iat: Some(NOW - 120),
        ..principal(10_000)
    };
    assert!(set.is_revoked(&by_user, NOW));
    group.bench_function("100k entries, revoked by sub", |b| {
        b.iter(|| black_box(set.is_revoked(black_box(&by_user), NOW)));
    });
    let empty = RevocationSet::default();
    group.bench_function("empty set", |b| {
        b.iter(|| black_box(empty.is_revoked(black_box(&allowed), NOW)));
    });
    group.finish();
}

criterion_group!(benches, revocation_check);
criterion_main!(benches);
