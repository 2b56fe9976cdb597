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
        /// Read the user's password (to sign in to the UI) from standard input, one line
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password (read from standard input, one line)
    SetPassword {
        name: String,
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

/// One line of standard input, without its newline.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(password.chars().count() >= 8, "a password has at least 8 characters");
    Ok(password)
}

/// Notes an administration done in the shell in the audit log (as `shell`).
fn audit(store: &cairn_store::sql::SqlStore, action: &str, target: &str, detail: &str) {
    if let Err(e) = store.record_audit("shell", action, target, detail, Timestamp::now()) {
        eprintln!("warning: the audit log missed {action} {target}: {}", e.message);
    }
}

fn coded(e: cairn_types::error::CodedError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339().chars().take(19).collect())
}

pub fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, admin, password_stdin, store } => {
            // Read before anything is made: a user is not left half made by a bad password.
            let password = if password_stdin { Some(read_password()?) } else { None };
            let store = store.open()?;
            let account = store.create_user(&name, admin, Timestamp::now()).map_err(coded)?;
            if let Some(password) = password {
                store.set_password(&name, &password).map_err(coded)?;
            }
            audit(&store, "user.create", &name, if admin { "server admin" } else { "" });
            println!("user {} created{}", account.name, if account.admin { " (server admin)" } else { "" });
        }
        UsersCommand::SetPassword { name, store } => {
            let password = read_password()?;
            let store = store.open()?;
            store.set_password(&name, &password).map_err(coded)?;
            audit(&store, "user.password", &name, "");
            println!("password of {name} set");
        }
        UsersCommand::List { store } => {
            let accounts = store.open()?.list_accounts().map_err(coded)?;
            println!("{:<30} {:<5} {:<6} CREATED", "NAME", "KIND", "ADMIN");
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
            let store = store.open()?;
            store.create_team(&team, Timestamp::now()).map_err(coded)?;
            audit(&store, "team.create", &team, "");
            println!("team {team} created");
        }
        TeamsCommand::AddMember { team, user, role, store } => {
            let role = Role::parse(&role).map_err(coded)?;
            let store = store.open()?;
            store.set_role(&team, &user, Some(role)).map_err(coded)?;
            audit(&store, "member.role", &team, &format!("{user} is {}", role.as_str()));
            println!("{user} is {} of {team}", role.as_str());
        }
        TeamsCommand::RemoveMember { team, user, store } => {
            let store = store.open()?;
            store.set_role(&team, &user, None).map_err(coded)?;
            audit(&store, "member.remove", &team, &format!("{user} removed"));
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
            let store = store.open()?;
            let (listed, key) = store.create_api_key(&user, &name, expires_at, now).map_err(coded)?;
            audit(&store, "key.create", &user, &format!("key {} {:?} ({}...)", listed.id, listed.name, listed.prefix));
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
            let store = store.open()?;
            let key = store.revoke_api_key(&id_or_key, Timestamp::now()).map_err(coded)?;
            audit(&store, "key.revoke", &key.user, &format!("key {} {:?} ({}...)", key.id, key.name, key.prefix));
            println!("key {} of {} ({}…) revoked", key.id, key.user, key.prefix);
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Entries to show, newest first
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    store: StoreArgs,
}

/// `cairn audit`: who did what, newest first.
pub fn audit_log(args: AuditArgs) -> anyhow::Result<()> {
    let entries = args.store.open()?.list_audit(args.limit, None).map_err(coded)?;
    println!("{:<20} {:<16} {:<16} {:<30} DETAIL", "WHEN", "WHO", "WHAT", "TARGET");
    for e in entries {
        println!("{:<20} {:<16} {:<16} {:<30} {}", time(Some(e.at)), e.actor, e.action, e.target, e.detail);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The key; read from standard input when absent
    key: Option<String>,
    /// The server [default: CAIRN_BASE_URL, or http://127.0.0.1:8080]
    #[arg(long, env = "CAIRN_BASE_URL")]
    host: Option<String>,
}

/// `cairn login`: checks a key against the server and saves it for that server (mode 0600).
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let base = args.host.unwrap_or_else(|| cairn_client::settings::DEFAULT_BASE_URL.to_owned());
    let key = match args.key {
        Some(key) => key,
        None => {
            eprintln!("paste an API key for {base} (make one in the UI's settings or with `cairn keys create`):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the key from standard input")?;
            line
        }
    };
    let key = key.trim().to_owned();
    cairn_client::credentials::check_format(&key).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let api = cairn_client::http::ApiClient::new(&base, Some(key.clone()), std::time::Duration::from_secs(30));
    let viewer = api.viewer().map_err(|e| anyhow::anyhow!("{base} refused the key: {e}"))?;
    let path = cairn_client::credentials::save_key(&base, &key).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    match viewer.user {
        Some(user) => println!("signed in to {base} as {user}; the key is saved in {}", path.display()),
        None => println!("{base} has auth off; the key is saved in {} for when it is on", path.display()),
    }
    Ok(())
}
