//! The `healthcheck` subcommand of both binaries, which a container's `HEALTHCHECK` runs: one
//! HTTP/1.1 `GET` to the address the service itself is configured to listen on, so the check
//! follows `GATEWAY_ADMIN_LISTEN` or `TASK_SERVICE_LISTEN` instead of assuming the default port.
//! It needs no shell, curl or HTTP client crate in the image, and gives up after
//! [`PROBE_TIMEOUT`] so a hung service is reported unhealthy rather than hanging the check.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long the probe waits to connect, and then for each read and write.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The status line is all the probe reads; a longer first line is not HTTP.
const MAX_STATUS_LINE: usize = 1024;

/// Probes `path` on a service listening on `listen` and turns the answer into the exit status a
/// `HEALTHCHECK` expects: success for `200`, failure (with one line on stderr) otherwise.
pub fn run(listen: SocketAddr, path: &str) -> ExitCode {
    match probe(listen, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!(
                "healthcheck: http://{}{path}: {reason}",
                dial_address(listen)
            );
            ExitCode::FAILURE
        }
    }
}

/// `GET path` on the service listening on `listen`; `Ok` when it answers `200`.
pub fn probe(listen: SocketAddr, path: &str) -> Result<(), String> {
    let address = dial_address(listen);
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)
        .map_err(|err| format!("cannot connect: {err}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|err| format!("cannot set a timeout: {err}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("cannot send the request: {err}"))?;
    match read_status(&mut stream)? {
        200 => Ok(()),
        status => Err(format!("answered {status}")),
    }
}

/// Where to connect for a listener address: a wildcard (`0.0.0.0`, `[::]`) is reached on the
/// loopback address of its family, anything else as it is.
pub fn dial_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

/// Reads the status line (`HTTP/1.1 200 OK`) and returns its code.
fn read_status(stream: &mut impl Read) -> Result<u16, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_STATUS_LINE {
            return Err("sent a status line that is too long".to_owned());
        }
        match stream.read(&mut byte) {
            Ok(0) => return Err("closed the connection without an answer".to_owned()),
            Ok(_) => line.push(byte[0]),
            Err(err) => return Err(format!("no answer: {err}")),
        }
    }
    let line = String::from_utf8_lossy(&line);
    let mut parts = line.split_ascii_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|code| code.parse().ok()),
    ) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!(
            "answered something that is not HTTP: {:?}",
            line.trim_end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A one-shot HTTP server on 127.0.0.1:0 that records the request line and answers `reply`.
    fn serve_once(reply: &'static str) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept the probe");
            let mut reader = std::io::BufReader::new(stream);
            let mut request_line = String::new();
            reader
                .read_line(&mut request_line)
                .expect("read the request line");
            let mut header = String::new();
            while reader.read_line(&mut header).expect("read a header") > 2 {
                header.clear();
            }
            reader
                .get_mut()
                .write_all(reply.as_bytes())
                .expect("answer");
            request_line
        });
        (address, server)
    }

    #[test]
    fn a_200_is_healthy_and_the_probe_asks_for_the_path() {
        let (address, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(probe(address, "/readyz"), Ok(()));
        assert_eq!(server.join().expect("server"), "GET /readyz HTTP/1.1\r\n");
    }

    #[test]
    fn a_503_is_unhealthy() {
        let (address, server) =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(probe(address, "/readyz"), Err("answered 503".to_owned()));
        server.join().expect("server");
    }

    #[test]
    fn an_answer_that_is_not_http_is_unhealthy() {
        let (address, server) = serve_once("SSH-2.0-OpenSSH_9.2\r\n");
        let err = probe(address, "/readyz").expect_err("not HTTP");
        assert!(err.contains("not HTTP"), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        drop(listener);
        let err = probe(address, "/readyz").expect_err("nothing listens");
        assert!(err.starts_with("cannot connect"), "{err}");
    }

    #[test]
    fn a_service_that_never_answers_is_unhealthy_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let started = std::time::Instant::now();
        let err = probe(address, "/readyz").expect_err("no answer");
        assert!(err.starts_with("no answer"), "{err}");
        assert!(started.elapsed() < PROBE_TIMEOUT * 2);
        drop(listener);
    }

    #[test]
    fn a_wildcard_listener_is_dialled_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9191".parse().expect("v4");
        let v6: SocketAddr = "[::]:9191".parse().expect("v6");
        let exact: SocketAddr = "10.1.2.3:9191".parse().expect("exact");
        assert_eq!(dial_address(v4), "127.0.0.1:9191".parse().expect("v4"));
        assert_eq!(dial_address(v6), "[::1]:9191".parse().expect("v6"));
        assert_eq!(dial_address(exact), exact);
    }
}
