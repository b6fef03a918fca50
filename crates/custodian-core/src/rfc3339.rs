//! RFC 3339 timestamps in JSON (`#[serde(with = "custodian_core::rfc3339")]`), written
//! exactly as `time::serde::rfc3339` writes them but without its generic formatting
//! machinery and the `String` it allocates per timestamp: a record carries three, and
//! formatting them was a tenth of the server's CPU for a purpose's records over HTTP (perf).
//! Reading is `time`'s own.

use serde::{Deserializer, Serializer};
use time::OffsetDateTime;

/// The longest timestamp written here: `9999-12-31T23:59:59.999999999Z`.
const MAX_LEN: usize = 30;

pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        Some(len) => match std::str::from_utf8(&buf[..len]) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom(
                "a timestamp could not be written",
            )),
        },
        // An offset other than UTC, or a year RFC 3339 cannot hold: `time` writes the one
        // and refuses the other, with its own message.
        None => time::serde::rfc3339::serialize(t, s),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    time::serde::rfc3339::deserialize(d)
}

/// For `Option<OffsetDateTime>`: `null` when absent.
pub mod option {
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        time::serde::rfc3339::option::deserialize(d)
    }
}

/// `t` as RFC 3339 in UTC (`Z`), fractional seconds without trailing zeros and none when
/// zero, as `time` writes it; `None` when `t` is not in UTC or its year is before 0000
/// (or, with `time`'s large dates, after 9999).
fn write(t: &OffsetDateTime, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    if !t.offset().is_utc() {
        return None;
    }
    let (year, month, day) = t.to_calendar_date();
    let year = u32::try_from(year).ok().filter(|y| *y < 10_000)?;
    let (hour, minute, second, nanos) = t.to_hms_nano();
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], u32::from(u8::from(month)));
    buf[7] = b'-';
    digits(&mut buf[8..10], u32::from(day));
    buf[10] = b'T';
    digits(&mut buf[11..13], u32::from(hour));
    buf[13] = b':';
    digits(&mut buf[14..16], u32::from(minute));
    buf[16] = b':';
    digits(&mut buf[17..19], u32::from(second));
    let mut len = 19;
    if nanos != 0 {
        let (mut fraction, mut width) = (nanos, 9);
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        buf[len] = b'.';
        digits(&mut buf[len + 1..len + 1 + width], fraction);
        len += 1 + width;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

/// `n` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::{Duration, UtcOffset};

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Stamped {
        #[serde(with = "crate::rfc3339")]
        at: OffsetDateTime,
        #[serde(with = "crate::rfc3339::option")]
        until: Option<OffsetDateTime>,
    }

    fn theirs(t: &OffsetDateTime) -> Option<String> {
        t.format(&Rfc3339).ok()
    }

    fn ours(t: &OffsetDateTime) -> Option<String> {
        let mut buf = [0u8; MAX_LEN];
        write(t, &mut buf).map(|n| String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// Byte for byte what `time` writes, over instants from 1970 to 9999 with every
    /// number of trailing zeros in their nanoseconds (and none at all).
    #[test]
    fn timestamps_are_written_as_time_writes_them() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let span = 253_402_300_799i64; // 9999-12-31T23:59:59Z
        for i in 0..20_000u64 {
            let secs = (next() % span as u64) as i64;
            let nanos = match i % 11 {
                0 => 0,
                k => {
                    (next() % 1_000_000_000) as i64 / 10i64.pow((k - 1) as u32 % 9)
                        * 10i64.pow((k - 1) as u32 % 9)
                }
            };
            let t =
                OffsetDateTime::UNIX_EPOCH + Duration::seconds(secs) + Duration::nanoseconds(nanos);
            assert_eq!(ours(&t), theirs(&t), "{secs} s {nanos} ns");
            assert!(ours(&t).is_some());
        }
        for t in [
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(1),
            OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(100_000_000),
            OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(999_999_999),
            OffsetDateTime::UNIX_EPOCH - Duration::nanoseconds(1),
            time::macros::datetime!(0000-01-01 00:00 UTC),
            time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        ] {
            assert_eq!(ours(&t), theirs(&t));
        }
    }

    /// Other offsets and years RFC 3339 cannot hold go to `time`, which writes the one and
    /// refuses the other; reading back gives the same instant.
    #[test]
    fn other_offsets_and_years_are_left_to_time() {
        let paris = time::macros::datetime!(2026-11-30 05:00:00.25 +01:00);
        assert_eq!(ours(&paris), None);
        let json = serde_json::to_string(&Stamped {
            at: paris,
            until: None,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"at":"2026-11-30T05:00:00.25+01:00","until":null}"#
        );
        let back: Stamped = serde_json::from_str(&json).unwrap();
        assert_eq!(back.at, paris);
        assert_eq!(back.at.offset(), UtcOffset::from_hms(1, 0, 0).unwrap());

        let before = time::macros::datetime!(-0001-12-31 00:00 UTC);
        assert_eq!(ours(&before), None);
        assert!(
            serde_json::to_string(&Stamped {
                at: before,
                until: None
            })
            .is_err()
        );

        let utc = time::macros::datetime!(2026-11-30 04:00:00.000_001 UTC);
        let json = serde_json::to_string(&Stamped {
            at: utc,
            until: Some(utc),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"at":"2026-11-30T04:00:00.000001Z","until":"2026-11-30T04:00:00.000001Z"}"#
        );
        assert_eq!(
            serde_json::from_str::<Stamped>(&json).unwrap().until,
            Some(utc)
        );
    }
}
