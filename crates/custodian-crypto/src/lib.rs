//! Custodian's cryptography, all of it on aws-lc-rs (the same provider rustls uses for TLS).
//!
//! - [`keys`]: the hierarchy root key → controller key → subject key, AES-256-GCM envelope
//!   encryption with associated data that binds every ciphertext to its place.
//! - [`index`]: blind indexes (HMAC-SHA256) for lookup keys.
//! - [`token`]: API tokens: generation, format check, hashing.
//! - [`password`]: argon2id password hashes (PHC strings), verification, the dummy hash.
//! - [`sign`]: Ed25519 signatures for audit checkpoints and certificates.
//! - [`hash`]: SHA-256 and the audit chain link.
//!
//! Key material lives in `Zeroizing` buffers and is wiped when dropped; no key type prints
//! its bytes in `Debug`.

pub mod hash;
pub mod index;
pub mod keys;
pub mod password;
pub mod random;
pub mod sign;
pub mod token;

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: wrong key, or the ciphertext or its context was altered.
    #[error("decryption failed: wrong key or altered data")]
    Open,
    #[error("malformed key material: {0}")]
    Malformed(&'static str),
    #[error("the system random number generator failed")]
    Rng,
}
