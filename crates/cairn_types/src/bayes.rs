//! The `bayes` search: a Gaussian process over the sweep's parameters, and the next trial where
//! the expected improvement of the metric is largest.
//!
//! Every parameter becomes coordinates in the unit cube: a continuous one through its
//! distribution (uniform on a linear or log scale, normal through its CDF, so that the cube's
//! uniform measure is the prior), an integer one scaled, a categorical one as a one-hot block, a
//! constant none. The model is a Matérn 5/2 kernel with one length scale and a noise level, both
//! picked by marginal likelihood from a small grid, on the standardized metric. The linear
//! algebra (Cholesky, triangular solves) is nalgebra's. Candidates are drawn from the prior and
//! around the best trials, and refined around the best candidates; the one with the largest
//! expected improvement is decoded back into a configuration (rounded, quantized, clamped).
//!
//! Trials that are still running join the model at the mean of the observed metric (the
//! "constant liar"), so that parallel agents are not handed the same point. With many trials the
//! model is fitted on the best [`MAX_FIT`]` / 2` and as many others drawn at random, which keeps a
//! suggestion within a few milliseconds at a thousand trials.

use nalgebra::{DMatrix, DVector};
use serde_json::Value as Json;

use crate::sweep::{Distribution, Goal, SweepConfig, draw, float, nest, quantize, standard_normal};

/// A trial the model learns from: its configuration, and its metric once it has one (`None`:
/// running, or pending).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub config: Json,
    pub value: Option<f64>,
}

/// The most trials a model is fitted on.
pub const MAX_FIT: usize = 128;
/// Trials fitted when the kernel's length scale and noise are picked.
const MAX_TUNE: usize = 48;
const PRIOR_CANDIDATES: usize = 768;
const LOCAL_CANDIDATES: usize = 48;
const REFINE_ROUNDS: usize = 3;

/// How one parameter maps onto the cube.
enum Coord<'a> {
    None(&'a Distribution),
    /// One coordinate in [0, 1].
    Line(&'a Distribution),
    /// A one-hot block of this many coordinates.
    OneHot(&'a [Json], Option<&'a [f64]>),
}

struct Space<'a> {
    params: Vec<(String, Coord<'a>)>,
    dims: usize,
}

fn std_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn std_normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18 + t * (-0.186_288_06 + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal's quantile function (Acklam's rational approximation, refined by one
/// Newton step).
fn std_normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    const A: [f64; 6] = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.383_577_518_672_69e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let e = std_normal_cdf(x) - p;
    x - e / std_normal_pdf(x).max(1e-300)
}

impl<'a> Space<'a> {
    fn new(config: &'a SweepConfig) -> Space<'a> {
        let mut dims = 0;
        let params = config
            .flat()
            .into_iter()
            .map(|(path, d)| {
                let coord = match d {
                    Distribution::Constant(_) => Coord::None(d),
                    Distribution::Categorical { values, .. } if values.len() < 2 => Coord::None(d),
                    Distribution::Categorical { values, probabilities } => Coord::OneHot(values, probabilities.as_deref()),
                    Distribution::IntUniform { min, max } if min == max => Coord::None(d),
                    _ => Coord::Line(d),
                };
                dims += match coord {
                    Coord::None(_) => 0,
                    Coord::Line(_) => 1,
                    Coord::OneHot(v, _) => v.len(),
                };
                (path, coord)
            })
            .collect();
        Space { params, dims }
    }

    /// A configuration's point in the cube, if it has every parameter (a trial of an earlier
    /// configuration may not).
    fn encode(&self, config: &Json) -> Option<Vec<f64>> {
        let mut out = Vec::with_capacity(self.dims);
        for (path, coord) in &self.params {
            let mut at = config;
            for part in path.split('.') {
                at = at.get(part)?;
            }
            match coord {
                Coord::None(_) => {}
                Coord::OneHot(values, _) => {
                    let i = values.iter().position(|v| v == at)?;
                    out.extend((0..values.len()).map(|j| if i == j { 1.0 } else { 0.0 }));
                }
                Coord::Line(d) => out.push(to_unit(d, at.as_f64()?)?),
            }
        }
        Some(out)
    }

    fn decode(&self, x: &[f64], rng: &mut fastrand::Rng) -> Json {
        let mut at = 0;
        nest(self.params.iter().map(|(path, coord)| {
            let value = match coord {
                Coord::None(d) => draw(d, rng),
                Coord::OneHot(values, _) => {
                    let block = &x[at..at + values.len()];
                    at += values.len();
                    let best = (0..values.len()).max_by(|a, b| block[*a].total_cmp(&block[*b])).unwrap_or(0);
                    values[best].clone()
                }
                Coord::Line(d) => {
                    at += 1;
                    from_unit(d, x[at - 1])
                }
            };
            (path.clone(), value)
        }))
    }

    /// A point drawn from the prior.
    fn sample(&self, rng: &mut fastrand::Rng) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.dims);
        for (_, coord) in &self.params {
            match coord {
                Coord::None(_) => {}
                Coord::Line(_) => out.push(rng.f64()),
                Coord::OneHot(values, probabilities) => {
                    let pick = match probabilities {
                        None => rng.usize(..values.len()),
                        Some(p) => {
                            let mut u = rng.f64();
                            p.iter()
                                .position(|w| {
                                    u -= w;
                                    u < 0.0
                                })
                                .unwrap_or(values.len() - 1)
                        }
                    };
                    out.extend((0..values.len()).map(|j| if j == pick { 1.0 } else { 0.0 }));
                }
            }
        }
        out
    }

    /// A point near `x`: continuous coordinates moved by a normal step of `scale`, each
    /// categorical block switched with probability `flip`.
    fn perturb(&self, x: &[f64], scale: f64, flip: f64, rng: &mut fastrand::Rng) -> Vec<f64> {
        let mut out = x.to_vec();
        let mut at = 0;
        for (_, coord) in &self.params {
            match coord {
                Coord::None(_) => {}
                Coord::Line(_) => {
                    out[at] = (x[at] + scale * standard_normal(rng)).clamp(0.0, 1.0);
                    at += 1;
                }
                Coord::OneHot(values, _) => {
                    if rng.f64() < flip {
                        let pick = rng.usize(..values.len());
                        for j in 0..values.len() {
                            out[at + j] = if j == pick { 1.0 } else { 0.0 };
                        }
                    }
                    at += values.len();
                }
            }
        }
        out
    }
}

