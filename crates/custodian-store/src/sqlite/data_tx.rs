//! One controller's data inside one SQLite transaction. Every statement here binds
//! `controller_id = ?1`; the controller comes from the constructor, never from a caller.

use super::codec::*;
use super::kept::Kept;
use crate::rows::*;
use crate::{DataTx, Result};
use custodian_core::ids::{ControllerId, RecordId, SubjectId};
use custodian_core::lookup::LookupKind;
use custodian_core::purpose::{Purpose, PurposeName};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use time::OffsetDateTime;

/// Records are clustered by purpose (migration 0010); without statistics the planner would
/// walk all of a controller's records by that key rather than look a subject's up.
macro_rules! by_subject {
    () => {
        "records INDEXED BY records_by_subject"
    };
}

pub(crate) struct SqliteTx<'a> {
    tx: &'a Connection,
    controller: &'a ControllerId,
    now: OffsetDateTime,
    /// The audit chain's head as this transaction's own appends moved it.
    head: Option<super::Head>,
    /// Rows kept between reads: given to read-only snapshots only (see `kept`).
    kept: Option<&'a Kept>,
    /// The writer's map for rewriting many records at once (see `rewrites`).
    rewrites: Option<&'a super::rewrites::Rewrites>,
    /// The controller's subjects token in this snapshot, once read.
    subjects_token: Option<Option<i64>>,
    /// Purposes whose token this unit of work already changed (see `records_changed`).
    purposes_changed: Vec<PurposeName>,
    /// Whether this unit of work already changed the subjects token.
    subjects_changed: bool,
}

