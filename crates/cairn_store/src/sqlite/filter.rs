//! Compiles the runs filter and sort keys to SQLite SQL.
//!
//! Every leaf comparison is wrapped in `coalesce(..., 0)`, so a missing value never turns the
//! expression into NULL: `$ne` and `$nin` match runs that lack the field, as in MongoDB.

use cairn_types::api::RunPage;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::filter::{Field, Filter, Op, Operand, Scalar, SortKey};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::pool::DbResult;
use super::{RUN_SELECT, run_from_row};
use crate::Result;

fn invalid(message: String) -> CodedError {
    CodedError::new(ErrorCode::InvalidFilter, message)
}

fn json_path(field: &Field, path: &[String]) -> Result<String> {
    let mut out = String::from("'$");
    for segment in path {
        if segment.contains('"') || segment.chars().any(char::is_control) {
            return Err(invalid(format!("field {} has a quote or control character, which filters cannot address", field.name())));
        }
        out.push_str(".\"");
        out.push_str(&segment.replace('\'', "''"));
        out.push('"');
    }
    out.push('\'');
    Ok(out)
}

fn check_regex(pattern: &str) -> Result<()> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| invalid(format!("regex {pattern:?} is invalid: {e}")))
}

struct Compiler {
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
            Filter::And(parts) if parts.is_empty() => "1".to_owned(),
            Filter::Or(parts) if parts.is_empty() => "0".to_owned(),
            Filter::And(parts) | Filter::Or(parts) => {
                let joiner = if matches!(filter, Filter::And(_)) { " AND " } else { " OR " };
                let compiled = parts.iter().map(|p| self.filter(p)).collect::<Result<Vec<_>>>()?;
                format!("({})", compiled.join(joiner))
            }
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner)?),
            Filter::Cmp { field, op, operand } => format!("coalesce({}, 0)", self.cmp(field, *op, operand)?),
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
        }
    }

    fn list_or(&mut self, items: &[Scalar], mut each: impl FnMut(&mut Self, &Scalar) -> Result<String>) -> Result<String> {
        if items.is_empty() {
            return Ok("0".to_owned());
        }
        let parts = items.iter().map(|s| each(self, s).map(|e| format!("coalesce({e}, 0)"))).collect::<Result<Vec<_>>>()?;
        Ok(format!("({})", parts.join(" OR ")))
    }

    fn json_cmp(&mut self, col: &str, field: &Field, path: &[String], op: Op, operand: &Operand) -> Result<String> {
        let p = json_path(field, path)?;
        let ty = format!("json_type({col}, {p})");
        let val = format!("json_extract({col}, {p})");
        let eq = |c: &mut Self, s: &Scalar| -> Result<String> {
            Ok(match s {
                Scalar::Null => format!("({ty} IS NULL OR {ty} = 'null')"),
                Scalar::Bool(b) => format!("{ty} = '{}'", if *b { "true" } else { "false" }),
                Scalar::Int(i) => format!("({ty} IN ('integer', 'real') AND {val} = {})", c.param(Sql::Integer(*i))),
                Scalar::Float(f) => format!("({ty} IN ('integer', 'real') AND {val} = {})", c.param(Sql::Real(*f))),
                Scalar::Str(s) => format!("({ty} = 'text' AND {val} = {})", c.param(Sql::Text(s.clone()))),
                Scalar::Time(_) => return Err(invalid(format!("{} cannot be compared with a timestamp", field.name()))),
            })
        };
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => eq(self, s)?,
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT coalesce({}, 0))", eq(self, s)?),
            (Op::In, Operand::List(items)) => self.list_or(items, eq)?,
            (Op::Nin, Operand::List(items)) => format!("(NOT {})", self.list_or(items, eq)?),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => {
                let sym = order_symbol(op);
                match s {
                    Scalar::Int(i) => format!("({ty} IN ('integer', 'real') AND {val} {sym} {})", self.param(Sql::Integer(*i))),
                    Scalar::Float(f) => format!("({ty} IN ('integer', 'real') AND {val} {sym} {})", self.param(Sql::Real(*f))),
                    Scalar::Str(s) => format!("({ty} = 'text' AND {val} {sym} {})", self.param(Sql::Text(s.clone()))),
                    other => return Err(invalid(format!("{} cannot be ordered against {other:?}", field.name()))),
                }
            }
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                format!("({ty} = 'text' AND regexp({}, {val}))", self.param(Sql::Text(pattern.clone())))
            }
            (Op::Exists, Operand::Exists(true)) => format!("({ty} IS NOT NULL)"),
            (Op::Exists, Operand::Exists(false)) => format!("({ty} IS NULL)"),
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
                Some(t) => format!("({col} = {})", c.param(Sql::Text(t))),
            })
        };
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => eq(self, s)?,
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT coalesce({}, 0))", eq(self, s)?),
            (Op::In, Operand::List(items)) => self.list_or(items, eq)?,
            (Op::Nin, Operand::List(items)) => format!("(NOT {})", self.list_or(items, eq)?),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(s)) => match text(s)? {
                Some(t) => format!("({col} {} {})", order_symbol(op), self.param(Sql::Text(t))),
                None => return Err(invalid(format!("{} cannot be ordered against null", field.name()))),
            },
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                format!("regexp({}, {col})", self.param(Sql::Text(pattern.clone())))
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
                let sym = match op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    _ => order_symbol(op),
                };
                format!("(r.created_at {sym} {})", self.param(Sql::Integer(micros(s)?)))
            }
            (Op::In | Op::Nin, Operand::List(items)) => {
                let list = items.iter().map(|s| micros(s).map(|m| self.param(Sql::Integer(m)))).collect::<Result<Vec<_>>>()?;
                let not = if op == Op::Nin { "NOT " } else { "" };
                format!("(r.created_at {not}IN ({}))", if list.is_empty() { "NULL".into() } else { list.join(", ") })
            }
            (Op::Exists, Operand::Exists(b)) => if *b { "1" } else { "0" }.to_owned(),
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
        let any = |cond: String| format!("EXISTS (SELECT 1 FROM json_each(r.tags) WHERE {cond})");
        Ok(match (op, operand) {
            (Op::Eq, Operand::Scalar(s)) => any(format!("value = {}", self.param(Sql::Text(tag(s)?)))),
            (Op::Ne, Operand::Scalar(s)) => format!("(NOT {})", any(format!("value = {}", self.param(Sql::Text(tag(s)?))))),
            (Op::In | Op::Nin, Operand::List(items)) => {
                let list = items.iter().map(|s| tag(s).map(|t| self.param(Sql::Text(t)))).collect::<Result<Vec<_>>>()?;
                let inner = if list.is_empty() { "0".to_owned() } else { any(format!("value IN ({})", list.join(", "))) };
                if op == Op::Nin { format!("(NOT {inner})") } else { inner }
            }
            (Op::Regex, Operand::Regex(pattern)) => {
                check_regex(pattern)?;
                any(format!("regexp({}, value)", self.param(Sql::Text(pattern.clone()))))
            }
            (Op::Exists, Operand::Exists(b)) => format!("(json_array_length(r.tags) {} 0)", if *b { ">" } else { "=" }),
            _ => return Err(invalid(format!("operator {op:?} cannot be used on tags; use $eq, $ne, $in, $nin, $regex or $exists"))),
        })
    }
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

