//! Measurements for the hardening rules, through the real (release) gateway binary on loopback:
//!
//! - `cache`: memory of the verified-token cache. Mints `--tokens` distinct valid HS256 tokens
//!   whose `email` claim is `--claim-bytes` long (the cache keeps `sub` and `email`, so that is
//!   the worst case for its memory), sends each once, and prints the gateway's RSS.
//! - `flood`: CPU per forged ES512 token (real `kid`, wrong signature) from one address. Sends
//!   `--requests` of them and prints the gateway's CPU time per request, from `/proc/<pid>/stat`.
//!
//! ```sh
//! cargo build --release -p gateway
//! cargo run --release -p gateway --example hardening_load -- cache --tokens 200000 \
//!     --claim-bytes 5000 --max-bytes 67108864
//! cargo run --release -p gateway --example hardening_load -- flood --requests 20000
//! cargo run --release -p gateway --example hardening_load -- flood --requests 5000 --no-limit
//! ```
//!
//! Upstream and JWKS are served by this tool on 127.0.0.1; every request stays on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HMAC_SECRET: &str = "load-better-auth-secret-0123456789abcdef";
const SIGNING_SECRET: &str = "load-signing-secret-0123456789abcdef0123";
const CONCURRENCY: usize = 32;

struct Args {
    mode: String,
    tokens: usize,
    claim_bytes: usize,
    max_bytes: Option<u64>,
    requests: usize,
    no_limit: bool,
}

fn args() -> Args {
    let mut args = Args {
        mode: String::new(),
        tokens: 200_000,
        claim_bytes: 5_000,
        max_bytes: None,
        requests: 20_000,
        no_limit: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut number = || words.next().and_then(|value| value.parse::<u64>().ok());
        match word.as_str() {
            "--tokens" => args.tokens = number().map_or(args.tokens, |n| n as usize),
            "--claim-bytes" => args.claim_bytes = number().map_or(args.claim_bytes, |n| n as usize),
            "--max-bytes" => args.max_bytes = number(),
            "--requests" => args.requests = number().map_or(args.requests, |n| n as usize),
            "--no-limit" => args.no_limit = true,
            mode => args.mode = mode.to_owned(),
        }
    }
    args
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Answers `/api/auth/jwks` with `jwks` and everything else with `200 []`, keeping connections
/// alive.
async fn serve_upstream(jwks: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let jwks = Arc::new(jwks);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let jwks = Arc::clone(&jwks);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = vec![0_u8; 64 * 1024];
                loop {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + 4);
                    let body = if head.starts_with("GET /api/auth/jwks") {
                        jwks.as_str()
                    } else {
                        "[]"
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

fn gateway_binary() -> PathBuf {
    std::env::var_os("GATEWAY_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/gateway"),
        PathBuf::from,
    )
}

fn start_gateway(vars: &[(&str, String)]) -> Child {
    Command::new(gateway_binary())
        .env_clear()
        .envs(vars.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the release gateway starts (cargo build --release -p gateway)")
}

async fn wait_ready(admin: SocketAddr) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ready = client
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway did not become ready");
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of `pid`, in microseconds.
fn cpu_micros(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse().ok())
        .collect();
    let ticks: u64 = fields.iter().sum();
    // Linux reports in USER_HZ, 100 per second on every mainstream configuration.
    ticks * 10_000
}

/// Sends `GET /api/{user}/tasks` for each `(user, token)` with [`CONCURRENCY`] connections;
/// returns the count of each status.
async fn send_all(listen: SocketAddr, requests: Arc<Vec<(String, String)>>) -> Vec<(u16, usize)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, next, requests) = (client.clone(), Arc::clone(&next), Arc::clone(&requests));
        workers.spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some((user, token)) = requests.get(at) else {
                    return statuses;
                };
                let status = client
                    .get(format!("http://{listen}/api/{user}/tasks"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_or(0, |response| response.status().as_u16());
                *statuses.entry(status).or_default() += 1;
            }
        });
    }
    let mut total = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(Ok(statuses)) = workers.join_next().await {
        for (status, count) in statuses {
            *total.entry(status).or_default() += count;
        }
    }
    total.into_iter().collect()
}

