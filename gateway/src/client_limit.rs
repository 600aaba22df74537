//! Failed token verifications per client address, limited before the signature check.
//!
//! Checking an asymmetric signature is the most expensive thing the gateway does for an
//! unauthenticated client (0.65 ms of CPU for ES512), and a forged token naming a real `kid`
//! cannot be refused more cheaply. So each client address may fail at most
//! `FAILED_AUTH_PER_ADDRESS_PER_MINUTE` verifications per minute; beyond that, its requests
//! whose token is not already in the verified-token cache get a 429 (`too_many_failed_tokens`)
//! without any signature being checked. Tokens already verified keep working from that address,
//! so users behind the same NAT as an attacker are not locked out once they are signed in.
//!
//! The client address is the TCP peer. Behind a load balancer, list its addresses in
//! `TRUSTED_PROXY_CIDRS`: for a request from one of them, the client is the rightmost
//! `X-Forwarded-For` entry that is not itself a trusted proxy. `X-Forwarded-For` is never read
//! otherwise, since any client can write it.
//!
//! Counting uses `pingora-limits` (a count-min sketch that may over-count on collisions, never
//! under-counts) in fixed one-minute windows, per gateway replica.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::config::{ConfigError, Env};
use pingora::http::RequestHeader;
use pingora_limits::rate::Rate;

use crate::authorize::Denial;
use crate::config::{FAILED_AUTH_PER_ADDRESS_PER_MINUTE, TRUSTED_PROXY_CIDRS};
use crate::token::{Principal, Verifier};

/// The counting window.
const WINDOW: Duration = Duration::from_secs(60);
/// Hash rows and columns of the sketch: 2 windows × 4 × 8192 counters of 8 bytes = 512 KiB.
const HASHES: usize = 4;
const SLOTS: usize = 8192;
/// What a refused client is told to wait, in seconds: the window cannot be further away.
pub const RETRY_AFTER_SECONDS: u64 = 60;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self { network, prefix })
    }

    /// Whether `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        let (ours, theirs, bits) = match (self.network, address) {
            (IpAddr::V4(ours), IpAddr::V4(theirs)) => {
                (u128::from(ours.to_bits()), u128::from(theirs.to_bits()), 32)
            }
            (IpAddr::V6(ours), IpAddr::V6(theirs)) => (ours.to_bits(), theirs.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (ours >> shift) == (theirs >> shift)
    }
}

/// How client addresses are found and how many failed verifications each may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimitConfig {
    /// `FAILED_AUTH_PER_ADDRESS_PER_MINUTE` (default 600; 0 turns the limit off).
    pub failed_per_minute: u64,
    /// `TRUSTED_PROXY_CIDRS` (default none).
    pub trusted_proxies: Vec<Cidr>,
}

impl ClientLimitConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let failed_per_minute: u64 = env.parse_or(FAILED_AUTH_PER_ADDRESS_PER_MINUTE, 600)?;
        if failed_per_minute > 1_000_000 {
            return Err(ConfigError::new(
                FAILED_AUTH_PER_ADDRESS_PER_MINUTE,
                format!("must be between 0 and 1000000 (got {failed_per_minute})"),
            ));
        }
        let trusted_proxies = env
            .list(TRUSTED_PROXY_CIDRS)?
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                Cidr::parse(entry).ok_or_else(|| {
                    ConfigError::new(
                        TRUSTED_PROXY_CIDRS,
                        format!("{entry:?} is not an address or CIDR (e.g. 10.0.0.0/8)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            failed_per_minute,
            trusted_proxies,
        })
    }
}

/// The client address of a request from `peer`: the peer itself, unless it is a trusted proxy;
/// then the rightmost `X-Forwarded-For` hop that is not a trusted proxy (the peer when the
/// header is missing or a hop is unreadable before one is found).
pub fn client_address(
    trusted: &[Cidr],
    peer: Option<IpAddr>,
    request: &RequestHeader,
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |address: IpAddr| trusted.iter().any(|cidr| cidr.contains(address));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let values: Vec<&str> = request
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            return Some(client);
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    Some(client)
}

