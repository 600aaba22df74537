//! A real `redis-server` of the test's own, on a free loopback port, without persistence, killed
//! when dropped. Tests that need one call [`RedisServer::start`], which returns `None` (and says
//! the test is skipped) when `redis-server` is not installed, except in CI, where that fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;
use super::processes::{free_port, installed};

/// A running `redis-server`.
pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port, or `None` when `redis-server` is missing outside CI.
    pub fn start(test: &str) -> Option<Self> {
        if !installed("redis-server", test) {
            return None;
        }
        let mut server = Self {
            addr: free_port(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (its data is gone: it persists nothing).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers `PING`.
    pub fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0_u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// The keys under `prefix`, through `redis-cli`-free raw RESP (`KEYS` is fine on a test
    /// server).
    pub fn key_count(&self, prefix: &str) -> usize {
        let mut stream = TcpStream::connect(self.addr).expect("redis reachable");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let pattern = format!("{prefix}*");
        let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
        stream.write_all(command.as_bytes()).expect("send KEYS");
        let mut header = Vec::new();
        let mut byte = [0_u8; 1];
        while !header.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).expect("read reply");
            header.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&header);
        text.trim_start_matches('*')
            .trim()
            .parse()
            .expect("an array reply")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
