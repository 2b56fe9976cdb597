//! Logged values: numbers, bools, strings, null, lists, nested maps, and typed rich values
//! (histograms, tables, HTML, charts over tables, media files). A rich value is written in JSON as W&B writes it, an object with a `_type`
//! (`{"_type": "histogram", "bins": [...], "values": [...]}`), and such an object reads back as
//! the typed value.
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
    /// Bins and counts (boxed: a value stays small).
    Histogram(Box<Histogram>),
    /// Named columns and rows of cells.
    Table(Box<Table>),
    /// A page of HTML, shown in a sandboxed frame.
    Html(Box<String>),
    /// A chart over a table (`wandb.plot.*`).
    Plot(Box<Plot>),
    /// An image, audio or video file (see [`crate::media`]).
    Media(Box<crate::media::Media>),
}

/// The charts a [`Plot`] may be.
pub const PLOT_KINDS: [&str; 8] = ["line", "scatter", "bar", "histogram", "line_series", "confusion_matrix", "pr_curve", "roc_curve"];

/// A chart the UI draws from a table: its kind, a title, and which column plays which part
/// (`x`, `y`, `label`, `value`, `series`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub kind: String,
    pub title: String,
    pub fields: BTreeMap<String, String>,
    pub table: Table,
}

impl Plot {
    pub fn new(kind: String, title: String, fields: BTreeMap<String, String>, table: Table) -> Result<Plot, String> {
        if !PLOT_KINDS.contains(&kind.as_str()) {
            return Err(format!("{kind:?} is no chart; one of {}", PLOT_KINDS.join(", ")));
        }
        if table.rows.iter().flatten().any(|c| matches!(c, Value::Media(_))) {
            return Err("a chart's table holds numbers and text; log media in a Table".into());
        }
        if let Some((part, column)) = fields.iter().find(|(_, c)| !table.columns.contains(c)) {
            return Err(format!("the chart's {part} is column {column:?}, which the table lacks (its columns: {})", table.columns.join(", ")));
        }
        Ok(Plot { kind, title, fields, table })
    }

    fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("_type".into(), Value::Str("plot".into()));
        map.insert("kind".into(), Value::Str(self.kind.clone()));
        map.insert("title".into(), Value::Str(self.title.clone()));
        map.insert("fields".into(), Value::Map(self.fields.iter().map(|(k, v)| (k.clone(), Value::Str(v.clone()))).collect()));
        map.insert("table".into(), Value::Map(self.table.to_map()));
        map
    }
}

/// The longest HTML value, in bytes.
pub const MAX_HTML_BYTES: usize = 1 << 20;

/// The most rows and columns a logged table may have.
pub const MAX_TABLE_ROWS: usize = 100_000;
pub const MAX_TABLE_COLUMNS: usize = 1_000;

/// A table, as `wandb.Table`: column names (unique) and rows of as many cells, each a number,
/// string, bool, null, list or map.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Result<Table, String> {
        if columns.len() > MAX_TABLE_COLUMNS || rows.len() > MAX_TABLE_ROWS {
            return Err(format!("a table has at most {MAX_TABLE_COLUMNS} columns and {MAX_TABLE_ROWS} rows, not {} and {}", columns.len(), rows.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            if c.is_empty() || !seen.insert(c.as_str()) {
                return Err(format!("table columns must be named, once each: {c:?}"));
            }
        }
        for (i, row) in rows.iter().enumerate() {
            if row.len() != columns.len() {
                return Err(format!("table row {i} has {} cells for {} columns", row.len(), columns.len()));
            }
            if let Some(cell) = row.iter().find(|c| matches!(c, Value::Table(_) | Value::Histogram(_) | Value::Html(_) | Value::Plot(_))) {
                return Err(format!("table row {i} holds a {}; a cell is a number, string, bool, null, list, map or media", cell.type_name()));
            }
        }
        Ok(Table { columns, rows })
    }

    fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("_type".into(), Value::Str("table".into()));
        map.insert("columns".into(), Value::List(self.columns.iter().map(|c| Value::Str(c.clone())).collect()));
        map.insert("data".into(), Value::List(self.rows.iter().map(|r| Value::List(r.clone())).collect()));
        map
    }
}

