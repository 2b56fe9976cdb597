//! W&B offline runs: `wandb/offline-run-<time>-<id>/run-<id>.wandb` (or `run-...` for a run that
//! was online), the record log the client writes whatever its mode, and the run's `files/`.
//!
//! Records become cairn's model: `run` the run's id, names, tags, config and start; `config` and
//! `summary` deltas applied in order (a nested key updates inside its value); `history` rows with
//! their `_step`, `_timestamp` and `_runtime`; `stats` system rows (`system.` and the key, as W&B's
//! own event file names them); `output_raw` (or `output`, from older clients) console text cut into
//! lines, a carriage return rewriting its line as a terminal does; `files` and what is in `files/`
//! the run's files; `environment` its metadata; `exit` its exit code and runtime. A log with no
//! `exit` record is a run that died: it is imported as crashed, at its last record's time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cairn_types::Timestamp;
use cairn_types::api::{JsonConsoleLine, RunState};
use cairn_types::value::{Map, Value, insert_path};
use prost::Message as _;

use crate::leveldb::Records;
use crate::wandb_proto::{self as pb, RecordType};
use crate::{ImportError, ImportedRun, parse_loose_json};

/// The run logs under `paths`: a `.wandb` file, a run directory, or a directory of run
/// directories (a `wandb/` folder, or the folder above it). Each once, in order.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut found = BTreeSet::new();
    for path in paths {
        let before = found.len();
        if path.is_file() {
            if path.extension().is_some_and(|e| e == "wandb") {
                found.insert(canonical(path));
            } else {
                return Err(ImportError(format!("{} is not a W&B run log (run-<id>.wandb)", path.display())));
            }
        } else if path.is_dir() {
            let mut stack = vec![(path.clone(), 0)];
            while let Some((dir, depth)) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|e| ImportError(format!("cannot read {}: {e}", dir.display())))?;
                for entry in entries.flatten() {
                    let p = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // `latest-run` is a link to a run already in the folder.
                    if name == "latest-run" {
                        continue;
                    }
                    if p.is_file() && name.starts_with("run-") && name.ends_with(".wandb") {
                        found.insert(canonical(&p));
                    } else if p.is_dir() && depth < 2 && (name == "wandb" || name.starts_with("run-") || name.starts_with("offline-run-")) {
                        stack.push((p, depth + 1));
                    }
                }
            }
        } else {
            return Err(ImportError(format!("{} does not exist", path.display())));
        }
        if found.len() == before {
            return Err(ImportError(format!("{} holds no W&B run (no run-<id>.wandb file under it)", path.display())));
        }
    }
    Ok(found.into_iter().collect())
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Where a run's history goes while its log is read, so that a long run is never held whole.
pub trait HistorySink {
    /// The run as far as it is known when its history starts (its id, names, config and
    /// metadata so far); returns how many of its history rows the destination holds already,
    /// which are then not given again.
    fn start(&mut self, head: &ImportedRun) -> Result<u64, ImportError>;
    /// Rows in order, the first at `offset` in the run's history.
    fn rows(&mut self, offset: u64, rows: Vec<Map>) -> Result<(), ImportError>;
}

/// Reads one run log, and the `files/` folder beside it, whole: history included.
pub fn read_run(log: &Path) -> Result<ImportedRun, ImportError> {
    struct Collect(Vec<Map>);
    impl HistorySink for Collect {
        fn start(&mut self, _: &ImportedRun) -> Result<u64, ImportError> {
            Ok(0)
        }
        fn rows(&mut self, _: u64, rows: Vec<Map>) -> Result<(), ImportError> {
            self.0.extend(rows);
            Ok(())
        }
    }
    let mut sink = Collect(Vec::new());
    let mut run = stream_run(log, &mut sink, usize::MAX)?;
    run.history = sink.0;
    Ok(run)
}

