//! What rewriting a record writes: only the columns of `records` where the new row differs
//! from the one the transaction read. An assigned column rewrites every index on it
//! (subject, expiry) even when its value stays, which over the thousands of records of a
//! purpose would dirty an index page per record for nothing. Both backends bind these.

use crate::rows::RecordRow;
use crate::sqlite::codec::{json, nanos};
use time::OffsetDateTime;

/// A metadata item set on every record of a set at once ([`crate::DataTx::alter_purpose_meta`]):
/// the same value for every record, or, for the expiry, one computed from each record's own
/// collection time.
#[derive(Debug, Clone, Copy)]
pub enum MetaChange<'a> {
    Source(Option<&'a str>),
    Recipients(&'a [String]),
    AutomatedDecision(Option<&'a str>),
    /// Each record's expiry becomes `requested`, capped at its collection time plus
    /// `retention`: `Purpose::expiry` counted from the record's `created_at`.
    ExpiresAt {
        requested: OffsetDateTime,
        retention: time::Duration,
    },
}

impl MetaChange<'_> {
    /// The column set.
    pub(crate) fn column(&self) -> &'static str {
        match self {
            Self::Source(_) => "source",
            Self::Recipients(_) => "recipients",
            Self::AutomatedDecision(_) => "automated_decision",
            Self::ExpiresAt { .. } => "expires_at",
        }
    }

    /// Its new value as both databases store it; for the expiry, the requested instant
    /// (the cap is [`Self::retention_nanos`]).
    pub(crate) fn value(&self) -> Value<'_> {
        match self {
            Self::Source(s) | Self::AutomatedDecision(s) => Value::MaybeText(*s),
            Self::Recipients(r) => Value::OwnedText(json(r)),
            Self::ExpiresAt { requested, .. } => Value::Int(nanos(*requested)),
        }
    }

    /// For the expiry, the retention in nanoseconds (saturating: a retention beyond what
    /// nanoseconds since 1970 can hold caps nothing).
    pub(crate) fn retention_nanos(&self) -> Option<i64> {
        match self {
            Self::ExpiresAt { retention, .. } => {
                Some(i64::try_from(retention.whole_nanoseconds()).unwrap_or(i64::MAX))
            }
            _ => None,
        }
    }
}

/// The statement of `DataTx::alter_purpose_meta`, for a backend whose n-th placeholder
/// `param(n)` writes and whose "subject not among the list bound at this placeholder"
/// condition `not_among` writes. Parameters: 1 controller, 2 purpose, 3 update time, 4 the
/// value, 5 the retention (the expiry only), then the excepted subjects when `excepting`.
pub(crate) fn alter_purpose_sql(
    change: &MetaChange<'_>,
    excepting: bool,
    param: fn(usize) -> String,
    not_among: fn(&str) -> String,
) -> String {
    let column = change.column();
    let set = match change.retention_nanos() {
        // min(requested, created_at + retention), written so that the sum is only taken
        // when it is at most `requested`: it never overflows.
        Some(_) => format!(
            "{column} = CASE WHEN {r} > {v} - created_at THEN {v} ELSE created_at + {r} END",
            v = param(4),
            r = param(5),
        ),
        None => format!("{column} = {}", param(4)),
    };
    let mut sql = format!(
        "UPDATE records SET updated_at = {at}, {set} WHERE controller_id = {} AND purpose = {} AND expires_at > {at}",
        param(1),
        param(2),
        at = param(3),
    );
    if excepting {
        let at = if change.retention_nanos().is_some() {
            6
        } else {
            5
        };
        sql.push_str(" AND ");
        sql.push_str(&not_among(&param(at)));
    }
    sql
}

/// A column's new value, as both databases store it.
pub(crate) enum Value<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    OwnedText(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// A column a rewrite may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    UpdatedAt,
    SubjectId,
    Source,
    Recipients,
    AutomatedDecision,
    ExpiresAt,
    Fields,
}