/// A value's coordinate in [0, 1] under its distribution.
fn to_unit(d: &Distribution, x: f64) -> Option<f64> {
    let lin = |lo: f64, hi: f64, x: f64| ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    Some(match *d {
        // Each integer owns an equal share of the unit interval.
        Distribution::IntUniform { min, max } => ((x - min as f64 + 0.5) / (max as f64 - min as f64 + 1.0)).clamp(0.0, 1.0),
        Distribution::Uniform { min, max } | Distribution::QUniform { min, max, .. } => lin(min, max, x),
        Distribution::LogUniformValues { min, max } | Distribution::QLogUniformValues { min, max, .. } => lin(min.ln(), max.ln(), x.max(min).ln()),
        Distribution::Normal { mu, sigma } | Distribution::QNormal { mu, sigma, .. } => std_normal_cdf((x - mu) / sigma),
        Distribution::LogNormal { mu, sigma } | Distribution::QLogNormal { mu, sigma, .. } => {
            if x <= 0.0 {
                return Some(0.0);
            }
            std_normal_cdf((x.ln() - mu) / sigma)
        }
        Distribution::Constant(_) | Distribution::Categorical { .. } => return None,
    })
}

/// The value at coordinate `u` of a distribution.
fn from_unit(d: &Distribution, u: f64) -> Json {
    let u = u.clamp(0.0, 1.0);
    let tail = u.clamp(1e-6, 1.0 - 1e-6);
    match *d {
        Distribution::IntUniform { min, max } => {
            let span = max as f64 - min as f64 + 1.0;
            Json::from((min as f64 + (u * span).floor()).clamp(min as f64, max as f64) as i64)
        }
        Distribution::Uniform { min, max } => float(min + u * (max - min)),
        Distribution::QUniform { min, max, q } => float(quantize(min + u * (max - min), q)),
        Distribution::LogUniformValues { min, max } => float((min.ln() + u * (max.ln() - min.ln())).exp().clamp(min, max)),
        Distribution::QLogUniformValues { min, max, q } => float(quantize((min.ln() + u * (max.ln() - min.ln())).exp(), q)),
        Distribution::Normal { mu, sigma } => float(mu + sigma * std_normal_quantile(tail)),
        Distribution::QNormal { mu, sigma, q } => float(quantize(mu + sigma * std_normal_quantile(tail), q)),
        Distribution::LogNormal { mu, sigma } => float((mu + sigma * std_normal_quantile(tail)).exp()),
        Distribution::QLogNormal { mu, sigma, q } => float(quantize((mu + sigma * std_normal_quantile(tail)).exp(), q)),
        Distribution::Constant(ref v) => v.clone(),
        Distribution::Categorical { ref values, .. } => values[0].clone(),
    }
}

