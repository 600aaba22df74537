//! The task-service replicas: discovery (DNS, re-resolved periodically so a scaled-out Kubernetes
//! service is followed), round-robin selection among healthy ones, active `/healthz` checks, and
//! the connection options of the hop.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, OrErr};

use crate::config::{ReplicaAddress, UpstreamConfig};

/// How often replica host names are resolved again.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// Most replicas tried by one `select`.
const MAX_SELECT_ITERATIONS: usize = 256;

/// Resolves the configured replica addresses; every address a name resolves to is a backend.
struct DnsDiscovery {
    replicas: Vec<ReplicaAddress>,
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        for replica in &self.replicas {
            match tokio::net::lookup_host((replica.host.as_str(), replica.port)).await {
                Ok(addresses) => backends.extend(addresses.map(backend)),
                Err(err) => {
                    tracing::warn!(replica = %replica, error = %err, "cannot resolve task-service replica")
                }
            }
        }
        if backends.is_empty() {
            // Keeping the previous set is better than forgetting every replica on a DNS blip.
            return Error::e_explain(
                ErrorType::ConnectNoRoute,
                "no task-service replica resolves",
            );
        }
        Ok((backends, HashMap::new()))
    }
}

fn backend(address: SocketAddr) -> Backend {
    Backend {
        addr: pingora::protocols::l4::socket::SocketAddr::Inet(address),
        weight: 1,
        ext: http::Extensions::new(),
    }
}

/// The replicas, their health, and how to connect to them.
pub struct Upstreams {
    balancer: Arc<LoadBalancer<RoundRobin>>,
    config: UpstreamConfig,
}

impl Upstreams {
    /// Builds the balancer; replicas are discovered and checked once its background service
    /// ([`Self::background`]) runs.
    pub fn new(config: &UpstreamConfig) -> pingora::Result<Self> {
        let discovery = Box::new(DnsDiscovery {
            replicas: config.replicas.clone(),
        });
        let mut balancer = LoadBalancer::from_backends(Backends::new(discovery));
        let mut check = HttpHealthCheck::new("task-service", false);
        check
            .req
            .set_raw_path(b"/healthz")
            .or_err(ErrorType::InternalError, "health check path")?;
        check.peer_template.options.connection_timeout = Some(config.connect_timeout);
        check.peer_template.options.read_timeout = Some(config.connect_timeout);
        balancer.set_health_check(Box::new(check));
        balancer.health_check_frequency = Some(config.health_check_interval);
        balancer.update_frequency = Some(DISCOVERY_INTERVAL);
        balancer.parallel_health_check = true;
        Ok(Self {
            balancer: Arc::new(balancer),
            config: config.clone(),
        })
    }

    /// The background task that discovers replicas and runs health checks.
    pub fn background(&self) -> Arc<LoadBalancer<RoundRobin>> {
        Arc::clone(&self.balancer)
    }

    /// A healthy replica not in `tried`, in round-robin order.
    pub fn select(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        self.balancer
            .select_with(b"", MAX_SELECT_ITERATIONS, |backend, healthy| {
                healthy
                    && backend
                        .addr
                        .as_inet()
                        .is_some_and(|addr| !tried.contains(addr))
            })
            .and_then(|backend| backend.addr.as_inet().copied())
    }

    /// How to reach `address`: plain HTTP with the configured timeouts.
    pub fn peer(&self, address: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(address, false, String::new());
        peer.options.connection_timeout = Some(self.config.connect_timeout);
        peer.options.read_timeout = Some(self.config.read_timeout);
        peer.options.write_timeout = Some(self.config.write_timeout);
        peer.options.idle_timeout = Some(self.config.idle_timeout);
        peer
    }

    /// How many replicas are known.
    pub fn known_count(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    /// How many replicas pass their health checks.
    pub fn healthy_count(&self) -> usize {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter(|backend| backends.ready(backend))
            .count()
    }
}
