//! Compiles the runs filter and sort keys to SQL, in either dialect, and runs the searches.
//!
//! Every leaf comparison is wrapped in `coalesce(..., FALSE)`, so a missing value never turns the
//! expression into NULL: `$ne` and `$nin` match runs that lack the field, as in MongoDB.

use super::runs::{RUN_SELECT, run_from_row};
use super::{Cell as Sql, Db, Dialect, ToParam, args};
use crate::Result;
use cairn_types::api::{ColumnStats, GroupPage, ProjectColumns, RunGroup, RunPage};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::filter::{Field, Filter, Op, Operand, Scalar, SortKey};
use cairn_types::value::Value;

fn invalid(message: String) -> CodedError {
    CodedError::new(ErrorCode::InvalidFilter, message)
}

/// A path into a JSON column, as a SQL literal of the dialect: `'$."a"."b"'` for SQLite's
/// `json_extract`, `'{"a","b"}'` for PostgreSQL's `#>`.
pub(crate) fn path_literal(dialect: Dialect, path: &[&str]) -> String {
    let quoted = |s: &str| s.replace('\'', "''");
    match dialect {
        // A backslash in a quoted label escapes the next character (SQLite 3.45 on): `\\` is one.
        Dialect::Sqlite => format!("'${}'", path.iter().map(|s| format!(".\"{}\"", quoted(&s.replace('\\', "\\\\")))).collect::<String>()),
        Dialect::Postgres => {
            let items: Vec<String> = path.iter().map(|s| format!("\"{}\"", quoted(&s.replace('\\', "\\\\")))).collect();
            format!("'{{{}}}'", items.join(","))
        }
    }
}

fn check_path(field: &Field, path: &[String]) -> Result<()> {
    if path.iter().any(|segment| segment.contains('"') || segment.chars().any(char::is_control)) {
        return Err(invalid(format!("field {} has a quote or control character, which filters cannot address", field.name())));
    }
    Ok(())
}

/// The text at `path` in the JSON column `column` (NULL when it is missing).
pub(crate) fn json_text(dialect: Dialect, column: &str, path: &[&str]) -> String {
    let p = path_literal(dialect, path);
    match dialect {
        Dialect::Sqlite => format!("json_extract({column}, {p})"),
        Dialect::Postgres => format!("({column} #>> {p})"),
    }
}

/// A value inside a JSON column, as SQL fragments of the dialect.
struct JsonAt {
    dialect: Dialect,
    /// SQLite: `json_type(..)`; PostgreSQL: the `jsonb` value.
    at: String,
    /// SQLite: `json_extract(..)`; PostgreSQL: the value as text.
    text: String,
}

impl JsonAt {
    fn new(dialect: Dialect, column: &str, field: &Field, path: &[String]) -> Result<JsonAt> {
        check_path(field, path)?;
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        let p = path_literal(dialect, &segments);
        Ok(match dialect {
            Dialect::Sqlite => JsonAt { dialect, at: format!("json_type({column}, {p})"), text: format!("json_extract({column}, {p})") },
            Dialect::Postgres => JsonAt { dialect, at: format!("({column} #> {p})"), text: format!("({column} #>> {p})") },
        })
    }

    fn is_number(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("{} IN ('integer', 'real')", self.at),
            Dialect::Postgres => format!("jsonb_typeof({}) = 'number'", self.at),
        }
    }

    fn is_text(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("{} = 'text'", self.at),
            Dialect::Postgres => format!("jsonb_typeof({}) = 'string'", self.at),
        }
    }

    fn is_bool(&self, b: bool) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("{} = '{b}'", self.at),
            Dialect::Postgres => format!("{} = CAST('{b}' AS jsonb)", self.at),
        }
    }

    fn is_null(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("({0} IS NULL OR {0} = 'null')", self.at),
            Dialect::Postgres => format!("({0} IS NULL OR jsonb_typeof({0}) = 'null')", self.at),
        }
    }

    fn exists(&self, yes: bool) -> String {
        format!("({} IS {}NULL)", self.at, if yes { "NOT " } else { "" })
    }

    /// The number, where it is one.
    fn number(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => self.text.clone(),
            Dialect::Postgres => format!("(CASE WHEN {} THEN CAST({} AS DOUBLE PRECISION) END)", self.is_number(), self.text),
        }
    }

    /// The value, for sorting and grouping: numbers by value, text by text.
    fn value(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => self.text.clone(),
            Dialect::Postgres => self.at.clone(),
        }
    }
}

