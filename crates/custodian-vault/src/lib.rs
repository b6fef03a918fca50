//! Application services: every use case of Custodian as one method of [`Vault`], which
//! authorises (getting a grant from the core), validates, encrypts, and hands the store a
//! unit of work whose audit entry commits with it. The HTTP server, the CLI, the demo seed
//! and the benchmarks all go through here, so there is one path to personal data.

pub mod accounts;
pub mod admin;
pub mod bulk;
pub mod checkpoint;
pub mod clock;
pub mod data;
pub mod error;
pub mod inbox;
pub mod key_cache;
pub mod ledger;
pub mod lifecycle;
pub mod paging;
mod pending;
pub mod purger;
pub mod rights;
mod spread;
pub mod token_cache;
pub mod verify;
pub mod views;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::VaultError;
pub use pending::Pending;

use custodian_core::audit::{AuditDraft, ChainId};
use custodian_core::ids::RequestId;
use custodian_core::principal::Principal;
use custodian_core::region::Region;
use custodian_crypto::keys::RootKey;
use custodian_crypto::password::Passwords;
use custodian_crypto::sign::Signer;
use custodian_store::Store;
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Vault {
    store: Arc<dyn Store>,
    root: RootKey,
    signer: Signer,
    clock: Arc<dyn Clock>,
    regions: Vec<Region>,
    /// Where signed checkpoints are written outside the database.
    checkpoint_dir: Option<PathBuf>,
    /// Password hashing (argon2id) and its log of computations.
    passwords: Passwords,
    tokens: token_cache::TokenCache,
    keys: key_cache::KeyCache,
    /// A bulk read's decryption over idle cores.
    spread: spread::Spread,
    /// Purges what erasures leave in the files, shortly after them.
    purger: purger::Purger,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.store.backend())
            .field("regions", &self.regions.len())
            .finish_non_exhaustive()
    }
}

/// Per-call context that is not authority: the request id that ties log lines and audit
/// entries together.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request: Option<RequestId>,
}

impl Vault {
    pub fn new(
        store: Arc<dyn Store>,
        root: RootKey,
        clock: Arc<dyn Clock>,
        regions: Vec<Region>,
        checkpoint_dir: Option<PathBuf>,
    ) -> Self {
        let signer = Signer::from_root(&root);
        Self {
            purger: Self::purger_of(&store, purger::DEFAULT_DELAY),
            store,
            root,
            signer,
            clock,
            regions,
            checkpoint_dir,
            passwords: Passwords::new(),
            tokens: token_cache::TokenCache::default(),
            keys: key_cache::KeyCache::default(),
            spread: spread::Spread::default(),
        }
    }

    /// Erased data stays in the database's files at most `delay` (plus one purge) after its
    /// erasure answered; zero purges before the erasure answers ([`purger`]).
    pub fn with_purge_delay(mut self, delay: std::time::Duration) -> Self {
        self.purger = Self::purger_of(&self.store, delay);
        self
    }

    fn purger_of(store: &Arc<dyn Store>, delay: std::time::Duration) -> purger::Purger {
        let store = store.clone();
        purger::Purger::new(Box::new(move || store.purge_deleted()), delay)
    }

    /// Purges now what the erasures committed so far left in the files, if a purge is
    /// pending, and returns once it has run (at shutdown; in tests that look at the files).
    pub fn purge_erased_now(&self) {
        self.purger.purge_pending_now();
    }

    /// Password hashing, and the log of every argon2id computation this vault made (kind,
    /// cost and thread; never a password).
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Resolves a presented bearer token to its principal. Every failure looks the same to
    /// the caller: malformed, unknown, expired and revoked tokens are all "unauthenticated".
    /// A token found in the store in the last second is not read again
    /// ([`token_cache`] says what that may get wrong, and for how long).
    pub fn authenticate(&self, presented: &SecretString) -> Result<Principal, VaultError> {
        let (role, hash) =
            custodian_crypto::token::parse(presented).map_err(|_| VaultError::Unauthenticated)?;
        let now = self.clock.now();
        let row = match self.tokens.get(&hash, now) {
            Some(row) => row,
            None => {
                let row = self
                    .store
                    .token_by_hash(&hash)?
                    .ok_or(VaultError::Unauthenticated)?;
                self.tokens.put(row.clone(), now);
                row
            }
        };
        Self::principal_of(&row, role, now)
    }

    /// [`Vault::authenticate`]'s answer when it needs no store read (a malformed token, or
    /// one found in the store in the last second), so that a server can give it without
    /// leaving its async thread; `None` when the store must be asked.
    pub fn authenticate_without_store(
        &self,
        presented: &SecretString,
    ) -> Option<Result<Principal, VaultError>> {
        let Ok((role, hash)) = custodian_crypto::token::parse(presented) else {
            return Some(Err(VaultError::Unauthenticated));
        };
        let now = self.clock.now();
        let row = self.tokens.get(&hash, now)?;
        Some(Self::principal_of(&row, role, now))
    }

    fn principal_of(
        row: &custodian_store::rows::TokenRow,
        role: custodian_core::principal::Role,
        now: time::OffsetDateTime,
    ) -> Result<Principal, VaultError> {
        if row.role != role {
            return Err(VaultError::Unauthenticated);
        }
        row.principal_at(now).ok_or(VaultError::Unauthenticated)
    }

    /// How many of `controller`'s subject keys this vault holds unwrapped in memory
    /// ([`key_cache`]): none of an erased subject, none after a destruction.
    pub fn subject_keys_in_memory(&self, controller: &custodian_core::ids::ControllerId) -> usize {
        self.keys.subjects_of(controller)
    }

    /// Forgets every token found in the store: tokens' rows changed through this vault.
    pub(crate) fn tokens_changed(&self) {
        self.tokens.clear();
    }

    /// Records that an authenticated caller's input was refused before reaching a use case
    /// (malformed JSON, unknown field, oversized body). `reason` must not hold values.
    pub fn audit_rejected_input(
        &self,
        principal: &Principal,
        action: custodian_core::audit::Action,
        purpose: Option<&custodian_core::purpose::PurposeName>,
        reason: &str,
        ctx: &CallContext,
    ) {
        let mut draft = AuditDraft::new(ChainId::System, principal.actor(), action)
            .refused(format!("invalid input: {reason}"))
            .request(ctx.request.as_ref());
        draft.purpose = purpose.cloned();
        self.audit_refusal(principal, draft);
    }

    /// Writes a refusal to the principal's chain. If even that fails, the refusal still
    /// stands; the failure is logged (without data) and the caller gets the refusal.
    fn audit_refusal(&self, principal: &Principal, draft: AuditDraft) {
        let chain = principal
            .controller
            .clone()
            .map_or(ChainId::System, ChainId::Controller);
        let draft = AuditDraft { chain, ..draft };
        if let Err(e) = self.store.append_audit(vec![draft], self.clock.now()) {
            refusal_not_recorded(&e);
        }
    }
}

/// Logs that a refusal could not be written to the audit trail (the refusal stands all
/// the same): the store's error only, which names no data.
pub(crate) fn refusal_not_recorded(e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "could not write a refusal to the audit trail");
}
