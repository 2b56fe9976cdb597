//! Python objects to cairn values and back.
//!
//! Numbers from numpy and torch are taken through `item()` or `__float__`, by duck typing: neither
//! library is imported here.

use cairn_types::value::{Map, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::invalid_value;

const MAX_DEPTH: usize = 32;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Converts a logged value; `key` names it in errors.
pub fn to_value(obj: &Bound<'_, PyAny>, key: &str, depth: usize) -> PyResult<Value> {
    let py = obj.py();
    if depth > MAX_DEPTH {
        return Err(invalid_value(py, format!("value of {key:?} is nested deeper than {MAX_DEPTH} levels")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(match i.extract::<i64>() {
            Ok(v) => Value::Int(v),
            // Beyond 64 bits: kept as the nearest float.
            Err(_) => Value::Float(i.extract::<f64>()?),
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.to_str()?.to_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in dict.iter() {
            let Ok(k) = k.cast::<PyString>() else {
                return Err(invalid_value(py, format!("keys under {key:?} must be strings, got {}", k.repr()?)));
            };
            let k = k.to_str()?;
            let child = to_value(&v, &format!("{key}.{k}"), depth + 1)?;
            map.insert(k.to_owned(), child);
        }
        return cairn_types::value::typed(map).map_err(|e| invalid_value(py, format!("value of {key:?}: {e}")));
    }
    // Media (cairn.Image, Audio, Video) hands over its data, to be staged as it is.
    if obj.hasattr("_cairn_media")? {
        return media(obj, key);
    }
    // cairn's rich values (cairn.Histogram, ...) say what they are.
    if obj.hasattr("_cairn_value")? {
        let typed = obj.call_method0("_cairn_value")?;
        return to_value(&typed, key, depth + 1);
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().enumerate().map(|(i, v)| to_value(&v, &format!("{key}[{i}]"), depth + 1)).collect::<PyResult<Vec<_>>>().map(Value::List);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().enumerate().map(|(i, v)| to_value(&v, &format!("{key}[{i}]"), depth + 1)).collect::<PyResult<Vec<_>>>().map(Value::List);
    }
    // numpy scalars, 0-d arrays and one-element torch tensors: item() gives a Python number.
    if obj.hasattr("item")? {
        return match obj.call_method0("item") {
            Ok(item) if !item.is(obj) => to_value(&item, key, depth + 1),
            Ok(_) => Err(invalid_value(py, format!("value of {key:?} ({}) cannot be logged", type_name(obj)))),
            Err(e) => Err(invalid_value(py, format!("value of {key:?} ({}) cannot be logged: only scalars are supported ({})", type_name(obj), e.value(py)))),
        };
    }
    if obj.hasattr("__float__")? {
        let f: f64 = obj.call_method0("__float__")?.extract()?;
        return Ok(Value::Float(f));
    }
    Err(invalid_value(py, format!("value of {key:?} has type {}, which cannot be logged; log numbers, strings, bools, None, lists or dicts", type_name(obj))))
}

/// A media object's `_cairn_media()`: `(kind, format, caption, source)`, where `source` is
/// `("pixels", width, height, channels, bytes)`, `("samples", rate, channels, float32 bytes)`,
/// `("bytes", bytes)` or `("file", path)`; or `None` for media already stored (logged by its
/// reference, `_cairn_value`).
fn media(obj: &Bound<'_, PyAny>, key: &str) -> PyResult<Value> {
    use cairn_types::media::{MediaKind, RawMedia};
    let py = obj.py();
    let described = obj.call_method0("_cairn_media").map_err(|e| invalid_value(py, format!("value of {key:?}: {}", e.value(py))))?;
    if described.is_none() {
        return to_value(&obj.call_method0("_cairn_value")?, key, 1);
    }
    let (kind, format, caption, source): (String, String, Option<String>, Bound<'_, PyTuple>) = described.extract()?;
    let kind = match kind.as_str() {
        "image" => MediaKind::Image,
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        other => return Err(invalid_value(py, format!("value of {key:?}: unknown media kind {other:?}"))),
    };
    let form: String = source.get_item(0)?.extract()?;
    let bytes = |i: usize| -> PyResult<Vec<u8>> {
        let item = source.get_item(i)?;
        Ok(item.cast::<pyo3::types::PyBytes>().map_err(|_| invalid_value(py, format!("value of {key:?}: media data must be bytes")))?.as_bytes().to_vec())
    };
    let raw = match form.as_str() {
        "pixels" => RawMedia::Pixels { width: source.get_item(1)?.extract()?, height: source.get_item(2)?.extract()?, channels: source.get_item(3)?.extract()?, data: bytes(4)? },
        "samples" => {
            let data = bytes(3)?;
            RawMedia::Samples {
                rate: source.get_item(1)?.extract()?,
                channels: source.get_item(2)?.extract()?,
                data: data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("four bytes"))).collect(),
            }
        }
        "bytes" => RawMedia::Bytes(bytes(1)?),
        "file" => RawMedia::File(std::path::PathBuf::from(source.get_item(1)?.extract::<String>()?)),
        other => return Err(invalid_value(py, format!("value of {key:?}: unknown media source {other:?}"))),
    };
    cairn_client::media::raw(kind, &format, caption.as_deref(), raw).map_err(|e| invalid_value(py, format!("value of {key:?}: {}", e.message)))
}

/// Converts a dict with string keys to a map.
pub fn dict_to_map(dict: &Bound<'_, PyDict>, what: &str) -> PyResult<Map> {
    let mut map = Map::new();
    for (k, v) in dict.iter() {
        let Ok(k) = k.cast::<PyString>() else {
            return Err(invalid_value(dict.py(), format!("{what} keys must be strings, got {}", k.repr()?)));
        };
        let k = k.to_str()?;
        map.insert(k.to_owned(), to_value(&v, k, 0)?);
    }
    Ok(map)
}

/// Converts a value to Python objects (NaN and infinities become floats).
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
        // As JSON has it (`_type`), a dict the Python layer makes a cairn.Histogram, Table,
        // Html or Plot of.
        Value::Histogram(_) | Value::Table(_) | Value::Html(_) | Value::Plot(_) | Value::Media(_) => to_py(py, &Value::Map(value.typed_map().expect("a rich value")))?,
    })
}

/// Converts a JSON value from the server (NaN spelled as a string becomes a float).
pub fn json_to_py<'py>(py: Python<'py>, json: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    to_py(py, &Value::from_json(json))
}
