//! `cairn sync`.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Run directories (cairn/run-*) to upload
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Server to upload to [default: the run's own, or CAIRN_BASE_URL]
    #[arg(long)]
    base_url: Option<String>,
    #[arg(long, env = "CAIRN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub fn run(args: SyncArgs) -> anyhow::Result<()> {
    let mut failures = 0;
    for dir in &args.dirs {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}").expect("valid template").progress_chars("=> "));
        bar.set_message(format!("syncing {}", dir.display()));
        let result = cairn_client::sync::sync_run_dir(dir, args.base_url.as_deref(), args.api_key.clone(), &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                println!("synced {} -> {} ({} records, {} bytes sent)", dir.display(), report.run_path, report.records_sent, report.bytes_sent);
                if let Some(damage) = report.damage {
                    eprintln!("warning: {}: {damage}; every whole record before it was synced", dir.display());
                }
                if report.read_only {
                    eprintln!("note: {} is on a read-only filesystem: how far it was synced is not recorded in it (syncing it again sends nothing twice)", dir.display());
                }
            }
            Err(e) => {
                eprintln!("error: cannot sync {}: {}", dir.display(), e.message);
                failures += 1;
            }
        }
    }
    anyhow::ensure!(failures == 0, "{failures} of {} run directories could not be synced", args.dirs.len());
    Ok(())
}
