//! `cairn sweep` (create a sweep from its YAML, or pause, resume, stop or cancel one) and
//! `cairn agent` (run a sweep's trials, each its program as a subprocess with the trial's
//! arguments, until the sweep's controller says stop).

use std::time::Duration;

use anyhow::{Context, bail};
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
    /// The sweep, ENTITY/PROJECT/ID (as `cairn sweep` prints it)
    sweep: String,
    /// Run at most this many trials
    #[arg(long)]
    count: Option<u64>,
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
    let (entity, project, id) = sweep_path(&args.sweep)?;
    let api = args.server.client();
    let fail = |e: cairn_client::http::CallError| anyhow::anyhow!(cairn_client::ClientError::from(e).message);
    let info: SweepInfo = serde_json::from_value(api.call_json("GET", &format!("/api/v1/sweeps/{entity}/{project}/{id}"), None).map_err(fail)?)?;
    let config = SweepConfig::parse(&info.config).map_err(|e| anyhow::anyhow!("the sweep's configuration: {e}"))?;
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "agent".into());
    let name = format!("{host}-{}", std::process::id());
    let interpreter = std::env::var("CAIRN_AGENT_INTERPRETER").unwrap_or_else(|_| "python3".into());
    let scratch = tempfile_dir()?;
    let mut ran = 0u64;
    let mut waiting = String::new();
    loop {
        if args.count.is_some_and(|c| ran >= c) {
            println!("agent {name}: ran {ran} trials, as --count says");
            return Ok(());
        }
        let next: NextTrial = serde_json::from_value(
            api.call_json("POST", &format!("/api/v1/sweeps/{entity}/{project}/{id}/next"), Some(&serde_json::to_value(NextTrialRequest { agent: name.clone() })?))
                .map_err(fail)?,
        )?;
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
                let status = child.status().with_context(|| format!("cannot start {program}"))?;
                println!("agent {name}: trial {seq} ended: {status}");
                let _ = std::fs::remove_file(&args_file);
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

/// A folder for the trials' argument files (`${args_json_file}`).
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
