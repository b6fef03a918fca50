//! Keys recently unwrapped, so that an operation does not unwrap them again: every data
//! operation unwrapped its controller's key under the root key, and a consultation of a
//! purpose's records unwrapped the key of every subject it read (hundreds per operation),
//! a key schedule built and an AES-GCM open each time (5.4 % of a GDPRbench regulator
//! run's samples; looking a key up here is 2.6 %, most of it the entry's cache misses).
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
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this many subject keys are kept.
pub const CAPACITY: usize = 16_384;

/// An entry older than this is unwrapped again.
pub const KEEP_FOR: Duration = Duration::from_secs(300);

const SHARDS: usize = 16;

/// A wrapped subject key's length (version, nonce, key, tag); a key wrapped otherwise is
/// not kept. Kept inline: a bulk read looks up hundreds of keys, and comparing bytes behind
/// one more pointer was a cache miss each.
const WRAPPED_LEN: usize = 4 + 12 + 32 + 16;

struct Kept<K, W> {
    wrapped: W,
    key: Arc<K>,
    at: Instant,
}

impl<K, W> Kept<K, W> {
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < KEEP_FOR
    }
}

/// A subject's key, and whose it is: ids are random, so one map keyed by subject serves
/// every controller, the controller compared on a hit.
struct KeptSubject {
    controller: ControllerId,
    kept: Kept<SubjectKey, [u8; WRAPPED_LEN]>,
}

/// Ids are random bits spelt in base32: a multiply-and-rotate over their bytes spreads
/// them as well as SipHash does, at a fraction of its cost, and nobody outside chooses them
/// (a key is only looked up for a subject whose row the store returned).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type SubjectMap = HashMap<SubjectId, KeptSubject, BuildHasherDefault<IdHasher>>;
type ControllerMap = HashMap<ControllerId, Kept<ControllerKey, Box<[u8]>>>;

pub(crate) struct KeyCache {
    /// Moves before every eviction; see [`KeyCache::put_subject`].
    epoch: AtomicU64,
    controllers: Mutex<ControllerMap>,
    subjects: [Mutex<SubjectMap>; SHARDS],
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            controllers: Mutex::default(),
            subjects: std::array::from_fn(|_| Mutex::default()),
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

    fn shard(&self, subject: &SubjectId) -> &Mutex<SubjectMap> {
        let h = BuildHasherDefault::<IdHasher>::default().hash_one(subject);
        // The high bits: the map itself indexes its buckets by the low ones.
        &self.subjects[(h >> 60) as usize % SHARDS]
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

    /// The subject's key, if it was unwrapped from `wrapped` less than [`KEEP_FOR`] before
    /// `now` (the operation's start).
    pub(crate) fn subject(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        wrapped: &[u8],
        now: Instant,
    ) -> Option<Arc<SubjectKey>> {
        let map = lock(self.shard(subject));
        let kept = map.get(subject)?;
        (kept.controller == *controller
            && kept.kept.fresh(now)
            && kept.kept.wrapped[..] == *wrapped)
            .then(|| kept.kept.key.clone())
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
        let Ok(wrapped) = <[u8; WRAPPED_LEN]>::try_from(wrapped) else {
            return;
        };
        let mut map = lock(self.shard(subject));
        if self.epoch() != epoch {
            return;
        }
        if map.len() >= CAPACITY / SHARDS && !map.contains_key(subject) {
            let now = Instant::now();
            map.retain(|_, k| k.kept.fresh(now));
            // Still full: make room for an eighth of a shard at once, so a scan over more
            // subjects than fit does not pay this on every put.
            let drop = (map.len() + 1).saturating_sub(CAPACITY / SHARDS * 7 / 8);
            let gone: Vec<_> = map.keys().take(drop).cloned().collect();
            for id in gone {
                map.remove(&id);
            }
        }
        map.insert(
            subject.clone(),
            KeptSubject {
                controller: controller.clone(),
                kept: Kept {
                    wrapped,
                    key,
                    at: Instant::now(),
                },
            },
        );
    }

    /// After erasing `subjects` of `controller` (committed).
    pub(crate) fn evict_subjects<'a>(
        &self,
        controller: &ControllerId,
        subjects: impl IntoIterator<Item = &'a SubjectId>,
    ) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for s in subjects {
            let mut map = lock(self.shard(s));
            if map.get(s).is_some_and(|k| k.controller == *controller) {
                map.remove(s);
            }
        }
    }

    /// After destroying `controller`'s data, or anything else that changes keys wholesale
    /// (a restore re-applying erasures): its key and every one of its subjects' keys.
    pub(crate) fn evict_controller(&self, controller: &ControllerId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        lock(&self.controllers).remove(controller);
        for shard in &self.subjects {
            lock(shard).retain(|_, k| k.controller != *controller);
        }
    }

    /// Drops every entry older than [`KEEP_FOR`]: run by each retention pass, so that a
    /// serving node holds no key longer than that and one pass.
    pub(crate) fn drop_stale(&self) {
        let now = Instant::now();
        lock(&self.controllers).retain(|_, k| k.fresh(now));
        for shard in &self.subjects {
            lock(shard).retain(|_, k| k.kept.fresh(now));
        }
    }

    /// How many of `controller`'s subject keys are kept.
    pub(crate) fn subjects_of(&self, controller: &ControllerId) -> usize {
        self.subjects
            .iter()
            .map(|s| {
                lock(s)
                    .values()
                    .filter(|k| k.controller == *controller)
                    .count()
            })
            .sum()
    }
}

