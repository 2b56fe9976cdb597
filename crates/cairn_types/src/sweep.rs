//! Sweep configurations, as W&B writes them (YAML or a dict, read here as JSON): the search
//! method, the metric, the parameters and their distributions, early termination, the run cap and
//! the command with its macros. `SweepConfig::parse` checks all of it, and an error names the
//! parameter and the problem. Drawing a parameter set (`sample`), enumerating a grid
//! (`grid_size`, `grid_point`) and building a trial's command line (`command_line`) live here too,
//! for the server's controller and for an agent that runs one itself.

use std::collections::BTreeMap;

use serde_json::{Map as JsonMap, Value as Json};

/// How a sweep picks the next trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Grid,
    Random,
    Bayes,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Bayes => "bayes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Minimize,
    Maximize,
}

/// The metric a sweep optimizes: a summary key of its trials.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub goal: Goal,
    /// Stop the sweep once a trial reaches it.
    pub target: Option<f64>,
}

/// How a parameter's values are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Constant(Json),
    Categorical { values: Vec<Json>, probabilities: Option<Vec<f64>> },
    IntUniform { min: i64, max: i64 },
    Uniform { min: f64, max: f64 },
    QUniform { min: f64, max: f64, q: f64 },
    LogUniformValues { min: f64, max: f64 },
    QLogUniformValues { min: f64, max: f64, q: f64 },
    Normal { mu: f64, sigma: f64 },
    QNormal { mu: f64, sigma: f64, q: f64 },
    LogNormal { mu: f64, sigma: f64 },
    QLogNormal { mu: f64, sigma: f64, q: f64 },
}

/// The distributions a configuration may name.
pub const DISTRIBUTIONS: [&str; 11] =
    ["constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform_values", "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal"];

/// A parameter: drawn from a distribution, or a group of parameters (a nested dict of config).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Draw(Distribution),
    Group(BTreeMap<String, Param>),
}

/// Hyperband (Li et al.): trials are stopped at the bracket iterations when their metric is not
/// in the top `1 / eta` of the trials that reached that iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyperband {
    /// The first bracket's iteration (with `min_iter`), or the last one (with `max_iter`, whose
    /// brackets go down by `eta`, `s` times).
    pub min_iter: Option<u64>,
    pub max_iter: Option<u64>,
    pub eta: f64,
    pub s: u32,
    /// Compare against every trial that reached a bracket, not only the finished ones.
    pub strict: bool,
}

impl Hyperband {
    /// The iterations at which trials are judged, in increasing order.
    pub fn brackets(&self) -> Vec<u64> {
        match (self.min_iter, self.max_iter) {
            (Some(min), _) => {
                let mut out = Vec::new();
                let mut at = min as f64;
                for _ in 0..self.s.max(1) {
                    out.push(at.round() as u64);
                    at *= self.eta;
                }
                // With eta near 1, rounding repeats a bracket.
                out.dedup();
                out
            }
            (None, Some(max)) => {
                let mut out = Vec::new();
                let mut at = max as f64;
                for _ in 0..self.s.max(1) {
                    at /= self.eta;
                    if at < 1.0 {
                        break;
                    }
                    out.push(at.round() as u64);
                }
                out.reverse();
                out.dedup();
                out
            }
            (None, None) => Vec::new(),
        }
    }
}

/// A trial's metric as hyperband reads it: its values in the order they were logged (iteration
/// `k` is the `k`-th value, counting from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Iterations<'a> {
    pub run_id: &'a str,
    pub values: &'a [f64],
    /// Only running trials are stopped; the others count in the brackets.
    pub running: bool,
}

/// One judgement of a trial at a bracket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BracketDecision {
    pub run_id: String,
    /// The iteration judged at.
    pub bracket: u64,
    /// The trial's metric at that iteration.
    pub value: f64,
    /// The worst value kept at that bracket.
    pub threshold: f64,
    /// Its place among the trials that reached the bracket (1 is the best; ties count in its favour).
    pub rank: u64,
    /// How many trials reached the bracket, and how many of them are kept (the top `1 / eta`).
    pub reached: u64,
    pub kept: u64,
    pub stopped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub decided_at: Option<crate::Timestamp>,
}

