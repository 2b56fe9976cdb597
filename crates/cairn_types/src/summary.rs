//! How a run's summary follows its history, the same in the client (what `run.summary` shows
//! before the server answers) and in the server (what it stores): a key's summary is its last
//! value, unless `define_metric` gives it other modes (`min`, `max`, `mean`, `first`, `last`, or
//! `none` to leave it out); metric names in definitions may hold `*`.

use crate::value::{Map, Value};

/// What the summary needs of a key's points.
#[derive(Debug, Clone, Copy)]
pub struct KeyStats<'a> {
    pub first: &'a Value,
    pub last: &'a Value,
    /// Over the numeric points only; meaningless when `num_count` is 0.
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub num_count: u64,
}

/// The summary value of a key with `modes` (`None`: no definition, the last value); `None`
/// when the key is left out of the summary.
pub fn value(modes: Option<&[String]>, stats: KeyStats<'_>) -> Option<Value> {
    let modes = match modes {
        None => return Some(stats.last.clone()),
        Some(modes) if modes.iter().any(|m| m == "none") => return None,
        Some(modes) if modes.is_empty() || modes == ["last"] => return Some(stats.last.clone()),
        Some(modes) => modes,
    };
    let numeric = |v: f64| if stats.num_count > 0 { Value::Float(v) } else { Value::Null };
    let mut nested = Map::new();
    for mode in modes {
        let v = match mode.as_str() {
            "last" => stats.last.clone(),
            "first" => stats.first.clone(),
            "min" => numeric(stats.min),
            "max" => numeric(stats.max),
            "mean" => numeric(stats.sum / stats.num_count.max(1) as f64),
            _ => continue,
        };
        nested.insert(mode.clone(), v);
    }
    Some(Value::Map(nested))
}

/// The modes of a definition's `summary` text (`"min,max"`), lowercase.
pub fn parse_modes(text: &str) -> Vec<String> {
    text.split(',').map(|m| m.trim().to_lowercase()).filter(|m| !m.is_empty()).collect()
}

/// The definition that applies to `name` among `(pattern, definition)` pairs: the exact name
/// first, then the first pattern with `*` that matches.
pub fn definition_for<'a, T>(definitions: impl Iterator<Item = (&'a str, T)> + Clone, name: &str) -> Option<T> {
    definitions.clone().find(|(pattern, _)| *pattern == name).or_else(|| definitions.filter(|(p, _)| p.contains('*')).find(|(p, _)| glob_match(p, name))).map(|(_, d)| d)
}

/// `*` matches any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let Some(mut rest) = name.strip_prefix(parts[0]) else { return false };
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(pos) => rest = &rest[pos + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("train/*", "train/loss"));
        assert!(glob_match("*loss", "val_loss"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("loss", "loss"));
        assert!(!glob_match("loss", "losses"));
    }

    #[test]
    fn modes() {
        let (first, last) = (Value::Float(3.0), Value::Float(1.0));
        let stats = KeyStats { first: &first, last: &last, min: 0.5, max: 3.0, sum: 6.0, num_count: 4 };
        assert_eq!(value(None, stats), Some(Value::Float(1.0)));
        assert_eq!(value(Some(&["none".into()]), stats), None);
        let both = value(Some(&parse_modes("Min, max,mean")), stats).unwrap();
        assert_eq!(both, Value::Map(crate::map! {"min" => 0.5, "max" => 3.0, "mean" => 1.5}));
        let defs = [("train/*", 1), ("train/loss", 2)];
        assert_eq!(definition_for(defs.iter().map(|(p, d)| (*p, *d)), "train/loss"), Some(2));
        assert_eq!(definition_for(defs.iter().map(|(p, d)| (*p, *d)), "train/acc"), Some(1));
        assert_eq!(definition_for(defs.iter().map(|(p, d)| (*p, *d)), "val"), None);
    }
}