/// Failed verifications counted per client address.
pub struct FailedTokenLimit {
    limit: isize,
    rate: Rate,
    trusted_proxies: Vec<Cidr>,
}

impl FailedTokenLimit {
    /// The limit of `config`; `None` when it is off.
    pub fn new(config: &ClientLimitConfig) -> Option<Arc<Self>> {
        let limit = isize::try_from(config.failed_per_minute).unwrap_or(isize::MAX);
        (limit > 0).then(|| {
            Arc::new(Self {
                limit,
                rate: Rate::new_with_estimator_config(WINDOW, HASHES, SLOTS),
                trusted_proxies: config.trusted_proxies.clone(),
            })
        })
    }

    /// The client address of a request from `peer` (see [`client_address`]).
    pub fn client_of(&self, peer: Option<IpAddr>, request: &RequestHeader) -> Option<IpAddr> {
        client_address(&self.trusted_proxies, peer, request)
    }

    /// The principal of `token`, verified by `verifier`, except that a `client` over its
    /// failure budget gets [`Denial::TooManyFailedTokens`] for a token not already verified,
    /// before its signature is looked at; each failed verification counts.
    pub async fn verify(
        &self,
        client: Option<IpAddr>,
        token: &str,
        verifier: &Verifier,
    ) -> Result<Arc<Principal>, Denial> {
        if let Some(principal) = verifier.cached(token) {
            return Ok(principal);
        }
        // Without a known address (not a TCP peer) there is nothing to key on.
        let Some(client) = client else {
            return verifier.verify_fresh(token).await.map_err(Denial::Token);
        };
        if self.rate.observe(&client, 0) >= self.limit {
            return Err(Denial::TooManyFailedTokens);
        }
        let result = verifier.verify_fresh(token).await;
        if result.is_err() {
            self.rate.observe(&client, 1);
        }
        result.map_err(Denial::Token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn request(forwarded: &[&str]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).expect("request head");
        for value in forwarded {
            request
                .append_header("x-forwarded-for", *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("1.2.3.4"))
        );
        let v6 = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(
            Cidr::parse("192.168.1.7")
                .expect("one")
                .contains(ip("192.168.1.7"))
        );
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/", "::/129"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let spoofed = request(&["6.6.6.6"]);
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            client_address(&trusted, Some(ip("1.2.3.4")), &spoofed),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_address(&[], Some(ip("10.0.0.5")), &spoofed),
            Some(ip("10.0.0.5"))
        );
        // Behind the balancer: the rightmost hop it did not add itself.
        let chain = request(&["6.6.6.6, 1.2.3.4", "10.0.0.9"]);
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.5")), &chain),
            Some(ip("1.2.3.4"))
        );
        let garbage = request(&["not-an-ip"]);
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.5")), &garbage),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.5")), &request(&[])),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn configuration_defaults_on_and_names_bad_values() {
        let config = ClientLimitConfig::from_env(&Env::default()).expect("defaults");
        assert_eq!(config.failed_per_minute, 600);
        assert!(config.trusted_proxies.is_empty());
        for (variable, value) in [
            (FAILED_AUTH_PER_ADDRESS_PER_MINUTE, "-1"),
            (FAILED_AUTH_PER_ADDRESS_PER_MINUTE, "2000000"),
            (TRUSTED_PROXY_CIDRS, "10.0.0.0/8, lb.internal"),
        ] {
            let err = ClientLimitConfig::from_env(&Env::from_pairs([(variable, value)]))
                .expect_err("refused");
            assert_eq!(err.variable, variable);
        }
        assert!(
            FailedTokenLimit::new(&ClientLimitConfig {
                failed_per_minute: 0,
                trusted_proxies: Vec::new()
            })
            .is_none()
        );
    }
}