impl Hyperband {
    /// Judges the running trials at the brackets they have reached. A bracket ranks every trial
    /// that reached it, in any state, by its metric at that iteration, and keeps the top
    /// `ceil(n / eta)`; a running trial ranked below is stopped. Each trial is judged once at
    /// each bracket (`judged` holds the run ids and brackets judged before, and whether the trial
    /// was stopped there), or with `strict` again at its latest bracket on every pass, so that a
    /// trial that passed early is stopped when better ones reach the bracket later. A trial
    /// stopped once is not judged again.
    pub fn judge(&self, goal: Goal, trials: &[Iterations<'_>], judged: &std::collections::HashMap<(String, u64), bool>) -> Vec<BracketDecision> {
        let sign = if goal == Goal::Maximize { -1.0 } else { 1.0 };
        let brackets = self.brackets();
        // Per bracket, the values (minimized) of every trial that reached it, sorted.
        let ranked: Vec<Vec<f64>> = brackets
            .iter()
            .map(|&b| {
                let mut at: Vec<f64> = trials.iter().filter_map(|t| t.values.get(b as usize - 1)).map(|v| sign * v).filter(|v| v.is_finite()).collect();
                at.sort_by(f64::total_cmp);
                at
            })
            .collect();
        let mut out = Vec::new();
        let stopped_before: std::collections::HashSet<&str> = judged.iter().filter(|(_, stopped)| **stopped).map(|((r, _), _)| r.as_str()).collect();
        for t in trials.iter().filter(|t| t.running && !stopped_before.contains(t.run_id)) {
            let reached: Vec<usize> = (0..brackets.len()).filter(|&i| t.values.len() as u64 >= brackets[i]).collect();
            let to_judge: Vec<usize> = if self.strict {
                reached.last().copied().into_iter().collect()
            } else {
                reached.into_iter().filter(|&i| !judged.contains_key(&(t.run_id.to_owned(), brackets[i]))).collect()
            };
            for i in to_judge {
                let b = brackets[i];
                let value = t.values[b as usize - 1];
                if !value.is_finite() {
                    continue;
                }
                let all = &ranked[i];
                let kept = ((all.len() as f64 / self.eta).ceil() as usize).max(1);
                let rank = 1 + all.iter().filter(|v| **v < sign * value).count();
                let stopped = rank > kept;
                out.push(BracketDecision {
                    run_id: t.run_id.to_owned(),
                    bracket: b,
                    value,
                    threshold: sign * all[kept.min(all.len()) - 1],
                    rank: rank as u64,
                    reached: all.len() as u64,
                    kept: kept as u64,
                    stopped,
                    decided_at: None,
                });
                if stopped {
                    break;
                }
            }
        }
        out
    }

    /// Why a trial was stopped, for its Overview.
    pub fn reason(&self, metric: &str, d: &BracketDecision) -> String {
        let eta = if self.eta.fract() == 0.0 { format!("{}", self.eta as u64) } else { format!("{}", self.eta) };
        format!(
            "stopped by hyperband at iteration {}: {metric} {} ranks {} of the {} trials that reached it, below the top 1/{eta} (the {} kept reach {})",
            d.bracket, d.value, d.rank, d.reached, d.kept, d.threshold
        )
    }
}

/// A sweep's configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepConfig {
    pub name: Option<String>,
    pub description: Option<String>,
    pub program: Option<String>,
    pub method: Method,
    pub metric: Option<Metric>,
    pub parameters: BTreeMap<String, Param>,
    pub early_terminate: Option<Hyperband>,
    pub run_cap: Option<u64>,
    pub command: Vec<String>,
}

/// W&B's default command.
pub const DEFAULT_COMMAND: [&str; 4] = ["${env}", "${interpreter}", "${program}", "${args}"];
/// The macros a command may hold.
pub const MACROS: [&str; 7] = ["${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}", "${args_json}", "${args_json_file}"];

fn err(path: &str, problem: impl std::fmt::Display) -> String {
    if path.is_empty() { problem.to_string() } else { format!("parameter {path:?}: {problem}") }
}

fn number(v: &Json, path: &str, field: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(err(path, format!("{field} must be a number, not {v}"))),
    }
}

fn integer(v: &Json, path: &str, field: &str) -> Result<i64, String> {
    match (v.as_i64(), v.as_f64()) {
        (Some(i), _) => Ok(i),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
        _ => Err(err(path, format!("{field} must be an integer, not {v}"))),
    }
}

/// The most values an `int_uniform` parameter may take (a grid enumerates them).
pub const MAX_GRID_VALUES: u64 = 1_000_000;

const PARAM_FIELDS: [&str; 9] = ["value", "values", "probabilities", "distribution", "min", "max", "mu", "sigma", "q"];

fn parse_param(path: &str, spec: &Json) -> Result<Param, String> {
    let Some(obj) = spec.as_object() else {
        return Err(err(path, format!("must be a mapping such as {{values: [...]}} or {{min: .., max: ..}}, not {spec}")));
    };
    if let Some(nested) = obj.get("parameters") {
        if obj.len() > 1 {
            return Err(err(path, "a group of parameters holds only `parameters`"));
        }
        return parse_parameters(path, nested).map(Param::Group);
    }
    if let Some(unknown) = obj.keys().find(|k| !PARAM_FIELDS.contains(&k.as_str())) {
        return Err(err(path, format!("unknown field {unknown:?}; a parameter has {}", PARAM_FIELDS.join(", "))));
    }
    let get = |f: &str| obj.get(f);
    let num = |f: &str| get(f).map(|v| number(v, path, f)).transpose();
    let need = |f: &str, what: &str| -> Result<f64, String> { num(f)?.ok_or_else(|| err(path, format!("{what} needs {f}"))) };
    let distribution = match get("distribution") {
        Some(Json::String(d)) => d.clone(),
        Some(other) => return Err(err(path, format!("distribution must be a name, not {other}"))),
        None => {
            // W&B's inference: a value is constant, values categorical, min and max uniform
            // (int_uniform when both are integers).
            if get("value").is_some() {
                "constant".into()
            } else if get("values").is_some() {
                "categorical".into()
            } else if let (Some(lo), Some(hi)) = (get("min"), get("max")) {
                if lo.is_i64() && hi.is_i64() { "int_uniform".into() } else { "uniform".into() }
            } else {
                return Err(err(path, "needs value, values, or min and max (or a distribution)"));
            }
        }
    };
    let ordered = |lo: f64, hi: f64| -> Result<(), String> { if lo < hi { Ok(()) } else { Err(err(path, format!("min {lo} must be below max {hi}"))) } };
    let positive = |name: &str, v: f64| -> Result<f64, String> { if v > 0.0 { Ok(v) } else { Err(err(path, format!("{name} must be positive, not {v}"))) } };
    let q = || -> Result<f64, String> { positive("q", num("q")?.unwrap_or(1.0)) };
    let d = match distribution.as_str() {
        "constant" => Distribution::Constant(get("value").cloned().ok_or_else(|| err(path, "constant needs value"))?),
        "categorical" => {
            let values = match get("values") {
                Some(Json::Array(v)) if !v.is_empty() => v.clone(),
                Some(Json::Array(_)) => return Err(err(path, "values is empty")),
                Some(other) => return Err(err(path, format!("values must be a list, not {other}"))),
                None => return Err(err(path, "categorical needs values")),
            };
            let probabilities = match get("probabilities") {
                None => None,
                Some(Json::Array(p)) => {
                    if p.len() != values.len() {
                        return Err(err(path, format!("{} probabilities for {} values", p.len(), values.len())));
                    }
                    let p = p.iter().map(|x| number(x, path, "probabilities")).collect::<Result<Vec<_>, _>>()?;
                    if p.iter().any(|x| *x < 0.0) || (p.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
                        return Err(err(path, format!("probabilities must be at least 0 and sum to 1, not {p:?}")));
                    }
                    Some(p)
                }
                Some(other) => return Err(err(path, format!("probabilities must be a list, not {other}"))),
            };
            Distribution::Categorical { values, probabilities }
        }
        "int_uniform" => {
            let (lo, hi) = (
                integer(get("min").ok_or_else(|| err(path, "int_uniform needs min"))?, path, "min")?,
                integer(get("max").ok_or_else(|| err(path, "int_uniform needs max"))?, path, "max")?,
            );
            if lo > hi {
                return Err(err(path, format!("min {lo} must not be above max {hi}")));
            }
            if (hi as i128 - lo as i128) >= MAX_GRID_VALUES as i128 {
                return Err(err(path, format!("int_uniform from {lo} to {hi} has more than {MAX_GRID_VALUES} values")));
            }
            Distribution::IntUniform { min: lo, max: hi }
        }
        "uniform" | "q_uniform" => {
            let (lo, hi) = (need("min", &distribution)?, need("max", &distribution)?);
            ordered(lo, hi)?;
            if distribution == "uniform" { Distribution::Uniform { min: lo, max: hi } } else { Distribution::QUniform { min: lo, max: hi, q: q()? } }
        }
        "log_uniform_values" | "q_log_uniform_values" => {
            let (lo, hi) = (positive("min", need("min", &distribution)?)?, need("max", &distribution)?);
            ordered(lo, hi)?;
            if distribution == "log_uniform_values" { Distribution::LogUniformValues { min: lo, max: hi } } else { Distribution::QLogUniformValues { min: lo, max: hi, q: q()? } }
        }
        "normal" | "q_normal" | "log_normal" | "q_log_normal" => {
            let mu = num("mu")?.unwrap_or(0.0);
            let sigma = positive("sigma", num("sigma")?.unwrap_or(1.0))?;
            match distribution.as_str() {
                "normal" => Distribution::Normal { mu, sigma },
                "q_normal" => Distribution::QNormal { mu, sigma, q: q()? },
                "log_normal" => Distribution::LogNormal { mu, sigma },
                _ => Distribution::QLogNormal { mu, sigma, q: q()? },
            }
        }
        other => return Err(err(path, format!("unknown distribution {other:?}; one of {}", DISTRIBUTIONS.join(", ")))),
    };
    Ok(Param::Draw(d))
}

