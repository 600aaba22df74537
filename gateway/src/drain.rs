//! A drain window for graceful shutdown and binary upgrade.
//!
//! When pingora begins a graceful shutdown (SIGTERM, or SIGQUIT once a new process has taken the
//! listening sockets) it stops accepting and then at once calls the proxy's `cleanup`, which
//! aborts every keep-alive connection waiting for its next request. A client that had already
//! sent that request loses it: under steady load, an upgrade cost about one failed request per
//! client connection. [`Draining`] holds that cleanup back for a short window. Within it a request
//! on a kept-alive connection is still served, with `Connection: close` (pingora turns keep-alive
//! off once shutdown has begun), so each client moves to the new process between two requests
//! instead of in the middle of one. Connections still idle after the window are closed as before.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// How long idle keep-alive connections stay open after shutdown begins. Shorter than the
/// server's grace period, so that the drain ends before the runtime is stopped.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// Wraps a server application so that its cleanup waits for [`DRAIN_WINDOW`].
pub struct Draining<A> {
    inner: Arc<A>,
}

impl<A> Draining<A> {
    pub fn new(inner: A) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Draining<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(DRAIN_WINDOW).await;
        self.inner.cleanup().await;
    }
}