fn sort_expr(key: &SortKey) -> Result<String> {
    Ok(match &key.field {
        Field::Config(path) => format!("json_extract(r.config, {})", json_path(&key.field, path)?),
        Field::Summary(path) => format!("json_extract(r.summary, {})", json_path(&key.field, path)?),
        Field::State => "r.state".into(),
        Field::Name => "r.name".into(),
        Field::RunId => "r.run_id".into(),
        Field::Group => "r.grp".into(),
        Field::JobType => "r.job_type".into(),
        Field::Notes => "nullif(r.notes, '')".into(),
        Field::CreatedAt => "r.created_at".into(),
        Field::Tags => return Err(CodedError::new(ErrorCode::InvalidQuery, "runs cannot be sorted by tags")),
    })
}

pub(super) fn search(
    conn: &Connection,
    entity: &str,
    project: &str,
    filter: &Filter,
    sort: &[SortKey],
    limit: usize,
    offset: usize,
) -> Result<RunPage> {
    let project_pk: i64 = conn
        .query_row(
            "SELECT p.project_pk FROM projects p JOIN entities e ON e.entity_pk = p.entity_pk
             WHERE e.name = ?1 AND p.name = ?2",
            [entity, project],
            |r| r.get(0),
        )
        .optional()
        .db()?
        .ok_or_else(|| CodedError::new(ErrorCode::ProjectNotFound, format!("project {entity}/{project} not found")))?;
    let mut compiler = Compiler { sql: String::new(), params: vec![Sql::Integer(project_pk)] };
    let condition = compiler.filter(filter)?;
    compiler.sql = format!("r.project_pk = ?1 AND r.deleted_at IS NULL AND {condition}");
    let mut order = Vec::new();
    for key in sort {
        let expr = sort_expr(key)?;
        order.push(format!("({expr}) IS NULL"));
        order.push(format!("{expr}{}", if key.descending { " DESC" } else { "" }));
    }
    order.push("r.created_at DESC".into());
    order.push("r.run_pk DESC".into());

    let total: i64 = conn
        .prepare(&format!("SELECT count(*) FROM runs r WHERE {}", compiler.sql))
        .db()?
        .query_row(params_from_iter(compiler.params.iter()), |r| r.get(0))
        .db()?;
    let mut params = compiler.params.clone();
    params.push(Sql::Integer(limit as i64));
    params.push(Sql::Integer(offset.min(i64::MAX as usize) as i64));
    let n = params.len();
    let mut stmt = conn
        .prepare(&format!(
            "{RUN_SELECT} WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
            compiler.sql,
            order.join(", "),
            n - 1,
            n
        ))
        .db()?;
    let mut rows = stmt.query(params_from_iter(params.iter())).db()?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().db()? {
        runs.push(run_from_row(row)?);
    }
    Ok(RunPage { runs, total: total as u64, offset, limit })
}
