//! API tokens: `cst_<role>_<52 base32 characters of 256 random bits><7 characters of CRC-32>`.
//!
//! The prefix tells a human (and a secret scanner) what leaked; the checksum lets us refuse
//! a mistyped or made-up token without touching the database. Only the SHA-256 of the whole
//! token is stored: a stolen database yields no usable token. (A fast hash is right here,
//! unlike for passwords: the token has 256 bits of entropy, so there is nothing to brute-force.)

use crate::CryptoError;
use crate::hash::sha256;
use crate::random;
use custodian_core::principal::Role;
use data_encoding::BASE32_NOPAD;
use secrecy::{ExposeSecret, SecretString};

const BODY_LEN: usize = 52;
const CHECK_LEN: usize = 7;

fn checksum(prefix_and_body: &str) -> String {
    let crc = crc32fast::hash(prefix_and_body.as_bytes());
    // 7 base32 characters carry 35 bits; the top 3 are zero.
    let bytes = [
        0u8,
        0,
        0,
        (crc >> 24) as u8,
        (crc >> 16) as u8,
        (crc >> 8) as u8,
        crc as u8,
        0,
    ];
    let mut n = u64::from_be_bytes(bytes) >> 8;
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = [0u8; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = alphabet[(n & 31) as usize];
        n >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// A freshly minted token: the secret to hand to the caller once, and the hash to store.
#[derive(Debug)]
pub struct MintedToken {
    pub secret: SecretString,
    pub hash: [u8; 32],
}

pub fn mint(role: Role) -> Result<MintedToken, CryptoError> {
    let raw = random::bytes::<32>()?;
    let body = BASE32_NOPAD.encode(&raw).to_lowercase();
    let head = format!("cst_{}_{body}", role.token_tag());
    let token = format!("{head}{}", checksum(&head));
    let hash = sha256(token.as_bytes());
    Ok(MintedToken {
        secret: SecretString::from(token),
        hash,
    })
}

/// Why a presented token was refused before any lookup. Deliberately vague to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormatError {
    Shape,
    Checksum,
}

/// Checks a presented token's shape and checksum and returns its role tag and hash.
pub fn parse(presented: &SecretString) -> Result<(Role, [u8; 32]), TokenFormatError> {
    let t = presented.expose_secret();
    let rest = t.strip_prefix("cst_").ok_or(TokenFormatError::Shape)?;
    let (tag, tail) = rest.split_once('_').ok_or(TokenFormatError::Shape)?;
    let role = Role::from_token_tag(tag).ok_or(TokenFormatError::Shape)?;
    if tail.len() != BODY_LEN + CHECK_LEN
        || !tail
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(TokenFormatError::Shape);
    }
    let (body, check) = tail.split_at(BODY_LEN);
    let head = format!("cst_{tag}_{body}");
    if checksum(&head) != check {
        return Err(TokenFormatError::Checksum);
    }
    Ok((role, sha256(t.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_to_their_hash() {
        for role in Role::ALL {
            let m = mint(role).unwrap();
            let (r, h) = parse(&m.secret).unwrap();
            assert_eq!(r, role);
            assert_eq!(h, m.hash);
            assert!(
                m.secret
                    .expose_secret()
                    .starts_with(&format!("cst_{}_", role.token_tag()))
            );
        }
    }

    #[test]
    fn typos_and_forgeries_are_refused() {
        let m = mint(Role::ControllerApp).unwrap();
        let s = m.secret.expose_secret().to_owned();
        let mut chars: Vec<char> = s.chars().collect();
        let i = 20;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            parse(&SecretString::from(typo)),
            Err(TokenFormatError::Checksum)
        );
        for bad in [
            "",
            "cst_",
            "cst_app_",
            "bearer x",
            &s[..s.len() - 1],
            &s.replace("cst_app_", "cst_zzz_"),
        ] {
            assert!(parse(&SecretString::from(bad.to_owned())).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let m = mint(Role::OperatorAdmin).unwrap();
        let dbg = format!("{m:?}");
        assert!(!dbg.contains(&m.secret.expose_secret()[8..]));
    }
}
