//! `cairn sweep` (create a sweep from its YAML, or pause, resume, stop or cancel one) and
//! `cairn agent` (run a sweep's trials, each its program as a subprocess with the trial's
//! arguments, until the sweep's controller says stop).

use std::time::Duration;

use anyhow::{Context, bail};
use cairn_client::http::ApiClient;
use cairn_client::settings::env as vars;
use cairn_types::sweep::{NextTrial, NextTrialRequest, SweepConfig, SweepInfo, SweepState, command_line};

use crate::runs::Server;

#[derive(clap::Args)]
pub struct SweepArgs {
    /// The sweep configuration, a YAML (or JSON) file as W&B writes it
    config: Option<std::path::PathBuf>,
    #[arg(long)]
    entity: Option<String>,
    #[arg(long)]
    project: Option<String>,
    /// Pause the sweep ENTITY/PROJECT/ID: agents wait, running trials go on
    #[arg(long, value_name = "SWEEP", conflicts_with_all = ["config", "resume", "stop", "cancel"])]
    pause: Option<String>,
    /// Resume a paused sweep
    #[arg(long, value_name = "SWEEP", conflicts_with_all = ["config", "stop", "cancel"])]
    resume: Option<String>,
    /// Stop the sweep: no new trials; running ones finish
    #[arg(long, value_name = "SWEEP", conflicts_with_all = ["config", "cancel"])]
    stop: Option<String>,
    /// Cancel the sweep: no new trials, and running ones are stopped (they end as killed)
    #[arg(long, value_name = "SWEEP", conflicts_with = "config")]
    cancel: Option<String>,
    #[command(flatten)]
    server: Server,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The sweep, ENTITY/PROJECT/ID (as `cairn sweep` prints it); with --local, its configuration file
    sweep: String,
    /// Run at most this many trials
    #[arg(long)]
    count: Option<u64>,
    /// Run the sweep without a server: the controller runs in this agent (several agents on one
    /// machine share it through a lock in its directory), and the trials are offline runs that
    /// `cairn sync` uploads later, into the sweep
    #[arg(long)]
    local: bool,
    /// With --local: the trials' entity and project (else the configuration's, or CAIRN_PROJECT)
    #[arg(long, requires = "local")]
    entity: Option<String>,
    #[arg(long, requires = "local")]
    project: Option<String>,
    #[command(flatten)]
    server: Server,
}

fn sweep_path(text: &str) -> anyhow::Result<(String, String, String)> {
    match text.split('/').collect::<Vec<_>>().as_slice() {
        [e, p, id] if !e.is_empty() && !p.is_empty() && !id.is_empty() => Ok((e.to_string(), p.to_string(), id.to_string())),
        _ => bail!("{text:?} is not a sweep: write ENTITY/PROJECT/SWEEP_ID"),
    }
}

pub fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    let api = args.server.client();
    for (target, state) in [(&args.pause, SweepState::Paused), (&args.resume, SweepState::Running), (&args.stop, SweepState::Stopped), (&args.cancel, SweepState::Canceled)] {
        if let Some(target) = target {
            let (e, p, id) = sweep_path(target)?;
            let info: SweepInfo = serde_json::from_value(
                api.call_json("PATCH", &format!("/api/v1/sweeps/{e}/{p}/{id}"), Some(&serde_json::json!({"state": state.as_str()})))
                    .map_err(|e| anyhow::anyhow!(cairn_client::ClientError::from(e).message))?,
            )?;
            println!("sweep {e}/{p}/{id} is {}", info.state.as_str());
            return Ok(());
        }
    }
    let Some(path) = args.config else { bail!("give the sweep's configuration file, or --pause/--resume/--stop/--cancel ENTITY/PROJECT/ID") };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: serde_json::Value = serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    // Checked here too, so that a mistake is named before anything is sent.
    SweepConfig::parse(&config).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let field = |name: &str| config.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let entity = match args.entity.or_else(|| field("entity")) {
        Some(e) => e,
        None => api.info().map_err(|e| anyhow::anyhow!(cairn_client::ClientError::from(e).message))?.default_entity,
    };
    let Some(project) = args.project.or_else(|| field("project")) else { bail!("say which project the sweep's runs go to: --project, or project: in the configuration") };
    let info: SweepInfo = serde_json::from_value(
        api.call_json("POST", &format!("/api/v1/projects/{entity}/{project}/sweeps"), Some(&serde_json::json!({"config": config})))
            .map_err(|e| anyhow::anyhow!(cairn_client::ClientError::from(e).message))?,
    )?;
    let grid = info.grid_size.map(|n| format!(", {n} grid points")).unwrap_or_default();
    println!("created sweep {} ({}{grid})", info.sweep_id, info.method);
    println!("view it at {}/{entity}/{project}/sweeps/{}", api.base_url(), info.sweep_id);
    println!("run an agent with:");
    println!("cairn agent {entity}/{project}/{}", info.sweep_id);
    Ok(())
}

