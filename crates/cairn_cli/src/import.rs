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
use cairn_import::ImportedRun;
use cairn_types::RunPath;
use cairn_types::api::{FinishRequest, IngestJson, JsonConsole, JsonConsoleLine, JsonRows, JsonUpdate, JsonUpdates, ResumeMode, RunState, UpsertRunRequest};
use cairn_types::value::Value;
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

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    let (target, runs, skipped_at_source) = match command {
        ImportCommand::Wandb { paths, target } => {
            let logs = cairn_import::wandb::find_runs(&paths)?;
            let mut runs = Vec::new();
            let mut unreadable = 0;
            for log in logs {
                match cairn_import::wandb::read_run(&log) {
                    Ok(run) => runs.push(run),
                    Err(e) => {
                        eprintln!("error: {e}");
                        unreadable += 1;
                    }
                }
            }
            (target, runs, Skipped { unreadable, deleted: 0 })
        }
        ImportCommand::Mlflow { store, target } => {
            let (runs, deleted) = cairn_import::mlflow::read_store(&store)?;
            (target, runs, Skipped { unreadable: 0, deleted })
        }
    };
    let client = target.server.client();
    let info = client.info().map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", target.server.base_url()))?;
    let total: u64 = runs.iter().map(work).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{msg:30} [{bar:30}] {pos}/{len} records {elapsed}").expect("valid template").progress_chars("=> "));
    let mut counts = Counts::default();
    for run in runs {
        for w in &run.warnings {
            bar.suspend(|| eprintln!("warning: {}: {w}", run.source.display()));
        }
        bar.set_message(run.run_id.clone());
        let entity = target.entity.clone().or_else(|| run.entity.clone()).unwrap_or_else(|| info.default_entity.clone());
        let project = target.project.clone().or_else(|| run.project.clone()).unwrap_or_else(|| "uncategorized".to_owned());
        let path = RunPath::new(entity, project, run.run_id.clone());
        match send(&client, &path, &run, &bar) {
            Ok(Sent::Nothing) => counts.already += 1,
            Ok(Sent::Some(s)) => {
                counts.runs += 1;
                counts.rows += s.rows;
                counts.lines += s.lines;
                counts.files += s.files;
            }
            Err(e) => {
                bar.suspend(|| eprintln!("error: {} ({path}): {e:#}", run.source.display()));
                counts.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    println!(
        "imported {} run{} ({} history rows, {} console lines, {} files); skipped {} already imported{}{}; {} failed",
        counts.runs,
        if counts.runs == 1 { "" } else { "s" },
        counts.rows,
        counts.lines,
        counts.files,
        counts.already,
        if skipped_at_source.deleted > 0 { format!(", {} deleted at the source", skipped_at_source.deleted) } else { String::new() },
        if skipped_at_source.unreadable > 0 { format!(", {} unreadable", skipped_at_source.unreadable) } else { String::new() },
        counts.failed,
    );
    anyhow::ensure!(counts.failed == 0 && skipped_at_source.unreadable == 0, "not every run was imported");
    Ok(())
}

struct Skipped {
    unreadable: usize,
    deleted: usize,
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

/// The records a run counts for on the progress bar.
fn work(run: &ImportedRun) -> u64 {
    (run.history.len() + run.system.len() + run.console.len() + run.files.len()) as u64
}

fn send(client: &ApiClient, path: &RunPath, run: &ImportedRun, bar: &ProgressBar) -> anyhow::Result<Sent> {
    let call = |what: &str, e: cairn_client::http::CallError| anyhow::anyhow!("{what}: {e}");
    let request = UpsertRunRequest {
        entity: Some(path.entity.clone()),
        project: Some(path.project.clone()),
        run_id: path.run_id.clone(),
        name: run.name.clone(),
        notes: run.notes.clone(),
        tags: (!run.tags.is_empty()).then(|| run.tags.clone()),
        group: run.group.clone(),
        job_type: run.job_type.clone(),
        config: Some(Value::Map(run.config.clone())),
        metadata: (!run.metadata.is_empty()).then(|| Value::Map(run.metadata.clone())),
        started_at: run.started_at,
        resume: ResumeMode::Keep,
        ..Default::default()
    };
    let existed = match client.get_run(path) {
        Ok(_) => true,
        Err(e) if e.code() == Some(cairn_types::error::ErrorCode::RunNotFound) => false,
        Err(e) => return Err(call("cannot look the run up", e)),
    };
    let info = client.upsert_run(&request).map_err(|e| call("cannot create the run", e))?;
    let mut sent = SentParts::default();
    let offsets = info.offsets;

    // Each stream in slices, from where the server's copy ends.
    let history = |at: usize, rows: &[cairn_types::value::Map]| IngestJson { history: Some(JsonRows { offset: at as u64, rows: rows.to_vec() }), ..Default::default() };
    sent.rows += in_slices(client, path, bar, "history rows", offsets.history, &run.history, history)?;
    let system = |at: usize, rows: &[cairn_types::value::Map]| IngestJson { system: Some(JsonRows { offset: at as u64, rows: rows.to_vec() }), ..Default::default() };
    sent.other += in_slices(client, path, bar, "system rows", offsets.system, &run.system, system)?;
    let console = |at: usize, lines: &[JsonConsoleLine]| IngestJson { console: Some(JsonConsole { offset: at as u64, lines: lines.to_vec() }), ..Default::default() };
    sent.lines += in_slices(client, path, bar, "console lines", offsets.console, &run.console, console)?;
    // The summary as the source ends it: one update, the run's first.
    if offsets.summary == 0 && !run.summary.is_empty() {
        let batch = IngestJson { summary: Some(JsonUpdates { offset: 0, updates: vec![JsonUpdate { set: run.summary.clone(), remove: Vec::new() }] }), ..Default::default() };
        client.ingest_json(path, &batch).map_err(|e| call("the summary", e))?;
        sent.other += 1;
    }

    // Files the server lacks, or holds with other content.
    if !run.files.is_empty() {
        let held: std::collections::HashMap<String, String> =
            client.list_files(path).map_err(|e| call("cannot list the run's files", e))?.into_iter().map(|f| (f.path, f.sha256)).collect();
        for (name, file) in &run.files {
            let sha = sha256_file(file)?;
            if held.get(name) != Some(&sha) {
                let mut reader = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
                let length = reader.metadata().map(|m| m.len()).unwrap_or(0);
                client.put_file(path, name, &mut reader, length).map_err(|e| call(&format!("the file {name}"), e))?;
                sent.files += 1;
            }
            bar.inc(1);
        }
    }

    // The end, unless the server has it already. A run the crash monitor marked crashed while an
    // earlier import was cut off ends as the source says.
    let ends = info.state == RunState::Running || (info.state == RunState::Crashed && run.state != RunState::Crashed);
    if ends && run.state != RunState::Running {
        let finish = FinishRequest { exit_code: run.exit_code, state: Some(run.state), finished_at: run.finished_at };
        client.finish_run(path, &finish).map_err(|e| call("cannot finish the run", e))?;
        sent.other += 1;
    }
    if existed && sent.rows + sent.lines + sent.files + sent.other == 0 {
        return Ok(Sent::Nothing);
    }
    Ok(Sent::Some(sent))
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

fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
