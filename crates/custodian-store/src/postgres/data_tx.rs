//! One controller's data inside one PostgreSQL transaction: the same statements as
//! `sqlite/data_tx.rs`. Every statement binds `controller_id = $1`; the controller comes
//! from the constructor, never from a caller.

use super::Q;
use super::codec::*;
use crate::rows::*;
use crate::sqlite::codec::{
    CONTROLLER_COLS, DSR_COLS, PURPOSE_COLS, RECORD_COLS, SUBJECT_COLS, corrupt, from_nanos, json,
    nanos,
};
use crate::{DataTx, Result};
use custodian_core::audit::{AuditDraft, AuditEntry};
use custodian_core::controller::ControllerStatus;
use custodian_core::ids::{ControllerId, DsrId, RecordId, SubjectId};
use custodian_core::lookup::LookupKind;
use custodian_core::purpose::{Purpose, PurposeName};
use postgres::Transaction;
use std::sync::Arc;
use time::OffsetDateTime;

pub(crate) struct PgTx<'q, 'a, 't> {
    q: &'q mut Q<'a, Transaction<'t>>,
    controller: &'q ControllerId,
    now: OffsetDateTime,
    appended: bool,
}

impl<'q, 'a, 't> PgTx<'q, 'a, 't> {
    pub(crate) fn new(
        q: &'q mut Q<'a, Transaction<'t>>,
        controller: &'q ControllerId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            q,
            controller,
            now,
            appended: false,
        }
    }

    /// Whether the work appended audit entries of its own (so the chain head moved).
    pub(crate) fn appended(&self) -> bool {
        self.appended
    }

    /// How many fields the controller's records matching `filter` (an SQL condition on
    /// `records`, its parameters after `controller_id = $1`) hold, for the counts an erasure
    /// reports. Only each field set's header is read (`fieldset::count` reads no further),
    /// so no ciphertext crosses the connection for it.
    fn count_fields(&mut self, filter: &str, params: super::Params<'_>) -> Result<u64> {
        let rows = self.q.rows(
            &format!(
                "SELECT substring(fields FROM 1 FOR 3) FROM records WHERE controller_id = $1 AND {filter}"
            ),
            params,
        )?;
        let mut n = 0;
        for r in &rows {
            let header: &[u8] = get(r, 0)?;
            n += crate::fieldset::count(header).map_err(|e| corrupt("records", e))?;
        }
        Ok(n)
    }
}

