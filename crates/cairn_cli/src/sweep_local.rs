//! `cairn agent --local config.yaml`: a sweep without a server. The controller runs in the agent,
//! over files in the sweep's directory, `<CAIRN_DIR>/cairn/sweeps/<id>/`:
//! - `sweep.json`: the configuration, the entity and project;
//! - `trials.jsonl`: each trial handed out (its run, parameters, grid point, and the agent's pid);
//! - `ends.jsonl`: each trial's end (its state and metric);
//! - `decisions.jsonl`: hyperband's judgements;
//! - `lock`: held (flock) while an agent reads and appends, so that several agents on one machine
//!   share the sweep and never run a grid point twice;
//! - `trials/<run_id>.json`: the trial's membership, which the trial's `init` copies into its run
//!   directory, so that `cairn sync` gives the server the trial with its run.
//!
//! The trials are offline runs. The sweep's id is made from the configuration, the entity and the
//! project, so the same command on the same folder joins the same sweep. A trial whose agent
//! died (its pid is gone) is crashed, and a grid sweep hands its point out again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_client::settings::env as vars;
use cairn_client::sweep::{MEMBERSHIP_FILE, Membership, outcome};
use cairn_types::Timestamp;
use cairn_types::sweep::{BracketDecision, ImportTrial, Iterations, Step, SweepConfig, TrialView, command_line, next_step};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LocalSweep {
    sweep_id: String,
    entity: Option<String>,
    project: String,
    config: Json,
    created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LocalTrial {
    seq: u64,
    run_id: String,
    config: Json,
    grid_index: Option<u64>,
    agent: String,
    host: String,
    pid: u32,
    assigned_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrialEnd {
    run_id: String,
    state: String,
    metric: Option<f64>,
}

/// The sweep's directory, locked while it is held.
struct Locked {
    _file: File,
}

impl Locked {
    fn take(dir: &Path) -> anyhow::Result<Locked> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock")).with_context(|| format!("cannot open the lock in {}", dir.display()))?;
        // SAFETY: flock(2) on a descriptor this process owns; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}: {}", dir.display(), std::io::Error::last_os_error());
        }
        Ok(Locked { _file: file })
    }
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).split(b'\n') {
        // A line cut short by a crash mid-write is skipped.
        if let Ok(v) = serde_json::from_slice(&line?) {
            out.push(v);
        }
    }
    Ok(out)
}

