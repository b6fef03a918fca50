//! Ed25519 signatures over audit checkpoints and certificates. The signing key is derived
//! from the root key, so anyone holding only the public key (printed by `custodian
//! verify`, shipped in evidence packages) can check a checkpoint without any secret.

use crate::keys::RootKey;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use data_encoding::HEXLOWER;
use std::fmt;

pub struct Signer(Ed25519KeyPair);

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(public {})", HEXLOWER.encode(&self.public_key()))
    }
}

impl Signer {
    pub fn from_root(root: &RootKey) -> Self {
        let seed = root.derive("checkpoint-signing");
        Self(Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).expect("32-byte seed"))
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0
            .sign(message)
            .as_ref()
            .try_into()
            .expect("Ed25519 signatures are 64 bytes")
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0
            .public_key()
            .as_ref()
            .try_into()
            .expect("Ed25519 public keys are 32 bytes")
    }
}

pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_tampering() {
        let root = RootKey::generate(1).unwrap();
        let s = Signer::from_root(&root);
        let sig = s.sign(b"head 42");
        assert!(verify(&s.public_key(), b"head 42", &sig));
        assert!(!verify(&s.public_key(), b"head 43", &sig));
        let other = Signer::from_root(&RootKey::generate(1).unwrap());
        assert!(!verify(&other.public_key(), b"head 42", &sig));
        assert_eq!(Signer::from_root(&root).public_key(), s.public_key());
    }
}
