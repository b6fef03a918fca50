//! Token-bucket rate limits: per client address for the unauthenticated endpoints
//! ([`RateLimiter`]) and for failed authentication attempts ([`AuthFailures`]), and per
//! login name for failed password attempts ([`LoginFailures`]). In memory and per node: with
//! N nodes behind a load balancer a client gets at most N times the rate, which still
//! bounds a flood.

use custodian_core::account::LoginName;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 100_000;

/// One token bucket per key: `capacity` tokens, refilled at `capacity` per period.
#[derive(Debug)]
struct Buckets<K> {
    capacity: f64,
    per_second: f64,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(capacity: u32, period: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            capacity,
            per_second: capacity / period.as_secs_f64(),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_second)
            .min(self.capacity)
    }

    /// Takes one token for `key`; `false` (and nothing taken) when its bucket is empty.
    fn take(&self, key: K, now: Instant) -> bool {
        let mut b = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED {
            // Forget keys whose buckets have refilled: they lose nothing.
            b.retain(|_, (tokens, at)| self.refilled(*tokens, *at, now) < self.capacity);
        }
        let (tokens, at) = b.entry(key).or_insert((self.capacity, now));
        let refilled = self.refilled(*tokens, *at, now);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            true
        } else {
            *tokens = refilled;
            false
        }
    }

    /// Seconds until `key`'s bucket holds a whole token again; `None` when it holds one
    /// now. Takes nothing.
    fn wait(&self, key: &K, now: Instant) -> Option<u32> {
        let b = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = b.get(key)?;
        let refilled = self.refilled(*tokens, *at, now);
        (refilled < 1.0).then(|| ((1.0 - refilled) / self.per_second).ceil().max(1.0) as u32)
    }

    /// Takes one token, or says how long to wait for one.
    fn reserve(&self, key: K, now: Instant) -> Result<(), u32>
    where
        K: Clone,
    {
        if self.take(key.clone(), now) {
            Ok(())
        } else {
            Err(self.wait(&key, now).unwrap_or(1))
        }
    }

    /// Gives back a token taken for an attempt that turned out not to count (a success).
    fn give_back(&self, key: &K, now: Instant) {
        let mut b = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, at)) = b.get_mut(key) {
            *tokens = (self.refilled(*tokens, *at, now) + 1.0).min(self.capacity);
            *at = now;
        }
    }
}

/// Requests per minute per client address.
#[derive(Debug)]
pub struct RateLimiter(Buckets<Option<IpAddr>>);

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self(Buckets::new(per_minute, Duration::from_secs(60)))
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
        self.0.wait(&key, now)
    }

    fn allow_at(&self, key: Option<IpAddr>, now: Instant) -> bool {
        self.0.take(key, now)
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

    /// Pays for one attempt from `ip` *before* it is checked (a password login): `Err`
    /// with the seconds to wait when its budget is spent. Concurrent attempts therefore
    /// cannot overrun the budget; [`AuthFailures::succeeded`] refunds a successful one.
    pub fn reserve(&self, ip: Option<IpAddr>) -> Result<(), u32> {
        self.0.0.reserve(ip.map(client_key), Instant::now())
    }

    /// Refunds an attempt paid for with [`AuthFailures::reserve`] that did not fail.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        self.0.0.give_back(&ip.map(client_key), Instant::now());
    }
}

/// Failed password attempts per login name, whether or not the name is an account's (so the
/// limit itself tells nothing about which names are). Once a name's budget is spent, every
/// login for it is answered 429, the right password too, until its bucket refills: a lockout
/// that let the right password through would be none. The names are not kept: buckets are
/// keyed by the SHA-256 of the normalised name.
///
/// This lets anyone lock a known login name out for a while by failing on purpose; the
/// budget refills steadily, and a session token already issued keeps working. That is the
/// price of bounding online guessing of one person's password from many addresses, which
/// the per-address limit alone does not.
#[derive(Debug)]
pub struct LoginFailures(Buckets<[u8; 32]>);

impl LoginFailures {
    pub fn new(per_hour: u32) -> Self {
        Self(Buckets::new(per_hour, Duration::from_secs(3600)))
    }

    fn key(login: &LoginName) -> [u8; 32] {
        custodian_crypto::hash::sha256(login.as_str().as_bytes())
    }

    /// Pays for one attempt for `login` before it is checked; `Err` with the seconds to
    /// wait when the name's budget is spent.
    pub fn reserve(&self, login: &LoginName) -> Result<(), u32> {
        self.0.reserve(Self::key(login), Instant::now())
    }

    /// Refunds an attempt that did not fail.
    pub fn succeeded(&self, login: &LoginName) {
        self.0.give_back(&Self::key(login), Instant::now());
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
    fn reserved_attempts_are_refunded_only_on_success() {
        let b: Buckets<u8> = Buckets::new(2, Duration::from_secs(3600));
        let t0 = Instant::now();
        assert_eq!(b.reserve(1, t0), Ok(()));
        b.give_back(&1, t0);
        assert_eq!(b.reserve(1, t0), Ok(()));
        assert_eq!(b.reserve(1, t0), Ok(()));
        // Spent: refused, with the wait for one token at 2 per hour.
        assert_eq!(b.reserve(1, t0), Err(1800));
        assert_eq!(b.reserve(2, t0), Ok(()), "buckets are per key");
        // A refund never lifts a bucket above its capacity.
        b.give_back(&2, t0);
        b.give_back(&2, t0);
        assert_eq!(b.reserve(2, t0), Ok(()));
        assert_eq!(b.reserve(2, t0), Ok(()));
        assert!(b.reserve(2, t0).is_err());
        assert_eq!(b.reserve(1, t0 + Duration::from_secs(1800)), Ok(()));
    }

    #[test]
    fn login_names_are_limited_as_normalised() {
        let f = LoginFailures::new(1);
        let a = LoginName::parse("Dpo@Acme.example").unwrap();
        let same = LoginName::parse("dpo@acme.example").unwrap();
        let other = LoginName::parse("cfo@acme.example").unwrap();
        assert_eq!(f.reserve(&a), Ok(()));
        assert!(f.reserve(&same).is_err(), "one name, however it is spelt");
        assert_eq!(f.reserve(&other), Ok(()));
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