fn parse_parameters(prefix: &str, spec: &Json) -> Result<BTreeMap<String, Param>, String> {
    let Some(obj) = spec.as_object() else { return Err(err(prefix, format!("parameters must be a mapping of names, not {spec}"))) };
    if obj.is_empty() {
        return Err(err(prefix, "parameters is empty"));
    }
    obj.iter()
        .map(|(name, p)| {
            if name.is_empty() {
                return Err(err(prefix, "a parameter needs a name"));
            }
            if name.contains('.') {
                return Err(err(prefix, format!("parameter name {name:?} holds a dot; nest a group of parameters instead")));
            }
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            Ok((name.clone(), parse_param(&path, p)?))
        })
        .collect()
}

const CONFIG_FIELDS: [&str; 10] = ["name", "description", "program", "method", "metric", "parameters", "early_terminate", "run_cap", "command", "project"];

impl SweepConfig {
    /// A configuration from its JSON (a YAML file read as JSON), checked.
    pub fn parse(spec: &Json) -> Result<SweepConfig, String> {
        let Some(obj) = spec.as_object() else { return Err(format!("a sweep configuration is a mapping, not {spec}")) };
        if let Some(unknown) = obj.keys().find(|k| !CONFIG_FIELDS.contains(&k.as_str()) && k.as_str() != "entity") {
            return Err(format!("unknown field {unknown:?} in the sweep configuration; it has {}", CONFIG_FIELDS.join(", ")));
        }
        let text = |f: &str| -> Result<Option<String>, String> {
            match obj.get(f) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("{f} must be a string, not {other}")),
            }
        };
        let method = match text("method")?.as_deref() {
            Some("grid") => Method::Grid,
            Some("random") => Method::Random,
            Some("bayes") => Method::Bayes,
            Some(other) => return Err(format!("method {other:?} is not grid, random or bayes")),
            None => return Err("a sweep needs a method: grid, random or bayes".into()),
        };
        let metric = match obj.get("metric") {
            None | Some(Json::Null) => None,
            Some(Json::Object(m)) => {
                let name = m.get("name").and_then(Json::as_str).filter(|n| !n.is_empty()).ok_or("metric needs a name")?.to_owned();
                let goal = match m.get("goal").and_then(Json::as_str) {
                    None | Some("minimize") => Goal::Minimize,
                    Some("maximize") => Goal::Maximize,
                    Some(other) => return Err(format!("metric goal {other:?} is not minimize or maximize")),
                };
                let target = m.get("target").map(|t| number(t, "", "metric target")).transpose()?;
                Some(Metric { name, goal, target })
            }
            Some(other) => return Err(format!("metric must be a mapping with a name and a goal, not {other}")),
        };
        let parameters = parse_parameters("", obj.get("parameters").ok_or("a sweep needs parameters")?)?;
        if method == Method::Bayes && metric.is_none() {
            return Err("a bayes sweep needs a metric to optimize".into());
        }
        let config = SweepConfig {
            name: text("name")?,
            description: text("description")?,
            program: text("program")?,
            method,
            metric,
            parameters,
            early_terminate: parse_early_terminate(obj.get("early_terminate"))?,
            run_cap: match obj.get("run_cap") {
                None | Some(Json::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 => Some(n),
                    _ => return Err(format!("run_cap must be a positive integer, not {v}")),
                },
            },
            command: match obj.get("command") {
                None | Some(Json::Null) => DEFAULT_COMMAND.iter().map(|s| s.to_string()).collect(),
                Some(Json::Array(parts)) if !parts.is_empty() => {
                    parts.iter().map(|p| p.as_str().map(str::to_owned).ok_or_else(|| format!("command parts must be strings, not {p}"))).collect::<Result<_, _>>()?
                }
                Some(other) => return Err(format!("command must be a list of strings, not {other}")),
            },
        };
        if config.early_terminate.is_some() && config.metric.is_none() {
            return Err("early_terminate needs a metric to judge the trials by".into());
        }
        if let Some(part) = config.command.iter().find(|p| p.contains("${") && !MACROS.contains(&p.as_str())) {
            return Err(format!("command part {part:?} is no macro; the macros are {}", MACROS.join(", ")));
        }
        if config.method == Method::Grid {
            config.check_grid("", &config.parameters)?;
        }
        Ok(config)
    }

    fn check_grid(&self, prefix: &str, params: &BTreeMap<String, Param>) -> Result<(), String> {
        for (name, p) in params {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match p {
                Param::Group(g) => self.check_grid(&path, g)?,
                Param::Draw(Distribution::Constant(_) | Distribution::Categorical { .. } | Distribution::IntUniform { .. }) => {}
                Param::Draw(_) => return Err(err(&path, "a grid search takes value, values or int_uniform; this one is drawn from a continuous distribution")),
            }
        }
        Ok(())
    }

    /// The parameters flattened, dotted paths in order.
    pub fn flat(&self) -> Vec<(String, &Distribution)> {
        fn walk<'a>(prefix: &str, params: &'a BTreeMap<String, Param>, out: &mut Vec<(String, &'a Distribution)>) {
            for (name, p) in params {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                match p {
                    Param::Group(g) => walk(&path, g, out),
                    Param::Draw(d) => out.push((path, d)),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.parameters, &mut out);
        out
    }

    /// How many points a grid sweep has.
    pub fn grid_size(&self) -> u64 {
        self.flat().iter().map(|(_, d)| grid_values(d).len() as u64).fold(1u64, |n, k| n.saturating_mul(k.max(1)))
    }

    /// The grid's point `index` (0 ≤ index < `grid_size`), as a nested config; the last
    /// parameter varies fastest.
    pub fn grid_point(&self, index: u64) -> Json {
        let flat = self.flat();
        let mut rest = index;
        let mut chosen: Vec<(String, Json)> = Vec::with_capacity(flat.len());
        for (path, d) in flat.iter().rev() {
            let values = grid_values(d);
            let n = values.len().max(1) as u64;
            chosen.push((path.clone(), values[(rest % n) as usize].clone()));
            rest /= n;
        }
        nest(chosen.into_iter().rev())
    }

    /// A parameter set drawn at random, as a nested config.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Json {
        nest(self.flat().into_iter().map(|(path, d)| (path, draw(d, rng))))
    }
}

