//! Keys recently unwrapped, so that an operation does not unwrap them again: every data
//! operation unwrapped its controller's key under the root key, and a consultation of a
//! purpose's records unwrapped the key of every subject it read (hundreds per operation),
//! a key schedule built and an AES-GCM open each time (5 % of a GDPRbench regulator run).
//!
//! What it may hold, and for how long:
//! - An entry is used only for the very wrapped bytes it was unwrapped from, read in the
//!   caller's own transaction: a key re-wrapped, a subject erased and re-created, a
//!   database restored underneath all miss. A hit never gives a key the store no longer
//!   holds wrapped.
//! - Erasing a subject or destroying a controller through this vault evicts its keys once
//!   the erasure is committed ([`KeyCache::evict_subjects`], [`KeyCache::evict_controller`]).
//!   An operation that read the subject's row before that commit cannot put the key back
//!   afterwards: it took the cache's epoch before its transaction began, and every eviction
//!   moves the epoch first (see [`KeyCache::put_subject`]).
//! - Another node (PostgreSQL deployments) that unwrapped an erased subject's key keeps it
//!   in memory, unusable (its row is gone), until it is evicted or [`KEEP_FOR`] passes: an
//!   entry older than that is not used, a full shard drops such entries first, and every
//!   retention pass drops them all ([`KeyCache::drop_stale`]).
//! - At most [`CAPACITY`] subject keys (about a kilobyte each with the AES-GCM schedule),
//!   in shards so that concurrent operations rarely wait on one lock. A key leaving the
//!   cache is wiped when its last user drops it (`SubjectKey` zeroizes on drop).

use custodian_core::ids::{ControllerId, SubjectId};
use custodian_crypto::keys::{ControllerKey, SubjectKey};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this many subject keys are kept.
pub const CAPACITY: usize = 16_384;

/// An entry older than this is unwrapped again.
pub const KEEP_FOR: Duration = Duration::from_secs(300);

const SHARDS: usize = 16;

struct Kept<K> {
    wrapped: Box<[u8]>,
    key: Arc<K>,
    at: Instant,
}

impl<K> Kept<K> {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.at) < KEEP_FOR
    }
}

type SubjectMap = HashMap<(ControllerId, SubjectId), Kept<SubjectKey>>;

pub(crate) struct KeyCache {
    /// Moves before every eviction; see [`KeyCache::put_subject`].
    epoch: AtomicU64,
    controllers: Mutex<HashMap<ControllerId, Kept<ControllerKey>>>,
    subjects: [Mutex<SubjectMap>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            controllers: Mutex::default(),
            subjects: std::array::from_fn(|_| Mutex::default()),
            hasher: Default::default(),
        }
    }
}

/// The maps hold no invariant that a panic could break halfway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KeyCache {
    /// Taken before an operation's transaction begins, and handed back to
    /// [`Self::put_subject`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn shard(&self, controller: &ControllerId, subject: &SubjectId) -> &Mutex<SubjectMap> {
        let mut h = self.hasher.build_hasher();
        controller.hash(&mut h);
        subject.hash(&mut h);
        &self.subjects[(h.finish() as usize) % SHARDS]
    }

    /// The controller's key, if it was unwrapped from `wrapped` less than [`KEEP_FOR`] ago.
    pub(crate) fn controller(
        &self,
        controller: &ControllerId,
        wrapped: &[u8],
    ) -> Option<Arc<ControllerKey>> {
        let map = lock(&self.controllers);
        let kept = map.get(controller)?;
        (kept.fresh(Instant::now()) && *kept.wrapped == *wrapped).then(|| kept.key.clone())
    }

    pub(crate) fn put_controller(
        &self,
        controller: &ControllerId,
        wrapped: &[u8],
        key: Arc<ControllerKey>,
        epoch: u64,
    ) {
        let mut map = lock(&self.controllers);
        if self.epoch() != epoch {
            return;
        }
        map.insert(controller.clone(), kept(wrapped, key));
    }

    /// The subject's key, if it was unwrapped from `wrapped` less than [`KEEP_FOR`] ago.
    pub(crate) fn subject(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        wrapped: &[u8],
    ) -> Option<Arc<SubjectKey>> {
        let map = lock(self.shard(controller, subject));
        let kept = map.get(&(controller.clone(), subject.clone()))?;
        (kept.fresh(Instant::now()) && *kept.wrapped == *wrapped).then(|| kept.key.clone())
    }

    /// Keeps `key`, unwrapped from `wrapped` by an operation that took `epoch` before its
    /// transaction began; nothing if any eviction happened since, since that operation may
    /// have read a row an erasure has removed meanwhile. An eviction moves the epoch before
    /// it takes the shard's lock, and this compares under that lock: a key put before the
    /// move is removed by the eviction, and none is put after it.
    pub(crate) fn put_subject(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        wrapped: &[u8],
        key: Arc<SubjectKey>,
        epoch: u64,
    ) {
        let mut map = lock(self.shard(controller, subject));
        if self.epoch() != epoch {
            return;
        }
        let id = (controller.clone(), subject.clone());
        if map.len() >= CAPACITY / SHARDS && !map.contains_key(&id) {
            let now = Instant::now();
            map.retain(|_, k| k.fresh(now));
            // Still full: make room for an eighth of a shard at once, so a scan over more
            // subjects than fit does not pay this on every put.
            let drop = (map.len() + 1).saturating_sub(CAPACITY / SHARDS * 7 / 8);
            let gone: Vec<_> = map.keys().take(drop).cloned().collect();
            for id in gone {
                map.remove(&id);
            }
        }
        map.insert(id, kept(wrapped, key));
    }

    /// After erasing `subjects` of `controller` (committed).
    pub(crate) fn evict_subjects<'a>(
        &self,
        controller: &ControllerId,
        subjects: impl IntoIterator<Item = &'a SubjectId>,
    ) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for s in subjects {
            lock(self.shard(controller, s)).remove(&(controller.clone(), s.clone()));
        }
    }

    /// After destroying `controller`'s data, or anything else that changes keys wholesale
    /// (a restore re-applying erasures): its key and every one of its subjects' keys.
    pub(crate) fn evict_controller(&self, controller: &ControllerId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        lock(&self.controllers).remove(controller);
        for shard in &self.subjects {
            lock(shard).retain(|(c, _), _| c != controller);
        }
    }

    /// Drops every entry older than [`KEEP_FOR`]: run by each retention pass, so that a
    /// serving node holds no key longer than that and one pass.
    pub(crate) fn drop_stale(&self) {
        let now = Instant::now();
        lock(&self.controllers).retain(|_, k| k.fresh(now));
        for shard in &self.subjects {
            lock(shard).retain(|_, k| k.fresh(now));
        }
    }

    /// How many of `controller`'s subject keys are kept.
    pub(crate) fn subjects_of(&self, controller: &ControllerId) -> usize {
        self.subjects
            .iter()
            .map(|s| lock(s).keys().filter(|(c, _)| c == controller).count())
            .sum()
    }
}

