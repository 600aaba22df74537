//! Defends availability against slow and idle clients: connections that trickle their headers a
//! byte at a time (slowloris), send a body slowly, or connect and say nothing must not starve
//! valid requests, which keep being answered promptly while they hang on.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::adversarial::Arena;
use crate::support::stack::assert_still_serving;
use crate::support::tokens::{claims_for, hs256};

/// How many hostile connections of each kind: enough to matter to a thread-per-connection
/// server, few enough for a 2-core CI machine.
const SLOW_CONNECTIONS: usize = 150;
const IDLE_CONNECTIONS: usize = 150;
/// How long the slow clients keep trickling while valid requests are measured.
const ATTACK: Duration = Duration::from_secs(3);
/// The slowest a valid request may be answered during the attack.
const PROMPT: Duration = Duration::from_secs(1);

/// A client that sends a request head one byte every 50 ms and never finishes it.
async fn slowloris(addr: std::net::SocketAddr, until: Instant) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let head = b"GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nX-Slow: ";
    for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if Instant::now() >= until || stream.write_all(&[*byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sends an authenticated POST head, then its body one byte every 50 ms.
async fn slow_body(addr: std::net::SocketAddr, token: String, until: Instant) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let head = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while Instant::now() < until {
        if stream.write_all(b" ").await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slow_and_idle_connections_do_not_starve_valid_requests() {
    let arena = Arena::start(&[]).await;
    let addr = arena.gateway.addr;
    let until = Instant::now() + ATTACK;
    let token = hs256(&claims_for("alice"));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..SLOW_CONNECTIONS {
        attackers.spawn(slowloris(addr, until));
    }
    for _ in 0..20 {
        attackers.spawn(slow_body(addr, token.clone(), until));
    }
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(addr).await.expect("idle connection"));
    }

    // Valid requests, each on a fresh connection, for as long as the attack lasts.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let started = Instant::now();
        assert_still_serving(&arena.gateway).await;
        slowest = slowest.max(started.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{SLOW_CONNECTIONS} slowloris + 20 slow bodies + {IDLE_CONNECTIONS} idle connections: \
         {served} valid requests served, slowest {slowest:?}"
    );
    assert!(served >= 10, "only {served} valid requests in {ATTACK:?}");
    assert!(slowest < PROMPT, "a valid request took {slowest:?}");
    while attackers.join_next().await.is_some() {}
    drop(idle);
    assert_still_serving(&arena.gateway).await;
}
