use aws_lc_rs::digest::{Context, SHA256, digest};

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, bytes);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The audit chain link: SHA-256(previous hash || canonical bytes of this entry).
pub fn chain_link(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Streaming SHA-256 for files (backups, exports).
#[derive(Clone)]
pub struct Sha256(Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(Context::new(&SHA256))
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Sha256 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        let h = sha256(b"abc");
        assert_eq!(
            data_encoding::HEXLOWER.encode(&h),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut s = Sha256::default();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish(), h);
    }

    #[test]
    fn link_depends_on_both_inputs() {
        let a = chain_link(&[0; 32], b"x");
        assert_ne!(a, chain_link(&[1; 32], b"x"));
        assert_ne!(a, chain_link(&[0; 32], b"y"));
    }
}