impl From<Table> for Value {
    fn from(t: Table) -> Value {
        Value::Table(Box::new(t))
    }
}

/// The most bins a histogram may have.
pub const MAX_BINS: usize = 512;

/// A distribution: `bins` holds the `n + 1` edges in increasing order, `counts` the `n` counts
/// (the last bin includes its upper edge, as numpy's).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bins: Vec<f64>,
    pub counts: Vec<f64>,
}

impl Histogram {
    /// A histogram of edges and counts, checked: an error says what is wrong.
    pub fn new(bins: Vec<f64>, counts: Vec<f64>) -> Result<Histogram, String> {
        if counts.is_empty() || counts.len() > MAX_BINS {
            return Err(format!("a histogram has 1 to {MAX_BINS} bins, not {}", counts.len()));
        }
        if bins.len() != counts.len() + 1 {
            return Err(format!("{} counts need {} bin edges, not {}", counts.len(), counts.len() + 1, bins.len()));
        }
        if bins.iter().any(|b| !b.is_finite()) || bins.windows(2).any(|w| w[0] > w[1]) {
            return Err("bin edges must be finite and in increasing order".into());
        }
        if counts.iter().any(|c| !c.is_finite() || *c < 0.0) {
            return Err("counts must be finite and not negative".into());
        }
        Ok(Histogram { bins, counts })
    }

