//! Tokens recently found in the store, so that a client's every request does not read its
//! token's row again (at 64 connections that read, and the hop to the blocking pool it
//! needs, were a sixth of an audited read's server time).
//!
//! What a hit may get wrong is bounded: an entry is trusted for [`FRESH_FOR`] after it was
//! read, by the vault's clock; expiry is still judged at every use; a revocation or a
//! destruction made through this vault empties the cache before it returns, so on one
//! node (SQLite) a revoked token is refused at once. Another node (PostgreSQL deployments)
//! may accept a token it checked in the last second for the rest of that second. Only
//! tokens the store holds are kept (never "unknown"), so presenting random tokens cannot
//! fill it, and it holds at most [`CAPACITY`] entries.

use custodian_store::rows::TokenRow;
use std::collections::HashMap;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// How long a token's row read from the store is trusted.
pub const FRESH_FOR: Duration = Duration::seconds(1);

/// At most this many tokens are remembered.
pub const CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (TokenRow, OffsetDateTime)>>,
}

impl TokenCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (TokenRow, OffsetDateTime)>> {
        // The map holds no invariant a panic could break halfway.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row of the token whose SHA-256 is `hash`, if it was read from the store less than
    /// [`FRESH_FOR`] before `now`.
    pub(crate) fn get(&self, hash: &[u8; 32], now: OffsetDateTime) -> Option<TokenRow> {
        let entries = self.entries();
        let (row, read_at) = entries.get(hash)?;
        fresh(*read_at, now).then(|| row.clone())
    }

    /// Remembers `row`, read from the store at `now`.
    pub(crate) fn put(&self, row: TokenRow, now: OffsetDateTime) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY && !entries.contains_key(&row.hash) {
            entries.retain(|_, (_, read_at)| fresh(*read_at, now));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(row.hash, (row, now));
    }

    /// Forgets every token: after a change to tokens' rows made through this vault.
    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}

fn fresh(read_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    read_at <= now && now - read_at < FRESH_FOR
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::ids::TokenId;
    use custodian_core::principal::{Role, TokenScope};
    use time::macros::datetime;

    fn row(n: u8) -> TokenRow {
        TokenRow {
            id: TokenId::from_random([n; 16]),
            hash: [n; 32],
            role: Role::ControllerApp,
            controller: None,
            scope: TokenScope::default(),
            label: String::new(),
            created_at: datetime!(2026-01-01 0:00 UTC),
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn an_entry_is_trusted_for_one_second_after_it_was_read() {
        let c = TokenCache::default();
        let t = datetime!(2026-06-01 12:00 UTC);
        c.put(row(1), t);
        assert_eq!(c.get(&[1; 32], t), Some(row(1)));
        assert!(c.get(&[1; 32], t + Duration::milliseconds(999)).is_some());
        assert_eq!(c.get(&[1; 32], t + FRESH_FOR), None);
        // A clock that went back does not make an entry fresh for longer.
        assert_eq!(c.get(&[1; 32], t - Duration::milliseconds(1)), None);
        assert_eq!(c.get(&[2; 32], t), None);
        c.clear();
        assert_eq!(c.get(&[1; 32], t), None);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let c = TokenCache::default();
        let t = datetime!(2026-06-01 12:00 UTC);
        let fill = |at| {
            for i in 0..CAPACITY {
                let mut r = row(0);
                r.hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
                c.put(r, at);
            }
            assert_eq!(c.entries().len(), CAPACITY);
        };
        // Full of fresh entries: it starts over rather than grow.
        fill(t);
        c.put(row(7), t);
        assert_eq!(c.entries().len(), 1);
        assert!(c.get(&[7; 32], t).is_some());
        // Full of entries gone stale: those go, and only those.
        c.clear();
        fill(t);
        let later = t + FRESH_FOR;
        c.put(row(8), later);
        assert_eq!(c.entries().len(), 1);
        assert!(c.get(&[8; 32], later).is_some());
    }
}
