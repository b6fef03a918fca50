//! Payment card numbers (PANs) are the payment gateway's (DPA §4), never ours: any field
//! that contains one is refused. A PAN is a run of 13-19 digits, optionally grouped by single
//! spaces or dashes, that passes the Luhn check and starts with a card network's prefix.
//! The prefix check keeps long phone numbers and ids from tripping the 1-in-10 Luhn odds.

/// True when `text` contains something that looks like a real card number.
pub fn contains_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_digit())
            && run_has_pan(&bytes[i..])
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Collects the digits of a run starting at `s[0]` (single separators allowed between
/// digits) and tests every window of PAN length that starts at a digit boundary.
fn run_has_pan(s: &[u8]) -> bool {
    let mut digits = Vec::with_capacity(24);
    let mut starts = vec![0usize];
    let mut j = 0;
    while j < s.len() && digits.len() < 64 {
        let b = s[j];
        if b.is_ascii_digit() {
            digits.push(b - b'0');
            j += 1;
        } else if (b == b' ' || b == b'-') && j + 1 < s.len() && s[j + 1].is_ascii_digit() {
            starts.push(digits.len());
            j += 1;
        } else {
            break;
        }
    }
    // A card number is the whole run or a group-aligned part of it.
    for &start in &starts {
        for len in 13..=19 {
            let end = start + len;
            if end > digits.len() {
                break;
            }
            let ends_on_boundary = end == digits.len() || starts.contains(&end);
            if ends_on_boundary && is_pan(&digits[start..end]) {
                return true;
            }
        }
    }
    false
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0, |acc, &x| acc * 10 + u32::from(x))
}

fn is_pan(d: &[u8]) -> bool {
    let len = d.len();
    let network = match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        2 => len == 16 && (2221..=2720).contains(&prefix(d, 4)),
        3 => {
            let p2 = prefix(d, 2);
            let p4 = prefix(d, 4);
            (len == 15 && (p2 == 34 || p2 == 37))
                || (len == 14
                    && (p2 == 36 || p2 == 38 || p2 == 39 || (300..=305).contains(&prefix(d, 3))))
                || ((16..=19).contains(&len) && (3528..=3589).contains(&p4))
        }
        5 => (16..=19).contains(&len) && (50..=59).contains(&prefix(d, 2)),
        6 => (16..=19).contains(&len),
        _ => false,
    };
    network && luhn(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_cards_in_any_common_spelling() {
        for pan in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3714 496353 98431",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "my card is 4242424242424242, thanks",
        ] {
            assert!(contains_pan(pan), "{pan} not detected");
        }
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in [
            "4111111111111112",
            "+33612345678",
            "+4915123456789",
            "1234567890123456",
            "2026-11-28",
            "order 9999999999999995",
            "FR7630006000011234567890189",
            "",
            "no digits",
        ] {
            assert!(!contains_pan(text), "{text} wrongly flagged");
        }
    }
}