pub fn agent(args: AgentArgs) -> anyhow::Result<()> {
    if args.local {
        return crate::sweep_local::agent(crate::sweep_local::LocalArgs { config: args.sweep.into(), entity: args.entity, project: args.project, count: args.count });
    }
    let (entity, project, id) = sweep_path(&args.sweep)?;
    let api = args.server.client();
    let fail = |e: cairn_client::http::CallError| anyhow::anyhow!(cairn_client::ClientError::from(e).message);
    let info: SweepInfo = serde_json::from_value(api.call_json("GET", &format!("/api/v1/sweeps/{entity}/{project}/{id}"), None).map_err(fail)?)?;
    let config = SweepConfig::parse(&info.config).map_err(|e| anyhow::anyhow!("the sweep's configuration: {e}"))?;
    let (name, interpreter) = (agent_name(&crate::sweep_local::host()), interpreter());
    let scratch = tempfile_dir()?;
    let mut ran = 0u64;
    let mut waiting = String::new();
    let mut last: Option<String> = None;
    loop {
        if args.count.is_some_and(|c| ran >= c) {
            println!("agent {name}: ran {ran} trials, as --count says");
            return Ok(());
        }
        let request = serde_json::to_value(NextTrialRequest { agent: name.clone(), last: last.clone() })?;
        let next: NextTrial = serde_json::from_value(ask(&api, &format!("/api/v1/sweeps/{entity}/{project}/{id}/next"), &request, &name)?)?;
        match next {
            NextTrial::Run { run_id, seq, config: params } => {
                waiting.clear();
                let args_file = scratch.join(format!("args-{run_id}.json"));
                std::fs::write(&args_file, params.to_string())?;
                let line = command_line(&config.command, config.program.as_deref(), &interpreter, &params, &args_file.to_string_lossy());
                let Some((program, rest)) = line.split_first() else { bail!("the sweep's command is empty") };
                println!("agent {name}: trial {seq} as run {run_id}: {}", line.join(" "));
                let mut child = std::process::Command::new(program);
                child
                    .args(rest)
                    .env(vars::SWEEP_ID, &id)
                    .env(vars::SWEEP_PARAMS, params.to_string())
                    .env(vars::RUN_ID, &run_id)
                    .env(vars::ENTITY, &entity)
                    .env(vars::PROJECT, &project)
                    .env(vars::BASE_URL, api.base_url());
                if let Some(key) = api.api_key() {
                    child.env(vars::API_KEY, key);
                }
                let process = child.spawn().with_context(|| format!("cannot start {program}"))?;
                let status = watch_trial(&api, process, &format!("/api/v1/runs/{entity}/{project}/{run_id}"))?;
                println!("agent {name}: trial {seq} ended: {status}");
                let _ = std::fs::remove_file(&args_file);
                last = Some(run_id);
                ran += 1;
            }
            NextTrial::Wait { reason, retry_secs } => {
                if waiting != reason {
                    println!("agent {name}: waiting: {reason}");
                    waiting = reason;
                }
                std::thread::sleep(Duration::from_secs_f64(retry_secs.clamp(0.1, 60.0)));
            }
            NextTrial::Stop { reason } => {
                println!("agent {name}: done after {ran} trials: {reason}");
                return Ok(());
            }
        }
    }
}

/// An agent's name in the trial list: its host and pid.
pub(crate) fn agent_name(host: &str) -> String {
    format!("{host}-{}", std::process::id())
}

/// The interpreter of `${interpreter}`: `CAIRN_AGENT_INTERPRETER`, else `python3`.
pub(crate) fn interpreter() -> String {
    std::env::var("CAIRN_AGENT_INTERPRETER").unwrap_or_else(|_| "python3".into())
}