fn matern52(sq_dist: f64, length: f64) -> f64 {
    let r = (5.0 * sq_dist).sqrt() / length;
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// A Gaussian process fitted to points `xs` with standardized values `ys`.
struct Gp<'x> {
    xs: Vec<&'x [f64]>,
    length: f64,
    chol: nalgebra::Cholesky<f64, nalgebra::Dyn>,
    alpha: DVector<f64>,
}

impl<'x> Gp<'x> {
    fn fit(xs: Vec<&'x [f64]>, ys: &[f64], length: f64, noise: f64) -> Option<(Gp<'x>, f64)> {
        let n = xs.len();
        let k = DMatrix::from_fn(n, n, |i, j| matern52(sq_dist(xs[i], xs[j]), length) + if i == j { noise } else { 0.0 });
        let chol = k.cholesky()?;
        let y = DVector::from_column_slice(ys);
        let alpha = chol.solve(&y);
        let log_det: f64 = chol.l_dirty().diagonal().iter().take(n).map(|d| d.ln()).sum::<f64>();
        let likelihood = -0.5 * y.dot(&alpha) - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        Some((Gp { xs, length, chol, alpha }, likelihood))
    }

    /// The posterior mean and standard deviation at each candidate.
    fn predict(&self, candidates: &[Vec<f64>]) -> Vec<(f64, f64)> {
        let (n, m) = (self.xs.len(), candidates.len());
        let ks = DMatrix::from_fn(n, m, |i, j| matern52(sq_dist(self.xs[i], &candidates[j]), self.length));
        let mean = ks.transpose() * &self.alpha;
        let v = self.chol.l_dirty().solve_lower_triangular(&ks).unwrap_or_else(|| DMatrix::zeros(n, m));
        (0..m).map(|j| (mean[j], (1.0 - v.column(j).norm_squared()).max(1e-12).sqrt())).collect()
    }
}

/// Expected improvement below `best` (values are minimized).
fn expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let gain = best - mean - 0.01;
    let z = gain / sd;
    gain * std_normal_cdf(z) + sd * std_normal_pdf(z)
}

/// How many trials with a metric the model needs before it is used; until then trials are drawn
/// at random.
pub fn warmup(config: &SweepConfig) -> usize {
    (Space::new(config).dims + 1).clamp(3, 10)
}

