//! `cairn server`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_server::ServerConfig;
use cairn_store::StoreConfig;

/// Prints a line of the server's report. A closed stdout or stderr (the parent that started the
/// server went away, or read only the first line) must not stop a running server: the line is
/// dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on. Anything but loopback exposes the server to the network, and needs --auth on
    #[arg(long, env = "CAIRN_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Whether requests need an API key or a signed-in session [default: off on a loopback
    /// address, on otherwise]. Off is allowed only on loopback
    #[arg(long, env = "CAIRN_AUTH", value_parser = ["on", "off"])]
    auth: Option<String>,
    /// Another host name that browsers and clients use to reach the server (besides loopback
    /// names, IP addresses and the host of --public-url); repeat for several
    #[arg(long = "allow-host", env = "CAIRN_ALLOW_HOSTS", value_delimiter = ',')]
    allow_hosts: Vec<String>,
    /// Port to listen on (0 picks a free one)
    #[arg(long, env = "CAIRN_PORT", default_value_t = 8080)]
    port: u16,
    /// Where the embedded store keeps its SQLite file and blobs [default: ~/.cairn]
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The database: sqlite:///path/cairn.db, or postgres://user:password@host:port/database for
    /// several servers on one database [default: cairn.db in --data-dir]
    #[arg(long, env = "CAIRN_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Where file contents go: file:///path, or s3://bucket/prefix with the AWS_* variables
    /// (AWS_ENDPOINT_URL for MinIO, Ceph, R2...) [default: the blobs folder of --data-dir]
    #[arg(long, env = "CAIRN_BLOBS")]
    blobs: Option<String>,
    /// Entity for runs that name none [default: the OS user name]
    #[arg(long, env = "CAIRN_DEFAULT_ENTITY")]
    default_entity: Option<String>,
    /// Log an example run (the seed's training loop, project awesome-project) once the server
    /// listens, so that a first look finds data; once per data directory
    #[arg(long)]
    example: bool,
    /// Seconds without a heartbeat after which a running run is marked crashed
    #[arg(long, env = "CAIRN_HEARTBEAT_TIMEOUT_SECS", default_value_t = 60.0)]
    heartbeat_timeout_secs: f64,
    /// Pages that may show the UI in a frame (a notebook's `run.display()`): CSP frame-ancestors
    /// sources, space-separated, or `none`
    #[arg(long, env = "CAIRN_FRAME_ANCESTORS", default_value = "http://localhost:* http://127.0.0.1:*")]
    frame_ancestors: String,
    /// Seconds without a heartbeat after which a run that said it may be preempted
    /// (`mark_preempting`) is marked crashed
    #[arg(long, env = "CAIRN_PREEMPTING_TIMEOUT_SECS", default_value_t = 600.0)]
    preempting_timeout_secs: f64,
    /// Seconds between two checks for crashed runs
    #[arg(long, env = "CAIRN_MONITOR_INTERVAL_SECS", default_value_t = 10.0)]
    monitor_interval_secs: f64,
    /// Days a deleted run is kept (its id stays taken) before it is purged for good
    #[arg(long, env = "CAIRN_DELETED_RETENTION_DAYS", default_value_t = 30.0)]
    deleted_retention_days: f64,
    /// Slack-compatible incoming webhook that run alerts are posted to
    #[arg(long, env = "CAIRN_ALERT_WEBHOOK_URL")]
    alert_webhook_url: Option<String>,
    /// SMTP server for run alerts by email, host or host:port (port 25 by default; STARTTLS
    /// whenever the server offers it)
    #[arg(long, env = "CAIRN_SMTP")]
    smtp: Option<String>,
    /// Sender of alert emails
    #[arg(long, env = "CAIRN_SMTP_FROM", default_value = "cairn <cairn@localhost>")]
    smtp_from: String,
    /// Recipients of alert emails (repeat, or separate with commas)
    #[arg(long, env = "CAIRN_SMTP_TO", value_delimiter = ',')]
    smtp_to: Vec<String>,
    /// SMTP user name (with CAIRN_SMTP_PASSWORD)
    #[arg(long, env = "CAIRN_SMTP_USER")]
    smtp_user: Option<String>,
    #[arg(long, env = "CAIRN_SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,
    /// The server's address as users reach it, for links in alerts [default: http://HOST:PORT]
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest request body accepted, in MiB
    #[arg(long, env = "CAIRN_MAX_BODY_MB", default_value_t = 256)]
    max_body_mb: usize,
}