/// `pattern` matches the text `expr`.
fn regex_match(dialect: Dialect, pattern: &str, expr: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("regexp({pattern}, {expr})"),
        Dialect::Postgres => format!("({expr} ~ {pattern})"),
    }
}

fn unresolved(field: &Field) -> CodedError {
    CodedError::new(ErrorCode::Internal, format!("field {} was not resolved to a config or summary key", field.name()))
}

/// Resolves bare names, as W&B does: `val_loss` is `summary.val_loss` when runs of the project
/// have that summary key, `lr` is `config.lr` when they have that config key. A name that is
/// both, or neither, is refused with the candidates named.
pub(super) struct Resolver<'c> {
    db: &'c dyn Db,
    project_pk: i64,
}

impl<'c> Resolver<'c> {
    pub(super) fn new(db: &'c dyn Db, project_pk: i64) -> Resolver<'c> {
        Resolver { db, project_pk }
    }

    fn has_key(&self, column: &str, field: &Field, path: &[String]) -> Result<bool> {
        let at = JsonAt::new(self.db.dialect(), &format!("r.{column}"), field, path)?;
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM runs r WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL
               AND {})",
            at.exists(true)
        );
        self.db.query_once(&sql, args![self.project_pk])?.first().map_or(Ok(false), |r| r.bool(0))
    }

    pub(super) fn field(&self, field: &Field) -> Result<Field> {
        let Field::Bare(name) = field else { return Ok(field.clone()) };
        // A flat key with dots (`a.b`) or a nested one (`{"a": {"b": ...}}`): both are tried.
        let mut paths = vec![vec![name.clone()]];
        if name.contains('.') {
            paths.push(name.split('.').map(str::to_owned).collect());
        }
        let mut found = Vec::new();
        for (column, make) in [("summary", Field::Summary as fn(Vec<String>) -> Field), ("config", Field::Config)] {
            for path in &paths {
                if self.has_key(column, field, path)? {
                    found.push(make(path.clone()));
                    break;
                }
            }
        }
        match found.len() {
            1 => Ok(found.pop().expect("one")),
            0 => Err(invalid(format!(
                "unknown field {name:?}: no run of this project has a summary or config key of that name; \
                 use summary.<key>, config.<key>, state, tags, name, run_id, group, job_type, notes, created_at, runtime or duration"
            ))),
            _ => Err(invalid(format!("field {name:?} is ambiguous: runs have both {} and {}; write one of them", found[0].name(), found[1].name()))),
        }
    }

    pub(super) fn filter(&self, filter: &Filter) -> Result<Filter> {
        Ok(match filter {
            Filter::And(parts) => Filter::And(parts.iter().map(|p| self.filter(p)).collect::<Result<_>>()?),
            Filter::Or(parts) => Filter::Or(parts.iter().map(|p| self.filter(p)).collect::<Result<_>>()?),
            Filter::Not(inner) => Filter::Not(Box::new(self.filter(inner)?)),
            Filter::Cmp { field, op, operand } => Filter::Cmp { field: self.field(field)?, op: *op, operand: operand.clone() },
        })
    }

    pub(super) fn sort(&self, keys: &[SortKey]) -> Result<Vec<SortKey>> {
        keys.iter()
            .map(|k| {
                let field = self.field(&k.field).map_err(|e| CodedError::new(ErrorCode::InvalidQuery, format!("sort: {}", e.message)))?;
                Ok(SortKey { field, descending: k.descending })
            })
            .collect()
    }
}

fn check_regex(pattern: &str) -> Result<()> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map(|_| ()).map_err(|e| invalid(format!("regex {pattern:?} is invalid: {e}")))
}

struct Compiler {
    dialect: Dialect,
    sql: String,
    params: Vec<Sql>,
}

