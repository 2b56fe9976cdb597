//! The terminal output at init and finish, in the seed's shape: links, "Run history:" with a
//! sparkline per key, "Run summary:" with the keys right-aligned. Every line starts with `cairn: `.

use cairn_types::value::{Map, Value};

pub const PREFIX: &str = "cairn:";
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Sparklines shown at most, and their width.
pub const MAX_SPARKLINES: usize = 10;
pub const SPARKLINE_WIDTH: usize = 40;
const MAX_SUMMARY_LINES: usize = 20;

/// A fixed number of buckets over a growing step range: when a step falls past the end, pairs of
/// buckets merge and the width doubles. Each push is O(1).
#[derive(Debug, Clone)]
pub struct Sparkline {
    first_step: i64,
    /// Each bucket covers `1 << shift` steps.
    shift: u32,
    sums: [f64; SPARKLINE_WIDTH],
    counts: [u32; SPARKLINE_WIDTH],
}

impl Sparkline {
    pub fn new(first_step: i64) -> Sparkline {
        Sparkline { first_step, shift: 0, sums: [0.0; SPARKLINE_WIDTH], counts: [0; SPARKLINE_WIDTH] }
    }

    #[inline(always)]
    pub fn push(&mut self, step: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let offset = (step - self.first_step).max(0);
        while (offset >> self.shift) >= SPARKLINE_WIDTH as i64 {
            for i in 0..SPARKLINE_WIDTH / 2 {
                self.sums[i] = self.sums[2 * i] + self.sums[2 * i + 1];
                self.counts[i] = self.counts[2 * i] + self.counts[2 * i + 1];
            }
            for i in SPARKLINE_WIDTH / 2..SPARKLINE_WIDTH {
                self.sums[i] = 0.0;
                self.counts[i] = 0;
            }
            self.shift += 1;
        }
        let i = (offset >> self.shift) as usize;
        self.sums[i] += value;
        self.counts[i] += 1;
    }

    pub fn render(&self) -> String {
        let means: Vec<Option<f64>> = self.sums.iter().zip(&self.counts).map(|(s, &c)| (c > 0).then(|| s / c as f64)).collect();
        let used = means.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
        let values = &means[..used];
        let (lo, hi) = values.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        values
            .iter()
            .map(|v| match v {
                None => ' ',
                Some(v) if hi > lo => BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize],
                Some(_) => BARS[0],
            })
            .collect()
    }
}

/// Formats a number like Python's `%.5g`.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let exponent = v.abs().log10().floor() as i32;
    let trim = |s: String| -> String { if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s } };
    if !(-4..5).contains(&exponent) {
        let formatted = format!("{:.4e}", v);
        let (mantissa, exp) = formatted.split_once('e').expect("scientific notation");
        let exp: i32 = exp.parse().expect("exponent");
        format!("{}e{}{:02}", trim(mantissa.to_owned()), if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        trim(format!("{:.*}", (4 - exponent).max(0) as usize, v))
    }
}

fn format_value(value: &Value) -> Option<String> {
    Some(match value {
        Value::Float(f) => format_number(*f),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Str(s) => {
            let mut s: String = s.chars().take(60).collect();
            if s.contains('\n') {
                s = s.replace('\n', " ");
            }
            s
        }
        Value::Null => "None".to_owned(),
        Value::List(_) | Value::Map(_) | Value::Histogram(_) | Value::Table(_) | Value::Html(_) | Value::Plot(_) | Value::Media(_) => return None,
    })
}

/// Lines for `name value` pairs, names right-aligned.
fn aligned(pairs: &[(String, String)]) -> Vec<String> {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{PREFIX} {k:>width$} {v}")).collect()
}

pub struct Links {
    pub run_name: String,
    pub run_url: Option<String>,
    pub project_url: Option<String>,
}

pub fn init_lines(links: &Links, offline_dir: Option<&str>) -> Vec<String> {
    match offline_dir {
        Some(dir) => vec![
            format!("{PREFIX} Tracking run {} offline; nothing is sent to a server.", links.run_name),
            format!("{PREFIX} Run data is saved locally in {dir}"),
            format!("{PREFIX} Run `cairn sync {dir}` to upload it."),
        ],
        None => {
            let mut lines = vec![format!("{PREFIX} Syncing run {}", links.run_name)];
            if let Some(url) = &links.project_url {
                lines.push(format!("{PREFIX} ⭐️ View project at {url}"));
            }
            if let Some(url) = &links.run_url {
                lines.push(format!("{PREFIX} 🚀 View run at {url}"));
            }
            lines
        }
    }
}

