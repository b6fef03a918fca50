use custodian_core::ValidationError;
use custodian_core::policy::{Denial, Refusal};
use custodian_store::{StoreError, TxError};
use thiserror::Error;

/// What went wrong in a use case. The server maps each variant to one HTTP status in one
/// place; the CLI prints it. No variant carries personal data.
#[derive(Debug, Error)]
pub enum VaultError {
    #[error("missing, malformed, unknown, expired or revoked token")]
    Unauthenticated,
    /// A password login failed: unknown login, disabled account or wrong password, which
    /// are deliberately one error.
    #[error("wrong login or password")]
    BadCredentials,
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("not found")]
    NotFound,
    #[error("this subject was erased")]
    Gone,
    #[error("invalid input: {0}")]
    Invalid(ValidationError),
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Storage is failing or full; the operation did not happen and may be retried.
    #[error("storage unavailable")]
    Unavailable(String),
    /// A bug or corruption; details are for the log only.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => VaultError::Conflict(what),
            StoreError::Unavailable(m) => VaultError::Unavailable(m),
            other => VaultError::Internal(other.to_string()),
        }
    }
}

impl From<Denial> for VaultError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::NotFound => VaultError::NotFound,
            Denial::Gone => VaultError::Gone,
            Denial::Refused(r) => VaultError::Refused(r),
            Denial::Invalid(v) => VaultError::Invalid(v),
        }
    }
}

impl From<TxError> for VaultError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Store(s) => s.into(),
            TxError::Denied(d) => d.into(),
        }
    }
}

impl From<ValidationError> for VaultError {
    fn from(v: ValidationError) -> Self {
        VaultError::Invalid(v)
    }
}

impl From<Refusal> for VaultError {
    fn from(r: Refusal) -> Self {
        Denial::from(r).into()
    }
}

impl From<custodian_crypto::CryptoError> for VaultError {
    fn from(e: custodian_crypto::CryptoError) -> Self {
        VaultError::Internal(format!("crypto: {e}"))
    }
}
