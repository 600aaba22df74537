//! The task service: the seed's task API on axum, over SQLite (rusqlite) or PostgreSQL (sqlx),
//! answering only requests that carry a valid gateway assertion.
//!
//! The public surface is [`Config`] (with the variable names in [`config`]), [`run`] and
//! [`Error`]: `main` and the tests start the service the same way, on a listener they bound, with
//! a shutdown future they control. Inside:
//!
//! - `config`: the typed configuration, read once from the environment, and one constant per
//!   variable it reads.
//! - `http`: the router, its state, the fallbacks, the access log and request metrics, and:
//!   - `http::tasks`: the router and the five single-task handlers with their SQL;
//!     `http::tasks::list` the list's query string and dynamic SQL; `http::tasks::input` the
//!     task model and the request bodies;
//!   - `http::auth`: the extractor that turns a gateway assertion into a `User`;
//!   - `http::error`: the one error type every handler returns, rendered as FastAPI-style JSON;
//!   - `http::extract`: the FastAPI-style request validation;
//!   - `http::openapi`: the shared parts of the OpenAPI 3.1 document served at `/openapi.json`;
//!   - `http::health`: the operator endpoints.
//! - `store`: the database pools, migrations, and the one place where the backends differ.
//! - `metrics`: the Prometheus registry of one app instance.
//! - `timestamp`: RFC 3339 times written for the API and SQLite, and read back, byte for byte as
//!   chrono does, without its general formatter and parser in the common case.

pub mod config;
mod http;
mod metrics;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod timestamp;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;

use crate::config::DATABASE_URL;

use crate::metrics::Metrics;
use crate::store::Store;

/// Why the service could not start or stopped serving. The display is one line and names the
/// variable to fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory for the SQLite file could not be created.
    #[error("{}: cannot create the directory {path}: {source}", DATABASE_URL)]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// The database could not be opened or reached.
    #[error("{}: cannot open the database: {}", DATABASE_URL, one_line(.0))]
    Connect(sqlx::Error),
    /// The migrations could not be applied.
    #[error("{}: cannot apply migrations: {}", DATABASE_URL, one_line(.0))]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The metrics registry refused a metric (a programming error).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The OpenAPI document could not be rendered (a programming error).
    #[error("cannot render the OpenAPI document: {0}")]
    OpenApi(serde_json::Error),
    /// Accepting connections failed.
    #[error("cannot serve: {0}")]
    Serve(std::io::Error),
}

/// Database messages may span lines; a start-up failure must print as one.
fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Connects to the database (creating the SQLite file and its directory if needed), applies
/// migrations, serves on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish, closes the pool and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Metrics::new()?;
    let store = Store::open(config.database, config.database_limits, metrics.clone()).await?;
    let app = http::router(http::AppState::new(store.clone(), config.verifier, metrics))
        .map_err(Error::OpenApi)?;
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "task service listening");
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    store.close().await;
    tracing::info!("task service stopped");
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers box it, send it across tasks and return it from `main`.
    #[test]
    fn the_error_is_a_thread_safe_std_error() {
        fn assert_std_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_std_error::<Error>();
    }
}
