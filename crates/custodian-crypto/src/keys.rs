//! The key hierarchy.
//!
//! ```text
//! root key (file or env, never in the database)
//!   └─ wraps → controller key (one per controller, stored wrapped)
//!                ├─ derives → blind-index key (HMAC)
//!                └─ wraps → subject key (one per data subject, stored wrapped)
//!                             └─ encrypts → field values (AES-256-GCM)
//! ```
//!
//! Every wrap and every field ciphertext carries associated data naming exactly where it
//! belongs (controller, subject, record, field), so a ciphertext copied to another row fails
//! to decrypt instead of decrypting as someone else's data. Wrapped keys start with the
//! version of the key that wrapped them, so the root key can be rotated by re-wrapping the
//! controller keys alone, without touching any data.
//!
//! Destroying a subject key (erasure) or a controller key (termination) makes every
//! ciphertext under it unreadable: crypto-shredding.

use crate::CryptoError;
use crate::random;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::record::FieldName;
use data_encoding::BASE64URL_NOPAD;
use std::fmt;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const ROOT_PREFIX: &str = "custodian-root-key:v1:";

fn aead_key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"))
}

/// A key that seals and opens with AES-256-GCM, its schedule built once: a bulk read
/// unwraps hundreds of subject keys under one controller key and opens thousands of fields
/// under one subject key, and building the schedule per use was most of each use's cost.
/// Wiped on drop: the bytes by `Zeroizing`, the schedule by aws-lc (allocated with
/// `OPENSSL_malloc`, which `OPENSSL_free` cleanses).
struct AeadKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl AeadKey {
    fn new(raw: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let aead = aead_key(&raw);
        Self { raw, aead }
    }

    fn generate() -> Result<Self, CryptoError> {
        Ok(Self::new(Zeroizing::new(random::bytes::<KEY_LEN>()?)))
    }
}

impl zeroize::Zeroize for AeadKey {
    fn zeroize(&mut self) {
        self.raw.zeroize();
        // Dropping the old schedule cleanses it; the new one is of the zeroed key.
        self.aead = aead_key(&self.raw);
    }
}

/// Both parts wipe themselves when dropped (see the type).
impl zeroize::ZeroizeOnDrop for AeadKey {}

fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with(&aead_key(key), aad, plaintext)
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce_bytes =
        random::bytes::<NONCE_LEN>().expect("the operating system's random source failed");
    // nonce || ciphertext || tag, sealed where it lies: one buffer per value.
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .expect("AES-GCM sealing cannot fail for in-range input");
    out.extend_from_slice(tag.as_ref());
    out
}

fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open_with(&aead_key(key), aad, sealed)
}

/// Opens `sealed` (nonce || ciphertext || tag) into a buffer of exactly the plaintext's
/// length, reading the ciphertext where it lies: a bulk read opens thousands of values held
/// in kept rows, and copying each into a buffer of its own first, then shifting the
/// plaintext over the nonce, was two copies a field. Callers holding secrets wipe the
/// result (`Zeroizing`, `Plaintext`).
fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let Some(len) = sealed.len().checked_sub(NONCE_LEN + TAG_LEN) else {
        return Err(CryptoError::Open);
    };
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(len);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut plain = vec![0; len];
    match key.open_separate_gather(nonce, Aad::from(aad), ciphertext, tag, &mut plain) {
        Ok(()) => Ok(plain),
        Err(_) => {
            // The buffer may hold bytes decrypted before the tag failed (a ciphertext
            // moved to another row is real data under the right key): wipe it.
            zeroize::Zeroize::zeroize(&mut plain);
            Err(CryptoError::Open)
        }
    }
}

/// Length-prefixed context so that no two different contexts encode the same bytes.
fn context(label: &str, parts: &[&str]) -> Vec<u8> {
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    context_bytes(label, &parts)
}

fn context_bytes(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let size = label.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(label.as_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// [`context_bytes`] written into `buf`; `None` when it does not fit.
fn context_into<'b>(buf: &'b mut [u8], label: &str, parts: &[&[u8]]) -> Option<&'b [u8]> {
    let mut at = 0;
    let mut put = |bytes: &[u8]| -> Option<()> {
        buf.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
        at += bytes.len();
        Some(())
    };
    put(label.as_bytes())?;
    for p in parts {
        put(&(p.len() as u32).to_be_bytes())?;
        put(p)?;
    }
    Some(&buf[..at])
}

