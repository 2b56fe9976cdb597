//! The `cairn` binary.

mod accounts;
mod artifacts;
mod import;
mod migrate;
mod runs;
mod server;
mod sweep;
mod sweep_local;
mod sync;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn", version, about = "Self-hosted experiment tracking: runs, metrics, charts", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (embedded store in ~/.cairn unless --data-dir says otherwise)
    Server(server::ServerArgs),
    /// Upload run directories that were logged offline or whose upload was cut off
    Sync(sync::SyncArgs),
    /// Copy the embedded store of a data directory into PostgreSQL (and its files into S3)
    Migrate(migrate::MigrateArgs),
    /// Make and list users (on the server's store)
    Users {
        #[command(subcommand)]
        command: accounts::UsersCommand,
    },
    /// Make teams and manage their members
    Teams {
        #[command(subcommand)]
        command: accounts::TeamsCommand,
    },
    /// Make, list and revoke API keys
    Keys {
        #[command(subcommand)]
        command: accounts::KeysCommand,
    },
    /// Who did what: key changes, roles, moves, deletes and purges (on the server's store)
    Audit(accounts::AuditArgs),
    /// Save an API key for a server, for the SDKs, `cairn sync` and `cairn runs`
    Login(accounts::LoginArgs),
    /// Put, get and list artifacts (versioned datasets and models)
    Artifact {
        #[command(subcommand)]
        command: artifacts::ArtifactCommand,
    },
    /// Create a sweep from its configuration (YAML), or pause, resume, stop or cancel one
    Sweep(sweep::SweepArgs),
    /// Run a sweep's trials: its program, once per trial, until the sweep is done
    Agent(sweep::AgentArgs),
    /// Bring runs from W&B (offline run directories) or MLflow (an mlruns directory or database)
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// List, show and stop runs
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Users { command } => accounts::users(command),
        Command::Teams { command } => accounts::teams(command),
        Command::Keys { command } => accounts::keys(command),
        Command::Audit(args) => accounts::audit_log(args),
        Command::Login(args) => accounts::login(args),
        Command::Artifact { command } => artifacts::run(command),
        Command::Runs { command } => runs::run(command),
        Command::Import { command } => import::run(command),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Agent(args) => sweep::agent(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
