//! TLS and HTTP/2 on the public listener: real certificates (rcgen), a real TLS client (reqwest
//! over rustls), the real gateway in process and as the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gateway::config::{GATEWAY_TLS_CERT, GATEWAY_TLS_KEY, GATEWAY_TLS_RELOAD_MS};
use reqwest::Version;

use crate::support::clients::raw_exchange;
use crate::support::processes::{GATEWAY_BINARY, binary_vars, serve_logging_to};
use crate::support::servers::{EchoUpstream, TaskService};
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256};
use crate::support::{PATIENCE, eventually};

/// A self-signed certificate for `127.0.0.1` and `localhost`, and its key, in PEM.
struct Certificate {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Certificate {
    fn generate() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("certificate");
        Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().to_vec(),
        }
    }
}

/// The certificate files the gateway reads, in a directory of their own.
struct CertificateFiles {
    dir: tempfile::TempDir,
}

impl CertificateFiles {
    fn with(certificate: &Certificate) -> Self {
        let files = Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        files.replace(certificate);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Replaces both files the way deployment tools do: write aside, then rename over.
    fn replace(&self, certificate: &Certificate) {
        write_atomically(&self.key(), &certificate.key_pem);
        write_atomically(&self.cert(), &certificate.cert_pem);
    }
}

fn write_atomically(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).expect("write certificate file");
    std::fs::rename(&aside, path).expect("rename certificate file");
}

/// A TLS client that accepts any certificate and reports which one it was shown.
fn inspecting_client(http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .timeout(PATIENCE);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().expect("TLS client")
}

/// `GET url` with `token` on a new connection (a new client, so a new TLS handshake).
async fn on_a_new_connection(url: &str, token: &str) -> reqwest::Result<reqwest::Response> {
    inspecting_client(false)
        .get(url)
        .bearer_auth(token)
        .send()
        .await
}

/// The certificate a new connection to `url` is shown, when it gets a response.
async fn served_certificate(url: &str, token: &str) -> Option<Vec<u8>> {
    on_a_new_connection(url, token)
        .await
        .ok()
        .map(|response| peer_certificate(&response))
}

/// The DER of the certificate the server presented on this response's connection.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .expect("the TLS peer certificate")
        .to_vec()
}

async fn tls_gateway(upstream_url: &str, files: &CertificateFiles) -> TestGateway {
    TestGateway::builder(upstream_url)
        .shared_secret()
        .var(GATEWAY_TLS_CERT, files.cert().display().to_string())
        .var(GATEWAY_TLS_KEY, files.key().display().to_string())
        .var(GATEWAY_TLS_RELOAD_MS, "50")
        .start()
        .await
}

fn https(addr: std::net::SocketAddr, path: &str) -> String {
    format!("https://{addr}{path}")
}

