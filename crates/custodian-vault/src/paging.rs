//! Pages of a set of records (`GET /v1/records?limit=&after=`).
//!
//! A set is answered in one order: subjects by id, each subject's records oldest first
//! (collection time, then record id). A page ends with the key of its last record, and the
//! next page starts at the first record whose key comes after it. A key, not a position:
//! records inserted or erased between two pages shift no other record's place, so no record
//! that stays in the set is answered twice or skipped.

use custodian_core::ids::{RecordId, SubjectId};
use custodian_store::rows::RecordRow;
use time::OffsetDateTime;

/// The most records one page holds.
pub const MAX_PAGE: usize = 10_000;

/// Which page of a set to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    after: Option<PageCursor>,
    limit: usize,
}

impl Page {
    /// At most `limit` records (1 to [`MAX_PAGE`]; `None` otherwise), starting after
    /// `after`'s key, or at the start of the set.
    pub fn new(after: Option<PageCursor>, limit: usize) -> Option<Self> {
        (1..=MAX_PAGE)
            .contains(&limit)
            .then_some(Self { after, limit })
    }

    pub(crate) fn after(&self) -> Option<&PageCursor> {
        self.after.as_ref()
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Where a page ended: the key of its last record, in the set's order. Its text form is
/// opaque to clients and carries ids only (pseudonymous), never personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    subject: SubjectId,
    created_at: i128,
    record: RecordId,
}

impl PageCursor {
    /// The key of `record`.
    pub(crate) fn of(record: &RecordRow) -> Self {
        let (subject, created_at, record) = key(record);
        Self {
            subject: subject.clone(),
            created_at,
            record: record.clone(),
        }
    }

    /// Whether `record` comes after this key in the set's order.
    pub(crate) fn precedes(&self, record: &RecordRow) -> bool {
        (&self.subject, self.created_at, &self.record) < key(record)
    }

    /// The text form: subject id, collection time in nanoseconds, record id, joined by `~`.
    pub fn encode(&self) -> String {
        format!("{}~{}~{}", self.subject, self.created_at, self.record)
    }

    /// Reads [`Self::encode`]'s form; `None` for anything else. (The OpenAPI document
    /// describes the form as a pattern, every match of which this reads.)
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('~');
        let (subject, created_at, record) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let created_at: i128 = created_at.parse().ok()?;
        // Within what a stored timestamp can be.
        OffsetDateTime::from_unix_timestamp_nanos(created_at).ok()?;
        Some(Self {
            subject: SubjectId::parse(subject).ok()?,
            created_at,
            record: RecordId::parse(record).ok()?,
        })
    }
}

/// A page of a set's records, decrypted.
#[derive(Debug)]
pub struct RecordPage {
    pub records: Vec<crate::views::RecordView>,
    /// Where the next page starts; `None` when this one ends the set.
    pub next: Option<PageCursor>,
}

/// A record's place in the set's order (see the module's comment).
fn key(r: &RecordRow) -> (&SubjectId, i128, &RecordId) {
    (
        &r.subject,
        r.header.created_at.unix_timestamp_nanos(),
        &r.id,
    )
}

/// The set's order.
pub(crate) fn set_order(a: &RecordRow, b: &RecordRow) -> std::cmp::Ordering {
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_nothing_else() {
        let cursor = PageCursor {
            subject: SubjectId::from_random([7; 16]),
            created_at: 1_764_000_000_123_456_789,
            record: RecordId::from_random([9; 16]),
        };
        let text = cursor.encode();
        assert_eq!(PageCursor::parse(&text), Some(cursor.clone()));
        // The largest time the OpenAPI pattern allows (19 digits) still reads.
        let subject = cursor.subject.to_string();
        let record = cursor.record.to_string();
        let latest = format!("{subject}~9999999999999999999~{record}");
        assert!(PageCursor::parse(&latest).is_some());
        for bad in [
            String::new(),
            "~~".to_owned(),
            format!("{subject}~1"),
            format!("{subject}~1~{record}~"),
            format!("{subject}~x~{record}"),
            format!("{record}~1~{subject}"),
            format!("{subject}~{}~{record}", i128::MAX),
            format!("{subject}~ 1~{record}"),
        ] {
            assert_eq!(PageCursor::parse(&bad), None, "{bad:?}");
        }
    }
}
