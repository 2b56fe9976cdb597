//! `cairn runs list|show|stop`.

use std::time::Duration;

use anyhow::Context;
use cairn_client::http::ApiClient;
use cairn_types::RunPath;
use cairn_types::api::{RunInfo, RunSearch};
use cairn_types::ids::parse_project_path;
use cairn_types::value::Value;

#[derive(clap::Args)]
pub struct Server {
    /// The server
    #[arg(long, env = "CAIRN_BASE_URL", default_value = cairn_client::settings::DEFAULT_BASE_URL)]
    base_url: String,
    #[arg(long, env = "CAIRN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl Server {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.base_url, cairn_client::credentials::resolve(self.api_key.clone(), &self.base_url), Duration::from_secs(30))
    }
}

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// Print a table of a project's runs
    List {
        /// entity/project
        project: String,
        /// Mongo-style filter, for example '{"config.lr": {"$gt": 0.01}}'
        #[arg(long)]
        filter: Option<String>,
        /// Sort keys, for example -summary.acc (repeat for more)
        #[arg(long)]
        sort: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        server: Server,
    },
    /// Print one run: state, config, summary and metadata
    Show {
        /// entity/project/run_id
        run: String,
        /// Print the run as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Stop a running run: its client learns of it at its next heartbeat and ends it as killed
    Stop {
        /// entity/project/run_id
        run: String,
        #[command(flatten)]
        server: Server,
    },
    /// Change a run's name, notes, tags, group or job type
    Update {
        /// entity/project/run_id
        run: String,
        #[arg(long)]
        name: Option<String>,
        /// The run's notes (its description)
        #[arg(long)]
        notes: Option<String>,
        /// Add a tag (repeat for more)
        #[arg(long = "add-tag")]
        add_tags: Vec<String>,
        /// Remove a tag (repeat for more)
        #[arg(long = "remove-tag")]
        remove_tags: Vec<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        job_type: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Delete runs softly: they disappear from the UI and the API, and their ids stay taken until
    /// they are purged (by `purge`, or when the server's retention window passes)
    Delete {
        /// entity/project/run_id (several may be given)
        #[arg(required = true)]
        runs: Vec<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Move runs to another project, of this entity or another: all of them, or none when an id
    /// is taken in the target
    Move {
        /// entity/project/run_id (several may be given)
        #[arg(required = true)]
        runs: Vec<String>,
        /// The target: entity/project
        #[arg(long)]
        to: String,
        #[command(flatten)]
        server: Server,
    },
    /// Remove runs for good, deleted or not: history, console and their files
    Purge {
        /// entity/project/run_id (several may be given)
        #[arg(required = true)]
        runs: Vec<String>,
        #[command(flatten)]
        server: Server,
    },
}

fn api_err(e: cairn_client::http::CallError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub fn run(command: RunsCommand) -> anyhow::Result<()> {
    match command {
        RunsCommand::List { project, filter, sort, limit, server } => {
            let (entity, project) = parse_project_path(&project).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let filter = filter.map(|f| serde_json::from_str(&f).with_context(|| format!("--filter {f:?} is not valid JSON"))).transpose()?;
            let page = server.client().search_runs(&entity, &project, &RunSearch { filter, sort, limit: Some(limit), offset: None }).map_err(api_err)?;
            print!("{}", runs_table(&page.runs));
            println!("{} of {} runs", page.runs.len(), page.total);
            Ok(())
        }
        RunsCommand::Show { run, json, server } => {
            let path = RunPath::parse(&run).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let info = server.client().get_run(&path).map_err(api_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", show_run(&info));
            }
            Ok(())
        }
        RunsCommand::Stop { run, server } => {
            let path = RunPath::parse(&run).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let info = server.client().stop_run(&path).map_err(api_err)?;
            println!("stop requested for {} ({}); it ends at its next heartbeat", info.path(), info.name);
            Ok(())
        }
        RunsCommand::Update { run, name, notes, add_tags, remove_tags, group, job_type, server } => {
            let path = RunPath::parse(&run).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let client = server.client();
            let tags = if add_tags.is_empty() && remove_tags.is_empty() {
                None
            } else {
                let mut tags = client.get_run(&path).map_err(api_err)?.tags;
                for tag in &remove_tags {
                    anyhow::ensure!(tags.contains(tag), "run {path} has no tag {tag:?} to remove (its tags: {tags:?})");
                }
                tags.retain(|t| !remove_tags.contains(t));
                for tag in add_tags {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                Some(tags)
            };
            let patch = cairn_types::api::RunPatch { name, notes, tags, group, job_type };
            anyhow::ensure!(patch != cairn_types::api::RunPatch::default(), "nothing to change: give --name, --notes, --add-tag, --remove-tag, --group or --job-type");
            let info = client.update_run(&path, &patch).map_err(api_err)?;
            println!("updated {path}: name {:?}, tags {:?}, notes {:?}", info.name, info.tags, info.notes);
            Ok(())
        }
        RunsCommand::Delete { runs, server } => {
            let client = server.client();
            for path in parse_paths(&runs)? {
                client.delete_run(&path).map_err(api_err)?;
                println!("deleted {path} (purge it with `cairn runs purge {path}`)");
            }
            Ok(())
        }
        RunsCommand::Move { runs, to, server } => {
            let (entity, project) = cairn_types::ids::parse_project_path(&to).map_err(|e| anyhow::anyhow!("--to: {}", e.message))?;
            let moved = server.client().move_runs(&parse_paths(&runs)?, &entity, &project).map_err(api_err)?;
            for (from, to) in runs.iter().zip(&moved) {
                println!("moved {from} to {to}");
            }
            Ok(())
        }
        RunsCommand::Purge { runs, server } => {
            let client = server.client();
            for path in parse_paths(&runs)? {
                client.purge_run(&path).map_err(api_err)?;
                println!("purged {path}");
            }
            Ok(())
        }
    }
}

/// Every path is checked before anything is changed.
fn parse_paths(runs: &[String]) -> anyhow::Result<Vec<RunPath>> {
    runs.iter().map(|r| RunPath::parse(r).map_err(|e| anyhow::anyhow!("{}", e.message))).collect()
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::Float(f)) => cairn_client::report::format_number(*f),
        Some(Value::Str(s)) => s.clone(),
        Some(v) => v.to_json().to_string(),
    }
}

fn runs_table(runs: &[RunInfo]) -> String {
    let mut summary_keys: Vec<String> = Vec::new();
    for run in runs {
        for key in run.summary.keys() {
            if !key.starts_with('_') && !summary_keys.contains(key) && summary_keys.len() < 4 {
                summary_keys.push(key.clone());
            }
        }
    }
    let mut header = vec!["ID".to_owned(), "NAME".into(), "STATE".into(), "CREATED".into(), "RUNTIME".into()];
    header.extend(summary_keys.iter().cloned());
    let mut rows = vec![header];
    for run in runs {
        let mut row =
            vec![run.run_id.clone(), run.name.clone(), run.state.as_str().to_owned(), run.created_at.to_rfc3339().chars().take(19).collect(), format!("{:.0}s", run.runtime_secs)];
        row.extend(summary_keys.iter().map(|k| cell(run.summary.get(k))));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn show_run(run: &RunInfo) -> String {
    let mut out = format!(
        "{} ({})\n  state:    {}{}\n  created:  {}\n  runtime:  {:.1}s\n",
        run.path(),
        run.name,
        run.state.as_str(),
        run.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default(),
        run.created_at,
        run.runtime_secs,
    );
    if let Some(group) = &run.group {
        out.push_str(&format!("  group:    {group}\n"));
    }
    if let Some(job_type) = &run.job_type {
        out.push_str(&format!("  job type: {job_type}\n"));
    }
    if !run.tags.is_empty() {
        out.push_str(&format!("  tags:     {}\n", run.tags.join(", ")));
    }
    if !run.notes.is_empty() {
        out.push_str(&format!("  notes:    {}\n", run.notes));
    }
    for (title, map) in [("config", &run.config), ("summary", &run.summary), ("metadata", &run.metadata)] {
        if map.is_empty() {
            continue;
        }
        out.push_str(&format!("  {title}:\n"));
        let mut leaves = Vec::new();
        Value::Map(map.clone()).for_each_leaf(&mut |path, leaf| leaves.push((path.join("."), leaf.clone())));
        for (key, value) in leaves {
            out.push_str(&format!("    {key}: {}\n", cell(Some(&value))));
        }
    }
    out
}