fn kept<K>(wrapped: &[u8], key: Arc<K>) -> Kept<K, Box<[u8]>> {
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

    const W1: [u8; WRAPPED_LEN] = [1; WRAPPED_LEN];
    const W2: [u8; WRAPPED_LEN] = [2; WRAPPED_LEN];

    fn key() -> Arc<SubjectKey> {
        Arc::new(SubjectKey::generate().unwrap())
    }

    #[test]
    fn a_hit_needs_the_same_controller_subject_and_wrapped_bytes() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let (_, other) = ids(3);
        let k = key();
        c.put_subject(&ctl, &s, &W1, k.clone(), c.epoch());
        assert!(Arc::ptr_eq(
            &c.subject(&ctl, &s, &W1, Instant::now()).unwrap(),
            &k
        ));
        assert!(
            c.subject(&ctl, &s, &W2, Instant::now()).is_none(),
            "re-wrapped"
        );
        assert!(c.subject(&ctl, &other, &W1, Instant::now()).is_none());
        let another_controller = ControllerId::from_random([9; 16]);
        assert!(
            c.subject(&another_controller, &s, &W1, Instant::now())
                .is_none(),
            "keys are per controller"
        );
    }

    #[test]
    fn an_eviction_removes_the_key_and_refuses_puts_begun_before_it() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let before = c.epoch();
        c.put_subject(&ctl, &s, &W1, key(), before);
        c.evict_subjects(&ctl, [&s]);
        assert!(c.subject(&ctl, &s, &W1, Instant::now()).is_none());
        // An operation that read the row before the erasure committed.
        c.put_subject(&ctl, &s, &W1, key(), before);
        assert!(c.subject(&ctl, &s, &W1, Instant::now()).is_none());
        // One that began after it may keep what it unwrapped.
        c.put_subject(&ctl, &s, &W1, key(), c.epoch());
        assert!(c.subject(&ctl, &s, &W1, Instant::now()).is_some());
    }

    #[test]
    fn a_controller_eviction_takes_every_key_of_that_controller_only() {
        let c = KeyCache::default();
        let (ctl, _) = ids(0);
        let other = ControllerId::from_random([7; 16]);
        let e = c.epoch();
        // Ids are random: one controller's subject is never another's.
        let theirs = |n: u8| SubjectId::from_random([n; 16]);
        let ours = |n: u8| SubjectId::from_random([n + 100; 16]);
        for n in 0..50 {
            c.put_subject(&ctl, &ours(n), &W1, key(), e);
            c.put_subject(&other, &theirs(n), &W1, key(), e);
        }
        let ck = Arc::new(ControllerKey::generate().unwrap());
        c.put_controller(&ctl, b"c", ck.clone(), e);
        assert!(c.controller(&ctl, b"c").is_some());
        c.evict_controller(&ctl);
        assert!(c.controller(&ctl, b"c").is_none());
        assert_eq!(c.subjects_of(&ctl), 0);
        assert_eq!(c.subjects_of(&other), 50);
        for n in 0..50 {
            assert!(c.subject(&ctl, &ours(n), &W1, Instant::now()).is_none());
            assert!(c.subject(&other, &theirs(n), &W1, Instant::now()).is_some());
        }
    }

    #[test]
    fn an_old_entry_is_not_used_and_a_retention_pass_drops_it() {
        let c = KeyCache::default();
        let (ctl, s) = ids(2);
        let (_, fresh) = ids(3);
        c.put_subject(&ctl, &s, &W1, key(), c.epoch());
        c.put_subject(&ctl, &fresh, &W1, key(), c.epoch());
        let Some(long_ago) = Instant::now().checked_sub(KEEP_FOR + Duration::from_secs(1)) else {
            return; // a machine up for less than KEEP_FOR: nothing to backdate to
        };
        lock(c.shard(&s)).get_mut(&s).unwrap().kept.at = long_ago;
        assert!(c.subject(&ctl, &s, &W1, Instant::now()).is_none());
        assert_eq!(c.subjects_of(&ctl), 2, "still in memory");
        c.drop_stale();
        assert_eq!(c.subjects_of(&ctl), 1);
        assert!(c.subject(&ctl, &fresh, &W1, Instant::now()).is_some());
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let c = KeyCache::default();
        let ctl = ControllerId::from_random([1; 16]);
        let k = key();
        for n in 0..(CAPACITY as u32 * 2) {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            c.put_subject(&ctl, &SubjectId::from_random(b), &W1, k.clone(), c.epoch());
        }
        let kept = c.subjects_of(&ctl);
        assert!(kept <= CAPACITY, "{kept} keys kept");
        assert!(kept >= CAPACITY / 2, "only {kept} keys kept");
    }
}