fn versioned(version: u32, sealed: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + sealed.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&sealed);
    out
}

fn split_version(wrapped: &[u8]) -> Result<(u32, &[u8]), CryptoError> {
    if wrapped.len() < 4 {
        return Err(CryptoError::Malformed("wrapped key too short"));
    }
    let (v, rest) = wrapped.split_at(4);
    Ok((u32::from_be_bytes(v.try_into().expect("4 bytes")), rest))
}

fn key_from(bytes: Vec<u8>) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let bytes = Zeroizing::new(bytes);
    let arr: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed("key is not 32 bytes"))?;
    Ok(Zeroizing::new(arr))
}

/// The root of the hierarchy. It never enters the database: `custodian init` writes it to
/// a file with 0600 permissions, or it comes from `CUSTODIAN_ROOT_KEY`. Every field is wiped
/// when it is dropped (the derive refuses a field that cannot be).
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RootKey {
    version: u32,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey(v{}, <redacted>)", self.version)
    }
}

impl RootKey {
    pub fn generate(version: u32) -> Result<Self, CryptoError> {
        Ok(Self {
            version,
            key: Zeroizing::new(random::bytes::<KEY_LEN>()?),
        })
    }

    /// The text form stored in the key file: `custodian-root-key:v1:<version>:<base64url>`.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{ROOT_PREFIX}{}:{}",
            self.version,
            BASE64URL_NOPAD.encode(self.key.as_ref())
        ))
    }

    pub fn decode(text: &str) -> Result<Self, CryptoError> {
        let bad = CryptoError::Malformed(
            "a root key looks like custodian-root-key:v1:<version>:<43 base64url characters>",
        );
        let rest = text.trim().strip_prefix(ROOT_PREFIX).ok_or(bad.clone())?;
        let (version, b64) = rest.split_once(':').ok_or(bad.clone())?;
        let version: u32 = version.parse().map_err(|_| bad.clone())?;
        let bytes = BASE64URL_NOPAD
            .decode(b64.as_bytes())
            .map_err(|_| bad.clone())?;
        Ok(Self {
            version,
            key: key_from(bytes).map_err(|_| bad)?,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn wrap_controller_key(&self, controller: &ControllerId, key: &ControllerKey) -> Vec<u8> {
        let aad = context("custodian/controller-key/v1", &[controller.as_str()]);
        versioned(self.version, seal(&self.key, &aad, key.0.raw.as_ref()))
    }

    pub fn unwrap_controller_key(
        &self,
        controller: &ControllerId,
        wrapped: &[u8],
    ) -> Result<ControllerKey, CryptoError> {
        let (version, sealed) = split_version(wrapped)?;
        if version != self.version {
            return Err(CryptoError::Malformed(
                "controller key was wrapped by another root key version",
            ));
        }
        let aad = context("custodian/controller-key/v1", &[controller.as_str()]);
        Ok(ControllerKey(AeadKey::new(key_from(open(
            &self.key, &aad, sealed,
        )?)?)))
    }

    /// A key derived for one job (checkpoint signing, backup encryption), so the root key
    /// itself is only ever used to wrap.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.key.as_ref());
        let tag = hmac::sign(&k, format!("custodian/derive/v1/{label}").as_bytes());
        Zeroizing::new(tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
    }
}

/// One controller's key. Wraps its subjects' keys and derives its blind-index key. Wiped on drop.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct ControllerKey(AeadKey);

impl fmt::Debug for ControllerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControllerKey(<redacted>)")
    }
}

impl ControllerKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(AeadKey::generate()?))
    }

    pub fn wrap_subject_key(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        key: &SubjectKey,
    ) -> Vec<u8> {
        let aad = context(
            "custodian/subject-key/v1",
            &[controller.as_str(), subject.as_str()],
        );
        versioned(1, seal_with(&self.0.aead, &aad, key.0.raw.as_ref()))
    }

    pub fn unwrap_subject_key(
        &self,
        controller: &ControllerId,
        subject: &SubjectId,
        wrapped: &[u8],
    ) -> Result<SubjectKey, CryptoError> {
        let (_version, sealed) = split_version(wrapped)?;
        let aad = context(
            "custodian/subject-key/v1",
            &[controller.as_str(), subject.as_str()],
        );
        Ok(SubjectKey(AeadKey::new(key_from(open_with(
            &self.0.aead,
            &aad,
            sealed,
        )?)?)))
    }

    /// Seals a controller-level secret (a requester's contact details), bound to `label`
    /// and `parts` (e.g. the request id) as associated data.
    pub fn seal_bound(&self, label: &str, parts: &[&str], plaintext: &[u8]) -> Vec<u8> {
        seal_with(
            &self.0.aead,
            &context(&format!("custodian/{label}/v1"), parts),
            plaintext,
        )
    }

    pub fn open_bound(
        &self,
        label: &str,
        parts: &[&str],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with(
            &self.0.aead,
            &context(&format!("custodian/{label}/v1"), parts),
            sealed,
        )
        .map(Zeroizing::new)
    }

    pub fn index_key(&self) -> crate::index::IndexKey {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.0.raw.as_ref());
        let tag = hmac::sign(&k, b"custodian/blind-index/v1");
        crate::index::IndexKey::from_bytes(tag.as_ref().try_into().expect("32 bytes"))
    }
}

