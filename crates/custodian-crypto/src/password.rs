//! Passwords: argon2id at OWASP's minimum (m = 19 MiB, t = 2, p = 1), stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so that every stored hash carries the
//! parameters it was made with and is verified with those.
//!
//! Hashing and verifying cost 19 MiB and tens of milliseconds of CPU on purpose (that is what
//! makes a stolen hash expensive to crack): callers on an async runtime run them on blocking
//! threads. The server's vault calls all run on tokio's blocking pool, and [`Passwords`] logs
//! the thread of every computation so that a test can prove it. At most as many computations
//! as the machine has cores run at once; more wait their turn, so a flood of logins costs
//! time, not memory.
//!
//! A login does the same work whether or not the account exists:
//! [`Passwords::verify_or_dummy`] verifies against the account's hash or, when there is none
//! (unknown or disabled account), against a dummy hash made once per process with the same
//! parameters, so that both paths run exactly one argon2id verification of the same cost.
//! Every computation is recorded ([`Passwords::work_since`]) with its kind, its cost and its
//! thread, never its input: tests count verifications instead of timing them.

use crate::CryptoError;
use crate::keys::{RootKey, open_blob, seal_blob};
use crate::random;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use aws_lc_rs::hmac;
use custodian_core::account::LoginName;
use custodian_core::ids::AccountId;
use std::collections::VecDeque;
use std::sync::{Condvar, LazyLock, Mutex};
use std::thread::ThreadId;

/// Memory cost in KiB: 19 MiB, OWASP's minimum for argon2id.
pub const M_COST_KIB: u32 = 19_456;
/// Passes over memory: OWASP's minimum with 19 MiB.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;
/// Bytes of random salt per hash (128 bits).
pub const SALT_LEN: usize = 16;
/// Bytes of hash output.
pub const OUTPUT_LEN: usize = 32;

/// OWASP Password Storage Cheat Sheet, argon2id: "a minimum configuration of 19 MiB of
/// memory, an iteration count of 2, and 1 degree of parallelism".
pub const OWASP_MINIMUM: Cost = Cost {
    argon2id: true,
    version: 0x13,
    m_kib: 19_456,
    t: 2,
    p: 1,
};

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN))
        .expect("the constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// What one argon2 computation cost, as its PHC string states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cost {
    /// The argon2id variant (not argon2i or argon2d).
    pub argon2id: bool,
    /// The algorithm version (0x13 is the current one, 19 in a PHC string).
    pub version: u32,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Cost {
    /// The parameters a PHC string states.
    pub fn of(phc: &str) -> Result<Self, CryptoError> {
        let hash =
            PasswordHash::new(phc).map_err(|_| CryptoError::Malformed("not a PHC string"))?;
        Self::of_hash(&hash)
    }

    fn of_hash(hash: &PasswordHash) -> Result<Self, CryptoError> {
        let params =
            Params::try_from(hash).map_err(|_| CryptoError::Malformed("not argon2 parameters"))?;
        Ok(Self {
            argon2id: hash.algorithm == argon2::ARGON2ID_IDENT,
            version: hash.version.unwrap_or(0x10),
            m_kib: params.m_cost(),
            t: params.t_cost(),
            p: params.p_cost(),
        })
    }

    /// Whether this is argon2id (current version) at or above [`OWASP_MINIMUM`].
    pub fn meets_owasp_minimum(&self) -> bool {
        self.argon2id
            && self.version == OWASP_MINIMUM.version
            && self.m_kib >= OWASP_MINIMUM.m_kib
            && self.t >= OWASP_MINIMUM.t
            && self.p >= OWASP_MINIMUM.p
    }

    /// The cost of hashes made now.
    pub fn current() -> Self {
        Self {
            argon2id: true,
            version: 0x13,
            m_kib: M_COST_KIB,
            t: T_COST,
            p: P_COST,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    Hash,
    Verify,
}

/// One argon2 computation: what, at what cost, on which thread. Never its input.
#[derive(Debug, Clone)]
pub struct Work {
    /// Position in this [`Passwords`]' log, from 0.
    pub seq: u64,
    pub kind: WorkKind,
    pub cost: Cost,
    pub thread: ThreadId,
}

/// How many computations the log keeps (the oldest are dropped; `seq` keeps counting).
const LOG_KEEP: usize = 1024;

#[derive(Debug, Default)]
struct Log {
    next: u64,
    recent: VecDeque<Work>,
}

/// At most this many argon2 computations run at once per [`Passwords`] (each holds 19 MiB),
/// whatever the number of blocking threads: a flood of logins queues instead of exhausting
/// memory.
fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().max(2))
}

/// A counting gate: [`Gate::run`] waits while `max` computations are running.
#[derive(Debug)]
struct Gate {
    running: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Gate {
    fn new(max: usize) -> Self {
        Self {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Leave<'a>(&'a Gate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut n = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
                *n -= 1;
                self.0.freed.notify_one();
            }
        }
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.max {
            n = self.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        drop(n);
        let _leave = Leave(self);
        f()
    }
}

/// Hashes and verifies passwords, at most a few at once, and logs each computation (see
/// the module docs).
#[derive(Debug)]
pub struct Passwords {
    log: Mutex<Log>,
    gate: Gate,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            log: Mutex::default(),
            gate: Gate::new(max_concurrent()),
        }
    }
}