impl Compiler {
    fn param(&mut self, value: Sql) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    fn filter(&mut self, filter: &Filter) -> Result<String> {
        Ok(match filter {
            Filter::And(parts) if parts.is_empty() => "TRUE".to_owned(),
            Filter::Or(parts) if parts.is_empty() => "FALSE".to_owned(),
            Filter::And(parts) | Filter::Or(parts) => {
                let joiner = if matches!(filter, Filter::And(_)) { " AND " } else { " OR " };
                let compiled = parts.iter().map(|p| self.filter(p)).collect::<Result<Vec<_>>>()?;
                format!("({})", compiled.join(joiner))
            }
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner)?),
            Filter::Cmp { field, op, operand } => format!("coalesce({}, FALSE)", self.cmp(field, *op, operand)?),
        })
    }

    fn cmp(&mut self, field: &Field, op: Op, operand: &Operand) -> Result<String> {
        match field {
            Field::Config(path) => self.json_cmp("r.config", field, path, op, operand),
            Field::Summary(path) => self.json_cmp("r.summary", field, path, op, operand),
            Field::Tags => self.tags_cmp(op, operand),
            Field::CreatedAt => self.time_cmp(op, operand),
            Field::State => self.text_cmp("r.state", field, op, operand),
            Field::Name => self.text_cmp("r.name", field, op, operand),
            Field::RunId => self.text_cmp("r.run_id", field, op, operand),
            Field::Group => self.text_cmp("r.grp", field, op, operand),
            Field::JobType => self.text_cmp("r.job_type", field, op, operand),
            Field::Notes => self.text_cmp("nullif(r.notes, '')", field, op, operand),
            Field::Runtime => self.number_cmp(&runtime_sql(), field, op, operand),
            Field::Duration => self.number_cmp(&duration_sql(self.dialect), field, op, operand),
            Field::Bare(_) => Err(unresolved(field)),
        }
    }

    fn number_cmp(&mut self, expr: &str, field: &Field, op: Op, operand: &Operand) -> Result<String> {
        let number = |c: &mut Self, s: &Scalar| -> Result<String> {
            match s {
                Scalar::Int(i) => Ok(c.param(Sql::Int(*i))),
                Scalar::Float(f) => Ok(c.param(Sql::Real(*f))),
                other => Err(invalid(format!("{} compares with numbers, not {other:?}", field.name()))),
            }
        };
        Ok(match (op, operand) {
            (Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => {
                format!("({expr} {} {})", compare_symbol(op), number(self, s)?)
            }
            (Op::In | Op::Nin, Operand::List(items)) => {
                let list = items.iter().map(|s| number(self, s)).collect::<Result<Vec<_>>>()?;
                let not = if op == Op::Nin { "NOT " } else { "" };
                format!("({expr} {not}IN ({}))", if list.is_empty() { "NULL".into() } else { list.join(", ") })
            }
            (Op::Exists, Operand::Exists(b)) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            _ => return Err(invalid(format!("operator {op:?} cannot be used on {}", field.name()))),
        })
    }

    fn list_or(&mut self, items: &[Scalar], mut each: impl FnMut(&mut Self, &Scalar) -> Result<String>) -> Result<String> {
        if items.is_empty() {
            return Ok("FALSE".to_owned());
        }
        let parts = items.iter().map(|s| each(self, s).map(|e| format!("coalesce({e}, FALSE)"))).collect::<Result<Vec<_>>>()?;
        Ok(format!("({})", parts.join(" OR ")))
    }

    fn json_cmp(&mut self, col: &str, field: &Field, path: &[String], op: Op, operand: &Operand) -> Result<String> {
        let at = JsonAt::new(self.dialect, col, field, path)?;
        let (is_number, is_text, number, text) = (at.is_number(), at.is_text(), at.number(), at.text.clone());
        let eq = |c: &mut Self, s: &Scalar| -> Result<String> {
            Ok(match s {
                Scalar::Null => at.is_null(),
                Scalar::Bool(b) => at.is_bool(*b),
                Scalar::Int(i) => format!("({is_number} AND {number} = {})", c.param(Sql::Int(*i))),
                Scalar::Float(f) => format!("({is_number} AND {number} = {})", c.param(Sql::Real(*f))),
                Scalar::Str(s) => format!("({is_text} AND {text} = {})", c.param(Sql::Text(s.clone()))),
                Scalar::Time(_) => return Err(invalid(format!("{} cannot be compared with a timestamp", field.name()))),
            })
        };
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => eq(self, s)?,
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT coalesce({}, FALSE))", eq(self, s)?),
            (Op::In, Operand::List(items)) => self.list_or(items, eq)?,
            (Op::Nin, Operand::List(items)) => format!("(NOT {})", self.list_or(items, eq)?),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => {
                let sym = order_symbol(op);
                match s {
                    Scalar::Int(i) => format!("({is_number} AND {number} {sym} {})", self.param(Sql::Int(*i))),
                    Scalar::Float(f) => format!("({is_number} AND {number} {sym} {})", self.param(Sql::Real(*f))),
                    Scalar::Str(s) => format!("({is_text} AND {text} {sym} {})", self.param(Sql::Text(s.clone()))),
                    other => return Err(invalid(format!("{} cannot be ordered against {other:?}", field.name()))),
                }
            }
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                let pattern = self.param(Sql::Text(pattern.clone()));
                format!("({is_text} AND {})", regex_match(self.dialect, &pattern, &text))
            }
            (Op::Exists, Operand::Exists(yes)) => at.exists(*yes),
            _ => return Err(invalid(format!("operator {op:?} does not fit its operand on {}", field.name()))),
        })
    }

    fn text_cmp(&mut self, col: &str, field: &Field, op: Op, operand: &Operand) -> Result<String> {
        let text = |s: &Scalar| -> Result<Option<String>> {
            Ok(match s {
                Scalar::Null => None,
                Scalar::Str(s) => Some(s.clone()),
                Scalar::Int(i) => Some(i.to_string()),
                Scalar::Float(f) => Some(f.to_string()),
                other => return Err(invalid(format!("{} is text and cannot be compared with {other:?}", field.name()))),
            })
        };
        let eq = |c: &mut Self, s: &Scalar| -> Result<String> {
            Ok(match text(s)? {
                None => format!("({col} IS NULL)"),
                // An empty text matches a field that is empty or not set (notes, group...).
                Some(t) if t.is_empty() => format!("(coalesce({col}, '') = '')"),
                Some(t) => format!("({col} = {})", c.param(Sql::Text(t))),
            })
        };
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => eq(self, s)?,
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT coalesce({}, FALSE))", eq(self, s)?),
            (Op::In, Operand::List(items)) => self.list_or(items, eq)?,
            (Op::Nin, Operand::List(items)) => format!("(NOT {})", self.list_or(items, eq)?),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => match text(s)? {
                Some(t) => format!("({col} {} {})", order_symbol(op), self.param(Sql::Text(t))),
                None => return Err(invalid(format!("{} cannot be ordered against null", field.name()))),
            },
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                let pattern = self.param(Sql::Text(pattern.clone()));
                regex_match(self.dialect, &pattern, col)
            }
            (Op::Exists, Operand::Exists(b)) => format!("({col} IS {}NULL)", if *b { "NOT " } else { "" }),
            _ => return Err(invalid(format!("operator {op:?} does not fit its operand on {}", field.name()))),
        })
    }

    fn time_cmp(&mut self, op: Op, operand: &Operand) -> Result<String> {
        let micros = |s: &Scalar| -> Result<i64> {
            match s {
                Scalar::Time(t) => Ok(t.micros()),
                other => Err(invalid(format!("created_at compares with timestamps, not {other:?}"))),
            }
        };
        Ok(match (op, operand) {
            (Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => {
                format!("(r.created_at {} {})", compare_symbol(op), self.param(Sql::Int(micros(s)?)))
            }
            (Op::In | Op::Nin, Operand::List(items)) => {
                let list = items.iter().map(|s| micros(s).map(|m| self.param(Sql::Int(m)))).collect::<Result<Vec<_>>>()?;
                let not = if op == Op::Nin { "NOT " } else { "" };
                format!("(r.created_at {not}IN ({}))", if list.is_empty() { "NULL".into() } else { list.join(", ") })
            }
            (Op::Exists, Operand::Exists(b)) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            _ => return Err(invalid(format!("operator {op:?} cannot be used on created_at"))),
        })
    }

    fn tags_cmp(&mut self, op: Op, operand: &Operand) -> Result<String> {
        let tag = |s: &Scalar| -> Result<String> {
            match s {
                Scalar::Str(s) => Ok(s.clone()),
                other => Err(invalid(format!("tags are strings and cannot be compared with {other:?}"))),
            }
        };
        let each = match self.dialect {
            Dialect::Sqlite => "json_each(r.tags)",
            Dialect::Postgres => "jsonb_array_elements_text(r.tags) AS t(value)",
        };
        let any = |cond: String| format!("EXISTS (SELECT 1 FROM {each} WHERE {cond})");
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => any(format!("value = {}", self.param(Sql::Text(tag(s)?)))),
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT {})", any(format!("value = {}", self.param(Sql::Text(tag(s)?))))),
            (Op::In | Op::Nin, Operand::List(items)) => {
                let list = items.iter().map(|s| tag(s).map(|t| self.param(Sql::Text(t)))).collect::<Result<Vec<_>>>()?;
                let inner = if list.is_empty() { "FALSE".to_owned() } else { any(format!("value IN ({})", list.join(", "))) };
                if op == Op::Nin { format!("(NOT {inner})") } else { inner }
            }
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                let pattern = self.param(Sql::Text(pattern.clone()));
                any(regex_match(self.dialect, &pattern, "value"))
            }
            (Op::Exists, Operand::Exists(b)) => {
                let length = match self.dialect {
                    Dialect::Sqlite => "json_array_length(r.tags)",
                    Dialect::Postgres => "jsonb_array_length(r.tags)",
                };
                format!("({length} {} 0)", if *b { ">" } else { "=" })
            }
            _ => return Err(invalid(format!("operator {op:?} cannot be used on tags; use $eq, $ne, $in, $nin, $regex or $exists"))),
        })
    }
}