fn parse_early_terminate(spec: Option<&Json>) -> Result<Option<Hyperband>, String> {
    let Some(spec) = spec.filter(|s| !s.is_null()) else { return Ok(None) };
    let Some(obj) = spec.as_object() else { return Err(format!("early_terminate must be a mapping, not {spec}")) };
    match obj.get("type").and_then(Json::as_str) {
        Some("hyperband") => {}
        Some(other) => return Err(format!("early_terminate type {other:?} is not hyperband")),
        None => return Err("early_terminate needs type: hyperband".into()),
    }
    let iter = |f: &str| -> Result<Option<u64>, String> {
        match obj.get(f) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!("early_terminate {f} must be a positive integer, not {v}")),
            },
        }
    };
    let (min_iter, max_iter) = (iter("min_iter")?, iter("max_iter")?);
    if min_iter.is_none() && max_iter.is_none() {
        return Err("hyperband needs min_iter or max_iter".into());
    }
    let eta = match obj.get("eta") {
        None => 3.0,
        Some(v) => match v.as_f64() {
            Some(e) if e > 1.0 => e,
            _ => return Err(format!("hyperband eta must be a number above 1, not {v}")),
        },
    };
    let s = match obj.get("s") {
        None => {
            if min_iter.is_some() {
                3
            } else {
                0
            }
        }
        Some(v) => match v.as_u64() {
            Some(n) if (1..=20).contains(&n) => n as u32,
            _ => return Err(format!("hyperband s must be an integer from 1 to 20, not {v}")),
        },
    };
    let s = if s == 0 {
        // With max_iter alone: as many brackets as eta divides it.
        let mut n = 0u32;
        let mut at = max_iter.unwrap_or(1) as f64;
        while at / eta >= 1.0 && n < 20 {
            at /= eta;
            n += 1;
        }
        n.max(1)
    } else {
        s
    };
    let strict = match obj.get("strict") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(v) => return Err(format!("hyperband strict must be true or false, not {v}")),
    };
    Ok(Some(Hyperband { min_iter, max_iter, eta, s, strict }))
}

