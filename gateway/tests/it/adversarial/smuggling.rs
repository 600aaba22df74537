//! Defends message framing between the gateway and the task service: whatever a client does with
//! `Content-Length` and `Transfer-Encoding`, the upstream never receives a request the gateway did
//! not authorize. Each probe hides a second, unauthenticated request for `/api/bob/tasks/smuggled`
//! where a parser that disagrees with the gateway's would find it; the echo upstream records every
//! request it gets, so a smuggled one shows up by its target. Ambiguous framing gets a 400 or a
//! closed connection.

use std::time::Duration;

use gateway::config::UPSTREAM_READ_TIMEOUT_MS;

use crate::adversarial::Arena;
use crate::support::clients::raw_exchange;
use crate::support::stack::{TestGateway, assert_still_serving};
use crate::support::tokens::{claims_for, hs256};

/// The request hidden in each probe. It carries no token: if it ever reaches the upstream, it
/// got past authentication.
const SMUGGLED: &str = "GET /api/bob/tasks/smuggled HTTP/1.1\r\nHost: gateway\r\n\r\n";

/// A POST head for alice with the given framing headers, then `body` as raw bytes.
fn probe(token: &str, version: &str, framing: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api/alice/tasks HTTP/{version}\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{framing}\r\n{body}"
    )
    .into_bytes()
}

/// How a probe must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The framing is ambiguous or invalid: a 400 (or a closed connection), nothing forwarded.
    Refused,
    /// The framing is valid (the hidden bytes are just body): answered, at most one request
    /// forwarded, and the hidden request never.
    OneRequest,
}

