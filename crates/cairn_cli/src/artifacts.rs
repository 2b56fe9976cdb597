//! `cairn artifact put|get|ls`: artifacts from the shell, with progress on the terminal.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::artifacts::{ArtifactDraft, Progress};
use cairn_types::artifacts::{ArtifactInfo, ArtifactRef, CollectionInfo};
use cairn_types::ids::parse_project_path;

use crate::runs::Server;

#[derive(clap::Subcommand)]
pub enum ArtifactCommand {
    /// Log a file or a directory as a new version of an artifact (or the version with the same content)
    Put {
        /// The file or directory
        path: PathBuf,
        #[arg(long)]
        name: String,
        /// dataset, model, …
        #[arg(long = "type")]
        kind: String,
        /// An alias for the version (repeat for more); `latest` moves by itself
        #[arg(long)]
        alias: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// entity/project, or a project of the server's default entity
        #[arg(long, env = "CAIRN_PROJECT")]
        project: String,
        #[command(flatten)]
        server: Server,
    },
    /// Download a version: [entity/project/]name[:alias|:vN]
    Get {
        artifact: String,
        /// Where the files go [default: ./artifacts/NAME:VERSION]
        #[arg(long)]
        root: Option<PathBuf>,
        /// entity/project, when ARTIFACT names none
        #[arg(long, env = "CAIRN_PROJECT")]
        project: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List a project's artifacts and their versions
    Ls {
        /// entity/project
        project: String,
        /// Only this type
        #[arg(long = "type")]
        kind: Option<String>,
        #[command(flatten)]
        server: Server,
    },
}

fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut value, mut unit) = (n as f64, 0);
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", units[unit]) }
}

/// Runs `work` while a progress line is redrawn on a terminal's stderr (and printed once at the end).
fn with_progress<R>(work: impl FnOnce(&Progress) -> R) -> R {
    let progress = Progress::default();
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let line = |p: &Progress| {
        let (done, total) = (p.done.load(Ordering::Relaxed), p.total.load(Ordering::Relaxed));
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let pct = if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 };
        format!("{:<11} {:>10} / {:<10} {pct:5.1}%  {}/s", *p.phase.lock().expect("progress"), bytes(done), bytes(total), bytes(rate as u64))
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if terminal {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    eprint!("\r{}", line(&progress));
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        let result = work(&progress);
        stop.store(true, Ordering::Relaxed);
        result
    });
    if terminal {
        eprintln!("\r{}", line(&progress));
    }
    result
}

fn project_of(text: &str, server: &Server) -> anyhow::Result<(String, String)> {
    if text.contains('/') {
        let (entity, project) = parse_project_path(text).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        return Ok((entity, project));
    }
    // Asked again while the server restarts, as the transfers are.
    let client = server.client();
    let mut attempt = 0;
    let entity = loop {
        match client.info() {
            Ok(info) => break info.default_entity,
            Err(e) if e.is_retryable() && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => anyhow::bail!("{e}"),
        }
    };
    Ok((entity, text.to_owned()))
}

fn print_version(a: &ArtifactInfo) {
    println!(
        "{:<32} {:<10} {:>6} {:>10}  {:<20} {}",
        format!("{}:{}", a.name, a.version),
        a.kind,
        a.file_count,
        bytes(a.size),
        a.created_at.to_rfc3339().chars().take(19).collect::<String>(),
        a.aliases.join(",")
    );
}

pub fn run(command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::Put { path, name, kind, alias, description, project, server } => {
            let (entity, project) = project_of(&project, &server)?;
            let mut draft = ArtifactDraft::new(&name, &kind).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            draft.description = description;
            if path.is_dir() { draft.add_dir(&path, None) } else { draft.add_file(&path, None) }.map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let api = server.client().with_timeout(Duration::from_secs(600));
            let info =
                with_progress(|p| cairn_client::artifacts::log_artifact_with(&api, &entity, &project, None, &draft, &alias, p)).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{} ({} files, {}; aliases: {})", info.qualified(), info.file_count, bytes(info.size), info.aliases.join(", "));
        }
        ArtifactCommand::Get { artifact, root, project, server } => {
            let reference = ArtifactRef::parse(&artifact).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let (entity, project) = match (&reference.entity, &reference.project, project) {
                (Some(e), Some(p), _) => (e.clone(), p.clone()),
                (None, Some(p), _) => project_of(p, &server)?,
                (_, None, Some(p)) => project_of(&p, &server)?,
                (_, None, None) => anyhow::bail!("{artifact:?} names no project: give entity/project/name:alias, or --project"),
            };
            let api = server.client().with_timeout(Duration::from_secs(600));
            let info = api.get_artifact(&entity, &project, &reference.name, &reference.version).map_err(|e| anyhow::anyhow!("{e}"))?;
            let root = root.unwrap_or_else(|| PathBuf::from("artifacts").join(format!("{}:{}", info.name, info.version)));
            let files = with_progress(|p| cairn_client::artifacts::download_artifact_with(&api, &info, &root, p))
                .map_err(|e| anyhow::anyhow!("{}", e.message))
                .with_context(|| format!("downloading {}", info.qualified()))?;
            let references = files.iter().filter(|(_, local)| local.is_none()).count();
            println!(
                "{} in {} ({} files{})",
                info.qualified(),
                root.display(),
                files.len() - references,
                if references > 0 { format!(", {references} references not downloaded") } else { String::new() }
            );
        }
        ArtifactCommand::Ls { project, kind, server } => {
            let (entity, project) = parse_project_path(&project).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let api = server.client();
            let kind_query = kind.map(|k| format!("?type={k}")).unwrap_or_default();
            let collections: Vec<CollectionInfo> =
                serde_json::from_value(api.call_json("GET", &format!("/api/v1/projects/{entity}/{project}/artifacts{kind_query}"), None).map_err(|e| anyhow::anyhow!("{e}"))?)?;
            if collections.is_empty() {
                println!("{entity}/{project} has no artifacts");
            }
            println!("{:<32} {:<10} {:>6} {:>10}  {:<20} ALIASES", "ARTIFACT", "TYPE", "FILES", "SIZE", "CREATED");
            for c in collections {
                let versions: Vec<ArtifactInfo> =
                    serde_json::from_value(api.call_json("GET", &format!("/api/v1/artifacts/{entity}/{project}/{}", c.name), None).map_err(|e| anyhow::anyhow!("{e}"))?)?;
                for v in &versions {
                    print_version(v);
                }
            }
        }
    }
    Ok(())
}