/// A run's runtime in seconds, as `RunInfo::runtime_secs` computes it.
fn runtime_sql() -> String {
    "(CAST(coalesce(r.finished_at, r.heartbeat_at, r.started_at) - r.started_at AS DOUBLE PRECISION) / 1000000.0)".into()
}

/// A run's duration in seconds, as `RunInfo::duration_secs` computes it.
fn duration_sql(dialect: Dialect) -> String {
    let greatest = match dialect {
        Dialect::Sqlite => "max",
        Dialect::Postgres => "greatest",
    };
    format!("(CAST(r.active_us + {greatest}(0, coalesce(r.finished_at, r.heartbeat_at, r.started_at) - coalesce(r.session_at, r.started_at)) AS DOUBLE PRECISION) / 1000000.0)")
}

fn order_symbol(op: Op) -> &'static str {
    match op {
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        _ => "=",
    }
}

/// The SQL operator of `=`, `!=` and the orderings.
fn compare_symbol(op: Op) -> &'static str {
    match op {
        Op::Ne => "!=",
        _ => order_symbol(op),
    }
}

/// The SQL expression of a field's value, for sorting and grouping.
pub(super) fn field_expr(dialect: Dialect, field: &Field) -> Result<String> {
    Ok(match field {
        Field::Config(path) => JsonAt::new(dialect, "r.config", field, path)?.value(),
        Field::Summary(path) => JsonAt::new(dialect, "r.summary", field, path)?.value(),
        Field::State => "r.state".into(),
        Field::Name => "r.name".into(),
        Field::RunId => "r.run_id".into(),
        Field::Group => "r.grp".into(),
        Field::JobType => "r.job_type".into(),
        Field::Notes => "nullif(r.notes, '')".into(),
        Field::CreatedAt => "r.created_at".into(),
        Field::Runtime => runtime_sql(),
        Field::Duration => duration_sql(dialect),
        Field::Bare(_) => return Err(unresolved(field)),
        Field::Tags => return Err(CodedError::new(ErrorCode::InvalidQuery, "runs cannot be sorted or grouped by tags")),
    })
}

