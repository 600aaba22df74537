//! Pingora as a plain reverse proxy, with none of the gateway's checks: the floor under the
//! gateway's cost per request, for the benchmark in `bench/`. It listens on `GATEWAY_LISTEN` and
//! forwards every request to `TASK_SERVICE_URL`'s `host:port` over pooled keep-alive connections,
//! with `GATEWAY_THREADS` worker threads, the gateway's allocator and no downstream modules, as
//! the gateway does.
//!
//! ```text
//! GATEWAY_LISTEN=127.0.0.1:18095 TASK_SERVICE_URL=http://127.0.0.1:18081 \
//!     cargo run --release -p gateway --example plain_proxy
//! ```

use async_trait::async_trait;
use pingora::modules::http::HttpModules;
use pingora::prelude::{HttpPeer, Opt, Server};
use pingora::proxy::{ProxyHttp, Session, http_proxy_service};
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct PlainProxy {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for PlainProxy {
    type CTX = ();

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn variable(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("error: {name} is required");
        std::process::exit(2)
    })
}

fn main() {
    let listen = variable("GATEWAY_LISTEN");
    let upstream = variable("TASK_SERVICE_URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let threads = std::env::var("GATEWAY_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let conf = ServerConf {
        threads,
        // A benchmark target: stop at once on SIGTERM.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, PlainProxy { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