#[tokio::test]
async fn http2_and_http1_through_tls_reach_the_task_service_with_a_valid_token_only() {
    let data = tempfile::tempdir().expect("temporary directory");
    let tasks = TaskService::start(data.path()).await;
    let certificate = Certificate::generate();
    let files = CertificateFiles::with(&certificate);
    let gateway = tls_gateway(&tasks.url(), &files).await;
    let token = hs256(&claims_for("alice"));
    // A client that verifies the certificate, as a browser would; HTTP/2 chosen by ALPN.
    let verifying = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(certificate.cert_pem.as_bytes()).expect("root"),
        )
        .timeout(PATIENCE)
        .build()
        .expect("TLS client");
    let url = https(gateway.addr, "/api/alice/tasks");
    let created = verifying
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "over h2"}))
        .send()
        .await
        .expect("gateway reachable over TLS");
    assert_eq!(created.version(), Version::HTTP_2);
    assert_eq!(created.status(), 201);
    let listed = verifying
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.version(), Version::HTTP_2);
    assert_eq!(listed.status(), 200);
    let titles: Vec<String> = listed
        .json::<Vec<serde_json::Value>>()
        .await
        .expect("tasks")
        .iter()
        .map(|task| task["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(titles, ["over h2"]);
    let anonymous = verifying.get(&url).send().await.expect("reachable");
    assert_eq!(anonymous.version(), Version::HTTP_2);
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

    // A client that offers only http/1.1 gets it.
    let http1 = inspecting_client(true)
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("reachable over HTTP/1.1");
    assert_eq!(http1.version(), Version::HTTP_11);
    assert_eq!(http1.status(), 200);

    // Plain HTTP on the TLS port gets no HTTP answer, and the connection is closed.
    let request = format!(
        "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let (responses, closed) =
        raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(2)).await;
    assert!(
        responses.is_empty() && closed,
        "{} responses",
        responses.len()
    );
}

#[tokio::test]
async fn a_new_certificate_is_served_to_new_connections_while_open_ones_keep_working() {
    let upstream = EchoUpstream::start().await;
    let (first, second) = (Certificate::generate(), Certificate::generate());
    let files = CertificateFiles::with(&first);
    let gateway = tls_gateway(&upstream.url(), &files).await;
    let token = hs256(&claims_for("alice"));
    let url = https(gateway.addr, "/api/alice/tasks");

    // One HTTP/2 connection, open before the swap.
    let open = inspecting_client(false);
    let before = open.get(&url).bearer_auth(&token).send().await.expect("h2");
    assert_eq!(before.version(), Version::HTTP_2);
    assert_eq!(before.status(), 200);
    assert_eq!(peer_certificate(&before), first.der);

    files.replace(&second);
    eventually("new connections to get the new certificate", || async {
        // A fresh client is a fresh connection and handshake.
        served_certificate(&url, &token).await == Some(second.der.clone())
    })
    .await;

    // The connection opened before the swap is still served, and still the same one: it shows
    // the certificate of its own handshake.
    for _ in 0..3 {
        let after = open.get(&url).bearer_auth(&token).send().await.expect("h2");
        assert_eq!(after.status(), 200);
        assert_eq!(
            peer_certificate(&after),
            first.der,
            "a new connection was made"
        );
    }
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_tls_certificate_reloads_total{result=\"success\"} 1"),
        "one successful reload"
    );
}

#[tokio::test]
async fn bad_certificate_files_are_refused_and_the_old_certificate_stays() {
    let upstream = EchoUpstream::start().await;
    let (good, other) = (Certificate::generate(), Certificate::generate());
    let files = CertificateFiles::with(&good);
    let gateway = tls_gateway(&upstream.url(), &files).await;
    let token = hs256(&claims_for("alice"));
    let url = https(gateway.addr, "/api/alice/tasks");
    let errors =
        |count: usize| format!("gateway_tls_certificate_reloads_total{{result=\"error\"}} {count}");

    let bad_files: [(&str, String, String); 3] = [
        ("not PEM", "garbage".to_owned(), good.key_pem.clone()),
        (
            "a certificate with another certificate's key",
            good.cert_pem.clone(),
            other.key_pem.clone(),
        ),
        ("no key", good.cert_pem.clone(), String::new()),
    ];
    for (count, (what, cert, key)) in bad_files.iter().enumerate() {
        write_atomically(&files.key(), key);
        write_atomically(&files.cert(), cert);
        eventually(&format!("the reload of {what} to be refused"), || async {
            gateway.metrics().await.contains(&errors(count + 1))
        })
        .await;
        let response = on_a_new_connection(&url, &token)
            .await
            .expect("still served over TLS");
        assert_eq!(response.status(), 200, "{what}");
        assert_eq!(peer_certificate(&response), good.der, "{what}");
    }
    // Good files again are taken.
    files.replace(&other);
    eventually("the good pair to be served", || async {
        served_certificate(&url, &token).await == Some(other.der.clone())
    })
    .await;
}