fn positive_secs(name: &str, secs: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(secs.is_finite() && secs > 0.0, "--{name} must be a positive number of seconds, not {secs}");
    Ok(Duration::from_secs_f64(secs))
}

fn alert_targets(args: &ServerArgs) -> anyhow::Result<cairn_server::alerts::AlertTargets> {
    if let Some(url) = &args.alert_webhook_url {
        anyhow::ensure!(url.starts_with("http://") || url.starts_with("https://"), "--alert-webhook-url {url:?} must start with http:// or https://");
    }
    let smtp = match &args.smtp {
        None => None,
        Some(address) => {
            let (host, port) = match address.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse::<u16>().map_err(|_| anyhow::anyhow!("--smtp {address:?}: {port:?} is not a port"))?),
                None => (address.clone(), 25),
            };
            anyhow::ensure!(!args.smtp_to.is_empty(), "--smtp needs at least one --smtp-to recipient");
            let credentials = match (&args.smtp_user, &args.smtp_password) {
                (Some(user), Some(password)) => Some((user.clone(), password.clone())),
                (None, None) => None,
                _ => anyhow::bail!("--smtp-user and --smtp-password go together"),
            };
            Some(cairn_server::alerts::SmtpTarget { host, port, from: args.smtp_from.clone(), to: args.smtp_to.clone(), credentials })
        }
    };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{}:{}", args.host, args.port));
    Ok(cairn_server::alerts::AlertTargets { webhook_url: args.alert_webhook_url.clone(), smtp, public_url: Some(public_url) })
}

/// `--auth`, checked against the address: off only on loopback.
fn auth_config(args: &ServerArgs) -> anyhow::Result<cairn_server::auth::AuthConfig> {
    let loopback = args.host.is_loopback();
    let enabled = match args.auth.as_deref() {
        Some("on") => true,
        Some(_) => {
            anyhow::ensure!(
                loopback,
                "--auth off is allowed only on a loopback address, and --host {} is reachable from the network: \
                 use --auth on (create users with `cairn users create`), or --host 127.0.0.1",
                args.host
            );
            false
        }
        None => !loopback,
    };
    let mut allowed_hosts = args.allow_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect::<Vec<_>>();
    let mut secure_cookies = false;
    if let Some(url) = &args.public_url {
        let rest = url.strip_prefix("https://").map(|r| (r, true)).or_else(|| url.strip_prefix("http://").map(|r| (r, false)));
        let Some((rest, https)) = rest else {
            anyhow::bail!("--public-url {url:?} must start with http:// or https://");
        };
        secure_cookies = https;
        let authority = rest.split('/').next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        anyhow::ensure!(!host.is_empty(), "--public-url {url:?} names no host");
        allowed_hosts.push(host.to_ascii_lowercase());
    }
    let frame_ancestors = cairn_server::auth::frame_ancestors(&args.frame_ancestors).map_err(|e| anyhow::anyhow!("--frame-ancestors: {e}"))?;
    Ok(cairn_server::auth::AuthConfig { enabled, allowed_hosts, secure_cookies, frame_ancestors })
}

