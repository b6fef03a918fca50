//! Rewriting many records of one purpose in one statement.
//!
//! A bulk alteration that gives each record a value of its own (a field sealed anew under
//! its subject's key, say) used to rewrite them one `UPDATE` by key at a time: each one a
//! descent of the records' B-tree from its root, comparing the key's controller and purpose
//! prefix on every level (two fifths of the rewriting's samples were those descents, perf
//! of the controller workload). Here the new values wait in a map that the writer
//! connection's SQL function `custodian_rewritten(id, k)` answers from, and one `UPDATE`
//! walks the purpose's clustered range once (SQLite's one-pass update), setting the rows
//! the map names.
//!
//! The function is registered on the writer connection only, with `DIRECTONLY` (no trigger,
//! view or schema object can call it), and the map is filled for one statement and emptied
//! right after it, whatever its outcome, under the writer's exclusive use of the connection.

use super::codec::map_err;
use crate::Result;
use crate::rewrite::{Column, Value};
use crate::rows::RecordRow;
use custodian_core::ids::ControllerId;
use custodian_core::purpose::PurposeName;
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Fewer records than this are rewritten one statement each: filling the map and a
/// statement of its own cost more than the few descents they save.
pub(crate) const AT_ONCE_FROM: usize = 16;

/// The new column values of the records one statement rewrites, by record id.
#[derive(Default)]
pub(crate) struct Rewrites(Mutex<HashMap<Vec<u8>, Vec<SqlValue>>>);

impl Rewrites {
    fn map(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Vec<SqlValue>>> {
        // Emptied after every statement: a panic can leave nothing half-built that matters.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Registers `custodian_rewritten` on the writer connection: `(id, -1)` is 1 when the map
/// holds `id` (0 otherwise), `(id, k)` the k-th value set for it.
pub(crate) fn register(conn: &Connection, rewrites: Arc<Rewrites>) -> Result<()> {
    conn.create_scalar_function(
        "custodian_rewritten",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| {
            let id = ctx.get_raw(0).as_bytes()?;
            let k: i64 = ctx.get(1)?;
            let map = rewrites.map();
            let Some(values) = map.get(id) else {
                return Ok(SqlValue::Integer(0));
            };
            Ok(match usize::try_from(k) {
                Err(_) => SqlValue::Integer(1),
                Ok(k) => values.get(k).cloned().ok_or_else(|| {
                    rusqlite::Error::UserFunctionError("no such rewritten column".into())
                })?,
            })
        },
    )
    .map_err(map_err)
}

/// Writes each pair's new record over its old one (all of `purpose`, all read in this
/// transaction) in one statement; how many rows it changed. Sets the union of the columns
/// that differ in any pair, each row to its own new value (the same as its old one where
/// only another row's differs).
pub(crate) fn rewrite_at_once(
    conn: &Connection,
    rewrites: &Rewrites,
    controller: &ControllerId,
    purpose: &PurposeName,
    pairs: &[(&RecordRow, RecordRow)],
) -> Result<u64> {
    let mut columns: Vec<Column> = Vec::new();
    for (old, new) in pairs {
        for (column, _) in crate::rewrite::changed_columns(old, new) {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    {
        let mut map = rewrites.map();
        map.clear();
        for (_, new) in pairs {
            let values = columns.iter().map(|c| owned(c.value(new))).collect();
            map.insert(new.id.as_bytes().to_vec(), values);
        }
    }
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(k, c)| format!("{c} = custodian_rewritten(id, {k})"))
        .collect();
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE records SET {} WHERE controller_id = ?1 AND purpose = ?2 AND custodian_rewritten(id, -1)",
            sets.join(", ")
        ))
        .and_then(|mut st| st.execute(rusqlite::params![controller.as_str(), purpose.as_str()]))
        .map_err(map_err);
    rewrites.map().clear();
    Ok(changed? as u64)
}

fn owned(v: Value<'_>) -> SqlValue {
    match v {
        Value::Text(t) => SqlValue::Text(t.to_owned()),
        Value::MaybeText(t) => t.map_or(SqlValue::Null, |t| SqlValue::Text(t.to_owned())),
        Value::OwnedText(t) => SqlValue::Text(t),
        Value::Int(n) => SqlValue::Integer(n),
        Value::Bytes(b) => SqlValue::Blob(b),
    }
}