/// Asks the controller, through a server that restarts or a network that drops: a call that may
/// succeed later is tried again for up to `CAIRN_AGENT_RETRY_SECS` (600 by default).
fn ask(api: &ApiClient, path: &str, body: &serde_json::Value, name: &str) -> anyhow::Result<serde_json::Value> {
    let patience = std::env::var("CAIRN_AGENT_RETRY_SECS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(600.0);
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match api.call_json("POST", path, Some(body)) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && started.elapsed().as_secs_f64() < patience => {
                if pause == Duration::from_millis(250) {
                    println!("agent {name}: cannot reach the sweep's controller ({e}); trying again for {patience:.0}s");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(anyhow::anyhow!(cairn_client::ClientError::from(e).message)),
        }
    }
}

/// Waits for a trial's process. When the sweep stops its run (early termination, or a cancel),
/// the program's cairn client ends it.
fn watch_trial(api: &ApiClient, process: std::process::Child, run: &str) -> anyhow::Result<std::process::ExitStatus> {
    let stopped = || -> anyhow::Result<Option<()>> {
        // Not found yet: the program has not started its run.
        match api.call_json("GET", run, None) {
            Ok(info) if info["stop_requested"] == true || info["state"] == "killed" => {
                let why = info["stop_reason"].as_str().unwrap_or("the sweep stopped it").to_owned();
                println!("agent: run {} is stopped: {why}", info["run_id"].as_str().unwrap_or("?"));
                Ok(Some(()))
            }
            _ => Ok(None),
        }
    };
    let (status, seen) = supervise(process, &[], stopped)?;
    // Stopped and ended between two looks: said now.
    if seen.is_none() && !status.success() {
        stopped()?;
    }
    Ok(status)
}

/// Waits for a trial's process, asking `stopped` every [`POLL`] while it runs whether the sweep
/// stopped it. A stopped trial gets `first` signals at once (none: its cairn client ends it),
/// SIGTERM after [`STOP_GRACE`] if it goes on (it caught the interrupt, or it does not log through
/// cairn), and SIGKILL as long again after. The exit is noticed at once: a thread waits on it.
pub(crate) fn supervise<T>(
    process: std::process::Child,
    first: &[libc::c_int],
    mut stopped: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<(std::process::ExitStatus, Option<T>)> {
    let pid = process.id() as libc::pid_t;
    let mut process = process;
    // The thread only waits for the exit (WNOWAIT): the process stays unreaped, so its pid cannot
    // go to another process while signals may still be sent to it. This thread reaps it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: waitid(2) on our child's pid with a zeroed siginfo it fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let _ = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        let _ = tx.send(());
    });
    let mut verdict: Option<(T, std::time::Instant)> = None;
    let mut sent = 0;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok((process.wait()?, verdict.map(|(v, _)| v))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if verdict.is_none() {
            // A look that fails (a network blip, a full disk) is tried again at the next tick;
            // the trial is never left unwatched.
            match stopped() {
                Ok(Some(v)) => verdict = Some((v, std::time::Instant::now())),
                Ok(None) => {}
                Err(e) => println!("agent: cannot tell whether the trial was stopped: {e:#}"),
            }
        }
        if let Some((_, at)) = &verdict {
            let plan: Vec<(Duration, libc::c_int)> = first.iter().map(|s| (Duration::ZERO, *s)).chain([(STOP_GRACE, libc::SIGTERM), (STOP_GRACE * 2, libc::SIGKILL)]).collect();
            while sent < plan.len() && at.elapsed() >= plan[sent].0 {
                if plan[sent].1 == libc::SIGTERM {
                    println!("agent: the trial is still running {}s after its stop; sending SIGTERM", STOP_GRACE.as_secs());
                }
                // SAFETY: kill(2) on our child, which is not reaped yet (only this thread reaps it).
                unsafe { libc::kill(pid, plan[sent].1) };
                sent += 1;
            }
        }
    }
}

/// How often an agent looks whether its trial was stopped, and how long a stopped trial's
/// program has to end by itself.
const POLL: Duration = Duration::from_secs(1);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A folder for the trials' argument files (`${args_json_file}`).
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
