//! Logged values: numbers, bools, strings, null, lists and nested maps.
//!
//! JSON cannot hold NaN or ±Infinity, yet training produces them and they must be stored and
//! returned. In JSON they are written as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, and
//! those three strings read back as floats.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub type Map = BTreeMap<String, Value>;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(Map),
}

impl Value {
    /// The value as a plot-able number: ints, floats and bools (as 0 or 1).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Bool(b) => Some(b as u8 as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Looks up a nested value by path segments.
    pub fn get_path(&self, path: &[impl AsRef<str>]) -> Option<&Value> {
        let mut current = self;
        for segment in path {
            current = current.as_map()?.get(segment.as_ref())?;
        }
        Some(current)
    }

    /// Calls `f(path, leaf)` for every leaf of nested maps; a non-map value is its own leaf at `[]`.
    /// Empty maps are leaves too, so that they are not lost.
    pub fn for_each_leaf<'a>(&'a self, f: &mut impl FnMut(&[&'a str], &'a Value)) {
        fn walk<'a>(value: &'a Value, path: &mut Vec<&'a str>, f: &mut impl FnMut(&[&'a str], &'a Value)) {
            match value {
                Value::Map(map) if !map.is_empty() => {
                    for (key, child) in map {
                        path.push(key);
                        walk(child, path, f);
                        path.pop();
                    }
                }
                leaf => f(path, leaf),
            }
        }
        walk(self, &mut Vec::new(), f);
    }

    /// Converts to `serde_json::Value`; non-finite floats become the strings above.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => float_to_json(*f),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(map) => {
                serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => string_value(s.clone()),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(map) => {
                Value::Map(map.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
            }
        }
    }
}

/// Inserts `value` at a nested path, creating (or replacing non-map) intermediate maps.
pub fn insert_path(map: &mut Map, path: &[impl AsRef<str>], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = map;
    for segment in parents {
        let entry = current.entry(segment.as_ref().to_owned()).or_insert_with(|| Value::Map(Map::new()));
        if !matches!(entry, Value::Map(_)) {
            *entry = Value::Map(Map::new());
        }
        let Value::Map(next) = entry else { unreachable!() };
        current = next;
    }
    current.insert(last.as_ref().to_owned(), value);
}

/// Removes the value at a nested path, and parents left empty by the removal.
pub fn remove_path(map: &mut Map, path: &[impl AsRef<str>]) {
    fn go(map: &mut Map, path: &[&str]) {
        match path {
            [] => {}
            [last] => {
                map.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(Value::Map(child)) = map.get_mut(*first) {
                    go(child, rest);
                    if child.is_empty() {
                        map.remove(*first);
                    }
                }
            }
        }
    }
    let segments: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    go(map, &segments);
}

fn float_to_json(f: f64) -> serde_json::Value {
    if f.is_finite() {
        serde_json::Number::from_f64(f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::String(non_finite_name(f).to_owned())
    }
}

fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn string_value(s: String) -> Value {
    match s.as_str() {
        "NaN" => Value::Float(f64::NAN),
        "Infinity" => Value::Float(f64::INFINITY),
        "-Infinity" => Value::Float(f64::NEG_INFINITY),
        _ => Value::Str(s),
    }
}

/// Serializes an f64 as a JSON number, or as `"NaN"` / `"Infinity"` / `"-Infinity"`.
pub fn serialize_f64<S: Serializer>(f: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if f.is_finite() { serializer.serialize_f64(*f) } else { serializer.serialize_str(non_finite_name(*f)) }
}

/// Serializes a list of f64 like [`serialize_f64`].
pub fn serialize_f64_slice<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(values.len()))?;
    for v in values {
        seq.serialize_element(&JsonF64(*v))?;
    }
    seq.end()
}

/// Deserializes an f64 from a number or one of the non-finite strings.
pub fn deserialize_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Float(f) => Ok(f),
        Value::Int(i) => Ok(i as f64),
        other => Err(de::Error::custom(format!("expected a number, got a {}", other.type_name()))),
    }
}