/// The next configuration to try, given the trials so far.
pub fn suggest(config: &SweepConfig, trials: &[Observation], rng: &mut fastrand::Rng) -> Json {
    let space = Space::new(config);
    let goal = config.metric.as_ref().map_or(Goal::Minimize, |m| m.goal);
    let sign = if goal == Goal::Maximize { -1.0 } else { 1.0 };
    let mut done: Vec<(Vec<f64>, f64)> = Vec::new();
    let mut running: Vec<Vec<f64>> = Vec::new();
    for t in trials {
        let Some(x) = space.encode(&t.config) else { continue };
        match t.value {
            Some(v) if v.is_finite() => done.push((x, sign * v)),
            Some(_) => {}
            None => running.push(x),
        }
    }
    if space.dims == 0 || done.len() < warmup(config) {
        return config.sample(rng);
    }
    // The best half of what is fitted, and the rest at random from the others.
    done.sort_by(|a, b| a.1.total_cmp(&b.1));
    if done.len() > MAX_FIT {
        let mut rest = done.split_off(MAX_FIT / 2);
        rng.shuffle(&mut rest);
        done.extend(rest.into_iter().take(MAX_FIT / 2));
    }
    running.truncate(MAX_FIT / 4);
    let raw: Vec<f64> = done.iter().map(|(_, v)| *v).collect();
    let mean = raw.iter().sum::<f64>() / raw.len() as f64;
    let sd = (raw.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / raw.len() as f64).sqrt().max(1e-12);
    let mut ys: Vec<f64> = raw.iter().map(|v| (v - mean) / sd).collect();
    let best = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let mut xs: Vec<&[f64]> = done.iter().map(|(x, _)| x.as_slice()).collect();
    // The kernel's shape, by marginal likelihood on the best trials (they are sorted).
    let scale = (space.dims as f64).sqrt();
    let tune = xs.len().min(MAX_TUNE);
    let mut shape = (0.3 * scale, 1e-3);
    let mut top = f64::NEG_INFINITY;
    for length in [0.08, 0.15, 0.3, 0.6, 1.2] {
        for noise in [1e-4, 1e-2, 1e-1] {
            if let Some((_, l)) = Gp::fit(xs[..tune].to_vec(), &ys[..tune], length * scale, noise)
                && l > top
            {
                top = l;
                shape = (length * scale, noise);
            }
        }
    }
    // Running trials, believed at the mean.
    for x in &running {
        xs.push(x);
        ys.push(0.0);
    }
    let fitted = Gp::fit(xs.clone(), &ys, shape.0, shape.1).or_else(|| Gp::fit(xs, &ys, shape.0, shape.1.max(1e-1)));
    let Some((gp, _)) = fitted else { return config.sample(rng) };
    let mut candidates: Vec<Vec<f64>> = (0..PRIOR_CANDIDATES).map(|_| space.sample(rng)).collect();
    for (x, _) in done.iter().take(5) {
        candidates.extend((0..LOCAL_CANDIDATES).map(|_| space.perturb(x, 0.05, 0.15, rng)));
    }
    let score = |cs: &[Vec<f64>]| -> Vec<f64> { gp.predict(cs).into_iter().map(|(m, s)| expected_improvement(m, s, best)).collect() };
    let mut scored: Vec<(Vec<f64>, f64)> = candidates.clone().into_iter().zip(score(&candidates)).collect();
    // Refine around the best candidates with shrinking steps.
    let mut step = 0.05;
    for _ in 0..REFINE_ROUNDS {
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(8);
        let near: Vec<Vec<f64>> = scored.iter().flat_map(|(x, _)| (0..LOCAL_CANDIDATES / 2).map(|_| space.perturb(x, step, 0.05, rng)).collect::<Vec<_>>()).collect();
        let s = score(&near);
        scored.extend(near.into_iter().zip(s));
        step /= 3.0;
    }
    let (x, _) = scored.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).expect("there are candidates");
    space.decode(&x, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Json) -> SweepConfig {
        SweepConfig::parse(&v).unwrap()
    }

    #[test]
    fn the_normal_functions_match_their_tables() {
        for (x, p) in [(0.0, 0.5), (1.0, 0.841_344_746), (-1.96, 0.024_997_895), (3.0, 0.998_650_102)] {
            assert!((std_normal_cdf(x) - p).abs() < 1e-6, "{x}");
            assert!((std_normal_quantile(p) - x).abs() < 1e-5, "{p}");
        }
    }

    #[test]
    fn points_go_into_the_cube_and_back() {
        let c = config(json!({"method": "bayes", "metric": {"name": "loss"}, "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "opt": {"values": ["adam", "sgd", "lion"]},
            "layers": {"min": 1, "max": 8},
            "drop": {"distribution": "q_uniform", "min": 0, "max": 0.5, "q": 0.1},
            "w": {"distribution": "normal", "mu": 2, "sigma": 0.5},
            "seed": {"value": 7},
            "nested": {"parameters": {"m": {"min": 0.5, "max": 0.99}}}}}));
        let space = Space::new(&c);
        assert_eq!(space.dims, 1 + 1 + 1 + 3 + 1 + 1);
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200 {
            let x = space.sample(&mut rng);
            let config = space.decode(&x, &mut rng);
            let lr = config["lr"].as_f64().unwrap();
            assert!((1e-4..=1e-1).contains(&lr), "{config}");
            assert!(config["layers"].as_i64().is_some_and(|l| (1..=8).contains(&l)), "{config}");
            assert_eq!(config["seed"], json!(7));
            let again = space.encode(&config).unwrap();
            let back = space.decode(&again, &mut rng);
            assert_eq!(back["opt"], config["opt"]);
            for key in ["lr", "layers", "drop", "w"] {
                let (a, b) = (back[key].as_f64().unwrap(), config[key].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{key}: {a} against {b}: a decoded point encodes to itself");
            }
        }
        assert_eq!(space.encode(&json!({"lr": 0.01})), None, "a trial without every parameter is left out");
    }

    /// Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; its minimum is 0.397887.
    pub(crate) fn branin(x1: f64, x2: f64) -> f64 {
        let (a, b, c) = (1.0, 5.1 / (4.0 * std::f64::consts::PI.powi(2)), 5.0 / std::f64::consts::PI);
        let (r, s, t) = (6.0, 10.0, 1.0 / (8.0 * std::f64::consts::PI));
        a * (x2 - b * x1 * x1 + c * x1 - r).powi(2) + s * (1.0 - t) * x1.cos() + s
    }

    /// The best of `trials` Branin evaluations by a method, seeded.
    pub(crate) fn branin_sweep(method: &str, seed: u64, trials: usize) -> f64 {
        let c = config(json!({"method": method, "metric": {"name": "f", "goal": "minimize"}, "parameters": {
            "x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}}));
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut seen: Vec<Observation> = Vec::new();
        for _ in 0..trials {
            let next = if method == "bayes" { suggest(&c, &seen, &mut rng) } else { c.sample(&mut rng) };
            let f = branin(next["x1"].as_f64().unwrap(), next["x2"].as_f64().unwrap());
            seen.push(Observation { config: next, value: Some(f) });
        }
        seen.iter().filter_map(|o| o.value).fold(f64::INFINITY, f64::min)
    }

    fn median(mut xs: Vec<f64>) -> f64 {
        xs.sort_by(f64::total_cmp);
        (xs[xs.len() / 2] + xs[(xs.len() - 1) / 2]) / 2.0
    }

    #[test]
    fn bayes_beats_random_on_branin_in_thirty_trials() {
        let bayes = median((0..10).map(|s| branin_sweep("bayes", s, 30)).collect());
        let random = median((0..10).map(|s| branin_sweep("random", s, 30)).collect());
        println!("Branin, best of 30 trials, median of 10 seeded sweeps: bayes {bayes:.4}, random {random:.4} (minimum 0.3979)");
        assert!(bayes < random, "bayes {bayes} is no better than random {random}");
        assert!(bayes < 0.6, "bayes {bayes} should come near the minimum 0.398");
    }

    #[test]
    fn maximizing_mixed_spaces_finds_the_good_category() {
        // The metric is high only for "b", and peaks at x = 0.7 there.
        let c = config(json!({"method": "bayes", "metric": {"name": "acc", "goal": "maximize"}, "parameters": {
            "kind": {"values": ["a", "b", "c", "d"]}, "x": {"min": 0.0, "max": 1.0}}}));
        let acc = |cfg: &Json| {
            let x = cfg["x"].as_f64().unwrap();
            if cfg["kind"] == json!("b") { 1.0 - (x - 0.7).powi(2) } else { 0.2 - (x - 0.2).powi(2) }
        };
        let mut rng = fastrand::Rng::with_seed(11);
        let mut seen: Vec<Observation> = Vec::new();
        for _ in 0..25 {
            let next = suggest(&c, &seen, &mut rng);
            let value = acc(&next);
            seen.push(Observation { config: next, value: Some(value) });
        }
        let late = &seen[15..];
        assert!(late.iter().filter(|o| o.config["kind"] == json!("b")).count() >= 7, "{late:?}");
        let best = seen.iter().filter_map(|o| o.value).fold(f64::NEG_INFINITY, f64::max);
        assert!(best > 0.99, "{best}");
    }

    #[test]
    fn a_running_trial_is_not_suggested_again() {
        let c = config(json!({"method": "bayes", "metric": {"name": "f"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}));
        let mut seen: Vec<Observation> = (0..6).map(|i| Observation { config: json!({"x": i as f64 / 5.0}), value: Some((i as f64 / 5.0 - 0.5).powi(2)) }).collect();
        let mut rng = fastrand::Rng::with_seed(5);
        let first = suggest(&c, &seen, &mut rng);
        seen.push(Observation { config: first.clone(), value: None });
        let second = suggest(&c, &seen, &mut rng);
        let (a, b) = (first["x"].as_f64().unwrap(), second["x"].as_f64().unwrap());
        assert!((a - b).abs() > 0.01, "two agents at once got {a} and {b}");
    }
}