/// Where a field value belongs; bound into its ciphertext as associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    pub controller: &'a ControllerId,
    pub subject: &'a SubjectId,
    pub record: &'a RecordId,
    pub field: &'a FieldName,
}

const FIELD_LABEL: &str = "custodian/field/v1";

impl FieldContext<'_> {
    fn parts(&self) -> [&[u8]; 4] {
        [
            self.controller.as_bytes(),
            self.subject.as_bytes(),
            self.record.as_bytes(),
            self.field.as_bytes(),
        ]
    }

    /// Runs `f` on the field's associated data, built on the stack: a bulk read opens
    /// thousands of fields, and a heap buffer for each was a tenth of opening one.
    fn with_aad<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        let mut buf = [0u8; 256];
        match context_into(&mut buf, FIELD_LABEL, &self.parts()) {
            Some(aad) => f(aad),
            // Field names and ids are short (the longest context is under 200 bytes); this
            // is only so that no length could ever fail.
            None => f(&context_bytes(FIELD_LABEL, &self.parts())),
        }
    }
}

/// One data subject's key: every field about that person is encrypted under it, so
/// destroying it erases them all at once, whatever their number. Wiped on drop.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SubjectKey(AeadKey);

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

impl SubjectKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(AeadKey::generate()?))
    }

    pub fn seal_field(&self, ctx: FieldContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        ctx.with_aad(|aad| seal_with(&self.0.aead, aad, plaintext))
    }

    pub fn open_field(
        &self,
        ctx: FieldContext<'_>,
        sealed: &[u8],
    ) -> Result<Plaintext, CryptoError> {
        ctx.with_aad(|aad| open_with(&self.0.aead, aad, sealed))
            .map(Plaintext)
    }
}

/// Decrypted bytes, wiped when dropped, as `Zeroizing<Vec<u8>>` does, except that a buffer
/// the caller emptied (taking its bytes, as a bulk read takes each field's text) costs
/// nothing to drop. `zeroize` still wipes an empty vector's spare capacity of zero bytes
/// with `memset` on its dangling pointer, and glibc's AVX-512 `memset` stores through a
/// mask to that unmapped address, which the CPU completes with a microcode assist: 8-9 %
/// of a bulk read's samples (perf, read-meta-purpose), for nothing.
pub struct Plaintext(Vec<u8>);

impl std::ops::Deref for Plaintext {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Plaintext {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        if self.0.capacity() > 0 {
            zeroize::Zeroize::zeroize(&mut self.0);
        }
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<{} bytes redacted>)", self.0.len())
    }
}

/// Encrypts a whole blob (a backup, an export) under a derived key; the label is bound in.
pub fn seal_blob(key: &[u8; 32], label: &str, plaintext: &[u8]) -> Vec<u8> {
    seal(key, &context("custodian/blob/v1", &[label]), plaintext)
}

