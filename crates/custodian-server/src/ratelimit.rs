//! A token-bucket rate limiter keyed by client address, for the unauthenticated endpoint.
//! In memory and per node: with N nodes behind a load balancer a client gets at most N
//! times the rate, which still bounds a flood; the limit is about cost, not secrecy.

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
    }
}
