//! What every system under test offers the GDPRbench driver: the operations of
//! GDPRBENCH.md, one call each, plus what the one-time operations and the TTL sweeper need.

use super::keys::{MetaField, Values};
use std::path::Path;
use std::time::Instant;

pub type Res<T> = Result<T, String>;

pub trait Target: Send + Sync {
    /// A short name for tables and JSON.
    fn name(&self) -> &'static str;
    /// Inserts key k with its ten fields; its TTL starts now.
    fn insert(&self, k: u64, v: &Values) -> Res<()>;
    /// Reads all fields of key k; how many fields came back (0: no such record).
    fn read(&self, k: u64) -> Res<usize>;
    /// Every record whose PUR (USR) equals `v`'s; how many records came back.
    fn read_meta_purpose(&self, v: &Values) -> Res<usize>;
    fn read_meta_user(&self, v: &Values) -> Res<usize>;
    /// Rewrites key k's content (DATA, OBJ, ACL, CAT) with `v`'s; false: no such record.
    fn update(&self, k: u64, v: &Values) -> Res<bool>;
    /// On every record whose PUR (USR) equals `v`'s, sets `field` to `v`'s value of it.
    fn update_meta_purpose(&self, v: &Values, field: MetaField) -> Res<usize>;
    fn update_meta_user(&self, v: &Values, field: MetaField) -> Res<usize>;
    fn delete(&self, k: u64) -> Res<bool>;
    fn delete_meta_purpose(&self, v: &Values) -> Res<usize>;
    fn delete_meta_user(&self, v: &Values) -> Res<usize>;
    /// Records stored right now (verify-ttl polls it).
    fn count(&self) -> Res<u64>;
    /// The last `l` audit-log entries; how many came back.
    fn read_log(&self, l: u32) -> Res<usize>;
    /// One pass of the TTL sweeper; records erased.
    fn sweep(&self) -> Res<u64>;
    /// A line about the target's settings, printed once.
    fn describe(&self) -> String;
    /// Whether the system under test does its work in this process, so that this process's
    /// CPU time over a run is its cost (a database server elsewhere: false).
    fn works_in_this_process(&self) -> bool {
        true
    }
    /// Does, before the run's clock stops, what the target put off after answering
    /// (Custodian: the purge of what its last erasures deleted, due within a second).
    fn finish(&self) -> Res<()> {
        Ok(())
    }
    /// Called once the load is done and nothing runs on the target any more: makes its state
    /// durable and self-contained (a WAL checkpoint, closed connections) and returns what
    /// gives each run a copy of it. The target is dropped right after.
    fn freeze(&self) -> Res<Box<dyn Loaded>>;
}

/// The state one load left, kept so that every run starts from a copy of it.
pub trait Loaded: Send + Sync {
    /// A fresh target over a copy of the loaded state (its files in `dir`, or a database
    /// named after `tag`), whose clock is set back by the time since `loaded_at` (the
    /// instant the load ended), taken once the copy is made: the run sees time go on from
    /// the end of the load, so TTLs run out as they would have had the run followed the
    /// load at once.
    fn copy(&self, dir: &Path, tag: &str, loaded_at: Instant) -> Res<Box<dyn Target>>;
}