/// The data directory given, or `~/.cairn`.
pub fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => Ok(std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set; pass --data-dir")?.join(".cairn")),
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into()))
        .with_target(false)
        // stdout is for the banner (the first line is the URL, which scripts read).
        .with_writer(std::io::stderr)
        .init();
    let alerts = alert_targets(&args)?;
    let auth = auth_config(&args)?;
    let data_dir = data_dir(args.data_dir.clone())?;
    let default_entity = args.default_entity.or_else(cairn_client::metadata::username).unwrap_or_else(|| "default".to_owned());
    let config = ServerConfig {
        auth,
        default_entity: default_entity.clone(),
        heartbeat_timeout: positive_secs("heartbeat-timeout-secs", args.heartbeat_timeout_secs)?,
        preempting_timeout: positive_secs("preempting-timeout-secs", args.preempting_timeout_secs)?,
        monitor_interval: positive_secs("monitor-interval-secs", args.monitor_interval_secs)?,
        max_body_bytes: args.max_body_mb.max(1) << 20,
        alerts,
        alert_interval: Duration::from_millis(500),
        deleted_retention: {
            let days = args.deleted_retention_days;
            anyhow::ensure!(days.is_finite() && days >= 0.0, "--deleted-retention-days must be 0 or more days, not {days}");
            Duration::from_secs_f64(days * 86_400.0)
        },
    };
    let store_config = StoreConfig { default_entity };
    if args.store.as_deref().is_some_and(|s| s.starts_with("postgres")) && args.blobs.is_none() {
        tracing::warn!("files go to {} on this machine; with several servers give them one --blobs s3://bucket/prefix", data_dir.join("blobs").display());
    }
    let store = cairn_store::open_store(args.store.as_deref(), args.blobs.as_deref(), &data_dir, store_config).map_err(|e| anyhow::anyhow!("{}", e.message)).with_context(
        || match &args.store {
            Some(_) => "cannot open the store given by --store".to_owned(),
            None => format!("cannot open the store in {}", data_dir.display()),
        },
    )?;
    let store: Arc<dyn cairn_store::Store> = Arc::new(store);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port)).await.with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        let url = match addr.ip() {
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", addr.port()),
            IpAddr::V4(ip) => format!("http://{ip}:{}", addr.port()),
        };
        say!("cairn server listening on {url}");
        say!("  store: {}", store.describe());
        say!("  default entity: {}", config.default_entity);
        say!("  auth: {}", if config.auth.enabled { "on (API keys and signed-in sessions)" } else { "off (loopback only, one user)" });
        let mut config = config;
        if args.public_url.is_none() {
            // Links (alerts, the first-start link) name the port bound; an address of every
            // interface is reached on this machine by loopback.
            let reachable = if addr.ip().is_unspecified() { format!("http://127.0.0.1:{}", addr.port()) } else { url.clone() };
            config.alerts.public_url = Some(reachable);
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        if args.example {
            if config.auth.enabled {
                say!("  --example: not logged, auth is on (log one with an API key: examples/lightning_cairn.py and others)");
            } else {
                let base = format!("http://127.0.0.1:{}", addr.port());
                let dir = data_dir.join("example");
                std::thread::spawn(move || example_run(&base, &dir));
            }
        }
        cairn_server::serve(listener, store, config, shutdown_signal()).await?;
        say!("cairn server stopped; everything acknowledged is committed");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The seed's training loop, logged with the Rust client into this server (`--example`): 10
/// epochs of accuracy and loss, with learning_rate and epochs in the config. Its id is fixed, so
/// a restart does not log it again.
fn example_run(base_url: &str, dir: &std::path::Path) {
    use cairn_client::{Console, ResumeMode, Settings, map};
    let (epochs, lr) = (10, 0.01);
    let settings = Settings::new()
        .base_url(base_url)
        .project("awesome-project")
        .run_id("seed-example")
        .name("seed-example")
        .resume(ResumeMode::Never)
        .dir(dir.to_path_buf())
        .silent(true)
        .console(Console::Off)
        .config(map! {"learning_rate" => lr, "epochs" => epochs});
    let run = match cairn_client::init(settings) {
        Ok(run) => run,
        Err(e) if e.message.contains("already") => return,
        Err(e) => {
            say_err!("  --example: the example run was not logged: {}", e.message);
            return;
        }
    };
    let offset = fastrand::f64() / 5.0;
    for epoch in 0..epochs {
        let acc = 1.0 - 2f64.powi(-epoch) - fastrand::f64() / (epoch + 1) as f64 - offset;
        let loss = 2f64.powi(-epoch) + fastrand::f64() / (epoch + 1) as f64 + offset;
        if run.log([("accuracy", acc), ("loss", loss)]).is_err() {
            return;
        }
    }
    let url = run.url().unwrap_or_default();
    match run.finish(None) {
        Ok(_) => say!("  example run logged: {url}"),
        Err(e) => say_err!("  --example: {}", e.message),
    }
}
