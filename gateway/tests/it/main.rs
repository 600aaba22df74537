//! The gateway's integration tests: one binary, one module per thing it defends, each starting
//! real things on 127.0.0.1:0 (the gateway, upstreams, a JWKS server, the task service, the
//! binary) through [`support`].
//!
//! - [`proxy`]: the proxy's contract with a well-behaved client (authorization, forwarded
//!   identity, CORS, errors, metrics).
//! - [`jwks`]: Better Auth's key set (fetching, rotation, refetch limits, outages).
//! - [`end_to_end`]: the gateway in front of the real task service.
//! - [`routes`]: the gateway's route table against the task service's OpenAPI document.
//! - [`binary`]: the real executable (configuration errors, SIGTERM, graceful upgrade).
//! - [`adversarial`]: attacks, grouped by what they defend.
//! - [`faults`]: task service, database and JWKS outages; SIGTERM under load.
//! - [`properties`]: proptest over the parsers that face the network and the claims of signed
//!   tokens (CI runs it with `PROPTEST_CASES=10000`).
//! - [`operations`]: a real Prometheus scraping both tiers; an upgrade under keep-alive load.
//! - [`tls`]: TLS and HTTP/2 on the public listener, certificate reloads.
//! - [`explain`]: `POST /explain` against what the proxy does.
//! - [`revocation`]: sign-out reaching every replica (file store, Redis, outages, the admin API,
//!   the real Better Auth).
//! - [`tracing`]: the trace context through both real binaries, the spans they export to a
//!   collector of the test's own, and the trace id in their access logs.

mod support;

mod adversarial;
mod binary;
mod end_to_end;
mod explain;
mod faults;
mod jwks;
mod operations;
mod properties;
mod proxy;
mod revocation;
mod routes;
mod tls;
mod tracing;