fn hash_phc(password: &[u8]) -> Result<String, CryptoError> {
    let salt = random::bytes::<SALT_LEN>()?;
    argon2()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|_| CryptoError::Malformed("argon2 refused its input"))
}

/// A hash of a random password no one knows, with the current parameters: what a login for
/// an unknown or disabled account is verified against. Made once per process, on first use.
pub fn dummy_phc() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        let unknowable = random::bytes::<32>().expect("the operating system's random source");
        hash_phc(&unknowable).expect("argon2 hashes 32 bytes")
    });
    &DUMMY
}

impl Passwords {
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, kind: WorkKind, cost: Cost) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let seq = log.next;
        log.next += 1;
        if log.recent.len() == LOG_KEEP {
            log.recent.pop_front();
        }
        log.recent.push_back(Work {
            seq,
            kind,
            cost,
            thread: std::thread::current().id(),
        });
    }

    /// A PHC string of `password` with a fresh 128-bit salt and the current parameters.
    pub fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let phc = self.gate.run(|| hash_phc(password.as_bytes()))?;
        self.record(WorkKind::Hash, Cost::of(&phc)?);
        Ok(phc)
    }

    /// Whether `password` matches `phc`, computed with the parameters `phc` states (one
    /// argon2 computation; the comparison is constant-time).
    fn verify(&self, password: &str, phc: &str) -> Result<bool, CryptoError> {
        let hash =
            PasswordHash::new(phc).map_err(|_| CryptoError::Malformed("not a PHC string"))?;
        let cost = Cost::of_hash(&hash)?;
        let outcome = self
            .gate
            .run(|| argon2().verify_password(password.as_bytes(), &hash));
        self.record(WorkKind::Verify, cost);
        match outcome {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(_) => Err(CryptoError::Malformed("unusable stored password hash")),
        }
    }

    /// Exactly one verification: against `stored` when there is one, otherwise against the
    /// [`dummy_phc`] (and then never a match). Unknown and known accounts cost the same.
    pub fn verify_or_dummy(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, CryptoError> {
        match stored {
            Some(phc) => self.verify(password, phc),
            None => self.verify(password, dummy_phc()).map(|_| false),
        }
    }

    /// Makes the dummy hash now (it is otherwise made on the first login of an unknown
    /// account, which would then cost one hash more than the others). Not logged.
    pub fn warm_up() {
        let _ = dummy_phc();
    }

    /// The position the next computation will take: pass it to [`Passwords::work_since`].
    pub fn mark(&self) -> u64 {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).next
    }

    /// The computations logged from `mark` on (at most the last 1024).
    pub fn work_since(&self, mark: u64) -> Vec<Work> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.recent
            .iter()
            .filter(|w| w.seq >= mark)
            .cloned()
            .collect()
    }
}

/// The blind index of a login name, by which its account is found: HMAC-SHA256 under a key
/// derived from the root key, so the database never holds login names in clear and a stolen
/// database alone does not tell whose accounts it holds.
pub fn login_digest(root: &RootKey, login: &LoginName) -> [u8; 32] {
    let key = root.derive("account-login-index");
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.as_ref());
    hmac::sign(&k, login.as_str().as_bytes())
        .as_ref()
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}

/// The login name encrypted under a key derived from the root key, bound to its account.
pub fn seal_login(root: &RootKey, account: &AccountId, login: &LoginName) -> Vec<u8> {
    let key = root.derive("account-login-seal");
    seal_blob(&key, account.as_str(), login.as_str().as_bytes())
}

