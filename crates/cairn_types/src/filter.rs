//! The runs filter: Mongo-style JSON, as W&B's public API takes it, parsed into an AST that each
//! store compiles to its own query language.
//!
//! ```json
//! {"$and": [{"config.lr": {"$gte": 0.01}}, {"state": {"$in": ["finished", "running"]}},
//!           {"tags": "baseline"}, {"display_name": {"$regex": "^sweep-"}}]}
//! ```
//! Fields: `config.<path>`, `summary.<path>` (or `summary_metrics.<path>`), `state`, `tags`,
//! `name` (or `display_name`), `run_id` (or `id`), `group`, `job_type`, `notes`, `created_at`.
//! Operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex`, combined with `$and $or $nor`.
//! A bare value means `$eq`; several operators on one field must all hold.

use serde_json::Value as Json;

use crate::error::{CodedError, ErrorCode};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Config(Vec<String>),
    Summary(Vec<String>),
    State,
    Tags,
    Name,
    RunId,
    Group,
    JobType,
    Notes,
    CreatedAt,
    /// Seconds from start to finish (or to the last sign of life), pauses included.
    Runtime,
    /// Seconds the run was active: the sum of its sessions' spans, the pauses between a finish
    /// and a resume left out.
    Duration,
    /// A name without `config.` or `summary.` (`val_loss`): the store resolves it to the one of
    /// the two that the project's runs have, as W&B does.
    Bare(String),
}

impl Field {
    pub fn parse(name: &str) -> Result<Field, CodedError> {
        let path = |rest: &str| -> Result<Vec<String>, CodedError> {
            let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err(CodedError::new(ErrorCode::InvalidFilter, format!("field {name:?} has an empty path segment")));
            }
            Ok(segments)
        };
        Ok(match name {
            "state" => Field::State,
            "tags" => Field::Tags,
            "name" | "display_name" | "displayName" => Field::Name,
            "run_id" | "id" => Field::RunId,
            "group" => Field::Group,
            "job_type" | "jobType" => Field::JobType,
            "notes" => Field::Notes,
            "created_at" | "createdAt" => Field::CreatedAt,
            "runtime" => Field::Runtime,
            "duration" => Field::Duration,
            _ => {
                if let Some(rest) = name.strip_prefix("config.") {
                    Field::Config(path(rest)?)
                } else if let Some(rest) = name.strip_prefix("summary_metrics.").or_else(|| name.strip_prefix("summary.")) {
                    Field::Summary(path(rest)?)
                } else if !name.is_empty() && !name.starts_with('$') && !name.chars().any(char::is_control) {
                    Field::Bare(name.to_owned())
                } else {
                    return Err(CodedError::new(
                        ErrorCode::InvalidFilter,
                        format!("unknown field {name:?}; use config.<key>, summary.<key>, state, tags, name, run_id, group, job_type, notes, created_at, runtime or duration"),
                    ));
                }
            }
        })
    }

    /// The field's name in the canonical form.
    pub fn name(&self) -> String {
        match self {
            Field::Config(p) => format!("config.{}", p.join(".")),
            Field::Summary(p) => format!("summary.{}", p.join(".")),
            Field::State => "state".into(),
            Field::Tags => "tags".into(),
            Field::Name => "name".into(),
            Field::RunId => "run_id".into(),
            Field::Group => "group".into(),
            Field::JobType => "job_type".into(),
            Field::Notes => "notes".into(),
            Field::CreatedAt => "created_at".into(),
            Field::Runtime => "runtime".into(),
            Field::Duration => "duration".into(),
            Field::Bare(name) => name.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Nin,
    Regex,
    Exists,
}

impl Op {
    fn parse(op: &str) -> Option<Op> {
        Some(match op {
            "$eq" => Op::Eq,
            "$ne" => Op::Ne,
            "$lt" => Op::Lt,
            "$lte" => Op::Le,
            "$gt" => Op::Gt,
            "$gte" => Op::Ge,
            "$in" => Op::In,
            "$nin" => Op::Nin,
            "$regex" => Op::Regex,
            "$exists" => Op::Exists,
            _ => return None,
        })
    }
}

/// A comparison operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Time(Timestamp),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Scalar(Scalar),
    List(Vec<Scalar>),
    Regex(String),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp { field: Field, op: Op, operand: Operand },
}

const MAX_NODES: usize = 2000;
const MAX_DEPTH: usize = 32;

fn err(message: String) -> CodedError {
    CodedError::new(ErrorCode::InvalidFilter, message)
}

impl Filter {
    /// Parses the Mongo-style JSON form.
    pub fn parse(json: &Json) -> Result<Filter, CodedError> {
        let mut nodes = 0;
        parse_node(json, 0, &mut nodes)
    }