fn common_vars(
    upstream: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_SIGNING_SECRET", SIGNING_SECRET.to_owned()),
        ("TASK_SERVICE_URL", format!("http://{upstream}")),
        ("GATEWAY_LISTEN", listen.to_string()),
        ("GATEWAY_ADMIN_LISTEN", admin.to_string()),
        ("GATEWAY_UPGRADE_SOCK", "off".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

async fn cache(args: &Args) {
    let upstream = serve_upstream(String::new()).await;
    let (listen, admin) = (free_port(), free_port());
    let mut vars = common_vars(upstream, listen, admin);
    vars.push(("BETTER_AUTH_SECRET", HMAC_SECRET.to_owned()));
    // The entry count must not be what binds: the byte budget is measured.
    vars.push(("TOKEN_CACHE_CAPACITY", "10000000".to_owned()));
    if let Some(max_bytes) = args.max_bytes {
        vars.push(("TOKEN_CACHE_MAX_BYTES", max_bytes.to_string()));
    }
    let mut gateway = start_gateway(&vars);
    wait_ready(admin).await;
    let (start_rss, _) = rss_mib(gateway.id());

    let key = EncodingKey::from_secret(HMAC_SECRET.as_bytes());
    let filler = "x".repeat(args.claim_bytes.saturating_sub(12));
    let exp = now() + 3600;
    let requests: Vec<(String, String)> = (0..args.tokens)
        .map(|n| {
            let user = format!("user-{n}");
            let claims = json!({
                "sub": user, "exp": exp, "iat": now(),
                "email": format!("{n}-{filler}@example.com"),
            });
            let token =
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("token");
            (user, token)
        })
        .collect();
    let started = Instant::now();
    let statuses = send_all(listen, Arc::new(requests)).await;
    let took = started.elapsed();
    let (rss, peak) = rss_mib(gateway.id());
    println!(
        "cache: {} tokens, {}-byte email claims, TOKEN_CACHE_MAX_BYTES={}: statuses {statuses:?} in {took:.1?}",
        args.tokens,
        args.claim_bytes,
        args.max_bytes
            .map_or("default".to_owned(), |bytes| bytes.to_string())
    );
    println!("gateway RSS: {start_rss:.1} MiB at start, {rss:.1} MiB after, peak {peak:.1} MiB");
    let _ = gateway.kill();
    let _ = gateway.wait();
}

async fn flood(args: &Args) {
    use p521::ecdsa::SigningKey;
    use rand::RngCore;
    let mut secret = [0_u8; 66];
    rand::rngs::OsRng.fill_bytes(&mut secret[1..]);
    let signing = SigningKey::from_slice(&secret).expect("a P-521 scalar");
    let point = signing.verifying_key().to_sec1_point(false);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "real-kid",
        "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
        "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
    }]});
    let upstream = serve_upstream(jwks.to_string()).await;
    let (listen, admin) = (free_port(), free_port());
    let base = format!("http://{upstream}");
    let mut vars = common_vars(upstream, listen, admin);
    vars.push(("BETTER_AUTH_URL", base.clone()));
    if args.no_limit {
        vars.push(("FAILED_AUTH_PER_ADDRESS_PER_MINUTE", "0".to_owned()));
    }
    let mut gateway = start_gateway(&vars);
    wait_ready(admin).await;

    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let header = encode(&json!({"alg": "ES512", "kid": "real-kid"}));
    let requests: Vec<(String, String)> = (0..args.requests)
        .map(|n| {
            let claims = encode(&json!({
                "sub": "victim", "iss": base, "aud": base, "exp": now() + 900, "iat": now(),
                "n": n,
            }));
            let mut signature = [0_u8; 132];
            rand::rngs::OsRng.fill_bytes(&mut signature);
            // r and s below the group order, so the verifier does the whole computation rather
            // than refusing an out-of-range scalar at once (as a careful forger would).
            signature[0] = 0;
            signature[66] = 0;
            let token = format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature));
            ("victim".to_owned(), token)
        })
        .collect();
    // The limiter engages within the first minute's budget; measure after it.
    let budget = if args.no_limit { 0 } else { 600 };
    let (warm, measured) = requests.split_at(budget.min(requests.len()));
    send_all(listen, Arc::new(warm.to_vec())).await;
    let cpu_before = cpu_micros(gateway.id());
    let started = Instant::now();
    let statuses = send_all(listen, Arc::new(measured.to_vec())).await;
    let took = started.elapsed();
    let cpu = cpu_micros(gateway.id()) - cpu_before;
    println!(
        "flood: {} forged ES512 tokens from one address, limiter {}: statuses {statuses:?} in {took:.1?}",
        measured.len(),
        if args.no_limit { "off" } else { "on (600/min)" }
    );
    println!(
        "gateway CPU: {:.1} ms in all, {:.1} µs per request",
        cpu as f64 / 1000.0,
        cpu as f64 / measured.len().max(1) as f64
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
}

#[tokio::main]
async fn main() {
    let args = args();
    match args.mode.as_str() {
        "cache" => cache(&args).await,
        "flood" => flood(&args).await,
        _ => eprintln!(
            "usage: hardening_load cache|flood [--tokens N] [--claim-bytes N] [--max-bytes N] [--requests N] [--no-limit]"
        ),
    }
}
