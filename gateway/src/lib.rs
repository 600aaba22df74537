//! The public gateway: a pingora reverse proxy in front of the task service.
//!
//! It verifies Better Auth JWTs (EdDSA and other asymmetric algorithms from the JWKS, HS256/384/512
//! with the shared secret), binds `/api/{user_id}/...` to the token's subject, strips client
//! identity headers, and forwards a signed assertion of the verified identity.
//!
//! - [`config`]: the typed configuration, read once from the environment.
//! - [`path`]: the canonical path check and the six API routes.
//! - [`token`]: token verification, the JWKS store and the verified-token cache.
//! - [`authorize`]: the access decision and its [`authorize::Denial`]s.
//! - [`client_limit`]: failed verifications per client address, limited before the signature.
//! - [`rate_limit`]: the per-user request budget, keyed by the verified subject.
//! - [`revocation`]: revoked sessions, tokens and users (sign-out), their store and admin API.
//! - [`cors`]: browser access.
//! - [`proxy`]: the `ProxyHttp` implementation, one method per pingora phase.
//! - [`forward`]: the request head the task service receives (identity, request id, assertion).
//! - [`trace_context`]: the request's trace: the `traceparent` passed on, and the spans when
//!   exporting.
//! - [`failure`]: how upstream failures are answered (JSON 502/503/504).
//! - [`tls`]: the public listener's certificate, reloaded when its files change.
//! - [`upstream`]: task-service replicas, health checks and load balancing.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, and behind the admin token ([`admin_auth`])
//!   `POST /explain` ([`explain`]) and the revocation endpoints ([`revocation`]).
//! - [`metrics`]: the Prometheus metrics.
//! - [`mint`]: `gateway mint-token`.
//! - [`upgrade_socket`]: the private graceful-upgrade socket and who may receive the listeners.
//! - [`app`]: building the gateway and running it (pingora server or given listeners).

pub mod admin;
pub mod admin_auth;
pub mod app;
pub mod authorize;
pub mod client_limit;
pub mod config;
pub mod cors;
pub mod drain;
pub mod explain;
pub mod failure;
pub mod forward;
pub mod metrics;
pub mod mint;
pub mod path;
pub mod proxy;
pub mod rate_limit;
pub mod revocation;
pub mod tls;
pub mod token;
pub mod trace_context;
pub mod upgrade_socket;
pub mod upstream;

pub use app::{Gateway, StartError};
pub use config::Config;
