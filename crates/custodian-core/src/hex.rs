//! Lowercase hexadecimal, as keys, signatures, digests and checksums are written in files,
//! audit entries and CLI output.

/// `bytes` as lowercase hex, two digits each.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The bytes `text` spells in hex (either case); `None` unless it is an even number of hex
/// digits and nothing else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_reads_back_what_it_wrote_and_refuses_anything_else() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        assert_eq!(encode(&bytes), "000fa5ff10");
        assert_eq!(decode("000fa5ff10").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("000FA5FF10").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("").as_deref(), Some(&[][..]));
        for bad in ["0", "0g", "+f", "-1", " 0", "0 ", "éé"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