/// The values a grid takes of a distribution (grid sweeps have only these kinds).
pub fn grid_values(d: &Distribution) -> Vec<Json> {
    match d {
        Distribution::Constant(v) => vec![v.clone()],
        Distribution::Categorical { values, .. } => values.clone(),
        Distribution::IntUniform { min, max } => (*min..=*max).map(Json::from).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn quantize(x: f64, q: f64) -> f64 {
    (x / q).round() * q
}

/// A standard normal draw (Box–Muller).
pub(crate) fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn float(x: f64) -> Json {
    serde_json::Number::from_f64(x).map(Json::Number).unwrap_or(Json::Null)
}

/// One draw from a distribution.
pub fn draw(d: &Distribution, rng: &mut fastrand::Rng) -> Json {
    match d {
        Distribution::Constant(v) => v.clone(),
        Distribution::Categorical { values, probabilities } => match probabilities {
            None => values[rng.usize(..values.len())].clone(),
            Some(p) => {
                let mut u = rng.f64();
                for (v, w) in values.iter().zip(p) {
                    if u < *w {
                        return v.clone();
                    }
                    u -= w;
                }
                values[values.len() - 1].clone()
            }
        },
        Distribution::IntUniform { min, max } => Json::from(rng.i64(*min..=*max)),
        Distribution::Uniform { min, max } => float(min + (max - min) * rng.f64()),
        Distribution::QUniform { min, max, q } => float(quantize(min + (max - min) * rng.f64(), *q)),
        Distribution::LogUniformValues { min, max } => float((min.ln() + (max.ln() - min.ln()) * rng.f64()).exp()),
        Distribution::QLogUniformValues { min, max, q } => float(quantize((min.ln() + (max.ln() - min.ln()) * rng.f64()).exp(), *q)),
        Distribution::Normal { mu, sigma } => float(mu + sigma * standard_normal(rng)),
        Distribution::QNormal { mu, sigma, q } => float(quantize(mu + sigma * standard_normal(rng), *q)),
        Distribution::LogNormal { mu, sigma } => float((mu + sigma * standard_normal(rng)).exp()),
        Distribution::QLogNormal { mu, sigma, q } => float(quantize((mu + sigma * standard_normal(rng)).exp(), *q)),
    }
}

/// Dotted paths and values as nested JSON objects.
pub(crate) fn nest(pairs: impl IntoIterator<Item = (String, Json)>) -> Json {
    let mut root = JsonMap::new();
    for (path, value) in pairs {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("a path has a name");
        let mut at = &mut root;
        for p in parts {
            at = at.entry(p.to_owned()).or_insert_with(|| Json::Object(JsonMap::new())).as_object_mut().expect("groups are objects");
        }
        at.insert(last.to_owned(), value);
    }
    Json::Object(root)
}

/// A value as a command-line argument's text: strings as they are, anything else as JSON.
fn arg_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A trial's command line: the configuration's `command` with its macros expanded. `args_file`
/// is the file that `${args_json_file}` names (the agent writes the JSON there).
pub fn command_line(command: &[String], program: Option<&str>, interpreter: &str, config: &Json, args_file: &str) -> Vec<String> {
    let top: Vec<(String, Json)> = config.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let mut out = Vec::new();
    for part in command {
        match part.as_str() {
            "${env}" => out.push("/usr/bin/env".to_owned()),
            "${interpreter}" => out.push(interpreter.to_owned()),
            "${program}" => out.extend(program.map(str::to_owned)),
            "${args}" => out.extend(top.iter().map(|(k, v)| format!("--{k}={}", arg_text(v)))),
            "${args_no_hyphens}" => out.extend(top.iter().map(|(k, v)| format!("{k}={}", arg_text(v)))),
            "${args_json}" => out.push(config.to_string()),
            "${args_json_file}" => out.push(args_file.to_owned()),
            other => out.push(other.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Json) -> Result<SweepConfig, String> {
        SweepConfig::parse(&v)
    }

    #[test]
    fn bad_configurations_name_the_parameter_and_the_problem() {
        let cases = [
            (json!({"method": "grud", "parameters": {"x": {"value": 1}}}), "method \"grud\" is not grid, random or bayes"),
            (json!({"method": "random"}), "a sweep needs parameters"),
            (json!({"method": "random", "parameters": {"lr": {"min": 0.1, "max": 0.01}}}), "parameter \"lr\": min 0.1 must be below max 0.01"),
            (json!({"method": "random", "parameters": {"lr": {"distribution": "gamma", "min": 1, "max": 2}}}), "parameter \"lr\": unknown distribution \"gamma\""),
            (json!({"method": "random", "parameters": {"opt": {"parameters": {"lr": {"values": []}}}}}), "parameter \"opt.lr\": values is empty"),
            (json!({"method": "random", "parameters": {"a": {"values": [1, 2], "probabilities": [0.5, 0.6]}}}), "parameter \"a\": probabilities must be at least 0 and sum to 1"),
            (json!({"method": "random", "parameters": {"a": {"distribution": "log_uniform_values", "min": 0, "max": 1}}}), "parameter \"a\": min must be positive"),
            (json!({"method": "random", "parameters": {"a": {"valuez": [1]}}}), "parameter \"a\": unknown field \"valuez\""),
            (json!({"method": "grid", "parameters": {"a": {"min": 0.0, "max": 1.0}}}), "parameter \"a\": a grid search takes value, values or int_uniform"),
            (json!({"method": "bayes", "parameters": {"a": {"min": 0.0, "max": 1.0}}}), "a bayes sweep needs a metric"),
            (json!({"method": "random", "metric": {"name": "loss", "goal": "lower"}, "parameters": {"a": {"value": 1}}}), "metric goal \"lower\""),
            (json!({"method": "random", "parameters": {"a": {"value": 1}}, "command": ["${env}", "${python}"]}), "command part \"${python}\" is no macro"),
            (
                json!({"method": "random", "metric": {"name": "l"}, "parameters": {"a": {"value": 1}}, "early_terminate": {"type": "hyperband"}}),
                "hyperband needs min_iter or max_iter",
            ),
            (json!({"method": "random", "parameters": {"a": {"value": 1}}, "run_cap": 0}), "run_cap must be a positive integer"),
        ];
        for (spec, want) in cases {
            let got = parse(spec.clone()).expect_err(&format!("{spec} should be refused"));
            assert!(got.contains(want), "{spec}: {got:?} does not say {want:?}");
        }
    }

    #[test]
    fn a_wandb_configuration_reads_as_wandb_infers_it() {
        let c = parse(json!({
            "program": "train.py",
            "method": "random",
            "metric": {"name": "val_loss", "goal": "minimize", "target": 0.1},
            "parameters": {
                "epochs": {"value": 5},
                "batch": {"values": [16, 32], "probabilities": [0.25, 0.75]},
                "layers": {"min": 1, "max": 4},
                "dropout": {"min": 0.0, "max": 0.5},
                "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
                "optimizer": {"parameters": {"momentum": {"distribution": "q_uniform", "min": 0.5, "max": 0.99, "q": 0.01}}},
            },
            "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3, "s": 2},
            "run_cap": 20,
        }))
        .unwrap();
        assert_eq!(c.command, DEFAULT_COMMAND);
        let flat: Vec<(String, &Distribution)> = c.flat();
        assert_eq!(flat.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["batch", "dropout", "epochs", "layers", "lr", "optimizer.momentum"]);
        assert!(matches!(flat[3].1, Distribution::IntUniform { min: 1, max: 4 }));
        assert!(matches!(flat[1].1, Distribution::Uniform { .. }));
        assert_eq!(c.early_terminate.as_ref().unwrap().brackets(), [3, 9]);
        let mut rng = fastrand::Rng::with_seed(1);
        let drawn = c.sample(&mut rng);
        assert_eq!(drawn["epochs"], 5);
        let m = drawn["optimizer"]["momentum"].as_f64().unwrap();
        assert!((0.5..=0.99).contains(&m) && ((m * 100.0).round() - m * 100.0).abs() < 1e-9, "{m}");
        let hb = parse(json!({"method": "random", "metric": {"name": "l"}, "parameters": {"a": {"value": 1}}, "early_terminate": {"type": "hyperband", "max_iter": 27, "eta": 3}}))
            .unwrap();
        assert_eq!(hb.early_terminate.unwrap().brackets(), [1, 3, 9]);
    }

    #[test]
    fn a_grid_enumerates_every_point_once() {
        let c = parse(json!({"method": "grid", "parameters": {"a": {"values": [1, 2, 3]}, "b": {"min": 0, "max": 1}, "g": {"parameters": {"c": {"values": ["x", "y"]}}}, "k": {"value": "k"}}})).unwrap();
        assert_eq!(c.grid_size(), 12);
        let points: std::collections::BTreeSet<String> = (0..12).map(|i| c.grid_point(i).to_string()).collect();
        assert_eq!(points.len(), 12);
        assert_eq!(c.grid_point(0), json!({"a": 1, "b": 0, "g": {"c": "x"}, "k": "k"}));
        assert_eq!(c.grid_point(1), json!({"a": 1, "b": 0, "g": {"c": "y"}, "k": "k"}));
    }

    /// Kolmogorov–Smirnov: the largest gap between the sample's and the distribution's CDF.
    fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter().enumerate().map(|(i, x)| ((i as f64 + 1.0) / n - cdf(*x)).abs().max((cdf(*x) - i as f64 / n).abs())).fold(0.0, f64::max)
    }

    fn normal_cdf(x: f64) -> f64 {
        // Abramowitz–Stegun 7.1.26 for erf, good to 1.5e-7.
        let z = x / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.3275911 * z.abs());
        let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * (-z * z).exp();
        0.5 * (1.0 + if z >= 0.0 { y } else { -y })
    }

    #[test]
    fn draws_match_their_distributions() {
        // 2,000 draws each, seeded; the KS statistic's critical value at 1% is 1.63 / sqrt(n).
        let n = 2000;
        let critical = 1.63 / (n as f64).sqrt();
        let mut rng = fastrand::Rng::with_seed(42);
        let mut sample = |d: &Distribution| -> Vec<f64> { (0..n).map(|_| draw(d, &mut rng).as_f64().unwrap()).collect() };
        let continuous: Vec<(Distribution, Box<dyn Fn(f64) -> f64>)> = vec![
            (Distribution::Uniform { min: -2.0, max: 3.0 }, Box::new(|x: f64| ((x + 2.0) / 5.0).clamp(0.0, 1.0))),
            (Distribution::LogUniformValues { min: 1e-4, max: 1.0 }, Box::new(|x: f64| ((x.ln() - 1e-4f64.ln()) / (-(1e-4f64.ln()))).clamp(0.0, 1.0))),
            (Distribution::Normal { mu: 1.0, sigma: 2.0 }, Box::new(|x: f64| normal_cdf((x - 1.0) / 2.0))),
            (Distribution::LogNormal { mu: 0.0, sigma: 0.5 }, Box::new(|x: f64| normal_cdf(x.ln() / 0.5))),
        ];
        for (d, cdf) in &continuous {
            let xs = sample(d);
            let stat = ks(xs.clone(), cdf);
            assert!(stat < critical, "{d:?}: KS {stat:.4} above {critical:.4}");
            if let Distribution::Uniform { min, max } | Distribution::LogUniformValues { min, max } = d {
                assert!(xs.iter().all(|x| x >= min && x <= max), "{d:?} out of bounds");
            }
        }
        // Quantized draws sit on the grid of q and within the bounds.
        for d in [
            Distribution::QUniform { min: 0.0, max: 10.0, q: 0.5 },
            Distribution::QLogUniformValues { min: 1.0, max: 100.0, q: 2.0 },
            Distribution::QNormal { mu: 0.0, sigma: 3.0, q: 0.25 },
            Distribution::QLogNormal { mu: 1.0, sigma: 0.5, q: 0.1 },
        ] {
            let q = match d {
                Distribution::QUniform { q, .. } | Distribution::QLogUniformValues { q, .. } | Distribution::QNormal { q, .. } | Distribution::QLogNormal { q, .. } => q,
                _ => unreachable!(),
            };
            for x in sample(&d) {
                assert!(((x / q).round() - x / q).abs() < 1e-9, "{d:?}: {x} is not a multiple of {q}");
            }
        }
        let ints: Vec<f64> = sample(&Distribution::IntUniform { min: 3, max: 7 });
        for k in 3..=7 {
            let share = ints.iter().filter(|x| **x == k as f64).count() as f64 / n as f64;
            assert!((share - 0.2).abs() < 0.04, "int_uniform {k}: {share}");
        }
        let weighted = Distribution::Categorical { values: vec![json!("a"), json!("b")], probabilities: Some(vec![0.2, 0.8]) };
        let b = (0..n).filter(|_| draw(&weighted, &mut rng) == json!("b")).count() as f64 / n as f64;
        assert!((b - 0.8).abs() < 0.04, "{b}");
    }

    #[test]
    fn hyperband_stops_what_ranks_below_its_brackets_and_nothing_else() {
        let hb = Hyperband { min_iter: Some(2), max_iter: None, eta: 2.0, s: 2, strict: false };
        assert_eq!(hb.brackets(), [2, 4]);
        let (a, b, c, d) = ([5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.5, 4.4, 4.3], [5.0, 4.2, 2.5, 2.4], [9.0]);
        let trials = [
            Iterations { run_id: "a", values: &a, running: false },
            Iterations { run_id: "b", values: &b, running: true },
            Iterations { run_id: "c", values: &c, running: true },
            Iterations { run_id: "d", values: &d, running: true },
        ];
        let judged = std::collections::HashMap::new();
        let got = hb.judge(Goal::Minimize, &trials, &judged);
        let view: Vec<(&str, u64, bool, u64, u64)> = got.iter().map(|d| (d.run_id.as_str(), d.bracket, d.stopped, d.rank, d.kept)).collect();
        // Bracket 2: a 4.0, c 4.2, b 4.5: keep 2 of 3, so b stops there; c passes and at bracket
        // 4 (a 2.0, c 2.4, b 4.3) keeps 2 of 3 again. d has not reached a bracket.
        assert_eq!(view, [("b", 2, true, 3, 2), ("c", 2, false, 2, 2), ("c", 4, false, 2, 2)]);
        assert_eq!(got[0].threshold, 4.2);
        assert!(
            hb.reason("loss", &got[0]).starts_with("stopped by hyperband at iteration 2: loss 4.5 ranks 3 of the 3 trials that reached it, below the top 1/2"),
            "{}",
            hb.reason("loss", &got[0])
        );
        // Judged before: not again, unless strict (then at the latest bracket, every pass).
        let judged: std::collections::HashMap<(String, u64), bool> = got.iter().map(|d| ((d.run_id.clone(), d.bracket), d.stopped)).collect();
        assert!(hb.judge(Goal::Minimize, &trials, &judged).is_empty());
        let strict = Hyperband { strict: true, ..hb.clone() };
        let again = strict.judge(Goal::Minimize, &trials, &judged);
        assert_eq!(again.iter().map(|d| (d.run_id.as_str(), d.bracket, d.stopped)).collect::<Vec<_>>(), [("c", 4, false)]);
        // Maximized: the order turns round, and b (the highest) is kept.
        let up = hb.judge(Goal::Maximize, &trials, &std::collections::HashMap::new());
        assert_eq!(up.iter().map(|d| (d.run_id.as_str(), d.bracket, d.stopped)).collect::<Vec<_>>(), [("b", 2, false), ("b", 4, false), ("c", 2, false), ("c", 4, false)]);
    }

    #[test]
    fn commands_expand_wandbs_macros() {
        let config = json!({"lr": 0.01, "opt": "adam", "g": {"m": 1}});
        let line = command_line(&DEFAULT_COMMAND.map(String::from), Some("train.py"), "python3", &config, "/tmp/args.json");
        assert_eq!(line, ["/usr/bin/env", "python3", "train.py", "--g={\"m\":1}", "--lr=0.01", "--opt=adam"]);
        let custom: Vec<String> = ["${interpreter}", "-u", "${program}", "${args_no_hyphens}", "--json", "${args_json}", "${args_json_file}"].map(String::from).to_vec();
        let line = command_line(&custom, Some("t.py"), "py", &json!({"a": 1}), "/x/args.json");
        assert_eq!(line, ["py", "-u", "t.py", "a=1", "--json", "{\"a\":1}", "/x/args.json"]);
    }
}

/// A trial as a controller sees it: its parameters, its state (`pending`, `running`,
/// `finished`, `failed`, `killed`, `crashed` or `lost`), its metric, and its grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialView {
    pub config: Json,
    pub state: String,
    pub metric: Option<f64>,
    pub grid_index: Option<u64>,
}

impl TrialView {
    /// Neither crashed nor lost: its point is taken.
    pub fn live(&self) -> bool {
        !matches!(self.state.as_str(), "crashed" | "lost")
    }

    fn active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "pending")
    }
}

