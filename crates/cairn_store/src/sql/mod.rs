//! The store over SQL, for every SQL backend: the rules of runs, history, series, forks and
//! queries are written here once, against [`Db`], and each backend ([`crate::sqlite`],
//! [`crate::postgres`]) only runs statements.
//!
//! Statements are written once, in the SQL that SQLite and PostgreSQL share, with `?N`
//! placeholders; the PostgreSQL backend numbers them `$N`. Where the two differ (JSON, regular
//! expressions, row locks) the rules ask [`Dialect`] for the fragment. Every change is row-level:
//! a run is loaded for update (`FOR UPDATE` on PostgreSQL, the single writer on SQLite) and only
//! the fields that changed are written back, so a heartbeat never writes stale offsets over an
//! ingest that raced it.

pub mod accounts;
mod artifacts;
mod branch;
pub(crate) mod chunks;
pub mod copy;
pub(crate) mod query;
mod runs;
mod series;
mod sweeps;

use std::sync::{Arc, Mutex};

use cairn_types::error::{CodedError, ErrorCode};

use crate::{BlobStore, Result, StoreConfig};

/// The SQL that a backend speaks, where SQLite and PostgreSQL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One statement parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be a statement parameter.
pub trait ToParam {
    fn param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn param(&self) -> Param<'_> {
                Param::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, u32);

impl ToParam for f64 {
    fn param(&self) -> Param<'_> {
        // NaN has no place in either database (SQLite makes it NULL): it is stored as NULL.
        if self.is_nan() { Param::Null } else { Param::Real(*self) }
    }
}

impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Bool(*self)
    }
}

impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for [u8] {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Vec<u8> {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        match self {
            Some(v) => v.param(),
            None => Param::Null,
        }
    }
}

impl ToParam for Cell {
    fn param(&self) -> Param<'_> {
        match self {
            Cell::Null => Param::Null,
            Cell::Int(i) => Param::Int(*i),
            Cell::Real(f) => Param::Real(*f),
            Cell::Text(t) | Cell::Json(t) => Param::Text(t),
            Cell::Blob(b) => Param::Blob(b),
        }
    }
}

/// Statement parameters: `args![a, b]` borrows each argument as a [`Param`].
#[macro_export]
#[doc(hidden)]
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$($crate::sql::ToParam::param(&$x)),*][..]
    };
}
pub(crate) use args;

/// One value of a result row, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// A JSON document that the database keeps as such (PostgreSQL's `jsonb`), as JSON text.
    Json(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// The value as cairn's [`cairn_types::value::Value`]: JSON documents parsed, blobs left out.
    pub fn to_value(&self) -> cairn_types::value::Value {
        use cairn_types::value::Value;
        match self {
            Cell::Null | Cell::Blob(_) => Value::Null,
            Cell::Int(i) => Value::Int(*i),
            Cell::Real(f) => Value::Float(*f),
            Cell::Text(t) => Value::Str(t.clone()),
            Cell::Json(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        }
    }

    /// The value as a number, if it is one (a JSON number too).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Real(f) => Some(*f),
            Cell::Json(t) => match serde_json::from_str::<serde_json::Value>(t) {
                Ok(serde_json::Value::Number(n)) => n.as_f64(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub Vec<Cell>);

fn column_error(i: usize, cell: &Cell, want: &str) -> CodedError {
    CodedError::new(ErrorCode::Internal, format!("database column {i} holds {cell:?}, expected {want}"))
}

impl Row {
    pub fn cell(&self, i: usize) -> &Cell {
        self.0.get(i).unwrap_or(&Cell::Null)
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?.ok_or_else(|| column_error(i, self.cell(i), "an integer"))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            cell => Err(column_error(i, cell, "an integer")),
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.i64(i)? != 0)
    }

    /// A real (or integer) column; NULL, which is how NaN is stored, reads as `null`.
    pub fn f64_or(&self, i: usize, null: f64) -> Result<f64> {
        Ok(self.opt_f64(i)?.unwrap_or(null))
    }

    pub fn opt_f64(&self, i: usize) -> Result<Option<f64>> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            Cell::Real(v) => Ok(Some(*v)),
            Cell::Int(v) => Ok(Some(*v as f64)),
            cell => Err(column_error(i, cell, "a number")),
        }
    }

    pub fn str(&self, i: usize) -> Result<&str> {
        match self.cell(i) {
            Cell::Text(t) | Cell::Json(t) => Ok(t),
            cell => Err(column_error(i, cell, "text")),
        }
    }

    pub fn string(&self, i: usize) -> Result<String> {
        self.str(i).map(str::to_owned)
    }

    pub fn opt_string(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            _ => self.string(i).map(Some),
        }
    }

    pub fn blob(&self, i: usize) -> Result<&[u8]> {
        match self.cell(i) {
            Cell::Blob(b) => Ok(b),
            cell => Err(column_error(i, cell, "bytes")),
        }
    }

    /// Moves a bytes column out of the row.
    pub fn take_blob(&mut self, i: usize) -> Result<Vec<u8>> {
        match self.0.get_mut(i) {
            Some(Cell::Blob(b)) => Ok(std::mem::take(b)),
            other => Err(column_error(i, other.map_or(&Cell::Null, |c| &*c), "bytes")),
        }
    }
}