pub fn deserialize_f64_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    Vec::<JsonF64>::deserialize(deserializer).map(|v| v.into_iter().map(|x| x.0).collect())
}

pub fn serialize_f64_opt<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(f) => serialize_f64(f, serializer),
        None => serializer.serialize_none(),
    }
}

pub fn deserialize_f64_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    Option::<JsonF64>::deserialize(deserializer).map(|v| v.map(|x| x.0))
}

/// An f64 with the non-finite JSON convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonF64(pub f64);

impl Serialize for JsonF64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_f64(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for JsonF64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonF64, D::Error> {
        deserialize_f64(deserializer).map(JsonF64)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serialize_f64(f, serializer),
            Value::Str(s) => serializer.serialize_str(s),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
                Ok(Value::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
                Ok(i64::try_from(u).map(Value::Int).unwrap_or(Value::Float(u as f64)))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
                Ok(Value::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(string_value(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(string_value(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    map.insert(k, v);
                }
                Ok(Value::Map(map))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Value {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some(
                "Any JSON value. NaN and ±Infinity are written as the strings \"NaN\", \"Infinity\" and \"-Infinity\".",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Value {}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i64) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v as f64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<Map> for Value {
    fn from(v: Map) -> Value {
        Value::Map(v)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Value {
        Value::from_json(&v)
    }
}

/// Builds a [`Map`] from `key => value` pairs: `cairn_types::map! {"lr" => 0.01, "epochs" => 10}`.
#[macro_export]
macro_rules! map {
    () => { $crate::value::Map::new() };
    ($($key:expr => $value:expr),+ $(,)?) => {{
        let mut map = $crate::value::Map::new();
        $( map.insert(::std::string::String::from($key), $crate::value::Value::from($value)); )+
        map
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_round_trip_through_json() {
        let value = Value::Map(map! {"nan" => f64::NAN, "inf" => f64::INFINITY, "ninf" => f64::NEG_INFINITY, "x" => 1.5});
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(text, r#"{"inf":"Infinity","nan":"NaN","ninf":"-Infinity","x":1.5}"#);
        let back: Value = serde_json::from_str(&text).unwrap();
        let map = back.as_map().unwrap();
        assert!(matches!(map["nan"], Value::Float(f) if f.is_nan()));
        assert_eq!(map["inf"], Value::Float(f64::INFINITY));
        assert_eq!(map["ninf"], Value::Float(f64::NEG_INFINITY));
        assert_eq!(Value::from_json(&value.to_json()).as_map().unwrap()["inf"], Value::Float(f64::INFINITY));
    }

    #[test]
    fn ints_stay_ints_and_big_numbers_survive() {
        let v: Value = serde_json::from_str("[1, -2, 1.0, 18446744073709551615, 1e308]").unwrap();
        assert_eq!(
            v,
            Value::List(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Float(1.0),
                Value::Float(18446744073709551615.0),
                Value::Float(1e308)
            ])
        );
    }

    #[test]
    fn leaves_and_paths() {
        let v = Value::Map(map! {"a" => Value::Map(map! {"b" => 1, "c" => Value::Map(Map::new())}), "d" => "x"});
        let mut leaves = Vec::new();
        v.for_each_leaf(&mut |path, leaf| leaves.push((path.join("."), leaf.clone())));
        assert_eq!(
            leaves,
            vec![("a.b".into(), Value::Int(1)), ("a.c".into(), Value::Map(Map::new())), ("d".into(), Value::from("x"))]
        );
        assert_eq!(v.get_path(&["a", "b"]), Some(&Value::Int(1)));
        let mut m = Map::new();
        insert_path(&mut m, &["x", "y"], Value::Int(2));
        insert_path(&mut m, &["x", "z"], Value::Int(3));
        assert_eq!(Value::Map(m.clone()).get_path(&["x", "z"]), Some(&Value::Int(3)));
        remove_path(&mut m, &["x", "y"]);
        remove_path(&mut m, &["x", "z"]);
        assert!(m.is_empty());
    }
}