/// What a controller decides for an agent that asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run a trial with these parameters (at this grid point).
    Run { grid_index: Option<u64>, config: Json },
    /// Ask again later: trials still run and nothing is left to hand out.
    Wait(String),
    /// The sweep is done.
    Finished(String),
}

/// The best finished trial by the metric: its index in `trials` and its value.
pub fn best_trial(config: &SweepConfig, trials: &[TrialView]) -> Option<(usize, f64)> {
    let goal = config.metric.as_ref()?.goal;
    trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.state == "finished")
        .filter_map(|(i, t)| t.metric.filter(|v| v.is_finite()).map(|v| (i, v)))
        .min_by(|(_, a), (_, b)| if goal == Goal::Minimize { a.total_cmp(b) } else { b.total_cmp(a) })
}

/// The controller of a running sweep: the metric's target reached, the run cap, the grid's next
/// free point (a crashed or lost trial's point comes back), a random draw, or the bayes
/// suggestion. `seed` makes the draws the same wherever the controller runs.
pub fn next_step(config: &SweepConfig, trials: &[TrialView], seed: u64) -> Step {
    let active = trials.iter().filter(|t| t.active()).count();
    if let (Some(metric), Some((_, best))) = (&config.metric, best_trial(config, trials))
        && let Some(target) = metric.target
    {
        let reached = if metric.goal == Goal::Minimize { best <= target } else { best >= target };
        if reached {
            return Step::Finished(format!("a trial reached the target {} = {target}", metric.name));
        }
    }
    let live = trials.iter().filter(|t| t.live()).count() as u64;
    if config.run_cap.is_some_and(|cap| live >= cap) {
        if active > 0 {
            return Step::Wait(format!("the run cap of {live} is reached; {active} trials still run"));
        }
        return Step::Finished(format!("the run cap of {live} trials is reached"));
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    match config.method {
        Method::Grid => {
            let taken: std::collections::HashSet<u64> = trials.iter().filter(|t| t.live()).filter_map(|t| t.grid_index).collect();
            match (0..config.grid_size()).find(|i| !taken.contains(i)) {
                Some(i) => Step::Run { grid_index: Some(i), config: config.grid_point(i) },
                None if active > 0 => Step::Wait(format!("every grid point is taken; {active} trials still run")),
                None => Step::Finished(format!("every one of the {} grid points ran", config.grid_size())),
            }
        }
        Method::Random => Step::Run { grid_index: None, config: config.sample(&mut rng) },
        #[cfg(feature = "search")]
        Method::Bayes => {
            let seen: Vec<crate::bayes::Observation> = trials
                .iter()
                .filter_map(|t| {
                    let value = match t.state.as_str() {
                        "running" | "pending" => None,
                        "finished" | "killed" => Some(t.metric?),
                        _ => return None,
                    };
                    Some(crate::bayes::Observation { config: t.config.clone(), value })
                })
                .collect();
            Step::Run { grid_index: None, config: crate::bayes::suggest(config, &seen, &mut rng) }
        }
        #[cfg(not(feature = "search"))]
        Method::Bayes => Step::Run { grid_index: None, config: config.sample(&mut rng) },
    }
}

/// What a sweep is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SweepState {
    /// Trials are handed out.
    Running,
    /// None are handed out until it resumes; running trials go on.
    Paused,
    /// None are handed out again; running trials finish.
    Stopped,
    /// Stopped, and its running trials are stopped too (they end as killed).
    Canceled,
    /// Every trial ran (a grid's every point, the run cap, or the metric's target reached).
    Finished,
}

