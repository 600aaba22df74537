//! The adversarial suite: every promise of the contract (README.md) attacked the way real
//! attackers attack auth gateways, against the real gateway (and the real task service where
//! the attack is on it) on 127.0.0.1:0. One module per thing defended:
//!
//! - [`tokens`]: token verification (`alg: none`, signatures, secrets, algorithm confusion,
//!   header-borne keys and `kid`s).
//! - [`claims`]: the claims of signed tokens (time claim types, subjects, email).
//! - [`headers`]: the request head (Authorization handling, tokens elsewhere, oversized heads,
//!   identity spoofing, method and URL overrides).
//! - [`paths`]: path canonicalisation and route binding.
//! - [`smuggling`]: message framing between the gateway and the task service.
//! - [`slow_clients`]: slow and idle connections.
//! - [`task_service`]: the task service itself (direct requests, cross-user access, mass
//!   assignment).
//! - [`hostile_bodies`]: malformed, nested, oversized and control-character bodies.
//! - [`rate_limit`]: the per-user rate limit.
//! - [`failed_tokens`]: floods of forged tokens, limited per client address.
//! - [`pipelining`]: requests pipelined on one connection.
//! - [`upgrade_socket`]: the graceful-upgrade socket on a host (the real binary).
//! - [`logs`]: credentials in the logs of both tiers at `trace` (both real binaries).
//!
//! Every test ends with [`crate::support::stack::assert_still_serving`]: an attack that wedges the gateway
//! fails the test that made it.

mod claims;
mod failed_tokens;
mod headers;
mod hostile_bodies;
mod logs;
mod paths;
mod pipelining;
mod rate_limit;
mod slow_clients;
mod smuggling;
mod task_service;
mod tokens;
mod upgrade_socket;

use serde_json::Value;

use crate::support::servers::{EchoUpstream, JwksServer};
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, better_auth_claims};

/// A gateway taking both kinds of token (a Better Auth JWKS with one Ed25519 key, `key-1`, and
/// the HS256 secret) in front of an echo upstream that records what reached it.
pub struct Arena {
    pub upstream: EchoUpstream,
    pub jwks: JwksServer,
    pub key: Ed25519Key,
    pub gateway: TestGateway,
}

impl Arena {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let key = Ed25519Key::generate("key-1");
        let jwks = JwksServer::start(vec![key.jwk()]).await;
        let upstream = EchoUpstream::start().await;
        let gateway = TestGateway::builder(&upstream.url())
            .shared_secret()
            .better_auth(&jwks.base_url())
            .vars(extra)
            .start()
            .await;
        Self {
            upstream,
            jwks,
            key,
            gateway,
        }
    }

    /// Better Auth's default claims for `sub`.
    pub fn claims(&self, sub: &str) -> Value {
        better_auth_claims(&self.jwks.base_url(), sub)
    }

    /// A genuine Better Auth (EdDSA) token for `sub`.
    pub fn eddsa(&self, sub: &str) -> String {
        self.key.sign(&self.claims(sub))
    }

    /// Sends `GET /api/alice/tasks` with `token` and asserts a 401 with a bearer challenge that
    /// never reached the upstream.
    pub async fn assert_refused(&self, name: &str, token: &str) {
        let before = self.upstream.count();
        let response = self
            .gateway
            .client
            .get(self.gateway.url("/api/alice/tasks"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("gateway reachable");
        assert_eq!(response.status(), 401, "{name}: {token}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        let body: Value = response.json().await.expect("JSON body");
        assert!(body["detail"].is_string(), "{name}: {body}");
        assert_eq!(self.upstream.count(), before, "{name} reached the upstream");
    }

    /// `GET path` with `token`; the status.
    pub async fn status(&self, path: &str, token: &str) -> u16 {
        self.gateway.get(path, token).await.status().as_u16()
    }
}
