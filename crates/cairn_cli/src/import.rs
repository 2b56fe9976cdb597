//! `cairn import wandb|mlflow`: runs from other trackers' stores, sent to a cairn server.
//!
//! Reading is `cairn_import`'s; this sends what it read, each part from where the server's copy
//! ends: the run is created with `resume: keep` (an existing one is left as it is), each stream
//! starts at the offset the server expects next, files go when the server lacks them (by SHA-256),
//! and the run is finished as it ended. So a second import of the same source sends nothing, and
//! one cut off halfway picks up where it stopped.

use std::path::PathBuf;

use anyhow::Context;
use cairn_client::http::ApiClient;
use cairn_import::ImportError;
use cairn_import::ImportedRun;
use cairn_types::RunPath;
use cairn_types::api::{FinishRequest, IngestJson, JsonConsole, JsonConsoleLine, JsonRows, JsonUpdate, JsonUpdates, ResumeMode, RunInfo, RunState, UpsertRunRequest};
use cairn_types::value::{Map, Value};
use indicatif::{ProgressBar, ProgressStyle};

use crate::runs::Server;

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// W&B runs: offline run directories (wandb/offline-run-*), their run-<id>.wandb files, or
    /// folders that hold them
    Wandb {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// MLflow runs: an mlruns directory, or an MLflow SQLite database (a path or sqlite:///path)
    Mlflow {
        store: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// The entity to put the runs in [default: the run's own, else the server's default for you]
    #[arg(long)]
    entity: Option<String>,
    /// The project to put the runs in [default: the run's own (W&B) or its experiment's name (MLflow)]
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// History rows per request.
const ROWS_PER_REQUEST: usize = 5_000;

/// A source's runs, one by one.
enum Source {
    /// W&B run logs, read while they are sent.
    Wandb(Vec<PathBuf>),
    /// MLflow runs, read whole.
    Mlflow(Vec<ImportedRun>),
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    let (target, source, deleted) = match command {
        ImportCommand::Wandb { paths, target } => (target, Source::Wandb(cairn_import::wandb::find_runs(&paths)?), 0),
        ImportCommand::Mlflow { store, target } => {
            let (runs, deleted) = cairn_import::mlflow::read_store(&store)?;
            (target, Source::Mlflow(runs), deleted)
        }
    };
    let client = target.server.client();
    let info = client.info().map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", target.server.base_url()))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg:30} {pos} records sent {elapsed}").expect("valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut counts = Counts::default();
    let mut sender = Sender { client: &client, target: &target, default_entity: &info.default_entity, bar: &bar, run: None, sent: SentParts::default(), warned: 0 };
    let mut outcome = |sender: &mut Sender, source: &std::path::Path, result: anyhow::Result<Sent>| match result {
        Ok(Sent::Nothing) => counts.already += 1,
        Ok(Sent::Some(s)) => {
            counts.runs += 1;
            counts.rows += s.rows;
            counts.lines += s.lines;
            counts.files += s.files;
        }
        Err(e) => {
            let path = sender.run.as_ref().map(|r| format!(" ({})", r.path)).unwrap_or_default();
            bar.suspend(|| eprintln!("error: {}{path}: {e:#}", source.display()));
            counts.failed += 1;
        }
    };
    match source {
        Source::Wandb(logs) => {
            for log in logs {
                bar.set_message(log.file_name().unwrap_or_default().to_string_lossy().into_owned());
                sender.reset();
                let result = cairn_import::wandb::stream_run(&log, &mut sender, ROWS_PER_REQUEST).map_err(|e| anyhow::anyhow!("{e}")).and_then(|run| sender.finish(&run));
                outcome(&mut sender, &log, result);
            }
        }
        Source::Mlflow(runs) => {
            for run in runs {
                bar.set_message(run.run_id.clone());
                sender.reset();
                let result = sender.whole(&run);
                outcome(&mut sender, &run.source, result);
            }
        }
    }
    bar.finish_and_clear();
    println!(
        "imported {} run{} ({} history rows, {} console lines, {} files); skipped {} already imported{}; {} failed",
        counts.runs,
        if counts.runs == 1 { "" } else { "s" },
        counts.rows,
        counts.lines,
        counts.files,
        counts.already,
        if deleted > 0 { format!(", {deleted} deleted at the source") } else { String::new() },
        counts.failed,
    );
    anyhow::ensure!(counts.failed == 0, "not every run was imported");
    Ok(())
}

#[derive(Default)]
struct Counts {
    runs: usize,
    already: usize,
    failed: usize,
    rows: u64,
    lines: u64,
    files: u64,
}

#[derive(Default)]
struct SentParts {
    rows: u64,
    lines: u64,
    files: u64,
    other: u64,
}

enum Sent {
    Nothing,
    Some(SentParts),
}

/// The run being sent: where it goes, whether it was there before, and what the server had.
struct Started {
    path: RunPath,
    existed: bool,
    info: RunInfo,
}

/// Sends runs to the server, each part from where the server's copy ends.
struct Sender<'a> {
    client: &'a ApiClient,
    target: &'a Target,
    default_entity: &'a str,
    bar: &'a ProgressBar,
    run: Option<Started>,
    sent: SentParts,
    /// Warnings of the run printed already.
    warned: usize,
}

fn failed(what: &str, e: cairn_client::http::CallError) -> ImportError {
    ImportError(format!("{what}: {e}"))
}

impl cairn_import::wandb::HistorySink for Sender<'_> {
    /// Creates the run (or finds it, as it is), and says how much history it holds.
    fn start(&mut self, head: &ImportedRun) -> Result<u64, ImportError> {
        for w in &head.warnings {
            self.bar.suspend(|| eprintln!("warning: {}: {w}", head.source.display()));
        }
        self.warned = head.warnings.len();
        let entity = self.target.entity.clone().or_else(|| head.entity.clone()).unwrap_or_else(|| self.default_entity.to_owned());
        let project = self.target.project.clone().or_else(|| head.project.clone()).unwrap_or_else(|| "uncategorized".to_owned());
        let path = RunPath::new(entity, project, head.run_id.clone());
        let existed = match self.client.get_run(&path) {
            Ok(_) => true,
            Err(e) if e.code() == Some(cairn_types::error::ErrorCode::RunNotFound) => false,
            Err(e) => return Err(failed("cannot look the run up", e)),
        };
        let request = UpsertRunRequest {
            entity: Some(path.entity.clone()),
            project: Some(path.project.clone()),
            run_id: path.run_id.clone(),
            name: head.name.clone(),
            notes: head.notes.clone(),
            tags: (!head.tags.is_empty()).then(|| head.tags.clone()),
            group: head.group.clone(),
            job_type: head.job_type.clone(),
            config: Some(Value::Map(head.config.clone())),
            metadata: (!head.metadata.is_empty()).then(|| Value::Map(head.metadata.clone())),
            started_at: head.started_at,
            resume: ResumeMode::Keep,
            ..Default::default()
        };
        let info = self.client.upsert_run(&request).map_err(|e| failed("cannot create the run", e))?;
        let held = info.offsets.history;
        self.bar.inc(held);
        self.run = Some(Started { path, existed, info });
        Ok(held)
    }

    fn rows(&mut self, offset: u64, rows: Vec<Map>) -> Result<(), ImportError> {
        let path = &self.run.as_ref().expect("started before rows").path;
        let n = rows.len() as u64;
        let batch = IngestJson { history: Some(JsonRows { offset, rows }), ..Default::default() };
        self.client.ingest_json(path, &batch).map_err(|e| failed(&format!("history rows {offset}..{}", offset + n), e))?;
        self.sent.rows += n;
        self.bar.inc(n);
        Ok(())
    }
}