#[tokio::test]
async fn smuggling_probes_never_get_a_second_request_to_the_upstream() {
    let arena = Arena::start(&[]).await;
    let token = hs256(&claims_for("alice"));
    let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
    let smuggled_len = SMUGGLED.len();
    let te_cl_body = format!("{}0\r\n\r\n", chunk(SMUGGLED));
    let probes: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "CL.TE: Content-Length covers a smuggled request after the last chunk",
            probe(
                &token,
                "1.1",
                &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::OneRequest,
        ),
        (
            "TE.CL: the smuggled request is a chunk, Content-Length says 4",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                &te_cl_body,
            ),
            Expect::OneRequest,
        ),
        (
            "duplicate Content-Length, different values",
            probe(
                &token,
                "1.1",
                &format!("Content-Length: 0\r\nContent-Length: {smuggled_len}\r\n"),
                SMUGGLED,
            ),
            Expect::Refused,
        ),
        (
            "Content-Length list with different values",
            probe(&token, "1.1", &format!("Content-Length: 0, {smuggled_len}\r\n"), SMUGGLED),
            Expect::Refused,
        ),
        (
            "Content-Length with a sign",
            probe(&token, "1.1", &format!("Content-Length: +{smuggled_len}\r\n"), SMUGGLED),
            Expect::Refused,
        ),
        (
            "Content-Length in hex",
            probe(&token, "1.1", "Content-Length: 0x10\r\n", SMUGGLED),
            Expect::Refused,
        ),
        (
            "negative Content-Length",
            probe(&token, "1.1", "Content-Length: -1\r\n", SMUGGLED),
            Expect::Refused,
        ),
        (
            "Transfer-Encoding: xchunked",
            probe(
                &token,
                "1.1",
                &format!("Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n", te_cl_body.len()),
                &te_cl_body,
            ),
            Expect::Refused,
        ),
        (
            "Transfer-Encoding: chunked, identity",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: chunked, identity\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "Transfer-Encoding: identity",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: identity\r\nContent-Length: 0\r\n",
                SMUGGLED,
            ),
            Expect::Refused,
        ),
        (
            "Transfer-Encoding: chunked then Transfer-Encoding: x",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "Transfer-Encoding with a leading space in the value",
            probe(
                &token,
                "1.1",
                &format!("Transfer-Encoding:  chunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::OneRequest,
        ),
        (
            "Transfer-Encoding with a tab",
            probe(
                &token,
                "1.1",
                &format!("Transfer-Encoding:\tchunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::OneRequest,
        ),
        (
            "space before the colon",
            probe(
                &token,
                "1.1",
                &format!("Transfer-Encoding : chunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "obs-fold continuation line",
            probe(
                &token,
                "1.1",
                &format!("Transfer-Encoding:\r\n chunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "bare LF before Transfer-Encoding",
            probe(
                &token,
                "1.1",
                &format!("X-A: b\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            // httparse reads a bare LF as a line end (RFC 9112 §2.2 allows it), so this is the
            // CL.TE case: chunked wins, the connection closes after it.
            Expect::OneRequest,
        ),
        (
            "HTTP/1.0 with Transfer-Encoding: chunked",
            probe(
                &token,
                "1.0",
                "Transfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "HTTP/1.0 with chunked and Content-Length",
            probe(
                &token,
                "1.0",
                &format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", 5 + smuggled_len),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Expect::Refused,
        ),
        (
            "chunk size with an extension and junk",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: chunked\r\n",
                &format!("0;ext=\"x\r\n\r\n{SMUGGLED}\"\r\n\r\n"),
            ),
            Expect::OneRequest,
        ),
        (
            "oversized chunk size",
            probe(
                &token,
                "1.1",
                "Transfer-Encoding: chunked\r\n",
                &format!("ffffffffffffffffff\r\n{SMUGGLED}0\r\n\r\n"),
            ),
            Expect::Refused,
        ),
        (
            "HTTP/2 prior-knowledge preface (h2c)",
            format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{SMUGGLED}").into_bytes(),
            Expect::Refused,
        ),
        (
            "HTTP/0.9-style request line",
            format!("GET /api/bob/tasks/smuggled\r\n\r\n{SMUGGLED}").into_bytes(),
            Expect::Refused,
        ),
        (
            "unknown HTTP version",
            probe(&token, "1.2", "Content-Length: 0\r\n", SMUGGLED),
            Expect::Refused,
        ),
        (
            "GET with a Content-Length body holding a request",
            format!(
                "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
                 Content-Length: {smuggled_len}\r\n\r\n{SMUGGLED}"
            )
            .into_bytes(),
            Expect::OneRequest,
        ),
    ];
    let quiet = Duration::from_millis(400);
    let mut report = Vec::new();
    for (name, bytes, expect) in &probes {
        let before = arena.upstream.count();
        let (responses, closed) = raw_exchange(arena.gateway.addr, bytes, quiet).await;
        let forwarded = arena.upstream.count() - before;
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        report.push(format!(
            "{name}: {statuses:?}, closed {closed}, forwarded {forwarded}"
        ));
        assert!(
            !arena
                .upstream
                .seen()
                .iter()
                .any(|seen| seen.contains("smuggled")),
            "{name}: a smuggled request reached the upstream: {:?}",
            arena.upstream.seen()
        );
        assert!(forwarded <= 1, "{name}: {forwarded} requests forwarded");
        match expect {
            Expect::Refused => {
                assert_eq!(forwarded, 0, "{name}: forwarded");
                assert!(
                    statuses.first().is_some_and(|status| *status == 400)
                        || (statuses.is_empty() && closed),
                    "{name}: {statuses:?}, closed {closed}"
                );
            }
            Expect::OneRequest => {
                // The hidden bytes are body or a pipelined request of the client's own, which
                // the gateway answers itself (401: it has no token).
                assert!(!statuses.is_empty(), "{name}: no answer");
                assert!(
                    statuses
                        .iter()
                        .skip(1)
                        .all(|status| matches!(status, 400 | 401)),
                    "{name}: {statuses:?}"
                );
            }
        }
        assert_still_serving(&arena.gateway).await;
    }
    println!("{}", report.join("\n"));

    // Control: the counting above sees every forwarded request. A genuinely pipelined pair is
    // answered in order (pingora 0.9 may also answer only the first and close); each answer is a
    // forwarded request, and nothing else is.
    let before = arena.upstream.count();
    let one = format!(
        "GET /api/alice/tasks/1 HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let pipelined = format!("{one}{}", one.replace("/1 ", "/2 "));
    let (responses, closed) = raw_exchange(arena.gateway.addr, pipelined.as_bytes(), quiet).await;
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    println!("pipelined pair: {statuses:?}, closed {closed}");
    assert!(statuses == [200, 200] || statuses == [200], "{statuses:?}");
    assert_eq!(arena.upstream.count() - before, statuses.len());
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_does_not_hang_the_gateway() {
    let arena = Arena::start(&[(UPSTREAM_READ_TIMEOUT_MS, "1000")]).await;
    let token = hs256(&claims_for("alice"));
    // Declares 100 bytes, sends 9, then waits: the gateway keeps serving others while this body
    // never completes, and the upstream gets the declared framing, never a shortened one.
    let request = probe(&token, "1.1", "Content-Length: 100\r\n", "{\"title\":");
    let mut stream = tokio::net::TcpStream::connect(arena.gateway.addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, &request)
        .await
        .expect("write");
    for _ in 0..5 {
        assert_still_serving(&arena.gateway).await;
    }
    drop(stream);
    assert_still_serving(&arena.gateway).await;
}

/// An upstream that switches protocols on every request but its health check, then records
/// whatever bytes arrive through the tunnel: a task service that honoured an `Upgrade` (an h2c
/// upgrade, a websocket route) would do this.
struct SwitchingUpstream {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tunneled: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchingUpstream {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tunneled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (head_log, tunnel_log) = (heads.clone(), tunneled.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (head_log, tunnel_log) = (head_log.clone(), tunnel_log.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buffer).into_owned();
                    if head.starts_with("GET /healthz") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                    head_log.lock().expect("lock").push(head);
                    let _ = stream
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                        .await;
                    while let Ok(read) = stream.read(&mut chunk).await {
                        if read == 0 {
                            break;
                        }
                        tunnel_log
                            .lock()
                            .expect("lock")
                            .extend_from_slice(&chunk[..read]);
                    }
                });
            }
        });
        Self {
            addr,
            heads,
            tunneled,
            task,
        }
    }
}

impl Drop for SwitchingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_upgrade_never_opens_a_tunnel_past_the_gateway() {
    let upstream = SwitchingUpstream::start().await;
    let gateway = TestGateway::with_shared_secret(&format!("http://{}", upstream.addr)).await;
    let token = hs256(&claims_for("alice"));
    for upgrade in [
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    ] {
        let head = format!(
            "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n{upgrade}\r\n"
        );
        // If a tunnel opened, this unauthenticated request would go straight to the upstream.
        let request = format!("{head}{SMUGGLED}");
        let (responses, _) =
            raw_exchange(gateway.addr, request.as_bytes(), Duration::from_millis(500)).await;
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        println!(
            "{}: {statuses:?}",
            upgrade.lines().nth(1).unwrap_or_default()
        );
        let tunneled =
            String::from_utf8_lossy(&upstream.tunneled.lock().expect("lock")).into_owned();
        assert!(
            !tunneled.contains("smuggled"),
            "smuggled through a tunnel: {tunneled}"
        );
        assert!(
            !statuses.contains(&101),
            "the client got a tunnel: {statuses:?}"
        );
    }
    // The upgrade request itself reached the upstream without asking for one.
    for head in upstream.heads.lock().expect("lock").iter() {
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("\r\nupgrade:"),
            "an upgrade was forwarded: {head}"
        );
    }
}