/// Reads one run log and the `files/` folder beside it, giving its history to `sink` in slices
/// of `slice` rows as it goes; the run returned has everything but the history.
pub fn stream_run(log: &Path, sink: &mut dyn HistorySink, slice: usize) -> Result<ImportedRun, ImportError> {
    let file = std::fs::File::open(log).map_err(|e| ImportError(format!("cannot read {}: {e}", log.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut records = Records::new(std::io::BufReader::with_capacity(1 << 20, file)).map_err(|e| ImportError(format!("{}: {e}", log.display())))?;
    let files_dir = log.parent().map(|d| d.join("files"));
    let mut b = Builder::default();
    // Clients before environment records (0.19) wrote the same facts to this file; the records,
    // where there are some, have the last word.
    if let Some(meta) = files_dir.as_deref().and_then(|d| std::fs::read_to_string(d.join("wandb-metadata.json")).ok()) {
        match serde_json::from_str::<serde_json::Value>(&meta) {
            Ok(m) => b.environment(environment_from_json(&m)),
            Err(e) => b.warn(format!("files/wandb-metadata.json is not JSON ({e}); the run's metadata was left out")),
        }
    }
    for (i, bytes) in records.by_ref().enumerate() {
        match pb::Record::decode(bytes.as_slice()) {
            Ok(record) => b.record(record),
            Err(e) => {
                b.warn(format!("record {} is not a W&B record ({e}); it was skipped", i + 1));
            }
        }
        if b.history.len() >= slice {
            b.flush(log, files_dir.as_deref(), sink)?;
        }
    }
    if let Some(damage) = records.damage() {
        b.warn(format!("{} is cut off at byte {} of {} ({}): everything before it was imported", log.display(), damage.offset, size, damage.reason));
    }
    b.flush(log, files_dir.as_deref(), sink)?;
    b.finish(log, files_dir.as_deref())
}

#[derive(Default)]
struct Builder {
    run: Option<pb::RunRecord>,
    config: Map,
    summary: Map,
    metadata: Map,
    history: Vec<Map>,
    system: Vec<Map>,
    raw: Console,
    plain: Console,
    named_files: BTreeSet<String>,
    exit: Option<pb::RunExitRecord>,
    last_time: Option<f64>,
    last_step: Option<i64>,
    warnings: Vec<String>,
    dropped_rows: u64,
    /// Rows given to the sink so far (the offset of `history`'s first row), and how many the
    /// sink said it holds; `None` until the sink was started.
    emitted: u64,
    held: Option<u64>,
}

/// Console text in chunks, cut into lines per stream.
#[derive(Default, Clone)]
struct Console {
    lines: Vec<JsonConsoleLine>,
    open: [Option<(String, Option<Timestamp>)>; 2],
    /// A carriage return ended the last chunk: what comes next overwrites the line, unless it
    /// is the `\n` of a `\r\n`.
    cr: [bool; 2],
}

impl Console {
    fn push(&mut self, stderr: bool, time: Option<Timestamp>, text: &str) {
        let slot = usize::from(stderr);
        let mut rest = text;
        while !rest.is_empty() {
            if std::mem::take(&mut self.cr[slot]) && !rest.starts_with('\n') {
                // A terminal's carriage return: what follows overwrites the line (progress bars).
                self.open[slot] = None;
            }
            let cut = rest.find(['\n', '\r']).unwrap_or(rest.len());
            let (current, started) = self.open[slot].get_or_insert_with(|| (String::new(), time));
            if started.is_none() {
                *started = time;
            }
            current.push_str(&rest[..cut]);
            rest = &rest[cut..];
            if let Some(r) = rest.strip_prefix('\n') {
                self.end_line(slot);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('\r') {
                self.cr[slot] = true;
                rest = r;
            }
        }
    }

    fn end_line(&mut self, slot: usize) {
        let (text, time) = self.open[slot].take().unwrap_or_default();
        let line = self.lines.len() as u64;
        self.lines.push(JsonConsoleLine { line, stream: (slot == 1).then(|| "stderr".to_owned()), time, text });
    }

    fn finish(mut self) -> Vec<JsonConsoleLine> {
        for slot in 0..2 {
            if self.open[slot].as_ref().is_some_and(|(t, _)| !t.is_empty()) {
                self.end_line(slot);
            }
        }
        self.lines
    }
}

/// `wandb-metadata.json`, which names its fields as the environment record's JSON form does.
fn environment_from_json(m: &serde_json::Value) -> pb::EnvironmentRecord {
    let text = |k: &str| m.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let count = |k: &str| m.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
    pb::EnvironmentRecord {
        os: text("os"),
        python: text("python"),
        args: m.get("args").and_then(serde_json::Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default(),
        program: text("program"),
        code_path: text("codePath"),
        root: text("root"),
        host: text("host"),
        username: text("username"),
        executable: text("executable"),
        cpu_count: count("cpu_count"),
        gpu_type: text("gpu"),
        gpu_count: count("gpu_count"),
        cuda_version: text("cuda"),
    }
}

fn time_of(t: &Option<pb::Timestamp>) -> Option<Timestamp> {
    let t = t.as_ref()?;
    Some(Timestamp(t.seconds.saturating_mul(1_000_000).saturating_add(i64::from(t.nanos) / 1000)))
}

fn key_path(item: &pb::Item) -> Vec<String> {
    if item.nested_key.is_empty() { vec![item.key.clone()] } else { item.nested_key.clone() }
}

impl Builder {
    fn warn(&mut self, message: String) {
        if self.warnings.len() < 20 {
            self.warnings.push(message);
        }
    }

    fn value(&mut self, what: &str, text: &str) -> Option<Value> {
        // Most values are plain numbers: read them without building JSON (what serde_json would
        // make of them, an integer where the text is one).
        if let Ok(i) = text.parse::<i64>() {
            return Some(Value::Int(i));
        }
        if text.as_bytes().first().is_some_and(|b| b.is_ascii_digit() || *b == b'-')
            && let Ok(f) = text.parse::<f64>()
        {
            return Some(Value::Float(f));
        }
        match parse_loose_json(text) {
            Ok(json) => Some(Value::from_json(&json)),
            Err(e) => {
                self.warn(format!("a {what} value is not JSON ({e}): {}", text.chars().take(80).collect::<String>()));
                None
            }
        }
    }

    fn see_time(&mut self, secs: f64) {
        if secs.is_finite() && self.last_time.is_none_or(|t| secs > t) {
            self.last_time = Some(secs);
        }
    }

    fn apply(&mut self, what: &str, target: fn(&mut Builder) -> &mut Map, update: &[pb::Item], remove: &[pb::Item]) {
        for item in update {
            let path = key_path(item);
            if path.first().is_some_and(|k| k.starts_with('_')) {
                continue;
            }
            if let Some(v) = self.value(what, &item.value_json) {
                insert_path(target(self), &path, v);
            }
        }
        for item in remove {
            let path = key_path(item);
            remove_path(target(self), &path);
        }
    }

    fn record(&mut self, record: pb::Record) {
        match record.record_type {
            Some(RecordType::Run(run)) => {
                if let Some(c) = &run.config {
                    self.apply("config", |b| &mut b.config, &c.update, &c.remove);
                }
                if let Some(s) = &run.summary {
                    self.apply("summary", |b| &mut b.summary, &s.update, &s.remove);
                }
                if let Some(t) = time_of(&run.start_time) {
                    self.see_time(t.micros() as f64 / 1e6);
                }
                if !run.host.is_empty() {
                    self.metadata.insert("host".into(), Value::from(run.host.clone()));
                }
                // The first run record names the run; a later one (a resume) keeps it.
                if self.run.is_none() {
                    self.run = Some(run);
                }
            }
            Some(RecordType::Config(c)) => self.apply("config", |b| &mut b.config, &c.update, &c.remove),
            Some(RecordType::Summary(s)) => self.apply("summary", |b| &mut b.summary, &s.update, &s.remove),
            Some(RecordType::History(h)) => self.history_row(h),
            Some(RecordType::Stats(s)) => {
                let mut row = Map::new();
                let Some(time) = time_of(&s.timestamp) else { return };
                let secs = time.micros() as f64 / 1e6;
                self.see_time(secs);
                row.insert("_timestamp".into(), Value::Float(secs));
                for item in &s.item {
                    if let Some(v @ (Value::Int(_) | Value::Float(_))) = self.value("system metric", &item.value_json) {
                        row.insert(format!("system.{}", item.key), v);
                    }
                }
                if row.len() > 1 {
                    self.system.push(row);
                }
            }
            Some(RecordType::OutputRaw(o)) => {
                let time = time_of(&o.timestamp);
                if let Some(t) = time {
                    self.see_time(t.micros() as f64 / 1e6);
                }
                self.raw.push(o.output_type == 0, time, &o.line);
            }
            Some(RecordType::Output(o)) => {
                let time = time_of(&o.timestamp);
                self.plain.push(o.output_type == 0, time, &o.line);
            }
            Some(RecordType::Files(f)) => {
                for file in f.files {
                    self.named_files.insert(file.path);
                }
            }
            Some(RecordType::Environment(env)) => self.environment(env),
            Some(RecordType::Exit(exit)) => self.exit = Some(exit),
            Some(RecordType::Metric(_)) | Some(RecordType::Preempting(_)) | None => {}
        }
    }

    fn environment(&mut self, env: pb::EnvironmentRecord) {
        let m = &mut self.metadata;
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                m.insert(k.into(), Value::from(v.to_owned()));
            }
        };
        put("os", &env.os);
        put("host", &env.host);
        put("program", &env.program);
        put("code_path", &env.code_path);
        put("cwd", &env.root);
        put("username", &env.username);
        put("executable", &env.executable);
        put("gpu", &env.gpu_type);
        put("cuda_version", &env.cuda_version);
        if let Some(version) = env.python.strip_prefix("CPython ").or((!env.python.is_empty()).then_some(env.python.as_str())) {
            put("language", "python");
            put("language_version", version);
        }
        if !env.args.is_empty() {
            m.insert("args".into(), Value::List(env.args.iter().map(|a| Value::from(a.clone())).collect()));
        }
        if env.cpu_count > 0 {
            m.insert("cpu_count".into(), Value::from(env.cpu_count));
        }
        if env.gpu_count > 0 {
            m.insert("gpu_count".into(), Value::from(env.gpu_count));
        }
    }

    fn history_row(&mut self, h: pb::HistoryRecord) {
        let mut row = Map::new();
        for item in &h.item {
            let path = key_path(item);
            if let Some(v) = self.value("history", &item.value_json) {
                insert_path(&mut row, &path, v);
            }
        }
        let step = match row.get("_step") {
            Some(Value::Int(s)) => Some(*s),
            Some(Value::Float(f)) if f.fract() == 0.0 => Some(*f as i64),
            _ => h.step.as_ref().map(|s| s.num),
        };
        let Some(step) = step.filter(|s| *s >= 0) else {
            self.dropped_rows += 1;
            return;
        };
        if self.last_step.is_some_and(|last| step <= last) {
            // W&B drops a step that does not grow too, with a warning in the run.
            self.dropped_rows += 1;
            return;
        }
        self.last_step = Some(step);
        row.insert("_step".into(), Value::Int(step));
        if row.values().any(|v| matches!(v, Value::Map(_))) {
            row = retyped(row);
        }
        match row.get("_timestamp") {
            Some(Value::Float(t)) => self.see_time(*t),
            Some(Value::Int(t)) => self.see_time(*t as f64),
            _ => {}
        }
        self.history.push(row);
    }

    /// Starts the sink once the run is known, and gives it the rows held.
    fn flush(&mut self, log: &Path, files_dir: Option<&Path>, sink: &mut dyn HistorySink) -> Result<(), ImportError> {
        if self.run.is_none() {
            // Rows before the run record (never seen): they wait for it.
            return Ok(());
        }
        let held = match self.held {
            Some(h) => h,
            None => {
                let head = self.snapshot(log, files_dir)?;
                let h = sink.start(&head)?;
                self.held = Some(h);
                h
            }
        };
        let rows = std::mem::take(&mut self.history);
        let first = self.emitted;
        self.emitted += rows.len() as u64;
        let skip = held.saturating_sub(first).min(rows.len() as u64) as usize;
        if skip < rows.len() {
            sink.rows(first + skip as u64, rows.into_iter().skip(skip).collect())?;
        }
        Ok(())
    }

    fn finish(mut self, log: &Path, files_dir: Option<&Path>) -> Result<ImportedRun, ImportError> {
        if self.dropped_rows > 0 {
            self.warn(format!("{} history rows had no step or a step that did not grow, as W&B drops them too", self.dropped_rows));
        }
        self.snapshot(log, files_dir)
    }

    /// The run as read so far, its history left out.
    fn snapshot(&self, log: &Path, files_dir: Option<&Path>) -> Result<ImportedRun, ImportError> {
        let Some(run) = self.run.clone() else {
            return Err(ImportError(format!("{} has no run record: nothing says which run it is", log.display())));
        };
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let started_at = time_of(&run.start_time);
        let (state, exit_code, finished_at) = match &self.exit {
            Some(exit) => {
                let at = match (started_at, exit.runtime) {
                    (Some(start), r) if r > 0 => Some(Timestamp(start.micros() + i64::from(r) * 1_000_000)),
                    _ => self.last_time.map(Timestamp::from_secs_f64),
                };
                let state = if exit.exit_code == 0 { RunState::Finished } else { RunState::Failed };
                (state, Some(exit.exit_code), at.or(started_at))
            }
            None => (RunState::Crashed, None, self.last_time.map(Timestamp::from_secs_f64).or(started_at)),
        };
        let console = if self.raw.lines.is_empty() && self.raw.open.iter().all(Option::is_none) { &self.plain } else { &self.raw };
        let files = files_dir.map(|d| run_files(d, &self.named_files)).unwrap_or_default();
        Ok(ImportedRun {
            source: log.to_path_buf(),
            entity: nonempty(run.entity),
            project: nonempty(run.project),
            run_id: run.run_id,
            name: nonempty(run.display_name),
            notes: nonempty(run.notes),
            tags: run.tags,
            group: nonempty(run.run_group),
            job_type: nonempty(run.job_type),
            started_at,
            config: retyped(self.config.clone()),
            summary: retyped(self.summary.clone()),
            metadata: self.metadata.clone(),
            history: Vec::new(),
            system: self.system.clone(),
            console: console.clone().finish(),
            files,
            state,
            exit_code,
            finished_at,
            warnings: self.warnings.clone(),
        })
    }
}

/// A map whose rich values (an image's `_type`, `path`, `sha256`, ...) came in pieces, one
/// nested key each, with those values made typed, as they are when they come whole.
fn retyped(map: Map) -> Map {
    match Value::from_json(&Value::Map(map).to_json()) {
        Value::Map(m) => m,
        _ => unreachable!("an object reads back as a map"),
    }
}

fn remove_path(map: &mut Map, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = map;
    for p in parents {
        match current.get_mut(p) {
            Some(Value::Map(m)) => current = m,
            _ => return,
        }
    }
    current.remove(last);
}

/// The client's own files, which cairn holds in its model instead.
const OWN_FILES: &[&str] = &["output.log", "wandb-summary.json", "wandb-history.jsonl", "wandb-events.jsonl", "config.yaml", "wandb-metadata.json"];

/// Every file under `files/` (what the run saved, its media, `requirements.txt`), and files that
/// `files` records name, where they exist.
fn run_files(dir: &Path, named: &BTreeSet<String>) -> Vec<(String, PathBuf)> {
    let mut out: BTreeSet<(String, PathBuf)> = crate::files_under(dir).into_iter().filter(|(name, _)| !OWN_FILES.contains(&name.as_str())).collect();
    for name in named {
        let p = dir.join(name);
        if !OWN_FILES.contains(&name.as_str()) && p.is_file() {
            out.insert((name.clone(), p));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_chunks_become_lines_and_a_carriage_return_rewrites_its_line() {
        let mut c = Console::default();
        let t = Some(Timestamp(5_000_000));
        for chunk in ["step 0", "\n", "step 1\nprogress 10%", "\rprogress 50%\r", "progress 100%\r", "\n", "tail"] {
            c.push(false, t, chunk);
        }
        c.push(true, t, "an error\n");
        let lines: Vec<(String, Option<String>)> = c.finish().into_iter().map(|l| (l.text, l.stream)).collect();
        assert_eq!(lines, [("step 0".into(), None), ("step 1".into(), None), ("progress 100%".into(), None), ("an error".into(), Some("stderr".into())), ("tail".into(), None)]);
    }
}