impl SweepState {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Paused => "paused",
            SweepState::Stopped => "stopped",
            SweepState::Canceled => "canceled",
            SweepState::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<SweepState> {
        Some(match s {
            "running" => SweepState::Running,
            "paused" => SweepState::Paused,
            "stopped" => SweepState::Stopped,
            "canceled" => SweepState::Canceled,
            "finished" => SweepState::Finished,
            _ => return None,
        })
    }

    /// Whether no trial will be handed out again.
    pub fn is_over(self) -> bool {
        matches!(self, SweepState::Stopped | SweepState::Canceled | SweepState::Finished)
    }
}

/// Body of `POST .../projects/{e}/{p}/sweeps`: the configuration, as JSON (a YAML file read).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSweep {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Json,
}

/// Body of `PATCH /api/v1/sweeps/{e}/{p}/{id}`: pause (`paused`), resume (`running`), stop or
/// cancel it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SweepPatch {
    pub state: SweepState,
}

/// A sweep as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepInfo {
    pub entity: String,
    pub project: String,
    pub sweep_id: String,
    pub name: Option<String>,
    pub method: String,
    pub state: SweepState,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Json,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: crate::Timestamp,
    /// Trials handed out, and how many of them are running, finished, and crashed or lost.
    pub trials: u64,
    pub running: u64,
    pub finished: u64,
    pub crashed: u64,
    /// A grid's points (`None` for other methods).
    pub grid_size: Option<u64>,
    /// The best finished trial by the metric, if the sweep has one.
    pub best: Option<BestTrial>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BestTrial {
    pub run_id: String,
    pub value: f64,
}

