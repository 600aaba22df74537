//! The task-service replicas and the timeouts on the hop to them.

use std::fmt;
use std::time::Duration;

use common::config::{ConfigError, Env};

use reqwest::Url;

use super::{
    HEALTH_CHECK_INTERVAL_MS, TASK_SERVICE_URL, UPSTREAM_CONNECT_TIMEOUT_MS,
    UPSTREAM_IDLE_TIMEOUT_MS, UPSTREAM_READ_TIMEOUT_MS, UPSTREAM_WRITE_TIMEOUT_MS, millis,
};

/// The task-service replicas and the timeouts on the hop to them.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `TASK_SERVICE_URL`: one or more `http://host:port`, comma-separated.
    pub replicas: Vec<ReplicaAddress>,
    /// `UPSTREAM_CONNECT_TIMEOUT_MS` (default 1 s).
    pub connect_timeout: Duration,
    /// `UPSTREAM_READ_TIMEOUT_MS` (default 10 s): longest wait for each read of a reply.
    pub read_timeout: Duration,
    /// `UPSTREAM_WRITE_TIMEOUT_MS` (default 10 s).
    pub write_timeout: Duration,
    /// `UPSTREAM_IDLE_TIMEOUT_MS` (default 15 s): pooled connections are dropped before the task
    /// service's own keep-alive (hyper's 30 s header-read timeout) closes them, so a POST never
    /// lands on a connection the other side already closed.
    pub idle_timeout: Duration,
    /// `HEALTH_CHECK_INTERVAL_MS` (default 1 s): how often each replica's `/healthz` is probed.
    pub health_check_interval: Duration,
}

/// One replica, as configured: a host name or IP and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ReplicaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl UpstreamConfig {
    /// Reads the replica list and the hop's timeouts.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let urls = env
            .list(TASK_SERVICE_URL)?
            .unwrap_or_else(|| vec!["http://127.0.0.1:8081".to_owned()]);
        if urls.is_empty() {
            return Err(ConfigError::new(TASK_SERVICE_URL, "lists no replica"));
        }
        let replicas = urls
            .iter()
            .map(|url| replica_address(url))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            replicas,
            connect_timeout: millis(env, UPSTREAM_CONNECT_TIMEOUT_MS, 1_000)?,
            read_timeout: millis(env, UPSTREAM_READ_TIMEOUT_MS, 10_000)?,
            write_timeout: millis(env, UPSTREAM_WRITE_TIMEOUT_MS, 10_000)?,
            idle_timeout: millis(env, UPSTREAM_IDLE_TIMEOUT_MS, 15_000)?,
            health_check_interval: millis(env, HEALTH_CHECK_INTERVAL_MS, 1_000)?,
        })
    }
}

/// `http://host:port` with nothing else: the hop to the task service is plain HTTP on an internal
/// network, and a path would be silently ignored.
fn replica_address(value: &str) -> Result<ReplicaAddress, ConfigError> {
    let bad = |message: &str| ConfigError::new(TASK_SERVICE_URL, format!("{value:?} {message}"));
    let url = Url::parse(value).map_err(|err| bad(&format!("is not a URL: {err}")))?;
    if url.scheme() != "http" {
        return Err(bad(
            "must use http:// (the gateway speaks plain HTTP to the task tier)",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
        return Err(bad("must be http://host:port with no path, query or user"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(ReplicaAddress { host, port })
}
