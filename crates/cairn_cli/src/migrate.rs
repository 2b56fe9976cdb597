//! `cairn migrate`: copies the embedded store of a data directory into another store.

use std::path::PathBuf;

use anyhow::Context;
use cairn_store::StoreConfig;
use cairn_store::sql::copy::{Counts, copy_store};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The data directory whose embedded store (cairn.db and blobs/) is copied
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: PathBuf,
    /// The store to copy into: postgres://user:password@host:port/database, or sqlite:///path/cairn.db
    #[arg(long, env = "CAIRN_STORE", hide_env_values = true)]
    store: String,
    /// Where the copied file contents go: s3://bucket/prefix (the AWS_* variables) or file:///path
    /// [default: the blobs folder of --data-dir, which then serves both]
    #[arg(long, env = "CAIRN_BLOBS")]
    blobs: Option<String>,
    /// Copy at most this many runs now (migrate in steps; run again to go on)
    #[arg(long)]
    max_runs: Option<u64>,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.data_dir.join("cairn.db").exists(), "{} holds no embedded store (no cairn.db)", args.data_dir.display());
    let config = StoreConfig { default_entity: "default".into() };
    let source = cairn_store::open_store(None, None, &args.data_dir, config.clone())
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
    let target = cairn_store::open_store(Some(&args.store), args.blobs.as_deref(), &args.data_dir, config)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .context("cannot open the store given by --store")?;
    use cairn_store::Store as _;
    eprintln!("copying {}\n   into {}", source.describe(), target.describe());

    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {msg} {elapsed}").expect("valid template").progress_chars("=> "));
    let end = copy_store(&source, &target, args.max_runs, &mut |p| {
        bar.set_length(p.runs);
        bar.set_position(p.done);
        bar.set_message(match &p.current {
            Some(path) => format!("{:.1} MB of files; {path}", p.blob_bytes as f64 / 1e6),
            None => format!("{:.1} MB of files", p.blob_bytes as f64 / 1e6),
        });
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    bar.finish_and_clear();
    let runs = |n: u64| if n == 1 { "1 run".to_owned() } else { format!("{n} runs") };
    println!(
        "copied {} ({:.1} MB of files); {} there already; {} of {} in the target",
        runs(end.done - end.already),
        end.blob_bytes as f64 / 1e6,
        runs(end.already),
        end.done,
        runs(end.runs)
    );
    if end.done < end.runs {
        println!("{} left: run cairn migrate again to go on", runs(end.runs - end.done));
        return Ok(());
    }

    // Both sides, table by table: the target may hold more (runs logged to it since), never less.
    let (from, to) = (Counts::of(&source).map_err(|e| anyhow::anyhow!("{}", e.message))?, Counts::of(&target).map_err(|e| anyhow::anyhow!("{}", e.message))?);
    println!("{:<14} {:>12} {:>12}", "", "source", "target");
    let mut short = Vec::new();
    for ((name, a), (_, b)) in from.tables().into_iter().zip(to.tables()) {
        println!("{name:<14} {a:>12} {b:>12}");
        if b < a {
            short.push(name);
        }
    }
    anyhow::ensure!(short.is_empty(), "the target holds fewer {} than the source", short.join(", "));
    println!("every run is in the target");
    Ok(())
}