pub(super) fn project_pk(db: &dyn Db, entity: &str, project: &str) -> Result<i64> {
    db.opt_row(
        "SELECT p.project_pk FROM projects p JOIN entities e ON e.entity_pk = p.entity_pk
         WHERE e.name = ?1 AND p.name = ?2",
        args![entity, project],
    )?
    .ok_or_else(|| CodedError::new(ErrorCode::ProjectNotFound, format!("project {entity}/{project} not found")))?
    .i64(0)
}

pub(super) fn search(db: &dyn Db, entity: &str, project: &str, filter: &Filter, sort: &[SortKey], limit: usize, offset: usize) -> Result<RunPage> {
    let project_pk = project_pk(db, entity, project)?;
    let resolver = Resolver::new(db, project_pk);
    let filter = &resolver.filter(filter)?;
    let sort = &resolver.sort(sort)?;
    let mut compiler = Compiler { dialect: db.dialect(), sql: String::new(), params: vec![Sql::Int(project_pk)] };
    let condition = compiler.filter(filter)?;
    compiler.sql = format!("r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL AND {condition}");
    let mut order = Vec::new();
    for key in sort {
        let expr = field_expr(db.dialect(), &key.field)?;
        order.push(format!("({expr}) IS NULL"));
        order.push(format!("{expr}{}", if key.descending { " DESC" } else { "" }));
    }
    order.push("r.created_at DESC".into());
    order.push("r.run_pk DESC".into());

    let params: Vec<_> = compiler.params.iter().map(|p| p.param()).collect();
    let total = db.query_once(&format!("SELECT count(*) FROM runs r WHERE {}", compiler.sql), &params)?.first().map_or(Ok(0), |r| r.i64(0))?;
    let mut params = compiler.params.clone();
    params.push(Sql::Int(limit as i64));
    params.push(Sql::Int(offset.min(i64::MAX as usize) as i64));
    let n = params.len();
    let params: Vec<_> = params.iter().map(|p| p.param()).collect();
    let rows = db.query_once(&format!("{RUN_SELECT} WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}", compiler.sql, order.join(", "), n - 1, n), &params)?;
    let runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
    Ok(RunPage { runs, total: total as u64, offset, limit })
}