fn kept<K>(wrapped: &[u8], key: Arc<K>) -> Kept<K> {
    Kept {
        wrapped: wrapped.into(),
        key,
        at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> (ControllerId, SubjectId) {
        (
            ControllerId::from_random([1; 16]),
            SubjectId::from_random([n; 16]),
        )
    }

    fn key() -> Arc<SubjectKey> {
        Arc::new(SubjectKey::generate().unwrap())
    }

    #[test]
    fn a_hit_needs_the_same_controller_subject_and_wrapped_bytes() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let (_, other) = ids(3);
        let k = key();
        c.put_subject(&ctl, &s, b"wrapped-1", k.clone(), c.epoch());
        assert!(Arc::ptr_eq(&c.subject(&ctl, &s, b"wrapped-1").unwrap(), &k));
        assert!(c.subject(&ctl, &s, b"wrapped-2").is_none(), "re-wrapped");
        assert!(c.subject(&ctl, &other, b"wrapped-1").is_none());
        let another_controller = ControllerId::from_random([9; 16]);
        assert!(
            c.subject(&another_controller, &s, b"wrapped-1").is_none(),
            "keys are per controller"
        );
    }

    #[test]
    fn an_eviction_removes_the_key_and_refuses_puts_begun_before_it() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let before = c.epoch();
        c.put_subject(&ctl, &s, b"w", key(), before);
        c.evict_subjects(&ctl, [&s]);
        assert!(c.subject(&ctl, &s, b"w").is_none());
        // An operation that read the row before the erasure committed.
        c.put_subject(&ctl, &s, b"w", key(), before);
        assert!(c.subject(&ctl, &s, b"w").is_none());
        // One that began after it may keep what it unwrapped.
        c.put_subject(&ctl, &s, b"w", key(), c.epoch());
        assert!(c.subject(&ctl, &s, b"w").is_some());
    }

    #[test]
    fn a_controller_eviction_takes_every_key_of_that_controller_only() {
        let c = KeyCache::default();
        let (ctl, _) = ids(0);
        let other = ControllerId::from_random([7; 16]);
        let e = c.epoch();
        for n in 0..50 {
            let (_, s) = ids(n);
            c.put_subject(&ctl, &s, b"w", key(), e);
            c.put_subject(&other, &s, b"w", key(), e);
        }
        let ck = Arc::new(ControllerKey::generate().unwrap());
        c.put_controller(&ctl, b"c", ck.clone(), e);
        assert!(c.controller(&ctl, b"c").is_some());
        c.evict_controller(&ctl);
        assert!(c.controller(&ctl, b"c").is_none());
        assert_eq!(c.subjects_of(&ctl), 0);
        assert_eq!(c.subjects_of(&other), 50);
        for n in 0..50 {
            let (_, s) = ids(n);
            assert!(c.subject(&ctl, &s, b"w").is_none());
            assert!(c.subject(&other, &s, b"w").is_some());
        }
    }

    #[test]
    fn an_old_entry_is_not_used_and_a_retention_pass_drops_it() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let (_, fresh) = ids(3);
        c.put_subject(&ctl, &s, b"w", key(), c.epoch());
        c.put_subject(&ctl, &fresh, b"w", key(), c.epoch());
        let Some(long_ago) = Instant::now().checked_sub(KEEP_FOR + Duration::from_secs(1)) else {
            return; // a machine up for less than KEEP_FOR: nothing to backdate to
        };
        lock(c.shard(&ctl, &s))
            .get_mut(&(ctl.clone(), s.clone()))
            .unwrap()
            .at = long_ago;
        assert!(c.subject(&ctl, &s, b"w").is_none());
        assert_eq!(c.subjects_of(&ctl), 2, "still in memory");
        c.drop_stale();
        assert_eq!(c.subjects_of(&ctl), 1);
        assert!(c.subject(&ctl, &fresh, b"w").is_some());
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let c = KeyCache::default();
        let ctl = ControllerId::from_random([1; 16]);
        let k = key();
        for n in 0..(CAPACITY as u32 * 2) {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            c.put_subject(&ctl, &SubjectId::from_random(b), b"w", k.clone(), c.epoch());
        }
        let kept = c.subjects_of(&ctl);
        assert!(kept <= CAPACITY, "{kept} keys kept");
        assert!(kept >= CAPACITY / 2, "only {kept} keys kept");
    }
}