    /// Parses JSON text.
    pub fn parse_str(text: &str) -> Result<Filter, CodedError> {
        let json: Json = serde_json::from_str(text).map_err(|e| err(format!("filter is not valid JSON: {e}")))?;
        Filter::parse(&json)
    }

    pub fn always() -> Filter {
        Filter::And(Vec::new())
    }
}

fn parse_node(json: &Json, depth: usize, nodes: &mut usize) -> Result<Filter, CodedError> {
    *nodes += 1;
    if *nodes > MAX_NODES || depth > MAX_DEPTH {
        return Err(err(format!("filter is too large (over {MAX_NODES} conditions or {MAX_DEPTH} levels)")));
    }
    let Json::Object(object) = json else {
        return Err(err(format!("a filter must be a JSON object, got {json}")));
    };
    let mut parts = Vec::new();
    for (key, value) in object {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Json::Array(items) = value else {
                    return Err(err(format!("{key} takes an array of filters, got {value}")));
                };
                let children = items.iter().map(|item| parse_node(item, depth + 1, nodes)).collect::<Result<Vec<_>, _>>()?;
                parts.push(match key.as_str() {
                    "$and" => Filter::And(children),
                    "$or" => Filter::Or(children),
                    _ => Filter::Not(Box::new(Filter::Or(children))),
                });
            }
            _ if key.starts_with('$') => return Err(err(format!("unknown operator {key:?} at the top of a condition"))),
            _ => {
                let field = Field::parse(key)?;
                parts.extend(parse_condition(&field, value)?);
            }
        }
    }
    Ok(if parts.len() == 1 { parts.pop().expect("one part") } else { Filter::And(parts) })
}

fn parse_condition(field: &Field, value: &Json) -> Result<Vec<Filter>, CodedError> {
    let ops = match value {
        Json::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
        _ => return Ok(vec![cmp(field, Op::Eq, value)?]),
    };
    let mut out = Vec::new();
    for (op_name, operand) in ops {
        if op_name == "$options" {
            continue;
        }
        let op = Op::parse(op_name).ok_or_else(|| err(format!("unknown operator {op_name:?} on field {}", field.name())))?;
        if op == Op::Regex {
            let Json::String(pattern) = operand else {
                return Err(err(format!("$regex on {} takes a string, got {operand}", field.name())));
            };
            let pattern = match ops.get("$options").and_then(Json::as_str) {
                Some(options) if options.contains('i') => format!("(?i){pattern}"),
                _ => pattern.clone(),
            };
            out.push(Filter::Cmp { field: field.clone(), op, operand: Operand::Regex(pattern) });
        } else {
            out.push(cmp(field, op, operand)?);
        }
    }
    Ok(out)
}

fn scalar(field: &Field, json: &Json) -> Result<Scalar, CodedError> {
    let value = match json {
        Json::Null => Scalar::Null,
        Json::Bool(b) => Scalar::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Scalar::Str(s.clone()),
        other => return Err(err(format!("{} cannot be compared with {other}", field.name()))),
    };
    match (field, value) {
        (Field::CreatedAt, Scalar::Str(s)) => Timestamp::parse_rfc3339(&s).map(Scalar::Time).map_err(|e| err(format!("created_at: {e}"))),
        (Field::CreatedAt, Scalar::Int(i)) => Ok(Scalar::Time(Timestamp(i.saturating_mul(1_000_000)))),
        (Field::CreatedAt, Scalar::Float(f)) => Ok(Scalar::Time(Timestamp::from_secs_f64(f))),
        (Field::State, Scalar::Str(s)) => match crate::api::RunState::parse(&s) {
            Some(_) => Ok(Scalar::Str(s)),
            None => Err(err(format!("state {s:?} is not one of running, finished, failed, crashed, killed"))),
        },
        (_, v) => Ok(v),
    }
}

fn cmp(field: &Field, op: Op, operand: &Json) -> Result<Filter, CodedError> {
    let operand = match op {
        Op::In | Op::Nin => {
            let Json::Array(items) = operand else {
                return Err(err(format!("{} takes an array, got {operand}", if op == Op::In { "$in" } else { "$nin" })));
            };
            Operand::List(items.iter().map(|item| scalar(field, item)).collect::<Result<_, _>>()?)
        }
        Op::Exists => match operand {
            Json::Bool(b) => Operand::Exists(*b),
            other => return Err(err(format!("$exists takes true or false, got {other}"))),
        },
        Op::Regex => unreachable!("handled by the caller"),
        _ => Operand::Scalar(scalar(field, operand)?),
    };
    Ok(Filter::Cmp { field: field.clone(), op, operand })
}

/// One sort key: a field and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: Field,
    pub descending: bool,
}