/// Body of `POST .../next`: who asks (an agent's name, for the trial list).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NextTrialRequest {
    #[serde(default)]
    pub agent: String,
    /// The run of the trial this agent ran last. A trial handed to this agent whose run never
    /// started is handed back (the answer was lost on the way), unless it is this one (its
    /// program failed before it started its run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// What an agent does next: run a trial (as the run `run_id`, with `config`), wait and ask
/// again (`retry_secs`), or stop: the sweep is over.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum NextTrial {
    Run {
        run_id: String,
        seq: u64,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        config: Json,
    },
    Wait {
        reason: String,
        retry_secs: f64,
    },
    Stop {
        reason: String,
    },
}

/// A trial of a sweep: its run and parameters, and where it stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialInfo {
    pub seq: u64,
    pub run_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Json,
    /// `pending` (handed out, the run not started yet), `lost` (pending too long: its agent
    /// died), or the run's state.
    pub state: String,
    pub agent: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub assigned_at: crate::Timestamp,
    /// The sweep's metric in the run's summary.
    pub metric: Option<f64>,
    /// The grid point it runs (grid sweeps).
    pub grid_index: Option<u64>,
}

/// Body of `POST /api/v1/sweeps/{e}/{p}/{id}/trials`: a trial of a sweep that ran without the
/// server (`cairn agent --local`), given by `cairn sync` with its run. The sweep is made with
/// this configuration when the server lacks it (as finished: the server's controller hands out
/// none of its trials); one that exists with another configuration is refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportTrial {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub sweep_config: Json,
    pub seq: u64,
    pub run_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Json,
    #[serde(default)]
    pub grid_index: Option<u64>,
    #[serde(default)]
    pub agent: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub assigned_at: crate::Timestamp,
    /// Hyperband's judgements of this trial.
    #[serde(default)]
    pub decisions: Vec<BracketDecision>,
}
