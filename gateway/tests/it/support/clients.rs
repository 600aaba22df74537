//! Clients: raw-socket HTTP for the bytes a client library would normalise away, and a [`User`]
//! whose helpers read like the API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;
use super::stack::TestGateway;
use super::tokens::{claims_for, hs256};

/// One HTTP/1.1 response, read by `Content-Length`.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name` (any case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Writes `request` to `addr` and reads one response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end;
            }
            let read = stream.read(&mut chunk).await.expect("read response");
            assert!(read > 0, "connection closed before a response head");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let (mut response, length) =
            parse_head(&buffer[..head_end]).expect("an HTTP/1.x status line");
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let read = stream.read(&mut chunk).await.expect("read body");
            assert!(read > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..read]);
        }
        body.truncate(length);
        response.body = body;
        response
    })
    .await
    .expect("a response in time")
}

/// A response head (without the blank line) as a response with no body yet, and its
/// `Content-Length` (0 when absent); `None` when the first line is not an HTTP/1.x status line.
fn parse_head(head: &[u8]) -> Option<(RawResponse, usize)> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    Some((response, length))
}

/// Writes `request` on one connection and reads until the server closes it or goes quiet for
/// `quiet`, then parses every response it sent (for pipelining and smuggling probes, where the
/// number of responses is the finding). Returns them and whether the server closed.
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    quiet: Duration,
) -> (Vec<RawResponse>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything; that is not an error here.
    let _ = stream.write_all(request).await;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + PATIENCE;
    let closed = loop {
        assert!(Instant::now() < deadline, "the server kept talking");
        match tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) => break false,
        }
    };
    (parse_responses(&buffer), closed)
}

/// Every complete HTTP/1.x response in `bytes`, in order (bodies framed by `Content-Length`).
pub fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while let Some(head_end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
        let Some((mut response, length)) = parse_head(&bytes[..head_end]) else {
            break;
        };
        let body_end = (head_end + 4 + length).min(bytes.len());
        response.body = bytes[head_end + 4..body_end].to_vec();
        responses.push(response);
        bytes = &bytes[body_end..];
    }
    responses
}

/// A user of the system: a path user id and a bearer token, with helpers that read like the API.
pub struct User<'a> {
    pub gateway: &'a TestGateway,
    pub id: String,
    pub token: String,
}

impl<'a> User<'a> {
    /// A user with an HS256 token for `id`.
    pub fn new(gateway: &'a TestGateway, id: &str) -> Self {
        Self {
            gateway,
            id: id.to_owned(),
            token: hs256(&claims_for(id)),
        }
    }

    /// `method /api/{id}/tasks{path}` with this user's token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .gateway
            .client
            .request(
                method,
                self.gateway.url(&format!("/api/{}/tasks{path}", self.id)),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("gateway reachable")
    }

    /// Creates a task; returns its id.
    pub async fn create(&self, title: &str) -> i64 {
        let response = self
            .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
            .await;
        assert_eq!(response.status(), 201, "create {title:?}");
        let task: Value = response.json().await.expect("task JSON");
        task["id"].as_i64().expect("task id")
    }

    /// Every task of this user, as the exact bytes the API returns (to compare before and after
    /// an attack).
    pub async fn snapshot(&self) -> String {
        let response = self
            .call(
                reqwest::Method::GET,
                "?sort=created&order=asc&limit=500",
                None,
            )
            .await;
        assert_eq!(response.status(), 200, "list");
        response.text().await.expect("list body")
    }
}

/// The status of `GET url` with `token` as bearer; 0 when there was no answer.
pub async fn status_of(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    match client.get(url).bearer_auth(token).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// The value of the Prometheus `series` (name and labels, as exposed) in `text`; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