impl SortKey {
    /// Parses `-summary.acc`, `+created_at` or `name`.
    pub fn parse(text: &str) -> Result<SortKey, CodedError> {
        let text = text.trim();
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let field = Field::parse(name).map_err(|e| CodedError::new(ErrorCode::InvalidQuery, format!("sort: {}", e.message)))?;
        if field == Field::Tags {
            return Err(CodedError::new(ErrorCode::InvalidQuery, "sort: runs cannot be sorted by tags".to_string()));
        }
        Ok(SortKey { field, descending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_nested_mongo_filters() {
        let f = Filter::parse(&json!({
            "$and": [{"config.lr": {"$gt": 0.01, "$lte": 1}}, {"$or": [{"state": "finished"}, {"tags": {"$in": ["a"]}}]}],
            "summary_metrics.acc": {"$exists": true}
        }))
        .unwrap();
        let Filter::And(parts) = f else { panic!() };
        assert_eq!(parts.len(), 2);
        let Filter::And(inner) = &parts[0] else { panic!() };
        assert_eq!(
            inner[0],
            Filter::And(vec![
                Filter::Cmp { field: Field::Config(vec!["lr".into()]), op: Op::Gt, operand: Operand::Scalar(Scalar::Float(0.01)) },
                Filter::Cmp { field: Field::Config(vec!["lr".into()]), op: Op::Le, operand: Operand::Scalar(Scalar::Int(1)) },
            ])
        );
        assert_eq!(parts[1], Filter::Cmp { field: Field::Summary(vec!["acc".into()]), op: Op::Exists, operand: Operand::Exists(true) });
    }

    #[test]
    fn times_regexes_and_errors() {
        let f = Filter::parse(&json!({"created_at": {"$gte": "2024-11-05T00:00:00Z"}})).unwrap();
        assert!(matches!(f, Filter::Cmp { operand: Operand::Scalar(Scalar::Time(_)), .. }));
        let f = Filter::parse(&json!({"name": {"$regex": "^a", "$options": "i"}})).unwrap();
        assert_eq!(f, Filter::Cmp { field: Field::Name, op: Op::Regex, operand: Operand::Regex("(?i)^a".into()) });
        for (bad, needle) in [
            (json!({"": 1}), "unknown field"),
            (json!({"config.lr": {"$gtx": 1}}), "$gtx"),
            (json!({"state": "done"}), "done"),
            (json!({"$and": {}}), "$and"),
            (json!([1]), "object"),
            (json!({"config.lr": {"$in": 3}}), "$in"),
            (json!({"created_at": {"$gt": "soon"}}), "soon"),
            (json!({"config.": 1}), "empty"),
        ] {
            let e = Filter::parse(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidFilter);
            assert!(e.message.contains(needle), "{} lacks {needle}", e.message);
        }
        // A bare name is left for the store to resolve against the project's keys.
        let f = Filter::parse(&json!({"val_loss": {"$lt": 1}})).unwrap();
        assert!(matches!(f, Filter::Cmp { field: Field::Bare(ref n), .. } if n == "val_loss"));
        let mut deep = json!({"state": "running"});
        for _ in 0..40 {
            deep = json!({"$and": [deep]});
        }
        assert!(Filter::parse(&deep).unwrap_err().message.contains("too large"));
    }

    #[test]
    fn sort_keys() {
        assert_eq!(SortKey::parse("-summary.acc").unwrap(), SortKey { field: Field::Summary(vec!["acc".into()]), descending: true });
        assert_eq!(SortKey::parse("created_at").unwrap(), SortKey { field: Field::CreatedAt, descending: false });
        assert!(SortKey::parse("-tags").is_err());
        assert!(SortKey::parse("-").is_err());
        assert_eq!(SortKey::parse("-val_loss").unwrap().field, Field::Bare("val_loss".into()));
    }
}

/// Property tests: a field's canonical name parses back to the field; no filter text or JSON,
/// however malformed, panics the parser.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            prop_oneof![Just("$gt".to_owned()), Just("running".to_owned()), ".{0,6}"].prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("$and".to_owned()),
                        Just("$or".to_owned()),
                        Just("$not".to_owned()),
                        Just("$gt".to_owned()),
                        Just("$in".to_owned()),
                        Just("$regex".to_owned()),
                        Just("state".to_owned()),
                        Just("config.lr".to_owned()),
                        Just("tags".to_owned()),
                        "[a-z$.]{0,8}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn field_names_round_trip(name in prop_oneof!["config(\\.[a-z_0-9]{1,6}){1,3}", "summary(\\.[a-z_0-9/]{1,6}){1,3}", "[a-z_/]{1,10}"]) {
            if let Ok(field) = Field::parse(&name) {
                prop_assert_eq!(Field::parse(&field.name()).unwrap(), field);
            }
        }

        #[test]
        fn malformed_filters_are_errors_not_panics(j in json(), text in ".{0,60}") {
            let _ = Filter::parse(&j);
            let _ = Filter::parse_str(&text);
        }
    }
}