/// A connection inside a transaction: what the rules run statements on.
///
/// Statements use `?N` placeholders. `execute` and `query` cache the prepared statement by its
/// text; `query_once` is for statements built per request (filters), which are not cached.
pub trait Db {
    fn dialect(&self) -> Dialect;
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64>;
    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>>;
    fn query_once(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>>;

    /// The one row a statement returns; none is an internal error.
    fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Row> {
        self.query(sql, params)?.into_iter().next().ok_or_else(|| CodedError::new(ErrorCode::Internal, "a statement that returns a row returned none"))
    }

    fn opt_row(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first column of every row.
    fn column_i64(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<i64>> {
        self.query(sql, params)?.iter().map(|r| r.i64(0)).collect()
    }

    fn column_string(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<String>> {
        self.query(sql, params)?.iter().map(|r| r.string(0)).collect()
    }
}

/// What a SQL backend provides: transactions.
pub trait Backend: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Runs `op` in a read-only transaction that sees one snapshot.
    fn read(&self, op: &mut dyn FnMut(&dyn Db) -> Result<()>) -> Result<()>;
    /// Runs `op` in a transaction and commits it; if `op` fails, or panics, nothing it did stays.
    fn write(&self, op: Box<dyn FnOnce(&dyn Db) -> Result<()> + Send>) -> Result<()>;
    /// A line that says what the database is (no password).
    fn describe(&self) -> String;
    /// See [`crate::Store::database_heap_bytes`].
    fn heap_bytes(&self) -> Option<u64> {
        None
    }
    /// Notices shared with the other servers on this database, if there can be others.
    fn notices(&self) -> Option<Arc<dyn crate::Notices>> {
        None
    }
    /// Runs a statement outside any transaction (`VACUUM`, say), where the database has them.
    fn maintenance(&self, sql: &str) -> Result<()> {
        Err(CodedError::new(ErrorCode::InvalidValue, format!("this database does not run {sql:?}")))
    }
    /// Flushes and stops background work.
    fn close(&self);
}

/// A store on a SQL backend: every rule, once.
pub struct SqlStore {
    backend: Box<dyn Backend>,
    blobs: Arc<dyn BlobStore>,
    config: StoreConfig,
}

impl SqlStore {
    pub fn new(backend: Box<dyn Backend>, blobs: Arc<dyn BlobStore>, config: StoreConfig) -> Result<SqlStore> {
        cairn_types::ids::validate_name("default entity", &config.default_entity)?;
        Ok(SqlStore { backend, blobs, config })
    }

    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    /// Runs a statement outside any transaction, where the backend has them (PostgreSQL's
    /// `VACUUM`).
    pub fn maintenance(&self, sql: &str) -> Result<()> {
        self.backend.maintenance(sql)
    }

    /// Runs `op` on a snapshot.
    pub fn read<R>(&self, op: impl FnOnce(&dyn Db) -> Result<R>) -> Result<R> {
        let mut op = Some(op);
        let mut out = None;
        self.backend.read(&mut |db| {
            let op = op.take().expect("a read runs once");
            out = Some(op(db)?);
            Ok(())
        })?;
        out.ok_or_else(|| CodedError::new(ErrorCode::Internal, "a read returned nothing"))
    }

    /// Runs `op` in a transaction that commits before this returns.
    pub fn write<R: Send + 'static>(&self, op: impl FnOnce(&dyn Db) -> Result<R> + Send + 'static) -> Result<R> {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.backend.write(Box::new(move |db| {
            let value = op(db)?;
            *out.lock().expect("result slot") = Some(value);
            Ok(())
        }))?;
        let value = slot.lock().expect("result slot").take();
        value.ok_or_else(|| CodedError::new(ErrorCode::Internal, "a write returned nothing"))
    }
}

impl crate::Store for SqlStore {
    fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    fn describe(&self) -> String {
        format!("{}, {}", self.backend.describe(), self.blobs.describe())
    }

    fn database_heap_bytes(&self) -> Option<u64> {
        self.backend.heap_bytes()
    }

    fn notices(&self) -> Option<Arc<dyn crate::Notices>> {
        self.backend.notices()
    }

    fn close(&self) {
        self.backend.close();
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        self.backend.close();
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => {
                match c {
                    '\'' | '"' => quote = Some(c),
                    '?' => {
                        out.push('$');
                        continue;
                    }
                    _ => {}
                }
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(numbered_placeholders("a = ?1 AND b = '?2' AND \"c?\" = ?3"), "a = $1 AND b = '?2' AND \"c?\" = $3");
        assert_eq!(numbered_placeholders("x = 'it''s ?' OR y = ?12"), "x = 'it''s ?' OR y = $12");
    }
}