impl Column {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::UpdatedAt => "updated_at",
            Self::SubjectId => "subject_id",
            Self::Source => "source",
            Self::Recipients => "recipients",
            Self::AutomatedDecision => "automated_decision",
            Self::ExpiresAt => "expires_at",
            Self::Fields => "fields",
        }
    }

    /// `row`'s value of this column.
    pub(crate) fn value(self, row: &RecordRow) -> Value<'_> {
        let (h, meta) = (&row.header, &row.header.meta);
        match self {
            Self::UpdatedAt => Value::Int(nanos(h.updated_at)),
            Self::SubjectId => Value::Text(row.subject.as_str()),
            Self::Source => Value::MaybeText(meta.source.as_deref()),
            Self::Recipients => Value::OwnedText(json(&meta.recipients)),
            Self::AutomatedDecision => Value::MaybeText(meta.automated_decision.as_deref()),
            Self::ExpiresAt => Value::Int(nanos(h.expires_at)),
            Self::Fields => Value::Bytes(crate::fieldset::encode(&row.fields)),
        }
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The columns to set, in a fixed order (so that a backend's statement cache sees few
/// distinct statements), with `new`'s values. `updated_at` comes first and always: a
/// rewrite that changes nothing else still says when the record was last processed.
pub(crate) fn changed_columns<'a>(
    old: &'a RecordRow,
    new: &'a RecordRow,
) -> Vec<(Column, Value<'a>)> {
    let (o, n) = (&old.header, &new.header);
    let differ = [
        (Column::UpdatedAt, true),
        (Column::SubjectId, old.subject != new.subject),
        (Column::Source, o.meta.source != n.meta.source),
        (Column::Recipients, o.meta.recipients != n.meta.recipients),
        (
            Column::AutomatedDecision,
            o.meta.automated_decision != n.meta.automated_decision,
        ),
        (Column::ExpiresAt, o.expires_at != n.expires_at),
        (Column::Fields, old.fields != new.fields),
    ];
    differ
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(column, _)| (column, column.value(new)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::FieldRow;
    use custodian_core::category::DataCategory;
    use custodian_core::ids::{RecordId, SubjectId};
    use custodian_core::purpose::PurposeName;
    use custodian_core::record::{FieldName, RecordHeader, RecordMeta};
    use time::OffsetDateTime;

    fn row() -> RecordRow {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        RecordRow {
            id: RecordId::from_random([1; 16]),
            subject: SubjectId::from_random([2; 16]),
            header: RecordHeader {
                purpose: PurposeName::parse("service").unwrap(),
                meta: RecordMeta::default().into(),
                created_at: t,
                updated_at: t,
                expires_at: t + time::Duration::days(30),
            },
            fields: vec![FieldRow {
                name: FieldName::parse("email").unwrap(),
                category: DataCategory::parse("user.contact.email").unwrap(),
                sealed: vec![7; 40],
            }],
        }
    }

    fn names(old: &RecordRow, new: &RecordRow) -> Vec<&'static str> {
        changed_columns(old, new)
            .into_iter()
            .map(|(c, _)| c.name())
            .collect()
    }

    #[test]
    fn names_only_what_differs_and_always_the_update_time() {
        let old = row();
        assert_eq!(names(&old, &old.clone()), ["updated_at"]);
        let mut new = old.clone();
        std::sync::Arc::make_mut(&mut new.header.meta).source = Some("import".into());
        new.header.expires_at += time::Duration::days(1);
        assert_eq!(names(&old, &new), ["updated_at", "source", "expires_at"]);
        let mut new = old.clone();
        new.subject = SubjectId::from_random([3; 16]);
        std::sync::Arc::make_mut(&mut new.header.meta).recipients = vec!["auditors".into()];
        std::sync::Arc::make_mut(&mut new.header.meta).automated_decision = Some("scoring".into());
        new.fields[0].sealed = vec![8; 40];
        assert_eq!(
            names(&old, &new),
            [
                "updated_at",
                "subject_id",
                "recipients",
                "automated_decision",
                "fields"
            ]
        );
    }

    #[test]
    fn values_are_what_the_columns_store() {
        let old = row();
        let mut new = old.clone();
        std::sync::Arc::make_mut(&mut new.header.meta).recipients = vec!["auditors".into()];
        std::sync::Arc::make_mut(&mut new.header.meta).source = Some("import".into());
        let cols = changed_columns(&old, &new);
        assert!(
            matches!(cols[0], (Column::UpdatedAt, Value::Int(n)) if n == nanos(new.header.updated_at))
        );
        assert!(matches!(
            cols[1],
            (Column::Source, Value::MaybeText(Some("import")))
        ));
        assert!(
            matches!(&cols[2], (Column::Recipients, Value::OwnedText(s)) if s == r#"["auditors"]"#)
        );
        std::sync::Arc::make_mut(&mut new.header.meta).source = None;
        let cols = changed_columns(&old, &new);
        assert!(matches!(cols[1], (Column::Recipients, _)));
        new.fields.clear();
        let cols = changed_columns(&old, &new);
        assert!(
            matches!(&cols[2], (Column::Fields, Value::Bytes(b)) if *b == crate::fieldset::encode(&[]))
        );
    }
}