    /// `num_bins` equal bins over the finite values' range (a range of one value is widened by
    /// half a unit each way); values that are not finite are left out.
    pub fn of(values: &[f64], num_bins: usize) -> Result<Histogram, String> {
        let num_bins = num_bins.clamp(1, MAX_BINS);
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (mut lo, mut hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        if finite.is_empty() {
            (lo, hi) = (0.0, 1.0);
        } else if lo == hi {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let width = (hi - lo) / num_bins as f64;
        let bins: Vec<f64> = (0..=num_bins).map(|i| if i == num_bins { hi } else { lo + width * i as f64 }).collect();
        let mut counts = vec![0.0; num_bins];
        for v in finite {
            let at = (((v - lo) / width) as usize).min(num_bins - 1);
            counts[at] += 1.0;
        }
        Histogram::new(bins, counts)
    }

    pub fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// Several histograms (of the steps in one bucket of a chart, say) as one of `num_bins`
    /// equal bins over all their ranges; each bin's count is spread over the new bins in
    /// proportion to their overlap, so the total is kept.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Histogram>, num_bins: usize) -> Option<Histogram> {
        let parts: Vec<&Histogram> = parts.into_iter().collect();
        let lo = parts.iter().map(|h| h.bins[0]).fold(f64::INFINITY, f64::min);
        let hi = parts.iter().map(|h| h.bins[h.bins.len() - 1]).fold(f64::NEG_INFINITY, f64::max);
        if parts.is_empty() {
            return None;
        }
        let num_bins = num_bins.clamp(1, MAX_BINS);
        let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
        let width = (hi - lo) / num_bins as f64;
        let mut counts = vec![0.0; num_bins];
        for h in parts {
            for (i, &count) in h.counts.iter().enumerate() {
                let (a, b) = (h.bins[i], h.bins[i + 1]);
                if count == 0.0 {
                    continue;
                }
                if b <= a {
                    let at = (((a - lo) / width) as usize).min(num_bins - 1);
                    counts[at] += count;
                    continue;
                }
                let first = (((a - lo) / width) as usize).min(num_bins - 1);
                let last = (((b - lo) / width) as usize).min(num_bins - 1);
                for (j, slot) in counts.iter_mut().enumerate().take(last + 1).skip(first) {
                    let (x, y) = (lo + width * j as f64, lo + width * (j + 1) as f64);
                    let overlap = (b.min(y) - a.max(x)).max(0.0);
                    *slot += count * overlap / (b - a);
                }
            }
        }
        let bins = (0..=num_bins).map(|i| if i == num_bins { hi } else { lo + width * i as f64 }).collect();
        Some(Histogram { bins, counts })
    }

    fn to_map(&self) -> Map {
        let floats = |xs: &[f64]| Value::List(xs.iter().map(|x| Value::Float(*x)).collect());
        let mut map = Map::new();
        map.insert("_type".into(), Value::Str("histogram".into()));
        map.insert("bins".into(), floats(&self.bins));
        map.insert("values".into(), floats(&self.counts));
        map
    }
}

impl From<Histogram> for Value {
    fn from(h: Histogram) -> Value {
        Value::Histogram(Box::new(h))
    }
}

/// A map with a `_type` that cairn knows, as that typed value: an error when it is malformed.
/// Other maps stay maps.
pub fn typed(map: Map) -> Result<Value, String> {
    match map.get("_type").and_then(Value::as_str) {
        Some("histogram") => {
            let floats = |name: &str| -> Result<Vec<f64>, String> {
                match map.get(name) {
                    Some(Value::List(items)) => items.iter().map(|v| v.as_f64().ok_or_else(|| format!("histogram {name} must be numbers"))).collect(),
                    _ => Err(format!("a histogram needs a list of {name}")),
                }
            };
            Ok(Value::Histogram(Box::new(Histogram::new(floats("bins")?, floats("values")?)?)))
        }
        Some("table") => {
            let columns = match map.get("columns") {
                Some(Value::List(items)) => {
                    items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "table columns must be strings".to_owned())).collect::<Result<Vec<_>, _>>()?
                }
                _ => return Err("a table needs a list of columns".into()),
            };
            let rows = match map.get("data") {
                Some(Value::List(rows)) => rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match r {
                        Value::List(cells) => Ok(cells.clone()),
                        _ => Err(format!("table row {i} must be a list of cells")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
                _ => return Err("table data must be a list of rows".into()),
            };
            Ok(Value::Table(Box::new(Table::new(columns, rows)?)))
        }
        Some("plot") => {
            let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
            let kind = text("kind").ok_or("a chart needs its kind")?;
            let fields = match map.get("fields") {
                Some(Value::Map(f)) => {
                    f.iter().map(|(k, v)| v.as_str().map(|c| (k.clone(), c.to_owned())).ok_or_else(|| format!("the chart's {k} must name a column"))).collect::<Result<_, _>>()?
                }
                None => BTreeMap::new(),
                _ => return Err("a chart's fields must be a map of parts to columns".into()),
            };
            let table = match map.get("table") {
                Some(Value::Map(t)) => match typed(t.clone())? {
                    Value::Table(t) => *t,
                    _ => return Err("a chart's table must be a table".into()),
                },
                Some(Value::Table(t)) => (**t).clone(),
                _ => return Err("a chart needs its table".into()),
            };
            Ok(Value::Plot(Box::new(Plot::new(kind, text("title").unwrap_or_default(), fields, table)?)))
        }
        Some(t) if crate::media::MediaKind::from_json_type(t).is_some() && !map.contains_key("pending") => {
            let kind = crate::media::MediaKind::from_json_type(t).expect("a media type");
            Ok(Value::Media(Box::new(crate::media::Media::from_map(kind, &map)?)))
        }
        Some("html") => match map.get("html") {
            Some(Value::Str(html)) if html.len() <= MAX_HTML_BYTES => Ok(Value::Html(Box::new(html.clone()))),
            Some(Value::Str(html)) => Err(format!("an HTML value holds at most {MAX_HTML_BYTES} bytes, not {}", html.len())),
            _ => Err("an HTML value needs its html as a string".into()),
        },
        _ => Ok(Value::Map(map)),
    }
}

fn html_map(html: &str) -> Map {
    let mut map = Map::new();
    map.insert("_type".into(), Value::Str("html".into()));
    map.insert("html".into(), Value::Str(html.to_owned()));
    map
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
            Value::Histogram(_) => "histogram",
            Value::Table(_) => "table",
            Value::Html(_) => "html",
            Value::Plot(_) => "plot",
            Value::Media(m) => m.kind.name(),
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
            Value::Map(map) => serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Histogram(_) | Value::Table(_) | Value::Html(_) | Value::Plot(_) | Value::Media(_) => Value::Map(self.typed_map().expect("a rich value")).to_json(),
        }
    }

    /// A rich value as the map with a `_type` that JSON holds it as (`None` for plain values).
    pub fn typed_map(&self) -> Option<Map> {
        Some(match self {
            Value::Histogram(h) => h.to_map(),
            Value::Table(t) => t.to_map(),
            Value::Html(h) => html_map(h),
            Value::Plot(p) => p.to_map(),
            Value::Media(m) => m.to_map(),
            _ => return None,
        })
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
                let map: Map = map.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect();
                // A malformed rich value stays the map it is.
                typed(map.clone()).unwrap_or(Value::Map(map))
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
            Value::Histogram(_) | Value::Table(_) | Value::Html(_) | Value::Plot(_) | Value::Media(_) => Value::Map(self.typed_map().expect("a rich value")).serialize(serializer),
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
                typed(map).map_err(de::Error::custom)
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
            .description(Some("Any JSON value. NaN and ±Infinity are written as the strings \"NaN\", \"Infinity\" and \"-Infinity\"."))
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
    fn histograms_count_like_numpy_and_merge_keeping_the_total() {
        let h = Histogram::of(&[0.1, 0.5, 0.5, 2.0, 3.5, 4.0, f64::NAN], 4).unwrap();
        assert_eq!(h.counts, [3.0, 1.0, 0.0, 2.0]);
        for (got, want) in h.bins.iter().zip([0.1, 1.075, 2.05, 3.025, 4.0]) {
            assert!((got - want).abs() < 1e-12, "{:?}", h.bins);
        }
        assert_eq!(Histogram::of(&[3.0, 3.0], 2).unwrap().bins, [2.5, 3.0, 3.5]);
        let steps: Vec<Histogram> = (0..100).map(|s| Histogram::of(&(0..50).map(|i| (s + i) as f64).collect::<Vec<_>>(), 10).unwrap()).collect();
        let merged = Histogram::merge(&steps, 16).unwrap();
        assert_eq!((merged.bins[0], *merged.bins.last().unwrap()), (0.0, 148.0));
        assert!((merged.total() - 5000.0).abs() < 1e-6, "{}", merged.total());
        // The middle holds more than the tails, as the 100 overlapping ranges do.
        assert!(merged.counts[8] > merged.counts[0] && merged.counts[8] > merged.counts[15]);
        assert!(Histogram::merge(&[], 4).is_none());
    }

    #[test]
    fn tables_are_typed_in_json_and_on_the_wire_and_bad_ones_are_named() {
        let t = Value::from(Table::new(vec!["id".into(), "name".into()], vec![vec![Value::Int(1), Value::from("a")], vec![Value::Null, Value::Map(map! {"x" => 1})]]).unwrap());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"_type":"table","columns":["id","name"],"data":[[1,"a"],[null,{"x":1}]]}"#);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), t);
        let mut wire = Vec::new();
        crate::wire::put_value(&mut wire, &t);
        assert_eq!(crate::wire::Reader::new(&wire).value().unwrap(), t);
        let mut skip = crate::wire::Reader::new(&wire);
        skip.skip_value().unwrap();
        let err = |text: &str| serde_json::from_str::<Value>(text).unwrap_err().to_string();
        assert!(err(r#"{"_type":"table","columns":["a","b"],"data":[[1]]}"#).contains("row 0 has 1 cells for 2 columns"));
        assert!(err(r#"{"_type":"table","columns":["a","a"],"data":[]}"#).contains("once each"));
        assert!(err(r#"{"_type":"table","columns":["a"],"data":[[{"_type":"table","columns":[],"data":[]}]]}"#).contains("holds a table"));
    }

    #[test]
    fn plots_name_columns_of_their_table() {
        let table = Table::new(vec!["x".into(), "y".into()], vec![vec![Value::Int(1), Value::Float(2.0)]]).unwrap();
        let fields: BTreeMap<String, String> = [("x".to_owned(), "x".to_owned()), ("y".to_owned(), "y".to_owned())].into();
        let plot = Value::Plot(Box::new(Plot::new("line".into(), "loss".into(), fields.clone(), table.clone()).unwrap()));
        let json = serde_json::to_string(&plot).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), plot);
        let mut wire = Vec::new();
        crate::wire::put_value(&mut wire, &plot);
        assert_eq!(crate::wire::Reader::new(&wire).value().unwrap(), plot);
        crate::wire::Reader::new(&wire).skip_value().unwrap();
        assert!(Plot::new("pie".into(), String::new(), fields.clone(), table.clone()).unwrap_err().contains("no chart"));
        let wrong: BTreeMap<String, String> = [("y".to_owned(), "z".to_owned())].into();
        assert!(Plot::new("line".into(), String::new(), wrong, table).unwrap_err().contains("lacks"));
    }

    #[test]
    fn html_is_typed_and_bounded() {
        let h = Value::Html(Box::new("<b>hi</b>".into()));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"_type":"html","html":"<b>hi</b>"}"#);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), h);
        let mut wire = Vec::new();
        crate::wire::put_value(&mut wire, &h);
        assert_eq!(crate::wire::Reader::new(&wire).value().unwrap(), h);
        let big = serde_json::json!({"_type": "html", "html": "x".repeat(MAX_HTML_BYTES + 1)}).to_string();
        assert!(serde_json::from_str::<Value>(&big).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn histograms_are_typed_in_json_and_on_the_wire_and_bad_ones_are_named() {
        let h = Value::Histogram(Box::new(Histogram::new(vec![0.0, 1.0, 2.0], vec![3.0, 4.0]).unwrap()));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"_type":"histogram","bins":[0.0,1.0,2.0],"values":[3.0,4.0]}"#);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), h);
        assert_eq!(Value::from_json(&h.to_json()), h);
        let mut wire = Vec::new();
        crate::wire::put_value(&mut wire, &h);
        assert_eq!(crate::wire::Reader::new(&wire).value().unwrap(), h);
        let mut skip = crate::wire::Reader::new(&wire);
        skip.skip_value().unwrap();
        let bad = r#"{"_type":"histogram","bins":[0,1],"values":[3,4]}"#;
        assert!(serde_json::from_str::<Value>(bad).unwrap_err().to_string().contains("bin edges"));
        assert!(Histogram::new(vec![1.0, 0.0], vec![1.0]).unwrap_err().contains("increasing"));
        assert!(Histogram::new(vec![0.0, 1.0], vec![-1.0]).unwrap_err().contains("negative"));
        // Another `_type`, or none, is a map.
        assert!(matches!(serde_json::from_str::<Value>(r#"{"_type":"other","x":1}"#).unwrap(), Value::Map(_)));
    }

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
        assert_eq!(v, Value::List(vec![Value::Int(1), Value::Int(-2), Value::Float(1.0), Value::Float(18446744073709551615.0), Value::Float(1e308)]));
    }

    #[test]
    fn leaves_and_paths() {
        let v = Value::Map(map! {"a" => Value::Map(map! {"b" => 1, "c" => Value::Map(Map::new())}), "d" => "x"});
        let mut leaves = Vec::new();
        v.for_each_leaf(&mut |path, leaf| leaves.push((path.join("."), leaf.clone())));
        assert_eq!(leaves, vec![("a.b".into(), Value::Int(1)), ("a.c".into(), Value::Map(Map::new())), ("d".into(), Value::from("x"))]);
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