/// `$.a."b.c"[2]` as path segments; `None` for paths inside arrays.
fn json_tree_path(fullkey: &str) -> Option<Vec<String>> {
    let rest = fullkey.strip_prefix('$')?;
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut segment = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        segment.push(c);
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == '.' || c == '[' {
                            break;
                        }
                        segment.push(c);
                        chars.next();
                    }
                }
                segments.push(segment);
            }
            _ => return None,
        }
    }
    (!segments.is_empty()).then_some(segments)
}

pub(super) fn project_columns(db: &dyn Db, entity: &str, project: &str) -> Result<ProjectColumns> {
    let project_pk = project_pk(db, entity, project)?;
    let mut out = ProjectColumns::default();
    for (column, target) in [("config", &mut out.config), ("summary", &mut out.summary)] {
        let paths: Vec<Vec<String>> = match db.dialect() {
            Dialect::Sqlite => db
                .query_once(
                    &format!(
                        "SELECT DISTINCT t.fullkey FROM runs r, json_tree(r.{column}) t
                         WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL AND t.type != 'object' AND t.fullkey NOT LIKE '%[%'"
                    ),
                    args![project_pk],
                )?
                .iter()
                .filter_map(|r| r.str(0).ok().and_then(json_tree_path))
                .collect(),
            // The leaves of each document, walked down its objects; each path as a JSON list.
            Dialect::Postgres => db
                .query_once(
                    &format!(
                        "WITH RECURSIVE t(path, value) AS (
                            SELECT ARRAY[e.key], e.value FROM runs r, jsonb_each(r.{column}) e
                            WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL
                            UNION ALL
                            SELECT t.path || e.key, e.value FROM t, jsonb_each(t.value) e WHERE jsonb_typeof(t.value) = 'object'
                         )
                         SELECT DISTINCT CAST(array_to_json(path) AS TEXT) FROM t WHERE jsonb_typeof(value) != 'object'"
                    ),
                    args![project_pk],
                )?
                .iter()
                .filter_map(|r| r.str(0).ok().and_then(|t| serde_json::from_str(t).ok()))
                .collect(),
        };
        let mut names: Vec<String> = paths.iter().map(|p| p.join(".")).collect();
        names.sort();
        names.dedup();
        *target = names;
    }
    Ok(out)
}