fn append_line<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(path).with_context(|| format!("cannot write {}", path.display()))?;
    // After a line cut short, the next one starts on a line of its own.
    let len = file.metadata()?.len();
    let mut text = String::new();
    if len > 0 {
        use std::io::{Read, Seek};
        let mut last = [0u8; 1];
        file.seek(std::io::SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text += &serde_json::to_string(value)?;
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_data()?;
    Ok(())
}

pub(crate) fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into the buffer.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if end > 0 {
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
    }
    "localhost".into()
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The local sweep's id: from the configuration, the entity and the project.
fn sweep_id(config: &Json, entity: Option<&str>, project: &str) -> String {
    use sha2::Digest;
    let text = format!("{}\n{}\n{}", entity.unwrap_or(""), project, config);
    cairn_types::chunking::hex(&sha2::Sha256::digest(text.as_bytes()))[..10].to_owned()
}

struct Sweep {
    dir: PathBuf,
    base: PathBuf,
    info: LocalSweep,
    parsed: SweepConfig,
    host: String,
}

impl Sweep {
    /// The trials, with their state now.
    fn trials(&self) -> anyhow::Result<(Vec<LocalTrial>, Vec<TrialView>)> {
        let trials: Vec<LocalTrial> = read_lines(&self.dir.join("trials.jsonl"))?;
        let ends: std::collections::HashMap<String, TrialEnd> = read_lines::<TrialEnd>(&self.dir.join("ends.jsonl"))?.into_iter().map(|e| (e.run_id.clone(), e)).collect();
        let views = trials
            .iter()
            .map(|t| {
                let (state, metric) = match ends.get(&t.run_id) {
                    Some(end) => (end.state.clone(), end.metric),
                    // Its agent died: crashed (on another machine: it cannot be known here).
                    None if t.host == self.host && !alive(t.pid) => ("crashed".to_owned(), None),
                    None => ("running".to_owned(), None),
                };
                TrialView { config: t.config.clone(), state, metric, grid_index: t.grid_index }
            })
            .collect();
        Ok((trials, views))
    }

    fn run_dir(&self, run_id: &str) -> Option<PathBuf> {
        cairn_client::rundir::dirs_of_run(&self.base, run_id).pop()
    }

    /// Every run directory under the base, by run id (the latest of a run's).
    fn run_dirs(&self) -> std::collections::HashMap<String, PathBuf> {
        let mut out: std::collections::HashMap<String, (i64, PathBuf)> = std::collections::HashMap::new();
        for entry in std::fs::read_dir(self.base.join("cairn")).into_iter().flatten().flatten() {
            let path = entry.path();
            if let Ok(run) = cairn_client::rundir::read_json::<cairn_client::rundir::RunFile>(&path.join("run.json"))
                && out.get(&run.run_id).is_none_or(|(at, _)| *at <= run.started_at)
            {
                out.insert(run.run_id, (run.started_at, path));
            }
        }
        out.into_iter().map(|(k, (_, p))| (k, p)).collect()
    }

    /// Hyperband over every trial's run directory; the judgements made now are appended.
    /// Returns the judgements of `mine` that stopped it.
    fn judge(&self, mine: &str) -> anyhow::Result<Option<BracketDecision>> {
        let (Some(hb), Some(metric)) = (&self.parsed.early_terminate, &self.parsed.metric) else { return Ok(None) };
        let _lock = Locked::take(&self.dir)?;
        let (trials, views) = self.trials()?;
        let made: Vec<BracketDecision> = read_lines(&self.dir.join("decisions.jsonl"))?;
        // The latest judgement per trial and bracket.
        let last: std::collections::HashMap<(String, u64), BracketDecision> = made.iter().map(|d| ((d.run_id.clone(), d.bracket), d.clone())).collect();
        let judged = last.iter().map(|(k, d)| (k.clone(), d.stopped)).collect();
        let dirs = self.run_dirs();
        let histories: Vec<(String, Vec<f64>, bool)> =
            trials.iter().zip(&views).filter_map(|(t, v)| Some((t.run_id.clone(), outcome(dirs.get(&t.run_id)?, &metric.name).values, v.state == "running"))).collect();
        let iterations: Vec<Iterations<'_>> = histories.iter().map(|(run_id, values, running)| Iterations { run_id, values, running: *running }).collect();
        let mut stopped = made.into_iter().find(|d| d.run_id == mine && d.stopped);
        for mut d in hb.judge(metric.goal, &iterations, &judged) {
            // Strict judging repeats itself every pass: only a change is written.
            if last.get(&(d.run_id.clone(), d.bracket)).is_some_and(|old| old.stopped == d.stopped && old.rank == d.rank && old.reached == d.reached) {
                continue;
            }
            d.decided_at = Some(Timestamp::now());
            append_line(&self.dir.join("decisions.jsonl"), &d)?;
            if d.run_id == mine && d.stopped {
                stopped = Some(d);
            }
        }
        Ok(stopped)
    }
}

pub struct LocalArgs {
    pub config: PathBuf,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub count: Option<u64>,
}

pub fn agent(args: LocalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("cannot read {}", args.config.display()))?;
    let config: Json = serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", args.config.display()))?;
    let parsed = SweepConfig::parse(&config).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let field = |name: &str| config.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let entity = args.entity.or_else(|| field("entity")).or_else(|| std::env::var(vars::ENTITY).ok().filter(|v| !v.is_empty()));
    let Some(project) = args.project.or_else(|| field("project")).or_else(|| std::env::var(vars::PROJECT).ok().filter(|v| !v.is_empty())) else {
        bail!("say which project the sweep's runs go to: --project, or project: in the configuration")
    };
    let base = std::path::absolute(std::env::var_os(vars::DIR).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")))?;
    let id = sweep_id(&config, entity.as_deref(), &project);
    let dir = base.join("cairn").join("sweeps").join(&id);
    std::fs::create_dir_all(dir.join("trials")).with_context(|| format!("cannot make {}", dir.display()))?;
    let info = {
        let _lock = Locked::take(&dir)?;
        let path = dir.join("sweep.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not a local sweep", path.display()))?,
            Err(_) => {
                let info = LocalSweep { sweep_id: id.clone(), entity: entity.clone(), project: project.clone(), config: config.clone(), created_at: Timestamp::now().micros() };
                std::fs::write(&path, serde_json::to_vec_pretty(&info)?)?;
                info
            }
        }
    };
    let host = host();
    let sweep = Sweep { dir: dir.clone(), base: base.clone(), info, parsed, host: host.clone() };
    let (name, interpreter) = (crate::sweep::agent_name(&host), crate::sweep::interpreter());
    println!("local sweep {id} ({}) in {}", sweep.parsed.method.as_str(), dir.display());
    let mut ran = 0u64;
    let mut waiting = String::new();
    loop {
        if args.count.is_some_and(|c| ran >= c) {
            println!("agent {name}: ran {ran} trials, as --count says");
            return Ok(());
        }
        let (trial, membership) = {
            let _lock = Locked::take(&dir)?;
            let (trials, views) = sweep.trials()?;
            let seq = trials.iter().map(|t| t.seq + 1).max().unwrap_or(0);
            let seed = u64::from_str_radix(&id[..10], 16).unwrap_or(0) ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            match next_step(&sweep.parsed, &views, seed) {
                Step::Run { grid_index, config: params } => {
                    let trial = LocalTrial {
                        seq,
                        run_id: cairn_types::ids::generate_run_id(),
                        config: params,
                        grid_index,
                        agent: name.clone(),
                        host: host.clone(),
                        pid: std::process::id(),
                        assigned_at: Timestamp::now().micros(),
                    };
                    append_line(&dir.join("trials.jsonl"), &trial)?;
                    let membership = Membership {
                        sweep_id: id.clone(),
                        trial: ImportTrial {
                            sweep_config: sweep.info.config.clone(),
                            seq,
                            run_id: trial.run_id.clone(),
                            config: trial.config.clone(),
                            grid_index,
                            agent: name.clone(),
                            assigned_at: Timestamp(trial.assigned_at),
                            decisions: Vec::new(),
                        },
                    };
                    (trial, membership)
                }
                Step::Wait(reason) => {
                    if waiting != reason {
                        println!("agent {name}: waiting: {reason}");
                        waiting = reason;
                    }
                    drop(_lock);
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                Step::Finished(reason) => {
                    println!("agent {name}: done after {ran} trials: {reason}");
                    return Ok(());
                }
            }
        };
        waiting.clear();
        let member_file = dir.join("trials").join(format!("{}.json", trial.run_id));
        std::fs::write(&member_file, serde_json::to_vec_pretty(&membership)?)?;
        let args_file = dir.join("trials").join(format!("{}.args.json", trial.run_id));
        std::fs::write(&args_file, trial.config.to_string())?;
        let line = command_line(&sweep.parsed.command, sweep.parsed.program.as_deref(), &interpreter, &trial.config, &args_file.to_string_lossy());
        let Some((program, rest)) = line.split_first() else { bail!("the sweep's command is empty") };
        println!("agent {name}: trial {} as run {}: {}", trial.seq, trial.run_id, line.join(" "));
        let mut child = std::process::Command::new(program);
        child
            .args(rest)
            .env(vars::MODE, "offline")
            .env(vars::DIR, &base)
            .env(vars::SWEEP_ID, &id)
            .env(vars::SWEEP_PARAMS, trial.config.to_string())
            .env(vars::SWEEP_TRIAL, &member_file)
            .env(vars::RUN_ID, &trial.run_id)
            .env(vars::PROJECT, &project);
        if let Some(entity) = &entity {
            child.env(vars::ENTITY, entity);
        }
        let process = child.spawn().with_context(|| format!("cannot start {program}"))?;
        let (status, stopped) = watch(&sweep, process, &trial.run_id)?;
        let run_dir = sweep.run_dir(&trial.run_id);
        let metric = sweep.parsed.metric.as_ref().map(|m| m.name.clone());
        let seen = match (&run_dir, &metric) {
            (Some(d), Some(m)) => outcome(d, m),
            (Some(d), None) => outcome(d, ""),
            _ => Default::default(),
        };
        let state = match (&stopped, seen.state.as_deref()) {
            (Some(_), _) => "killed".to_owned(),
            (None, Some(s)) => s.to_owned(),
            (None, None) if status.success() => "finished".to_owned(),
            (None, None) => "failed".to_owned(),
        };
        {
            let _lock = Locked::take(&dir)?;
            append_line(&dir.join("ends.jsonl"), &TrialEnd { run_id: trial.run_id.clone(), state: state.clone(), metric: seen.summary })?;
            // The trial's judgements go with its run directory, for `cairn sync`.
            if let Some(run_dir) = &run_dir {
                let decisions: Vec<BracketDecision> = read_lines(&dir.join("decisions.jsonl"))?;
                let mut latest: std::collections::BTreeMap<u64, BracketDecision> = std::collections::BTreeMap::new();
                for d in decisions.into_iter().filter(|d| d.run_id == trial.run_id) {
                    latest.insert(d.bracket, d);
                }
                let mut m = membership.clone();
                m.trial.decisions = latest.into_values().collect();
                let temp = run_dir.join(format!("{MEMBERSHIP_FILE}.tmp"));
                std::fs::write(&temp, serde_json::to_vec_pretty(&m)?)?;
                std::fs::rename(&temp, run_dir.join(MEMBERSHIP_FILE))?;
            }
        }
        match &stopped {
            Some(d) => println!(
                "agent {name}: trial {} ended: {}",
                trial.seq,
                sweep.parsed.early_terminate.as_ref().map(|hb| hb.reason(metric.as_deref().unwrap_or("metric"), d)).unwrap_or_default()
            ),
            None => println!("agent {name}: trial {} ended: {state} ({status})", trial.seq),
        }
        let _ = std::fs::remove_file(&args_file);
        ran += 1;
    }
}

/// Waits for a trial's process, judging it (and the others) by hyperband every second when the
/// sweep has early termination; a stopped trial gets SIGINT (its cairn client ends the run as
/// killed), then SIGTERM and SIGKILL if it goes on.
fn watch(sweep: &Sweep, process: std::process::Child, run_id: &str) -> anyhow::Result<(std::process::ExitStatus, Option<BracketDecision>)> {
    crate::sweep::supervise(process, &[libc::SIGINT], || sweep.judge(run_id))
}