/// The real binary: pingora's own TLS listener with the same certificate store; a bad file is
/// refused with one log line naming why, and the old certificate stays.
#[tokio::test]
async fn the_binary_serves_http2_over_tls_and_logs_a_refused_certificate() {
    let upstream = EchoUpstream::start().await;
    let (good, other) = (Certificate::generate(), Certificate::generate());
    let files = CertificateFiles::with(&good);
    let sock = files.dir.path().join("upgrade.sock");
    let (mut vars, listen, admin) = binary_vars(&upstream, &sock);
    for (name, value) in [
        (GATEWAY_TLS_CERT, files.cert().display().to_string()),
        (GATEWAY_TLS_KEY, files.key().display().to_string()),
        (GATEWAY_TLS_RELOAD_MS, "50".to_owned()),
    ] {
        vars.push((name.to_owned(), value));
    }
    let log_path = files.dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _served = serve_logging_to(&vars, false, log);
    let client = inspecting_client(false);
    let token = hs256(&claims_for("alice"));
    let url = https(listen, "/api/alice/tasks");
    eventually("the binary to serve over TLS", || async {
        served_certificate(&url, &token).await.is_some()
    })
    .await;
    let response = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("h2");
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(peer_certificate(&response), good.der);
    let anonymous = client.get(&url).send().await.expect("reachable");
    assert_eq!(anonymous.status(), 401);

    write_atomically(&files.key(), &other.key_pem);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually("the refused reload to be logged", || async {
        log_text().contains("TLS certificate not reloaded")
    })
    .await;
    let refused: Vec<String> = log_text()
        .lines()
        .filter(|line| line.contains("TLS certificate not reloaded"))
        .map(str::to_owned)
        .collect();
    assert_eq!(refused.len(), 1, "one line per refused change: {refused:?}");
    assert!(refused[0].contains("GATEWAY_TLS_KEY"), "{}", refused[0]);
    let fresh = on_a_new_connection(&url, &token)
        .await
        .expect("still served");
    assert_eq!(fresh.status(), 200);
    assert_eq!(peer_certificate(&fresh), good.der);
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("admin reachable")
        .text()
        .await
        .expect("metrics");
    assert!(metrics.contains("gateway_tls_certificate_reloads_total{result=\"error\"} 1"));
}

#[test]
fn tls_misconfiguration_stops_the_binary_with_one_line_naming_the_variable() {
    let (good, other) = (Certificate::generate(), Certificate::generate());
    let files = CertificateFiles::with(&good);
    let mismatched = CertificateFiles::with(&good);
    write_atomically(&mismatched.key(), &other.key_pem);
    let cert = files.cert().display().to_string();
    let key = files.key().display().to_string();
    let missing = files.dir.path().join("missing.pem").display().to_string();
    let (mismatched_cert, mismatched_key) = (
        mismatched.cert().display().to_string(),
        mismatched.key().display().to_string(),
    );
    let cases: [(Vec<(&str, &str)>, &str); 4] = [
        (vec![(GATEWAY_TLS_CERT, &cert)], GATEWAY_TLS_KEY),
        (vec![(GATEWAY_TLS_KEY, &key)], GATEWAY_TLS_CERT),
        (
            vec![(GATEWAY_TLS_CERT, &missing), (GATEWAY_TLS_KEY, &key)],
            GATEWAY_TLS_CERT,
        ),
        (
            vec![
                (GATEWAY_TLS_CERT, &mismatched_cert),
                (GATEWAY_TLS_KEY, &mismatched_key),
            ],
            GATEWAY_TLS_KEY,
        ),
    ];
    for (tls_vars, variable) in cases {
        let vars = TestGateway::builder("http://127.0.0.1:9")
            .shared_secret()
            .vars(&tls_vars)
            .into_vars();
        let output = Command::new(GATEWAY_BINARY)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("the binary runs");
        assert!(!output.status.success(), "{variable}: started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{variable}: {stderr}");
        assert!(lines[0].contains(variable), "{variable}: {stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "key material in {stderr}");
    }
}