pub(super) fn group_runs(db: &dyn Db, entity: &str, project: &str, query: &crate::GroupRequest) -> Result<GroupPage> {
    let project_pk = project_pk(db, entity, project)?;
    let resolver = Resolver::new(db, project_pk);
    let filter = &resolver.filter(&query.filter)?;
    let resolved = |what: &str, field: &Field| resolver.field(field).map_err(|e| CodedError::new(ErrorCode::InvalidQuery, format!("{what}: {}", e.message)));
    let by_expr = field_expr(db.dialect(), &resolved("by", &query.by.1)?)?;
    let columns = query.columns.iter().map(|(_, c)| field_expr(db.dialect(), &resolved("columns", c)?)).collect::<Result<Vec<_>>>()?;
    let bins = query.bins;
    let mut compiler = Compiler { dialect: db.dialect(), sql: String::new(), params: vec![Sql::Int(project_pk)] };
    let condition = compiler.filter(filter)?;
    let mut select = vec![by_expr];
    select.extend(columns.iter().cloned());
    let sql = format!("SELECT {} FROM runs r WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL AND {condition}", select.join(", "));
    let params: Vec<_> = compiler.params.iter().map(|p| p.param()).collect();
    let rows = db.query_once(&sql, &params)?;
    // Group key: the value's JSON text, so that 1 and "1" stay apart.
    let mut groups: std::collections::BTreeMap<String, (Value, u64, Vec<Vec<f64>>)> = std::collections::BTreeMap::new();
    for row in &rows {
        let value = row.cell(0).to_value();
        let entry = groups.entry(serde_json::to_string(&value).expect("values serialize")).or_insert_with(|| (value, 0, vec![Vec::new(); columns.len()]));
        entry.1 += 1;
        for i in 0..columns.len() {
            if let Some(v) = row.cell(i + 1).as_f64()
                && v.is_finite()
            {
                entry.2[i].push(v);
            }
        }
        if groups.len() > 10_000 {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("{} has more than 10000 distinct values", query.by.0)));
        }
    }
    let mut ranges = std::collections::BTreeMap::new();
    for (i, (name, _)) in query.columns.iter().enumerate() {
        let all = groups.values().flat_map(|g| g.2[i].iter().copied());
        let range = all.fold(None, |acc: Option<(f64, f64)>, v| Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v)))));
        if let Some(range) = range {
            ranges.insert(name.clone(), range);
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, (value, count, values)) in groups {
        let mut stats = std::collections::BTreeMap::new();
        for (i, (name, _)) in query.columns.iter().enumerate() {
            let vs = &values[i];
            let mut histogram = vec![0u64; bins];
            if let Some(&(lo, hi)) = ranges.get(name) {
                for &v in vs {
                    let bin = if hi > lo { (((v - lo) / (hi - lo)) * bins as f64) as usize } else { 0 };
                    histogram[bin.min(bins - 1)] += 1;
                }
            }
            stats.insert(
                name.clone(),
                ColumnStats {
                    count: vs.len() as u64,
                    min: vs.iter().copied().reduce(f64::min),
                    max: vs.iter().copied().reduce(f64::max),
                    mean: (!vs.is_empty()).then(|| vs.iter().sum::<f64>() / vs.len() as f64),
                    histogram,
                },
            );
        }
        out.push(RunGroup { value, count, columns: stats });
    }
    Ok(GroupPage { by: query.by.0.clone(), groups: out, ranges })
}

#[cfg(test)]
mod tests {
    use super::json_tree_path;

    #[test]
    fn json_tree_paths() {
        assert_eq!(json_tree_path("$.a.b"), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(json_tree_path("$.\"x.y\".z"), Some(vec!["x.y".to_owned(), "z".to_owned()]));
        assert_eq!(json_tree_path("$.a[0]"), None);
        assert_eq!(json_tree_path("$"), None);
    }
}
