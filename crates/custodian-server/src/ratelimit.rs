//! A token-bucket rate limiter keyed by client address: for the unauthenticated endpoints,
//! and for failed authentication attempts ([`AuthFailures`]). In memory and per node: with
//! N nodes behind a load balancer a client gets at most N times the rate, which still
//! bounds a flood.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

const MAX_TRACKED: usize = 100_000;

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `false` when its bucket is empty.
    pub fn allow(&self, key: Option<IpAddr>) -> bool {
        self.allow_at(key, Instant::now())
    }

    /// Seconds until `key`'s bucket holds a whole token again; `None` when it holds one
    /// now. Takes nothing.
    pub fn wait(&self, key: Option<IpAddr>) -> Option<u32> {
        self.wait_at(key, Instant::now())
    }

    fn wait_at(&self, key: Option<IpAddr>, now: Instant) -> Option<u32> {
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = b.get(&key)?;
        let rate = self.per_minute / 60.0;
        let refilled = tokens + now.duration_since(*at).as_secs_f64() * rate;
        (refilled < 1.0).then(|| ((1.0 - refilled) / rate).ceil().max(1.0) as u32)
    }

    fn allow_at(&self, key: Option<IpAddr>, now: Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED {
            // Forget clients whose buckets have refilled: they lose nothing.
            let full = self.per_minute;
            let rate = self.per_minute / 60.0;
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < full
            });
        }
        let (tokens, at) = b.entry(key).or_insert((self.per_minute, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_minute / 60.0)
            .min(self.per_minute);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            true
        } else {
            *tokens = refilled;
            false
        }
    }
}

/// The key for a client address: IPv4 as is, IPv6 by its /64 (one subscriber's prefix: an
/// attacker rotating addresses inside it stays one client).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Failed authentication attempts per client address. A token carries 256 random bits, so
/// guessing one is hopeless; this bounds what a scanner or a misconfigured client costs
/// (every presented token is a database lookup) and makes credential stuffing visible.
/// A source whose budget is spent is answered 429 for every presented token, valid or
/// not, until its bucket refills: otherwise a right guess would still get through.
#[derive(Debug)]
pub struct AuthFailures(pub RateLimiter);

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        Self(RateLimiter::new(per_minute))
    }

    /// `Some(seconds to wait)` when `ip` has no attempts left.
    pub fn blocked(&self, ip: Option<IpAddr>) -> Option<u32> {
        self.0.wait(ip.map(client_key))
    }

    /// Records one failed attempt from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let _ = self.0.allow(ip.map(client_key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_up_to_the_rate_then_refills() {
        let r = RateLimiter::new(3);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(r.allow_at(a, t0));
        assert!(r.allow_at(a, t0));
        assert!(r.allow_at(a, t0));
        assert!(!r.allow_at(a, t0));
        assert!(r.allow_at(b, t0), "buckets are per address");
        assert!(
            r.allow_at(a, t0 + Duration::from_secs(20)),
            "one token back after 20 s at 3/min"
        );
        assert!(!r.allow_at(a, t0 + Duration::from_secs(21)));
        assert_eq!(r.wait_at(a, t0 + Duration::from_secs(21)), Some(19));
        assert_eq!(r.wait_at(b, t0), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