impl Sender<'_> {
    fn reset(&mut self) {
        self.run = None;
        self.sent = SentParts::default();
        self.warned = 0;
    }

    /// A run read whole: started, its history in slices, and the rest.
    fn whole(&mut self, run: &ImportedRun) -> anyhow::Result<Sent> {
        use cairn_import::wandb::HistorySink as _;
        let held = self.start(run).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut at = (held as usize).min(run.history.len());
        while at < run.history.len() {
            let end = (at + ROWS_PER_REQUEST).min(run.history.len());
            self.rows(at as u64, run.history[at..end].to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?;
            at = end;
        }
        self.finish(run)
    }

    /// What follows the history: system rows, console, config and summary, files, the end.
    fn finish(&mut self, run: &ImportedRun) -> anyhow::Result<Sent> {
        if self.run.is_none() {
            use cairn_import::wandb::HistorySink as _;
            self.start(run).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let Started { path, existed, info } = self.run.as_ref().expect("started");
        let (client, bar) = (self.client, self.bar);
        let call = |what: &str, e: cairn_client::http::CallError| anyhow::anyhow!("{what}: {e}");
        let offsets = info.offsets;
        let system = |at: usize, rows: &[Map]| IngestJson { system: Some(JsonRows { offset: at as u64, rows: rows.to_vec() }), ..Default::default() };
        self.sent.other += in_slices(client, path, bar, "system rows", offsets.system, &run.system, system)?;
        let console = |at: usize, lines: &[JsonConsoleLine]| IngestJson { console: Some(JsonConsole { offset: at as u64, lines: lines.to_vec() }), ..Default::default() };
        self.sent.lines += in_slices(client, path, bar, "console lines", offsets.console, &run.console, console)?;
        // The config as the source ends it, where it changed after the run started.
        if run.config != info.config {
            let update = JsonUpdate { set: run.config.clone(), remove: info.config.keys().filter(|k| !run.config.contains_key(*k)).cloned().collect() };
            let batch = IngestJson { config: Some(JsonUpdates { offset: offsets.config, updates: vec![update] }), ..Default::default() };
            client.ingest_json(path, &batch).map_err(|e| call("the config", e))?;
            self.sent.other += 1;
        }
        // The summary as the source ends it: one update, the run's first.
        if offsets.summary == 0 && !run.summary.is_empty() {
            let batch = IngestJson { summary: Some(JsonUpdates { offset: 0, updates: vec![JsonUpdate { set: run.summary.clone(), remove: Vec::new() }] }), ..Default::default() };
            client.ingest_json(path, &batch).map_err(|e| call("the summary", e))?;
            self.sent.other += 1;
        }
        // Files the server lacks, or holds with other content.
        if !run.files.is_empty() {
            let held: std::collections::HashMap<String, String> =
                client.list_files(path).map_err(|e| call("cannot list the run's files", e))?.into_iter().map(|f| (f.path, f.sha256)).collect();
            for (name, file) in &run.files {
                let (sha, _) = cairn_client::files::hash_file(file).with_context(|| format!("cannot read {}", file.display()))?;
                if held.get(name) != Some(&sha) {
                    let mut reader = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
                    let length = reader.metadata().map(|m| m.len()).unwrap_or(0);
                    client.put_file(path, name, &mut reader, length).map_err(|e| call(&format!("the file {name}"), e))?;
                    self.sent.files += 1;
                    bar.inc(1);
                }
            }
        }
        // The end, unless the server has it already. A run the crash monitor marked crashed while
        // an earlier import was cut off ends as the source says.
        let ends = info.state == RunState::Running || (info.state == RunState::Crashed && run.state != RunState::Crashed);
        if ends && run.state != RunState::Running {
            let finish = FinishRequest { exit_code: run.exit_code, state: Some(run.state), finished_at: run.finished_at };
            client.finish_run(path, &finish).map_err(|e| call("cannot finish the run", e))?;
            self.sent.other += 1;
        }
        // What was found after the history started (a cut-off log, dropped rows).
        for w in run.warnings.iter().skip(self.warned) {
            bar.suspend(|| eprintln!("warning: {}: {w}", run.source.display()));
        }
        let sent = std::mem::take(&mut self.sent);
        if *existed && sent.rows + sent.lines + sent.files + sent.other == 0 {
            return Ok(Sent::Nothing);
        }
        Ok(Sent::Some(sent))
    }
}

/// Sends `records[stored..]` in requests of [`ROWS_PER_REQUEST`]; returns how many went.
fn in_slices<T>(client: &ApiClient, path: &RunPath, bar: &ProgressBar, what: &str, stored: u64, records: &[T], batch: impl Fn(usize, &[T]) -> IngestJson) -> anyhow::Result<u64> {
    let mut at = (stored as usize).min(records.len());
    bar.inc(at as u64);
    let mut sent = 0;
    while at < records.len() {
        let end = (at + ROWS_PER_REQUEST).min(records.len());
        client.ingest_json(path, &batch(at, &records[at..end])).map_err(|e| anyhow::anyhow!("{what} {at}..{end}: {e}"))?;
        sent += (end - at) as u64;
        bar.inc((end - at) as u64);
        at = end;
    }
    Ok(sent)
}
