use crate::CryptoError;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

pub fn bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

/// 128 random bits for an id. Panics only if the OS random source is broken, in which
/// case nothing safe can be done anyway.
pub fn id_bytes() -> [u8; 16] {
    bytes::<16>().expect("the operating system's random source failed")
}