/// The login name [`seal_login`] sealed for `account`.
pub fn open_login(
    root: &RootKey,
    account: &AccountId,
    sealed: &[u8],
) -> Result<LoginName, CryptoError> {
    let key = root.derive("account-login-seal");
    let bytes = open_blob(&key, account.as_str(), sealed)?;
    let text = String::from_utf8(bytes).map_err(|_| CryptoError::Malformed("login name"))?;
    LoginName::parse(&text).map_err(|_| CryptoError::Malformed("login name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "correct horse battery staple";

    #[test]
    fn hashes_are_argon2id_phc_strings_at_or_above_owasp_minimum() {
        let p = Passwords::new();
        let phc = p.hash(PW).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        // Parsed back, independently of our own `Cost`.
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.algorithm, argon2::ARGON2ID_IDENT);
        assert_eq!(parsed.version, Some(0x13));
        let params = Params::try_from(&parsed).unwrap();
        assert!(params.m_cost() >= 19_456, "m = {}", params.m_cost());
        assert!(params.t_cost() >= 2, "t = {}", params.t_cost());
        assert_eq!(params.p_cost(), 1);
        assert_eq!(parsed.salt.unwrap().len(), SALT_LEN);
        assert_eq!(parsed.hash.unwrap().len(), OUTPUT_LEN);
        assert!(Cost::of(&phc).unwrap().meets_owasp_minimum());
        assert_eq!(Cost::of(&phc).unwrap(), Cost::current());
        // Salted: the same password hashes differently each time.
        assert_ne!(p.hash(PW).unwrap(), phc);
    }

    #[test]
    fn weaker_parameters_do_not_meet_the_minimum() {
        let weak = [
            "$argon2id$v=19$m=19455,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            "$argon2id$v=19$m=65536,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            "$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        ];
        for phc in weak {
            assert!(!Cost::of(phc).unwrap().meets_owasp_minimum(), "{phc}");
        }
        assert!(Cost::of("not a hash").is_err());
    }

    #[test]
    fn verification_matches_only_the_right_password() {
        let p = Passwords::new();
        let phc = p.hash(PW).unwrap();
        assert!(p.verify_or_dummy(PW, Some(&phc)).unwrap());
        assert!(
            !p.verify_or_dummy("correct horse battery stapler", Some(&phc))
                .unwrap()
        );
        assert!(!p.verify_or_dummy("", Some(&phc)).unwrap());
        assert!(p.verify_or_dummy(PW, Some("$argon2id$broken")).is_err());
    }

    /// The dummy has the current parameters, and an unknown account costs exactly what a
    /// wrong password costs: one verification at the same cost.
    #[test]
    fn unknown_and_wrong_cost_one_verification_each_at_the_same_cost() {
        assert_eq!(Cost::of(dummy_phc()).unwrap(), Cost::current());
        let p = Passwords::new();
        let phc = p.hash(PW).unwrap();
        Passwords::warm_up();
        let mark = p.mark();
        assert!(
            !p.verify_or_dummy(PW, None).unwrap(),
            "the dummy never matches"
        );
        let unknown = p.work_since(mark);
        let mark = p.mark();
        assert!(!p.verify_or_dummy("wrong password!", Some(&phc)).unwrap());
        let wrong = p.work_since(mark);
        for w in [&unknown, &wrong] {
            assert_eq!(w.len(), 1, "{w:?}");
            assert_eq!(w[0].kind, WorkKind::Verify);
            assert_eq!(w[0].cost, Cost::current());
        }
    }

    #[test]
    fn login_names_are_blinded_and_sealed_under_the_root_key() {
        let root = RootKey::generate(1).unwrap();
        let other = RootKey::generate(1).unwrap();
        let a = LoginName::parse("Dpo@Acme.example").unwrap();
        let same = LoginName::parse("dpo@acme.example").unwrap();
        let b = LoginName::parse("cfo@acme.example").unwrap();
        assert_eq!(login_digest(&root, &a), login_digest(&root, &same));
        assert_ne!(login_digest(&root, &a), login_digest(&root, &b));
        assert_ne!(login_digest(&root, &a), login_digest(&other, &a));
        let id = AccountId::from_random([1; 16]);
        let sealed = seal_login(&root, &id, &a);
        assert!(!String::from_utf8_lossy(&sealed).contains("acme"));
        assert_eq!(open_login(&root, &id, &sealed).unwrap(), same);
        assert!(open_login(&root, &AccountId::from_random([2; 16]), &sealed).is_err());
        assert!(open_login(&other, &id, &sealed).is_err());
    }

    #[test]
    fn the_gate_bounds_concurrent_computations() {
        let gate = Gate::new(2);
        let now = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    gate.run(|| {
                        let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    })
                });
            }
        });
        assert!(peak.into_inner() <= 2);
        assert_eq!(*gate.running.lock().unwrap(), 0);
    }

    #[test]
    fn the_log_is_bounded_and_keeps_counting() {
        let p = Passwords::new();
        for _ in 0..LOG_KEEP + 5 {
            p.record(WorkKind::Verify, Cost::current());
        }
        assert_eq!(p.mark(), (LOG_KEEP + 5) as u64);
        assert_eq!(p.work_since(0).len(), LOG_KEEP);
        assert_eq!(p.work_since(LOG_KEEP as u64 + 3).len(), 2);
    }
}