pub fn open_blob(key: &[u8; 32], label: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open(key, &context("custodian/blob/v1", &[label]), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (ControllerId, SubjectId, RecordId) {
        (
            ControllerId::from_random([1; 16]),
            SubjectId::from_random([2; 16]),
            RecordId::from_random([3; 16]),
        )
    }

    static EMAIL: std::sync::LazyLock<FieldName> =
        std::sync::LazyLock::new(|| FieldName::parse("email").unwrap());
    static NAME: std::sync::LazyLock<FieldName> =
        std::sync::LazyLock::new(|| FieldName::parse("name").unwrap());

    /// The place of one field, "email", of record `r`.
    fn email<'a>(c: &'a ControllerId, s: &'a SubjectId, r: &'a RecordId) -> FieldContext<'a> {
        FieldContext {
            controller: c,
            subject: s,
            record: r,
            field: &EMAIL,
        }
    }

    /// The associated data built on the stack is, byte for byte, the length-prefixed
    /// context fields were always sealed with (or nothing stored before would open), for
    /// the shortest and the longest field names; and the heap's encoding, for a context
    /// too long for a buffer, is the same bytes.
    #[test]
    fn field_associated_data_is_the_context_encoding_on_stack_and_heap() {
        let (c, s, r) = ids();
        let longest = FieldName::parse(&format!("a{}", "b".repeat(63))).unwrap();
        for field in [&*EMAIL, &longest] {
            let ctx = FieldContext {
                controller: &c,
                subject: &s,
                record: &r,
                field,
            };
            let want = context(
                FIELD_LABEL,
                &[c.as_str(), s.as_str(), r.as_str(), field.as_str()],
            );
            assert_eq!(ctx.with_aad(|aad| aad.to_vec()), want);
            let mut stack = [0u8; 256];
            assert_eq!(
                context_into(&mut stack, FIELD_LABEL, &ctx.parts()),
                Some(&want[..])
            );
            let k = SubjectKey::generate().unwrap();
            let sealed = k.seal_field(ctx, b"value");
            assert_eq!(k.open_field(ctx, &sealed).unwrap().as_slice(), b"value");
        }
        let long = "x".repeat(300);
        let mut small = [0u8; 8];
        assert!(context_into(&mut small, FIELD_LABEL, &[b"a"]).is_none());
        let mut big = [0u8; 512];
        assert_eq!(
            context_into(&mut big, FIELD_LABEL, &[long.as_bytes()]),
            Some(&context(FIELD_LABEL, &[long.as_str()])[..])
        );
    }

    #[test]
    fn root_key_text_round_trip_and_redacted_debug() {
        let k = RootKey::generate(3).unwrap();
        let text = k.encode();
        let back = RootKey::decode(&text).unwrap();
        assert_eq!(back.version(), 3);
        assert_eq!(back.key.as_ref(), k.key.as_ref());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&text[ROOT_PREFIX.len() + 2..]));
        assert!(RootKey::decode("custodian-root-key:v1:1:short").is_err());
        assert!(RootKey::decode("garbage").is_err());
    }

    /// Dropping any key wipes its bytes: `ZeroizeOnDrop` is derived (so a new field that
    /// cannot be wiped does not compile), and wiping clears exactly what the key uses.
    #[test]
    fn key_material_is_zeroized_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<RootKey>();
        wiped_on_drop::<ControllerKey>();
        wiped_on_drop::<SubjectKey>();
        // What the keys hand out: derived keys, the key file's text, unwrapped plaintext.
        wiped_on_drop::<Zeroizing<[u8; KEY_LEN]>>();
        wiped_on_drop::<Zeroizing<String>>();
        wiped_on_drop::<Zeroizing<Vec<u8>>>();

        use zeroize::Zeroize;
        let mut root = RootKey::generate(1).unwrap();
        assert!(root.key.iter().any(|b| *b != 0));
        root.zeroize();
        assert!(root.key.iter().all(|b| *b == 0), "the root key is wiped");
        let mut ck = ControllerKey::generate().unwrap();
        ck.zeroize();
        assert!(
            ck.0.raw.iter().all(|b| *b == 0),
            "a controller key is wiped"
        );
        let mut sk = SubjectKey::generate().unwrap();
        sk.zeroize();
        assert!(sk.0.raw.iter().all(|b| *b == 0), "a subject key is wiped");
    }

    #[test]
    fn hierarchy_round_trip() {
        let (c, s, r) = ids();
        let root = RootKey::generate(1).unwrap();
        let ck = ControllerKey::generate().unwrap();
        let wrapped_ck = root.wrap_controller_key(&c, &ck);
        let ck2 = root.unwrap_controller_key(&c, &wrapped_ck).unwrap();
        let sk = SubjectKey::generate().unwrap();
        let wrapped_sk = ck.wrap_subject_key(&c, &s, &sk);
        let sk2 = ck2.unwrap_subject_key(&c, &s, &wrapped_sk).unwrap();
        let ctx = email(&c, &s, &r);
        let ct = sk.seal_field(ctx, b"alice@example.fr");
        assert_eq!(
            sk2.open_field(ctx, &ct).unwrap().as_slice(),
            b"alice@example.fr"
        );
        assert!(!ct.windows(5).any(|w| w == b"alice"));
    }

    #[test]
    fn ciphertext_is_bound_to_its_place() {
        let (c, s, r) = ids();
        let sk = SubjectKey::generate().unwrap();
        let ctx = email(&c, &s, &r);
        let ct = sk.seal_field(ctx, b"x");
        let other_field = FieldContext {
            field: &NAME,
            ..ctx
        };
        assert_eq!(
            sk.open_field(other_field, &ct).unwrap_err(),
            CryptoError::Open
        );
        let r2 = RecordId::from_random([9; 16]);
        let other_record = FieldContext { record: &r2, ..ctx };
        assert!(sk.open_field(other_record, &ct).is_err());
        let s2 = SubjectId::from_random([9; 16]);
        let other_subject = FieldContext {
            subject: &s2,
            ..ctx
        };
        assert!(sk.open_field(other_subject, &ct).is_err());
        let mut flipped = ct.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(sk.open_field(ctx, &flipped).is_err());
        assert!(sk.open_field(ctx, &ct[..10]).is_err());
    }

    #[test]
    fn a_field_opens_into_a_buffer_of_exactly_its_plaintext() {
        let (c, s, r) = ids();
        let sk = SubjectKey::generate().unwrap();
        let ctx = email(&c, &s, &r);
        for plain in [&b""[..], b"\"alice@example.fr\"", &[7u8; 300]] {
            let ct = sk.seal_field(ctx, plain);
            assert_eq!(ct.len(), NONCE_LEN + plain.len() + TAG_LEN);
            let opened = sk.open_field(ctx, &ct).unwrap();
            assert_eq!(opened.as_slice(), plain);
            assert_eq!(opened.capacity(), plain.len());
            let other = FieldContext {
                field: &NAME,
                ..ctx
            };
            assert_eq!(sk.open_field(other, &ct).unwrap_err(), CryptoError::Open);
        }
        for short in 0..NONCE_LEN + TAG_LEN {
            assert!(sk.open_field(ctx, &vec![0; short]).is_err());
        }
    }

    #[test]
    fn a_plaintext_shows_its_length_only_and_may_be_emptied() {
        let (c, s, r) = ids();
        let sk = SubjectKey::generate().unwrap();
        let ctx = email(&c, &s, &r);
        let mut opened = sk
            .open_field(ctx, &sk.seal_field(ctx, b"\"alice@example.fr\""))
            .unwrap();
        assert_eq!(format!("{opened:?}"), "Plaintext(<18 bytes redacted>)");
        // A caller takes the bytes (as a bulk read takes a field's text); what is left is
        // empty and drops without a wipe of nothing.
        let taken = std::mem::take(&mut *opened);
        assert_eq!(taken, b"\"alice@example.fr\"");
        assert_eq!(opened.capacity(), 0);
        drop(opened);
    }

    #[test]
    fn wrapped_keys_do_not_move_between_owners() {
        let (c, s, _) = ids();
        let root = RootKey::generate(1).unwrap();
        let ck = ControllerKey::generate().unwrap();
        let w = root.wrap_controller_key(&c, &ck);
        let c2 = ControllerId::from_random([7; 16]);
        assert!(root.unwrap_controller_key(&c2, &w).is_err());
        let other_root = RootKey::generate(1).unwrap();
        assert!(other_root.unwrap_controller_key(&c, &w).is_err());
        let rotated = RootKey::generate(2).unwrap();
        assert!(rotated.unwrap_controller_key(&c, &w).is_err());
        let sk = SubjectKey::generate().unwrap();
        let ws = ck.wrap_subject_key(&c, &s, &sk);
        let s2 = SubjectId::from_random([8; 16]);
        assert!(ck.unwrap_subject_key(&c, &s2, &ws).is_err());
    }

    #[test]
    fn derived_keys_differ_by_label() {
        let root = RootKey::generate(1).unwrap();
        assert_ne!(root.derive("a").as_ref(), root.derive("b").as_ref());
        assert_eq!(root.derive("a").as_ref(), root.derive("a").as_ref());
    }

    #[test]
    fn blobs_round_trip_and_bind_label() {
        let k = [5u8; 32];
        let ct = seal_blob(&k, "backup", b"data");
        assert_eq!(open_blob(&k, "backup", &ct).unwrap(), b"data");
        assert!(open_blob(&k, "export", &ct).is_err());
    }
}