impl<'a> SqliteTx<'a> {
    pub(crate) fn new(
        tx: &'a Connection,
        controller: &'a ControllerId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            tx,
            controller,
            now,
            head: None,
            kept: None,
            rewrites: None,
            subjects_token: None,
            purposes_changed: Vec::new(),
            subjects_changed: false,
        }
    }

    /// A unit of work on the writer connection, which may rewrite many records at once.
    pub(crate) fn writing(
        tx: &'a Connection,
        controller: &'a ControllerId,
        now: OffsetDateTime,
        rewrites: &'a super::rewrites::Rewrites,
    ) -> Self {
        Self {
            rewrites: Some(rewrites),
            ..Self::new(tx, controller, now)
        }
    }

    /// A transaction over a read-only snapshot that may answer from, and fill, `kept`.
    pub(crate) fn reading(
        tx: &'a Connection,
        controller: &'a ControllerId,
        now: OffsetDateTime,
        kept: &'a Kept,
    ) -> Self {
        Self {
            kept: Some(kept),
            ..Self::new(tx, controller, now)
        }
    }

    /// The head the work's own appends left, for the transaction's last append.
    pub(crate) fn into_head(self) -> Option<super::Head> {
        self.head
    }

    fn c(&self) -> &str {
        self.controller.as_str()
    }

    /// A record's lookup entries follow it to the subject it moved to.
    fn move_lookups(&self, old: &RecordRow, new: &RecordRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE lookups SET subject_id = ?3 WHERE controller_id = ?1 AND record_id = ?2 AND subject_id <> ?3",
            )
            .map_err(map_err)?
            .execute(params![self.c(), old.id.as_str(), new.subject.as_str()])
            .map_err(map_err)?;
        Ok(())
    }

    /// How many fields the controller's records selected by `from_where` (`FROM records
    /// ... WHERE controller_id = ?1 ...`) hold, for the counts an erasure reports, read from
    /// each field set's header.
    fn count_fields(&self, from_where: &str, params: impl rusqlite::Params) -> Result<u64> {
        let mut st = self
            .tx
            .prepare_cached(&format!("SELECT fields {from_where}"))
            .map_err(map_err)?;
        let mut rows = st.query(params).map_err(map_err)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(map_err)? {
            let bytes = r
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(map_err)?;
            n += crate::fieldset::count(bytes).map_err(|e| corrupt("records", e))?;
        }
        Ok(n)
    }

    /// Gives `purpose` a new token (migration 0013) before its records change, once per unit
    /// of work: readers only see the unit committed, and a unit rolled back takes its new
    /// token with it. Every statement here that inserts, changes or deletes records calls
    /// it (or `all_records_changed`); the conformance suite reads after each of them.
    fn records_changed(&mut self, purpose: &PurposeName) -> Result<()> {
        if self.purposes_changed.contains(purpose) {
            return Ok(());
        }
        self.tx
            .prepare_cached(
                "INSERT INTO record_generations (controller_id, purpose, token) VALUES (?1, ?2, random())
                 ON CONFLICT (controller_id, purpose) DO UPDATE SET token = excluded.token",
            )
            .map_err(map_err)?
            .execute(params![self.c(), purpose.as_str()])
            .map_err(map_err)?;
        self.purposes_changed.push(purpose.clone());
        Ok(())
    }

    /// New tokens for every purpose of the controller.
    fn all_records_changed(&mut self) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE record_generations SET token = random() WHERE controller_id = ?1",
            )
            .map_err(map_err)?
            .execute(params![self.c()])
            .map_err(map_err)?;
        Ok(())
    }

    /// The subjects token's counterpart of `records_changed`, before subjects' rows change
    /// or go. Not for a new subject: only rows read from the database are kept, so a row
    /// that did not exist yet cannot be kept wrong.
    fn subjects_changed(&mut self) -> Result<()> {
        if self.subjects_changed {
            return Ok(());
        }
        self.tx
            .prepare_cached(
                "INSERT INTO subject_generations (controller_id, token) VALUES (?1, random())
                 ON CONFLICT (controller_id) DO UPDATE SET token = excluded.token",
            )
            .map_err(map_err)?
            .execute(params![self.c()])
            .map_err(map_err)?;
        self.subjects_changed = true;
        Ok(())
    }

    fn query_records_of_purpose(&self, purpose: &PurposeName) -> Result<Vec<RecordRow>> {
        let mut st = self
            .tx
            .prepare_cached(concat!(
                "SELECT ",
                record_cols!(),
                " FROM records WHERE controller_id = ?1 AND purpose = ?2 ORDER BY created_at, id"
            ))
            .map_err(map_err)?;
        let mut rows = record_rows(&mut st, params![self.c(), purpose.as_str()])?;
        // By subject, each one's records keeping the table's order (oldest first): sorted
        // here, once per read of the table, rather than by SQLite's sorter (which copies
        // every row into it) or by every bulk operation over the rows kept.
        rows.sort_by_cached_key(|r| r.subject.clone());
        Ok(rows)
    }

    /// Rows of the controller's subjects among `ids`, looked up one at a time: the ids come
    /// from records already read, so reading the purpose's records again to find them (an
    /// IN subquery) would cost more.
    fn query_subjects(&self, ids: &[SubjectId]) -> Result<Vec<SubjectRow>> {
        let mut st = self
            .tx
            .prepare_cached(concat!(
                "SELECT ",
                subject_cols!(),
                " FROM subjects WHERE controller_id = ?1 AND id = ?2"
            ))
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = st
                .query_row(params![self.c(), id.as_str()], subject_row)
                .optional()
                .map_err(map_err)?
            {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// The controller's subjects token in this snapshot (migration 0013), read once.
    fn subjects_token(&mut self) -> Result<Option<i64>> {
        if let Some(t) = self.subjects_token {
            return Ok(t);
        }
        let t = self
            .tx
            .prepare_cached("SELECT token FROM subject_generations WHERE controller_id = ?1")
            .map_err(map_err)?
            .query_row(params![self.c()], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        self.subjects_token = Some(t);
        Ok(t)
    }

    /// Subjects among `ids`, from the rows kept under this snapshot's token where there are
    /// some (readers only), the rest from the database (and kept).
    fn subjects_kept(&mut self, ids: &[SubjectId]) -> Result<Vec<SubjectRow>> {
        let Some(cache) = self.kept.map(|k| &k.subjects) else {
            return self.query_subjects(ids);
        };
        // No token: the controller never had a subject (`insert_subject` writes one with the first).
        let Some(token) = self.subjects_token()? else {
            return self.query_subjects(ids);
        };
        let (mut found, missing) = cache.get(self.controller, token, ids);
        if !missing.is_empty() {
            let read = self.query_subjects(&missing)?;
            cache.put(self.controller, token, &read);
            found.extend(read);
        }
        Ok(found)
    }

    /// The token `record_generations` holds for `purpose` in this snapshot (migration 0013).
    fn record_generation(&self, purpose: &PurposeName) -> Result<Option<i64>> {
        self.tx
            .prepare_cached(
                "SELECT token FROM record_generations WHERE controller_id = ?1 AND purpose = ?2",
            )
            .map_err(map_err)?
            .query_row(params![self.c(), purpose.as_str()], |r| r.get(0))
            .optional()
            .map_err(map_err)
    }
}

impl DataTx for SqliteTx<'_> {
    fn now(&self) -> OffsetDateTime {
        self.now
    }

    fn controller(&mut self) -> Result<ControllerRow> {
        self.tx
            .prepare_cached(concat!(
                "SELECT ",
                controller_cols!(),
                " FROM controllers WHERE id = ?1"
            ))
            .map_err(map_err)?
            .query_row([self.c()], controller_row)
            .map_err(map_err)?
    }

    fn purpose(&mut self, name: &PurposeName) -> Result<Option<Purpose>> {
        self.tx
            .prepare_cached(concat!(
                "SELECT ",
                purpose_cols!(),
                " FROM purposes WHERE controller_id = ?1 AND name = ?2"
            ))
            .map_err(map_err)?
            .query_row(params![self.c(), name.as_str()], purpose_row)
            .optional()
            .map_err(map_err)?
            .transpose()
    }

    fn subject(&mut self, id: &SubjectId) -> Result<Option<SubjectRow>> {
        Ok(self.subjects_kept(std::slice::from_ref(id))?.pop())
    }

    fn was_erased(&mut self, id: &SubjectId) -> Result<bool> {
        let n: i64 = self
            .tx
            .prepare_cached(
                "SELECT COUNT(*) FROM erasures WHERE controller_id = ?1 AND subject_id = ?2",
            )
            .map_err(map_err)?
            .query_row(params![self.c(), id.as_str()], |r| r.get(0))
            .map_err(map_err)?;
        Ok(n > 0)
    }

    fn insert_subject(&mut self, row: &SubjectRow) -> Result<()> {
        // The controller's first subject gives it a token (see `subjects_changed` for why a
        // new subject does not change it).
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO subject_generations (controller_id, token) VALUES (?1, random())",
            )
            .map_err(map_err)?
            .execute(params![self.c()])
            .map_err(map_err)?;
        self.tx
            .prepare_cached(concat!(
                "INSERT INTO subjects (controller_id, ",
                subject_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .map_err(map_err)?
            .execute(params![
                self.c(),
                row.id.as_str(),
                row.category.as_str(),
                row.restricted,
                row.wrapped_key,
                nanos(row.created_at)
            ])
            .map_err(map_err)?;
        Ok(())
    }

    fn set_restricted(&mut self, id: &SubjectId, restricted: bool) -> Result<()> {
        self.subjects_changed()?;
        self.tx
            .prepare_cached(
                "UPDATE subjects SET restricted = ?3 WHERE controller_id = ?1 AND id = ?2",
            )
            .map_err(map_err)?
            .execute(params![self.c(), id.as_str(), restricted])
            .map_err(map_err)?;
        Ok(())
    }

    fn objections(&mut self, id: &SubjectId) -> Result<Vec<PurposeName>> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT purpose FROM objections WHERE controller_id = ?1 AND subject_id = ?2 ORDER BY purpose",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![self.c(), id.as_str()], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        rows.map(|r| {
            let s = r.map_err(map_err)?;
            PurposeName::parse(&s).map_err(|e| corrupt("objections", e))
        })
        .collect()
    }

    fn add_objection(
        &mut self,
        id: &SubjectId,
        purpose: &PurposeName,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO objections (controller_id, subject_id, purpose, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_err)?
            .execute(params![self.c(), id.as_str(), purpose.as_str(), nanos(at)])
            .map_err(map_err)?;
        Ok(())
    }

    fn remove_objection(&mut self, id: &SubjectId, purpose: &PurposeName) -> Result<bool> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM objections WHERE controller_id = ?1 AND subject_id = ?2 AND purpose = ?3")
            .map_err(map_err)?
            .execute(params![self.c(), id.as_str(), purpose.as_str()])
            .map_err(map_err)?;
        Ok(n > 0)
    }

    fn erase_subject(
        &mut self,
        id: &SubjectId,
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<ErasedCounts> {
        let purposes: Vec<String> = self
            .tx
            .prepare_cached(concat!(
                "SELECT DISTINCT purpose FROM ",
                by_subject!(),
                " WHERE controller_id = ?1 AND subject_id = ?2"
            ))
            .map_err(map_err)?
            .query_map(params![self.c(), id.as_str()], |r| r.get(0))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        for p in purposes {
            self.records_changed(&PurposeName::parse(&p).map_err(|e| corrupt("records", e))?)?;
        }
        self.subjects_changed()?;
        let c = self.c().to_owned();
        let s = id.as_str();
        let run = |sql: &str| -> Result<u64> {
            Ok(self
                .tx
                .prepare_cached(sql)
                .map_err(map_err)?
                .execute(params![c, s])
                .map_err(map_err)? as u64)
        };
        let lookups = run("DELETE FROM lookups WHERE controller_id = ?1 AND subject_id = ?2")?;
        let fields = self.count_fields(
            concat!(
                "FROM ",
                by_subject!(),
                " WHERE controller_id = ?1 AND subject_id = ?2"
            ),
            params![c, s],
        )?;
        let records = run("DELETE FROM records WHERE controller_id = ?1 AND subject_id = ?2")?;
        run("DELETE FROM objections WHERE controller_id = ?1 AND subject_id = ?2")?;
        run("DELETE FROM subjects WHERE controller_id = ?1 AND id = ?2")?;
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO erasures (controller_id, subject_id, erased_at, reason) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_err)?
            .execute(params![c, s, nanos(at), reason])
            .map_err(map_err)?;
        Ok(ErasedCounts {
            records,
            fields,
            lookups,
        })
    }

    fn records_of(&mut self, subject: &SubjectId) -> Result<Vec<RecordRow>> {
        let mut st = self
            .tx
            .prepare_cached(concat!(
                "SELECT ",
                record_cols!(),
                " FROM ",
                by_subject!(),
                " WHERE controller_id = ?1 AND subject_id = ?2 ORDER BY created_at, id"
            ))
            .map_err(map_err)?;
        record_rows(&mut st, params![self.c(), subject.as_str()])
    }

    fn record(&mut self, id: &RecordId) -> Result<Option<RecordRow>> {
        let row = self
            .tx
            .prepare_cached(concat!(
                "SELECT ",
                record_cols!(),
                " FROM records WHERE controller_id = ?1 AND id = ?2"
            ))
            .map_err(map_err)?
            .query_row(params![self.c(), id.as_str()], record_row)
            .optional()
            .map_err(map_err)?
            .transpose()?;
        Ok(row)
    }

    fn insert_record(&mut self, row: &RecordRow) -> Result<()> {
        let h = &row.header;
        self.records_changed(&h.purpose)?;
        self.tx
            .prepare_cached(concat!(
                "INSERT INTO records (controller_id, ",
                record_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))
            .map_err(map_err)?
            .execute(params![
                self.c(),
                row.id.as_str(),
                row.subject.as_str(),
                h.purpose.as_str(),
                h.meta.source,
                json(&h.meta.recipients),
                h.meta.automated_decision,
                nanos(h.created_at),
                nanos(h.updated_at),
                nanos(h.expires_at),
                crate::fieldset::encode(&row.fields),
            ])
            .map_err(map_err)?;
        Ok(())
    }

    fn delete_record(&mut self, id: &RecordId) -> Result<()> {
        let purpose: Option<String> = self
            .tx
            .prepare_cached("SELECT purpose FROM records WHERE controller_id = ?1 AND id = ?2")
            .map_err(map_err)?
            .query_row(params![self.c(), id.as_str()], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        if let Some(purpose) = purpose {
            let purpose = PurposeName::parse(&purpose).map_err(|e| corrupt("records", e))?;
            self.records_changed(&purpose)?;
        }
        for sql in [
            "DELETE FROM lookups WHERE controller_id = ?1 AND record_id = ?2",
            "DELETE FROM records WHERE controller_id = ?1 AND id = ?2",
        ] {
            self.tx
                .prepare_cached(sql)
                .map_err(map_err)?
                .execute(params![self.c(), id.as_str()])
                .map_err(map_err)?;
        }
        Ok(())
    }

    fn records_of_purpose(&mut self, purpose: &PurposeName) -> Result<Arc<[RecordRow]>> {
        let Some(cache) = self.kept.map(|k| &k.records) else {
            return self.query_records_of_purpose(purpose).map(Into::into);
        };
        // No token: the purpose never held a record (`records_changed` writes one with the first).
        let Some(token) = self.record_generation(purpose)? else {
            return self.query_records_of_purpose(purpose).map(Into::into);
        };
        if let Some(rows) = cache.get(self.controller, purpose, token) {
            return Ok(rows);
        }
        let rows: Arc<[RecordRow]> = self.query_records_of_purpose(purpose)?.into();
        cache.put(self.controller, purpose, token, rows.clone());
        Ok(rows)
    }

    fn record_counts_of_purpose(&mut self, purpose: &PurposeName) -> Result<Vec<RecordCount>> {
        // In the table's order, as `records_of_purpose` reads, and counted here: with
        // `GROUP BY subject_id` the planner (no statistics) walks every record of the
        // controller by `records_by_subject` instead of the purpose's range.
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT subject_id, id FROM records
                 WHERE controller_id = ?1 AND purpose = ?2 AND expires_at > ?3 ORDER BY created_at, id",
            )
            .map_err(map_err)?;
        let mut rows = st
            .query(params![self.c(), purpose.as_str(), nanos(self.now)])
            .map_err(map_err)?;
        let mut counts = RecordCounts::default();
        while let Some(r) = rows.next().map_err(map_err)? {
            let text =
                |i| -> Result<&str> { r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(map_err) };
            counts.add(text(0)?, text(1)?)?;
        }
        Ok(counts.into_vec())
    }

    fn subjects_by_id(&mut self, ids: &[SubjectId]) -> Result<Vec<SubjectRow>> {
        // Each subject once, however often it is named (callers name each once, in order).
        if ids.windows(2).all(|w| w[0] < w[1]) {
            return self.subjects_kept(ids);
        }
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.subjects_kept(&unique)
    }

    fn objectors(&mut self, purpose: &PurposeName) -> Result<Vec<SubjectId>> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT subject_id FROM objections WHERE controller_id = ?1 AND purpose = ?2",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![self.c(), purpose.as_str()], |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let s = r.map_err(map_err)?;
            SubjectId::parse(&s).map_err(|e| corrupt("objections", e))
        })
        .collect()
    }

    fn rewrite_record(&mut self, old: &RecordRow, new: &RecordRow) -> Result<bool> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        // The statement matches on the stored purpose: it is the one whose records change.
        self.records_changed(&old.header.purpose)?;
        let changes = crate::rewrite::changed_columns(old, new);
        let created = nanos(old.header.created_at);
        // The table's whole primary key: one descent, where the id alone would go through
        // `records_by_id` first.
        let mut values: Vec<ToSqlOutput<'_>> = vec![
            ToSqlOutput::Borrowed(ValueRef::Text(self.c().as_bytes())),
            ToSqlOutput::Borrowed(ValueRef::Text(old.header.purpose.as_str().as_bytes())),
            ToSqlOutput::Owned(created.into()),
            ToSqlOutput::Borrowed(ValueRef::Text(old.id.as_str().as_bytes())),
        ];
        let mut sets = Vec::with_capacity(changes.len());
        for (column, value) in &changes {
            values.push(bound(value)?);
            sets.push(format!("{column} = ?{}", values.len()));
        }
        let n = self
            .tx
            .prepare_cached(&format!(
                "UPDATE records SET {} WHERE controller_id = ?1 AND purpose = ?2 AND created_at = ?3 AND id = ?4",
                sets.join(", ")
            ))
            .map_err(map_err)?
            .execute(rusqlite::params_from_iter(values))
            .map_err(map_err)?;
        if n > 0 && old.subject != new.subject {
            self.move_lookups(old, new)?;
        }
        Ok(n > 0)
    }

    fn rewrite_records(
        &mut self,
        purpose: &PurposeName,
        pairs: &[(&RecordRow, RecordRow)],
    ) -> Result<u64> {
        let at_once = pairs.len() >= super::rewrites::AT_ONCE_FROM
            && pairs.iter().all(|(old, _)| &old.header.purpose == purpose);
        let Some(rewrites) = self.rewrites.filter(|_| at_once) else {
            return crate::rewrite_each(self, pairs);
        };
        self.records_changed(purpose)?;
        let found =
            super::rewrites::rewrite_at_once(self.tx, rewrites, self.controller, purpose, pairs)?;
        // Their lookup entries follow records moved to another subject, as one at a time.
        for (old, new) in pairs.iter().filter(|(old, new)| old.subject != new.subject) {
            self.move_lookups(old, new)?;
        }
        Ok(found)
    }

    fn alter_purpose_meta(
        &mut self,
        purpose: &PurposeName,
        change: &crate::MetaChange<'_>,
        except: &[SubjectId],
        at: OffsetDateTime,
    ) -> Result<u64> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        self.records_changed(purpose)?;
        let sql = crate::rewrite::alter_purpose_sql(
            change,
            !except.is_empty(),
            |n| format!("?{n}"),
            |list| format!("subject_id NOT IN (SELECT value FROM json_each({list}))"),
        );
        let value = change.value();
        let except = (!except.is_empty())
            .then(|| json(&except.iter().map(SubjectId::as_str).collect::<Vec<_>>()));
        let mut values: Vec<ToSqlOutput<'_>> = vec![
            ToSqlOutput::Borrowed(ValueRef::Text(self.c().as_bytes())),
            ToSqlOutput::Borrowed(ValueRef::Text(purpose.as_str().as_bytes())),
            ToSqlOutput::Owned(nanos(at).into()),
            bound(&value)?,
        ];
        if let Some(r) = change.retention_nanos() {
            values.push(ToSqlOutput::Owned(r.into()));
        }
        if let Some(list) = &except {
            values.push(ToSqlOutput::Borrowed(ValueRef::Text(list.as_bytes())));
        }
        let n = self
            .tx
            .prepare_cached(&sql)
            .map_err(map_err)?
            .execute(rusqlite::params_from_iter(values))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn insert_lookup(&mut self, row: &LookupRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO lookups (controller_id, kind, digest, subject_id, record_id, field)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(map_err)?
            .execute(params![
                self.c(),
                row.kind.as_str(),
                &row.digest[..],
                row.subject.as_str(),
                row.record.as_str(),
                row.field.as_str()
            ])
            .map_err(map_err)?;
        Ok(())
    }

    fn delete_lookups(&mut self, record: &RecordId, field: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM lookups WHERE controller_id = ?1 AND record_id = ?2 AND field = ?3",
            )
            .map_err(map_err)?
            .execute(params![self.c(), record.as_str(), field])
            .map_err(map_err)?;
        Ok(())
    }

    fn find_subjects(&mut self, kind: LookupKind, digest: &[u8; 32]) -> Result<Vec<SubjectId>> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT DISTINCT l.subject_id FROM lookups l
                 JOIN records r ON r.controller_id = l.controller_id AND r.id = l.record_id
                 WHERE l.controller_id = ?1 AND l.kind = ?2 AND l.digest = ?3 AND r.expires_at > ?4
                 ORDER BY l.subject_id",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(
                params![self.c(), kind.as_str(), &digest[..], nanos(self.now)],
                |r| r.get::<_, String>(0),
            )
            .map_err(map_err)?;
        rows.map(|r| {
            let s = r.map_err(map_err)?;
            SubjectId::parse(&s).map_err(|e| corrupt("lookups", e))
        })
        .collect()
    }

    fn insert_request(&mut self, row: &DsrRequestRow) -> Result<()> {
        self.tx
            .prepare_cached(concat!(
                "INSERT INTO dsr_requests (controller_id, ",
                dsr_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))
            .map_err(map_err)?
            .execute(params![
                self.c(),
                row.id.as_str(),
                row.right.as_str(),
                row.state.as_str(),
                row.sealed_details,
                nanos(row.received_at),
                nanos(row.due_at),
                row.extended_months,
                row.extension_reason,
                row.subject.as_ref().map(|s| s.as_str()),
                row.identity_confirmed_at.map(nanos),
                row.closed_at.map(nanos),
                row.note,
            ])
            .map_err(map_err)?;
        Ok(())
    }

    fn request(&mut self, id: &custodian_core::ids::DsrId) -> Result<Option<DsrRequestRow>> {
        self.tx
            .prepare_cached(concat!(
                "SELECT ",
                dsr_cols!(),
                " FROM dsr_requests WHERE controller_id = ?1 AND id = ?2"
            ))
            .map_err(map_err)?
            .query_row(params![self.c(), id.as_str()], dsr_row)
            .optional()
            .map_err(map_err)?
            .transpose()
    }

    fn update_request(&mut self, row: &DsrRequestRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE dsr_requests SET state = ?3, due_at = ?4, extended_months = ?5, extension_reason = ?6,
                 subject_id = ?7, identity_confirmed_at = ?8, closed_at = ?9, note = ?10
                 WHERE controller_id = ?1 AND id = ?2",
            )
            .map_err(map_err)?
            .execute(params![
                self.c(),
                row.id.as_str(),
                row.state.as_str(),
                nanos(row.due_at),
                row.extended_months,
                row.extension_reason,
                row.subject.as_ref().map(|s| s.as_str()),
                row.identity_confirmed_at.map(nanos),
                row.closed_at.map(nanos),
                row.note,
            ])
            .map_err(map_err)?;
        Ok(())
    }

    fn requests(&mut self, open_only: bool) -> Result<Vec<DsrRequestRow>> {
        let sql = if open_only {
            format!(
                "SELECT {DSR_COLS} FROM dsr_requests WHERE controller_id = ?1 AND state NOT IN ('fulfilled', 'rejected') ORDER BY due_at, id"
            )
        } else {
            format!(
                "SELECT {DSR_COLS} FROM dsr_requests WHERE controller_id = ?1 ORDER BY due_at, id"
            )
        };
        let mut st = self.tx.prepare_cached(&sql).map_err(map_err)?;
        let rows = st.query_map([self.c()], dsr_row).map_err(map_err)?;
        rows.map(|r| r.map_err(map_err)?).collect()
    }

    fn enqueue(&mut self, topic: &str, payload: &str, at: OffsetDateTime) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO outbox (controller_id, topic, payload, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .map_err(map_err)?
            .execute(params![self.c(), topic, payload, nanos(at)])
            .map_err(map_err)?;
        Ok(())
    }

    fn subject_ids(&mut self) -> Result<Vec<SubjectId>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT id FROM subjects WHERE controller_id = ?1 ORDER BY id")
            .map_err(map_err)?;
        let rows = st
            .query_map([self.c()], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        rows.map(|r| {
            let s = r.map_err(map_err)?;
            SubjectId::parse(&s).map_err(|e| corrupt("subjects", e))
        })
        .collect()
    }

    fn set_status(&mut self, status: custodian_core::controller::ControllerStatus) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE controllers SET status = ?2 WHERE id = ?1")
            .map_err(map_err)?
            .execute(params![self.c(), status.as_str()])
            .map_err(map_err)?;
        Ok(())
    }

    fn insert_hold(&mut self, hold: &LegalHoldRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO legal_holds (controller_id, placed_at, basis, previous_status, lifted_at) VALUES (?1, ?2, ?3, ?4, NULL)",
            )
            .map_err(map_err)?
            .execute(params![self.c(), nanos(hold.placed_at), hold.basis, hold.previous_status.as_str()])
            .map_err(map_err)?;
        Ok(())
    }

    fn active_hold(&mut self) -> Result<Option<LegalHoldRow>> {
        let row: Option<(i64, String, String)> = self
            .tx
            .prepare_cached(
                "SELECT placed_at, basis, previous_status FROM legal_holds WHERE controller_id = ?1 AND lifted_at IS NULL
                 ORDER BY placed_at DESC LIMIT 1",
            )
            .map_err(map_err)?
            .query_row([self.c()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(map_err)?;
        row.map(|(placed, basis, prev)| {
            Ok(LegalHoldRow {
                controller: self.controller.clone(),
                placed_at: from_nanos(placed)?,
                basis,
                previous_status: custodian_core::controller::ControllerStatus::parse(&prev)
                    .ok_or_else(|| corrupt("legal_holds", "unknown status"))?,
                lifted_at: None,
            })
        })
        .transpose()
    }

    fn lift_hold(&mut self, placed_at: OffsetDateTime, at: OffsetDateTime) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE legal_holds SET lifted_at = ?3 WHERE controller_id = ?1 AND placed_at = ?2",
            )
            .map_err(map_err)?
            .execute(params![self.c(), nanos(placed_at), nanos(at)])
            .map_err(map_err)?;
        Ok(())
    }

    fn destroy_all(&mut self, certificate: &str, at: OffsetDateTime) -> Result<DestroyedCounts> {
        self.all_records_changed()?;
        self.subjects_changed()?;
        let c = self.c().to_owned();
        let run = |sql: &str| -> Result<u64> {
            Ok(self
                .tx
                .prepare_cached(sql)
                .map_err(map_err)?
                .execute([&c])
                .map_err(map_err)? as u64)
        };
        run("DELETE FROM lookups WHERE controller_id = ?1")?;
        let fields = self.count_fields("FROM records WHERE controller_id = ?1", params![c])?;
        let records = run("DELETE FROM records WHERE controller_id = ?1")?;
        run("DELETE FROM objections WHERE controller_id = ?1")?;
        let subjects = run("DELETE FROM subjects WHERE controller_id = ?1")?;
        let requests = run("DELETE FROM dsr_requests WHERE controller_id = ?1")?;
        run("DELETE FROM outbox WHERE controller_id = ?1")?;
        run("DELETE FROM erasures WHERE controller_id = ?1")?;
        run("UPDATE tokens SET revoked_at = COALESCE(revoked_at, 0) WHERE controller_id = ?1")?;
        // Login accounts: their login names (sealed under a root-derived key, not this
        // controller's) are its staff's personal data.
        run("DELETE FROM accounts WHERE controller_id = ?1")?;
        // The controller key goes last: every subject key, and so every ciphertext that
        // might survive anywhere, was wrapped by it.
        self.tx
            .prepare_cached(
                "UPDATE controllers SET wrapped_key = X'', status = 'destroyed' WHERE id = ?1",
            )
            .map_err(map_err)?
            .execute([&c])
            .map_err(map_err)?;
        self.tx
            .prepare_cached("INSERT INTO destruction_certificates (controller_id, issued_at, certificate) VALUES (?1, ?2, ?3)")
            .map_err(map_err)?
            .execute(params![c, nanos(at), certificate])
            .map_err(map_err)?;
        Ok(DestroyedCounts {
            subjects,
            records,
            fields,
            requests,
        })
    }

    fn append_audit(
        &mut self,
        draft: custodian_core::audit::AuditDraft,
    ) -> Result<custodian_core::audit::AuditEntry> {
        super::append_linked(self.tx, draft, self.now, &mut self.head, false)
    }
}

/// A rewritten column's value bound as SQLite stores it.
fn bound<'a>(value: &'a crate::rewrite::Value<'a>) -> Result<rusqlite::types::ToSqlOutput<'a>> {
    use crate::rewrite::Value;
    use rusqlite::ToSql;
    use rusqlite::types::{ToSqlOutput, ValueRef};
    Ok(match value {
        Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        Value::MaybeText(t) => t.to_sql().map_err(map_err)?,
        Value::OwnedText(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        Value::Int(n) => ToSqlOutput::Owned((*n).into()),
        Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
    })
}