pub struct FinishView<'a> {
    pub links: &'a Links,
    /// `(key, sparkline)` for history keys, in the order they were first logged.
    pub sparklines: Vec<(String, String)>,
    pub summary: &'a Map,
    pub logs_dir: String,
    pub offline_dir: Option<String>,
    /// Set when data is left to upload (the server could not be reached in time).
    pub pending_warning: Option<String>,
}

pub fn finish_lines(view: &FinishView<'_>) -> Vec<String> {
    let mut lines = vec![format!("{PREFIX}")];
    let history: Vec<(String, String)> = view.sparklines.iter().filter(|(k, s)| !k.starts_with('_') && !s.is_empty()).take(MAX_SPARKLINES).cloned().collect();
    if !history.is_empty() {
        lines.push(format!("{PREFIX} Run history:"));
        lines.extend(aligned(&history));
        lines.push(PREFIX.to_string());
    }
    let mut summary = Vec::new();
    let mut flat = Vec::new();
    Value::Map(view.summary.clone()).for_each_leaf(&mut |path, leaf| flat.push((path.join("."), leaf.clone())));
    for (key, value) in flat {
        if key.starts_with('_') || summary.len() >= MAX_SUMMARY_LINES {
            continue;
        }
        if let Some(text) = format_value(&value) {
            summary.push((key, text));
        }
    }
    if !summary.is_empty() {
        lines.push(format!("{PREFIX} Run summary:"));
        lines.extend(aligned(&summary));
        lines.push(PREFIX.to_string());
    }
    if let Some(warning) = &view.pending_warning {
        lines.push(format!("{PREFIX} {warning}"));
    }
    match &view.offline_dir {
        Some(dir) => {
            lines.push(format!("{PREFIX} You can sync this run to the server with:"));
            lines.push(format!("{PREFIX} cairn sync {dir}"));
        }
        None => {
            if let Some(url) = &view.links.run_url {
                lines.push(format!("{PREFIX} 🚀 View run {} at: {url}", view.links.run_name));
            }
            if let Some(url) = &view.links.project_url {
                lines.push(format!("{PREFIX} ⭐️ View project at: {url}"));
            }
        }
    }
    lines.push(format!("{PREFIX} Find logs at: {}", view.logs_dir));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::map;

    #[test]
    fn numbers_format_like_python_g5() {
        for (v, s) in [
            (0.9, "0.9"),
            (0.1, "0.1"),
            (1.0, "1"),
            (123456.0, "1.2346e+05"),
            (0.000123456, "0.00012346"),
            (0.0000123456, "1.2346e-05"),
            (-2.5, "-2.5"),
            (10.0, "10"),
            (0.10531971149250456, "0.10532"),
        ] {
            assert_eq!(format_number(v), s, "{v}");
        }
    }

    #[test]
    fn sparklines_grow_and_scale() {
        let mut s = Sparkline::new(0);
        for step in 0..1000 {
            s.push(step, step as f64);
        }
        let line = s.render();
        assert!(line.chars().count() <= SPARKLINE_WIDTH && line.chars().count() >= SPARKLINE_WIDTH / 2, "{line}");
        assert!(line.starts_with('▁') && line.ends_with('█'), "{line}");
        let mut flat = Sparkline::new(0);
        flat.push(0, 1.0);
        flat.push(1, 1.0);
        assert_eq!(flat.render(), "▁▁");
    }

    #[test]
    fn finish_output_has_the_seed_shape() {
        let links = Links { run_name: "jolly-haze-4".into(), run_url: Some("http://h/nico/p/runs/x".into()), project_url: Some("http://h/nico/p".into()) };
        let summary = map! {"accuracy" => 0.9, "loss" => 0.5, "_runtime" => 3.0};
        let lines = finish_lines(&FinishView {
            links: &links,
            sparklines: vec![("accuracy".into(), "▁█".into()), ("loss".into(), "█▁".into())],
            summary: &summary,
            logs_dir: "cairn/run-x/logs".into(),
            offline_dir: None,
            pending_warning: None,
        });
        let text = lines.join("\n");
        assert!(text.contains("cairn: Run history:\ncairn: accuracy ▁█\ncairn:     loss █▁"), "{text}");
        assert!(text.contains("cairn: Run summary:\ncairn: accuracy 0.9\ncairn:     loss 0.5"), "{text}");
        assert!(!text.contains("_runtime"));
        assert!(text.contains("View run jolly-haze-4 at: http://h/nico/p/runs/x"));
        assert!(text.ends_with("cairn: Find logs at: cairn/run-x/logs"));
    }
}