impl DataTx for PgTx<'_, '_, '_> {
    fn now(&self) -> OffsetDateTime {
        self.now
    }

    fn controller(&mut self) -> Result<ControllerRow> {
        let row = self.q.one(
            &format!("SELECT {CONTROLLER_COLS} FROM controllers WHERE id = $1"),
            &[&self.controller.as_str()],
        )?;
        controller_row(&row)
    }

    fn purpose(&mut self, name: &PurposeName) -> Result<Option<Purpose>> {
        self.q.maybe(
            &format!("SELECT {PURPOSE_COLS} FROM purposes WHERE controller_id = $1 AND name = $2"),
            &[&self.controller.as_str(), &name.as_str()],
            purpose_row,
        )
    }

    fn subject(&mut self, id: &SubjectId) -> Result<Option<SubjectRow>> {
        self.q.maybe(
            &format!("SELECT {SUBJECT_COLS} FROM subjects WHERE controller_id = $1 AND id = $2"),
            &[&self.controller.as_str(), &id.as_str()],
            subject_row,
        )
    }

    fn was_erased(&mut self, id: &SubjectId) -> Result<bool> {
        let row = self.q.one(
            "SELECT COUNT(*) FROM erasures WHERE controller_id = $1 AND subject_id = $2",
            &[&self.controller.as_str(), &id.as_str()],
        )?;
        let n: i64 = get(&row, 0)?;
        Ok(n > 0)
    }

    fn insert_subject(&mut self, row: &SubjectRow) -> Result<()> {
        self.q.exec(
            &format!(
                "INSERT INTO subjects (controller_id, {SUBJECT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[
                &self.controller.as_str(),
                &row.id.as_str(),
                &row.category.as_str(),
                &row.restricted,
                &row.wrapped_key,
                &nanos(row.created_at),
            ],
        )?;
        Ok(())
    }

    fn set_restricted(&mut self, id: &SubjectId, restricted: bool) -> Result<()> {
        self.q.exec(
            "UPDATE subjects SET restricted = $3 WHERE controller_id = $1 AND id = $2",
            &[&self.controller.as_str(), &id.as_str(), &restricted],
        )?;
        Ok(())
    }

    fn objections(&mut self, id: &SubjectId) -> Result<Vec<PurposeName>> {
        self.q.all(
            "SELECT purpose FROM objections WHERE controller_id = $1 AND subject_id = $2 ORDER BY purpose",
            &[&self.controller.as_str(), &id.as_str()],
            |r| {
                let s: String = get(r, 0)?;
                PurposeName::parse(&s).map_err(|e| corrupt("objections", e))
            },
        )
    }

    fn add_objection(
        &mut self,
        id: &SubjectId,
        purpose: &PurposeName,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.q.exec(
            "INSERT INTO objections (controller_id, subject_id, purpose, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[
                &self.controller.as_str(),
                &id.as_str(),
                &purpose.as_str(),
                &nanos(at),
            ],
        )?;
        Ok(())
    }

    fn remove_objection(&mut self, id: &SubjectId, purpose: &PurposeName) -> Result<bool> {
        let n = self.q.exec(
            "DELETE FROM objections WHERE controller_id = $1 AND subject_id = $2 AND purpose = $3",
            &[&self.controller.as_str(), &id.as_str(), &purpose.as_str()],
        )?;
        Ok(n > 0)
    }

    fn erase_subject(
        &mut self,
        id: &SubjectId,
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<ErasedCounts> {
        let c = self.controller.as_str();
        let s = id.as_str();
        let lookups = self.q.exec(
            "DELETE FROM lookups WHERE controller_id = $1 AND subject_id = $2",
            &[&c, &s],
        )?;
        let fields = self.count_fields("subject_id = $2", &[&c, &s])?;
        let records = self.q.exec(
            "DELETE FROM records WHERE controller_id = $1 AND subject_id = $2",
            &[&c, &s],
        )?;
        self.q.exec(
            "DELETE FROM objections WHERE controller_id = $1 AND subject_id = $2",
            &[&c, &s],
        )?;
        self.q.exec(
            "DELETE FROM subjects WHERE controller_id = $1 AND id = $2",
            &[&c, &s],
        )?;
        self.q.exec(
            "INSERT INTO erasures (controller_id, subject_id, erased_at, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&c, &s, &nanos(at), &reason],
        )?;
        Ok(ErasedCounts {
            records,
            fields,
            lookups,
        })
    }

    fn records_of(&mut self, subject: &SubjectId) -> Result<Vec<RecordRow>> {
        self.q.all(
            &format!(
                "SELECT {RECORD_COLS} FROM records WHERE controller_id = $1 AND subject_id = $2 ORDER BY created_at, id"
            ),
            &[&self.controller.as_str(), &subject.as_str()],
            record_row,
        )
    }

    fn record(&mut self, id: &RecordId) -> Result<Option<RecordRow>> {
        self.q.maybe(
            &format!("SELECT {RECORD_COLS} FROM records WHERE controller_id = $1 AND id = $2"),
            &[&self.controller.as_str(), &id.as_str()],
            record_row,
        )
    }

    fn insert_record(&mut self, row: &RecordRow) -> Result<()> {
        let h = &row.header;
        self.q.exec(
            &format!(
                "INSERT INTO records (controller_id, {RECORD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &self.controller.as_str(),
                &row.id.as_str(),
                &row.subject.as_str(),
                &h.purpose.as_str(),
                &h.meta.source,
                &json(&h.meta.recipients),
                &h.meta.automated_decision,
                &nanos(h.created_at),
                &nanos(h.updated_at),
                &nanos(h.expires_at),
                &crate::fieldset::encode(&row.fields),
            ],
        )?;
        Ok(())
    }

    fn delete_record(&mut self, id: &RecordId) -> Result<()> {
        for sql in [
            "DELETE FROM lookups WHERE controller_id = $1 AND record_id = $2",
            "DELETE FROM records WHERE controller_id = $1 AND id = $2",
        ] {
            self.q
                .exec(sql, &[&self.controller.as_str(), &id.as_str()])?;
        }
        Ok(())
    }

    fn records_of_purpose(&mut self, purpose: &PurposeName) -> Result<Arc<[RecordRow]>> {
        self.q
            .all(
            &format!(
                "SELECT {RECORD_COLS} FROM records WHERE controller_id = $1 AND purpose = $2 ORDER BY subject_id COLLATE \"C\", created_at, id"
            ),
            &[&self.controller.as_str(), &purpose.as_str()],
            record_row,
        )
            .map(Into::into)
    }

    fn record_counts_of_purpose(&mut self, purpose: &PurposeName) -> Result<Vec<RecordCount>> {
        let rows = self.q.rows(
            "SELECT subject_id, id FROM records WHERE controller_id = $1 AND purpose = $2 AND expires_at > $3",
            &[&self.controller.as_str(), &purpose.as_str(), &nanos(self.now)],
        )?;
        let mut counts = crate::sqlite::codec::RecordCounts::default();
        for r in &rows {
            counts.add(get::<&str>(r, 0)?, get::<&str>(r, 1)?)?;
        }
        Ok(counts.into_vec())
    }

    fn subjects_by_id(&mut self, ids: &[SubjectId]) -> Result<Vec<SubjectRow>> {
        let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        self.q.all(
            &format!(
                "SELECT {SUBJECT_COLS} FROM subjects WHERE controller_id = $1 AND id = ANY($2)"
            ),
            &[&self.controller.as_str(), &ids],
            subject_row,
        )
    }

    fn objectors(&mut self, purpose: &PurposeName) -> Result<Vec<SubjectId>> {
        self.q.all(
            "SELECT subject_id FROM objections WHERE controller_id = $1 AND purpose = $2",
            &[&self.controller.as_str(), &purpose.as_str()],
            |r| {
                let s: String = get(r, 0)?;
                SubjectId::parse(&s).map_err(|e| corrupt("objections", e))
            },
        )
    }

    fn rewrite_record(&mut self, old: &RecordRow, new: &RecordRow) -> Result<bool> {
        use postgres::types::ToSql;
        let changes = crate::rewrite::changed_columns(old, new);
        let (c, id) = (self.controller.as_str(), old.id.as_str());
        // A controller's units of work hold its chain's lock from their start (`transact`),
        // so the row this transaction read is still the row in the table.
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&c, &id];
        let mut sets = Vec::with_capacity(changes.len());
        for (column, value) in &changes {
            values.push(bound(value));
            sets.push(format!("{column} = ${}", values.len()));
        }
        let n = self.q.exec(
            &format!(
                "UPDATE records SET {} WHERE controller_id = $1 AND id = $2",
                sets.join(", ")
            ),
            &values,
        )?;
        if n > 0 && old.subject != new.subject {
            self.q.exec(
                "UPDATE lookups SET subject_id = $3 WHERE controller_id = $1 AND record_id = $2 AND subject_id <> $3",
                &[&c, &id, &new.subject.as_str()],
            )?;
        }
        Ok(n > 0)
    }

    fn alter_purpose_meta(
        &mut self,
        purpose: &PurposeName,
        change: &crate::MetaChange<'_>,
        except: &[SubjectId],
        at: OffsetDateTime,
    ) -> Result<u64> {
        use postgres::types::ToSql;
        let sql = crate::rewrite::alter_purpose_sql(
            change,
            !except.is_empty(),
            |n| format!("${n}"),
            |list| format!("NOT (subject_id = ANY({list}))"),
        );
        let (c, p, at) = (self.controller.as_str(), purpose.as_str(), nanos(at));
        let value = change.value();
        let retention = change.retention_nanos();
        let except: Vec<&str> = except.iter().map(SubjectId::as_str).collect();
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&c, &p, &at];
        values.push(bound(&value));
        if let Some(r) = &retention {
            values.push(r);
        }
        if !except.is_empty() {
            values.push(&except);
        }
        self.q.exec(&sql, &values)
    }

    fn insert_lookup(&mut self, row: &LookupRow) -> Result<()> {
        // SQLite's INSERT OR REPLACE: the key is every column but subject_id.
        self.q.exec(
            "INSERT INTO lookups (controller_id, kind, digest, subject_id, record_id, field)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (controller_id, kind, digest, record_id, field) DO UPDATE SET subject_id = excluded.subject_id",
            &[
                &self.controller.as_str(),
                &row.kind.as_str(),
                &&row.digest[..],
                &row.subject.as_str(),
                &row.record.as_str(),
                &row.field.as_str(),
            ],
        )?;
        Ok(())
    }

    fn delete_lookups(&mut self, record: &RecordId, field: &str) -> Result<()> {
        self.q.exec(
            "DELETE FROM lookups WHERE controller_id = $1 AND record_id = $2 AND field = $3",
            &[&self.controller.as_str(), &record.as_str(), &field],
        )?;
        Ok(())
    }

    fn find_subjects(&mut self, kind: LookupKind, digest: &[u8; 32]) -> Result<Vec<SubjectId>> {
        self.q.all(
            "SELECT DISTINCT l.subject_id FROM lookups l
             JOIN records r ON r.controller_id = l.controller_id AND r.id = l.record_id
             WHERE l.controller_id = $1 AND l.kind = $2 AND l.digest = $3 AND r.expires_at > $4
             ORDER BY l.subject_id",
            &[
                &self.controller.as_str(),
                &kind.as_str(),
                &&digest[..],
                &nanos(self.now),
            ],
            |r| {
                let s: String = get(r, 0)?;
                SubjectId::parse(&s).map_err(|e| corrupt("lookups", e))
            },
        )
    }

    fn insert_request(&mut self, row: &DsrRequestRow) -> Result<()> {
        self.q.exec(
            &format!(
                "INSERT INTO dsr_requests (controller_id, {DSR_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            &[
                &self.controller.as_str(),
                &row.id.as_str(),
                &row.right.as_str(),
                &row.state.as_str(),
                &row.sealed_details,
                &nanos(row.received_at),
                &nanos(row.due_at),
                &i64::from(row.extended_months),
                &row.extension_reason,
                &row.subject.as_ref().map(|s| s.as_str()),
                &row.identity_confirmed_at.map(nanos),
                &row.closed_at.map(nanos),
                &row.note,
            ],
        )?;
        Ok(())
    }

    fn request(&mut self, id: &DsrId) -> Result<Option<DsrRequestRow>> {
        self.q.maybe(
            &format!("SELECT {DSR_COLS} FROM dsr_requests WHERE controller_id = $1 AND id = $2"),
            &[&self.controller.as_str(), &id.as_str()],
            dsr_row,
        )
    }

    fn update_request(&mut self, row: &DsrRequestRow) -> Result<()> {
        self.q.exec(
            "UPDATE dsr_requests SET state = $3, due_at = $4, extended_months = $5, extension_reason = $6,
             subject_id = $7, identity_confirmed_at = $8, closed_at = $9, note = $10
             WHERE controller_id = $1 AND id = $2",
            &[
                &self.controller.as_str(),
                &row.id.as_str(),
                &row.state.as_str(),
                &nanos(row.due_at),
                &i64::from(row.extended_months),
                &row.extension_reason,
                &row.subject.as_ref().map(|s| s.as_str()),
                &row.identity_confirmed_at.map(nanos),
                &row.closed_at.map(nanos),
                &row.note,
            ],
        )?;
        Ok(())
    }

    fn requests(&mut self, open_only: bool) -> Result<Vec<DsrRequestRow>> {
        let sql = if open_only {
            format!(
                "SELECT {DSR_COLS} FROM dsr_requests WHERE controller_id = $1 AND state NOT IN ('fulfilled', 'rejected') ORDER BY due_at, id"
            )
        } else {
            format!(
                "SELECT {DSR_COLS} FROM dsr_requests WHERE controller_id = $1 ORDER BY due_at, id"
            )
        };
        self.q.all(&sql, &[&self.controller.as_str()], dsr_row)
    }

    fn enqueue(&mut self, topic: &str, payload: &str, at: OffsetDateTime) -> Result<()> {
        self.q.exec(
            "INSERT INTO outbox (controller_id, topic, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)",
            &[&self.controller.as_str(), &topic, &payload, &nanos(at)],
        )?;
        Ok(())
    }

    fn append_audit(&mut self, draft: AuditDraft) -> Result<AuditEntry> {
        // The controller's chain is already locked by `transact`; this re-reads its head.
        self.appended = true;
        super::append_in_tx(self.q, draft, self.now, None)
    }

    fn subject_ids(&mut self) -> Result<Vec<SubjectId>> {
        self.q.all(
            "SELECT id FROM subjects WHERE controller_id = $1 ORDER BY id",
            &[&self.controller.as_str()],
            |r| {
                let s: String = get(r, 0)?;
                SubjectId::parse(&s).map_err(|e| corrupt("subjects", e))
            },
        )
    }

    fn set_status(&mut self, status: ControllerStatus) -> Result<()> {
        self.q.exec(
            "UPDATE controllers SET status = $2 WHERE id = $1",
            &[&self.controller.as_str(), &status.as_str()],
        )?;
        Ok(())
    }

    fn insert_hold(&mut self, hold: &LegalHoldRow) -> Result<()> {
        self.q.exec(
            "INSERT INTO legal_holds (controller_id, placed_at, basis, previous_status, lifted_at) VALUES ($1, $2, $3, $4, NULL)",
            &[
                &self.controller.as_str(),
                &nanos(hold.placed_at),
                &hold.basis,
                &hold.previous_status.as_str(),
            ],
        )?;
        Ok(())
    }

    fn active_hold(&mut self) -> Result<Option<LegalHoldRow>> {
        let controller = self.controller.clone();
        self.q.maybe(
            "SELECT placed_at, basis, previous_status FROM legal_holds WHERE controller_id = $1 AND lifted_at IS NULL
             ORDER BY placed_at DESC LIMIT 1",
            &[&self.controller.as_str()],
            |r| {
                let prev: String = get(r, 2)?;
                Ok(LegalHoldRow {
                    controller: controller.clone(),
                    placed_at: from_nanos(get(r, 0)?)?,
                    basis: get(r, 1)?,
                    previous_status: ControllerStatus::parse(&prev)
                        .ok_or_else(|| corrupt("legal_holds", "unknown status"))?,
                    lifted_at: None,
                })
            },
        )
    }

    fn lift_hold(&mut self, placed_at: OffsetDateTime, at: OffsetDateTime) -> Result<()> {
        self.q.exec(
            "UPDATE legal_holds SET lifted_at = $3 WHERE controller_id = $1 AND placed_at = $2",
            &[&self.controller.as_str(), &nanos(placed_at), &nanos(at)],
        )?;
        Ok(())
    }

    fn destroy_all(&mut self, certificate: &str, at: OffsetDateTime) -> Result<DestroyedCounts> {
        let c = self.controller.as_str();
        let fields = self.count_fields("TRUE", &[&c])?;
        let mut run = |sql: &str| self.q.exec(sql, &[&c]);
        run("DELETE FROM lookups WHERE controller_id = $1")?;
        let records = run("DELETE FROM records WHERE controller_id = $1")?;
        run("DELETE FROM objections WHERE controller_id = $1")?;
        let subjects = run("DELETE FROM subjects WHERE controller_id = $1")?;
        let requests = run("DELETE FROM dsr_requests WHERE controller_id = $1")?;
        run("DELETE FROM outbox WHERE controller_id = $1")?;
        run("DELETE FROM erasures WHERE controller_id = $1")?;
        run("UPDATE tokens SET revoked_at = COALESCE(revoked_at, 0) WHERE controller_id = $1")?;
        // Login accounts: their login names (sealed under a root-derived key, not this
        // controller's) are its staff's personal data.
        run("DELETE FROM accounts WHERE controller_id = $1")?;
        // The controller key goes last: every subject key, and so every ciphertext that
        // might survive anywhere, was wrapped by it.
        run("UPDATE controllers SET wrapped_key = ''::bytea, status = 'destroyed' WHERE id = $1")?;
        self.q.exec(
            "INSERT INTO destruction_certificates (controller_id, issued_at, certificate) VALUES ($1, $2, $3)",
            &[&c, &nanos(at), &certificate],
        )?;
        Ok(DestroyedCounts {
            subjects,
            records,
            fields,
            requests,
        })
    }
}

/// A rewritten column's value bound as PostgreSQL stores it.
fn bound<'a>(value: &'a crate::rewrite::Value<'a>) -> &'a (dyn postgres::types::ToSql + Sync) {
    use crate::rewrite::Value;
    match value {
        Value::Text(t) => t,
        Value::MaybeText(t) => t,
        Value::OwnedText(t) => t,
        Value::Int(n) => n,
        Value::Bytes(b) => b,
    }
}
