//! `cairn users`, `cairn teams` and `cairn keys`: accounts, administered on the server's store
//! directly (the same `--data-dir` and `--store` as `cairn server`), also while it runs.

use std::path::PathBuf;

use anyhow::Context;
use cairn_store::{AccountStore, Role, StoreConfig};
use cairn_types::Timestamp;

/// Where the server's store is.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// The server's data directory [default: ~/.cairn]
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The server's database, when it is not the embedded one: postgres://… or sqlite:///…
    #[arg(long, env = "CAIRN_STORE", hide_env_values = true)]
    store: Option<String>,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<cairn_store::sql::SqlStore> {
        let data_dir = crate::server::data_dir(self.data_dir.clone())?;
        cairn_store::open_store(self.store.as_deref(), None, &data_dir, StoreConfig { default_entity: "default".into() })
            .map_err(|e| anyhow::anyhow!("{}", e.message))
            .with_context(|| format!("cannot open the store of {}", data_dir.display()))
    }
}

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Make a user: NAME becomes their entity (a name that runs already use becomes theirs)
    Create {
        name: String,
        /// The user administers the server
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the users and teams
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum TeamsCommand {
    /// Make a team: TEAM becomes its entity
    Create {
        team: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a user a role in a team (or change it)
    AddMember {
        team: String,
        user: String,
        /// admin (manages members), member (reads and writes runs) or viewer (reads)
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Take a user out of a team
    RemoveMember {
        team: String,
        user: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a team's members and their roles
    Members {
        team: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make an API key; it is printed once, alone on the last line, and stored only as a hash
    Create {
        #[arg(long)]
        user: String,
        /// What the key is for, as the list shows it
        #[arg(long, default_value = "")]
        name: String,
        /// Days until the key stops working [default: never]
        #[arg(long)]
        expires_days: Option<f64>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a user's keys (never the keys themselves)
    List {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key, given by the id that `list` shows or by the key itself
    Revoke {
        id_or_key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn coded(e: cairn_types::error::CodedError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339().chars().take(19).collect())
}

pub fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, admin, store } => {
            let account = store.open()?.create_user(&name, admin, Timestamp::now()).map_err(coded)?;
            println!("user {} created{}", account.name, if account.admin { " (server admin)" } else { "" });
        }
        UsersCommand::List { store } => {
            let accounts = store.open()?.list_accounts().map_err(coded)?;
            println!("{:<30} {:<5} {:<6} {}", "NAME", "KIND", "ADMIN", "CREATED");
            for a in accounts {
                println!("{:<30} {:<5} {:<6} {}", a.name, if a.team { "team" } else { "user" }, if a.admin { "yes" } else { "" }, time(Some(a.created_at)));
            }
        }
    }
    Ok(())
}

pub fn teams(command: TeamsCommand) -> anyhow::Result<()> {
    match command {
        TeamsCommand::Create { team, store } => {
            store.open()?.create_team(&team, Timestamp::now()).map_err(coded)?;
            println!("team {team} created");
        }
        TeamsCommand::AddMember { team, user, role, store } => {
            let role = Role::parse(&role).map_err(coded)?;
            store.open()?.set_role(&team, &user, Some(role)).map_err(coded)?;
            println!("{user} is {} of {team}", role.as_str());
        }
        TeamsCommand::RemoveMember { team, user, store } => {
            store.open()?.set_role(&team, &user, None).map_err(coded)?;
            println!("{user} is no longer in {team}");
        }
        TeamsCommand::Members { team, store } => {
            let members = store.open()?.members(&team).map_err(coded)?;
            println!("{:<30} ROLE", "USER");
            for (user, role) in members {
                println!("{user:<30} {}", role.as_str());
            }
        }
    }
    Ok(())
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { user, name, expires_days, store } => {
            let now = Timestamp::now();
            let expires_at = match expires_days {
                None => None,
                Some(days) if days.is_finite() && days > 0.0 => Some(Timestamp(now.micros() + (days * 86_400e6) as i64)),
                Some(days) => anyhow::bail!("--expires-days must be a positive number of days, not {days}"),
            };
            let (listed, key) = store.open()?.create_api_key(&user, &name, expires_at, now).map_err(coded)?;
            println!("key {} for {user} created (expires: {}); it is shown only now:", listed.id, time(listed.expires_at));
            println!("{key}");
        }
        KeysCommand::List { user, store } => {
            let keys = store.open()?.list_api_keys(&user).map_err(coded)?;
            println!("{:<6} {:<20} {:<14} {:<20} {:<20} {:<20} REVOKED", "ID", "NAME", "KEY", "CREATED", "EXPIRES", "LAST USED");
            for k in keys {
                println!(
                    "{:<6} {:<20} {:<14} {:<20} {:<20} {:<20} {}",
                    k.id,
                    k.name,
                    format!("{}…", k.prefix),
                    time(Some(k.created_at)),
                    time(k.expires_at),
                    time(k.last_used_at),
                    time(k.revoked_at)
                );
            }
        }
        KeysCommand::Revoke { id_or_key, store } => {
            let key = store.open()?.revoke_api_key(&id_or_key, Timestamp::now()).map_err(coded)?;
            println!("key {} of {} ({}…) revoked", key.id, key.user, key.prefix);
        }
    }
    Ok(())
}
