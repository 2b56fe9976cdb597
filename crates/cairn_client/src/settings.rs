//! Run settings: from arguments first, then from the environment (`CAIRN_*`), then defaults.

use std::path::PathBuf;
use std::time::Duration;

use cairn_types::api::{ResumeMode, StepRef};
use cairn_types::value::Map;

use crate::error::{ClientError, ErrorKind};

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// Every environment variable the client reads, in one place.
pub mod env {
    pub const BASE_URL: &str = "CAIRN_BASE_URL";
    pub const ENTITY: &str = "CAIRN_ENTITY";
    pub const PROJECT: &str = "CAIRN_PROJECT";
    /// `online` (default), `offline` or `disabled`.
    pub const MODE: &str = "CAIRN_MODE";
    /// The folder under which `cairn/run-*` directories are made (default: the working directory).
    pub const DIR: &str = "CAIRN_DIR";
    pub const API_KEY: &str = "CAIRN_API_KEY";
    pub const RUN_ID: &str = "CAIRN_RUN_ID";
    /// Seconds between heartbeats (default 10).
    pub const HEARTBEAT_SECS: &str = "CAIRN_HEARTBEAT_SECS";
    /// Seconds `finish` waits for an upload that makes no progress (default 15).
    pub const FINISH_TIMEOUT_SECS: &str = "CAIRN_FINISH_TIMEOUT_SECS";
    /// Seconds `init` waits for the server to create the run (default 10).
    pub const INIT_TIMEOUT_SECS: &str = "CAIRN_INIT_TIMEOUT_SECS";
    /// `true` silences the terminal output.
    pub const SILENT: &str = "CAIRN_SILENT";
    /// Seconds between samples of system metrics (default 10; 0 turns sampling off).
    pub const STATS_INTERVAL: &str = "CAIRN_STATS_INTERVAL";
    /// `auto` (default: capture fd 1 and fd 2) or `off`.
    pub const CONSOLE: &str = "CAIRN_CONSOLE";
    /// How much lower than the program the run's helper threads (upload, heartbeat, files,
    /// system metrics, the log's page faulting) are scheduled: a niceness from 0 (the program's
    /// priority) to 19; default 10.
    pub const BACKGROUND_NICE: &str = "CAIRN_BACKGROUND_NICE";
    /// Set by a sweep's agent for the trial it runs: the sweep, and the trial's parameters (a
    /// JSON object), which `init` puts over the config it is given. The trial's run id, entity and
    /// project come in `CAIRN_RUN_ID`, `CAIRN_ENTITY` and `CAIRN_PROJECT`, and win over `init`'s.
    pub const SWEEP_ID: &str = "CAIRN_SWEEP_ID";
    pub const SWEEP_PARAMS: &str = "CAIRN_SWEEP_PARAMS";
    /// Set by a local agent (`cairn agent --local`): the file that says which sweep the trial
    /// belongs to, copied into the run directory so that `cairn sync` gives the server the trial.
    pub const SWEEP_TRIAL: &str = "CAIRN_SWEEP_TRIAL";
}

/// What happens to the program's console output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Console {
    /// Captured at the file-descriptor level, and still shown.
    #[default]
    Auto,
    Off,
}

impl Console {
    pub fn parse(text: &str) -> Result<Console, ClientError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "wrap" | "redirect" | "on" => Ok(Console::Auto),
            "off" => Ok(Console::Off),
            _ => Err(ClientError::new(ErrorKind::InvalidSetting, format!("console {text:?} must be \"auto\" or \"off\""))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Write the run directory and upload in the background.
    #[default]
    Online,
    /// Write only the run directory; `cairn sync` uploads it later.
    Offline,
    /// Do nothing at all.
    Disabled,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, ClientError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "online" | "run" => Ok(Mode::Online),
            "offline" | "dryrun" => Ok(Mode::Offline),
            "disabled" => Ok(Mode::Disabled),
            other => Err(ClientError::new(ErrorKind::InvalidSetting, format!("mode {other:?} is not online, offline or disabled"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Online => "online",
            Mode::Offline => "offline",
            Mode::Disabled => "disabled",
        }
    }
}

/// What `init` is given. Unset fields come from the environment, then from defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub base_url: Option<String>,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Option<Vec<String>>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub config: Option<Map>,
    pub mode: Option<Mode>,
    pub dir: Option<PathBuf>,
    pub api_key: Option<String>,
    pub resume: Option<ResumeMode>,
    /// W&B's `resume="auto"`: continue the run that the last process in the same directory
    /// started (after uploading what it left), or start a new one.
    pub resume_auto: bool,
    pub heartbeat_interval: Option<Duration>,
    pub finish_timeout: Option<Duration>,
    pub init_timeout: Option<Duration>,
    pub silent: Option<bool>,
    /// Extra metadata from the binding (the Python version, say), merged over what the client collects.
    pub metadata: Map,
    /// On resume, config values given here replace the stored ones (otherwise only new keys
    /// are added).
    pub allow_val_change: bool,
    /// `"<run_id>?_step=<N>"`: a new run whose history up to N is that run's.
    pub fork_from: Option<String>,
    /// `"<run_id>?_step=<N>"`: rewinds this run to N (its later history is archived).
    pub resume_from: Option<String>,
    /// Between samples of system metrics; zero turns sampling off.
    pub stats_interval: Option<Duration>,
    pub console: Option<Console>,
    /// Files the binding wrote for the run (`requirements.txt`, say): `(name in the run, content)`.
    pub extra_files: Vec<(String, Vec<u8>)>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $field(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    )*};
}

impl Settings {
    pub fn new() -> Settings {
        Settings::default()
    }

    setters!(
        base_url: String, entity: String, project: String, run_id: String, name: String, notes: String,
        group: String, job_type: String, config: Map, dir: PathBuf, api_key: String,
        mode: Mode, resume: ResumeMode, heartbeat_interval: Duration, finish_timeout: Duration,
        init_timeout: Duration, silent: bool, stats_interval: Duration, console: Console,
        /// W&B's `fork_from="<run_id>?_step=<N>"`.
        fork_from: String,
        /// W&B's `resume_from="<run_id>?_step=<N>"`.
        resume_from: String,
    );

    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    pub fn resume_auto(mut self) -> Self {
        self.resume_auto = true;
        self
    }

    /// Fills unset fields from the process environment.
    pub fn resolve(self) -> Result<Resolved, ClientError> {
        self.resolve_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn resolve_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Resolved, ClientError> {
        let secs = |name: &str, default: f64| -> Result<Duration, ClientError> {
            match env(name) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(text) => match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v)),
                    _ => Err(ClientError::new(ErrorKind::InvalidSetting, format!("{name}={text:?} is not a positive number of seconds"))),
                },
            }
        };
        let mode = match self.mode {
            Some(mode) => mode,
            None => env(env::MODE).map(|m| Mode::parse(&m)).transpose()?.unwrap_or_default(),
        };
        let silent = match self.silent {
            Some(s) => s,
            None => env(env::SILENT).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
        };
        let base_url = self.base_url.or_else(|| env(env::BASE_URL)).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::new(ErrorKind::InvalidSetting, format!("base URL {base_url:?} must start with http:// or https://")));
        }
        // A sweep's trial: its run, in the sweep's project, with the trial's parameters over the
        // config (nested groups merged).
        let sweep_id = env(env::SWEEP_ID);
        let mut config = self.config.unwrap_or_default();
        let (mut entity, mut project, mut run_id) = (self.entity, self.project, self.run_id);
        if sweep_id.is_some() {
            if let Some(text) = env(env::SWEEP_PARAMS) {
                let params: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| ClientError::new(ErrorKind::InvalidSetting, format!("{}={text:?} is not JSON: {e}", env::SWEEP_PARAMS)))?;
                let Some(cairn_types::Value::Map(params)) = Some(cairn_types::Value::from_json(&params)) else {
                    return Err(ClientError::new(ErrorKind::InvalidSetting, format!("{} must be a JSON object", env::SWEEP_PARAMS)));
                };
                merge_into(&mut config, params);
            }
            entity = env(env::ENTITY).or(entity);
            project = env(env::PROJECT).or(project);
            run_id = env(env::RUN_ID).or(run_id);
        }
        Ok(Resolved {
            base_url: base_url.trim_end_matches('/').to_owned(),
            entity: entity.or_else(|| env(env::ENTITY)),
            project: project.or_else(|| env(env::PROJECT)),
            run_id: run_id.or_else(|| env(env::RUN_ID)),
            sweep_id,
            name: self.name,
            notes: self.notes,
            tags: self.tags,
            group: self.group,
            job_type: self.job_type,
            config,
            mode,
            dir: self.dir.or_else(|| env(env::DIR).map(PathBuf::from)).unwrap_or_else(|| PathBuf::from(".")),
            api_key: crate::credentials::resolve(self.api_key, &base_url),
            resume: self.resume,
            resume_auto: self.resume_auto,
            heartbeat_interval: match self.heartbeat_interval {
                Some(d) => d,
                None => secs(env::HEARTBEAT_SECS, 10.0)?,
            },
            finish_timeout: match self.finish_timeout {
                Some(d) => d,
                None => secs(env::FINISH_TIMEOUT_SECS, 15.0)?,
            },
            init_timeout: match self.init_timeout {
                Some(d) => d,
                None => secs(env::INIT_TIMEOUT_SECS, 10.0)?,
            },
            silent,
            metadata: self.metadata,
            stats_interval: match self.stats_interval {
                Some(d) => d,
                None => match env(env::STATS_INTERVAL) {
                    None => Duration::from_secs(10),
                    Some(text) => match text.trim().parse::<f64>() {
                        Ok(v) if v.is_finite() && v >= 0.0 => Duration::from_secs_f64(v),
                        _ => {
                            return Err(ClientError::new(ErrorKind::InvalidSetting, format!("{}={text:?} is not a number of seconds (0 turns sampling off)", env::STATS_INTERVAL)));
                        }
                    },
                },
            },
            background_nice: match env(env::BACKGROUND_NICE) {
                None => crate::priority::DEFAULT_NICE,
                Some(text) => match text.trim().parse::<i32>() {
                    Ok(n) if (0..=19).contains(&n) => n,
                    _ => {
                        return Err(ClientError::new(
                            ErrorKind::InvalidSetting,
                            format!("{}={text:?} is not a niceness from 0 to 19 (0 runs the helper threads at the program's priority)", env::BACKGROUND_NICE),
                        ));
                    }
                },
            },
            console: match self.console {
                Some(c) => c,
                None => env(env::CONSOLE).map(|c| Console::parse(&c)).transpose()?.unwrap_or_default(),
            },
            extra_files: self.extra_files,
            allow_val_change: self.allow_val_change,
            fork_from: self.fork_from.as_deref().map(|f| StepRef::parse(f, "fork_from")).transpose()?,
            resume_from: self.resume_from.as_deref().map(|f| StepRef::parse(f, "resume_from")).transpose()?,
        })
    }
}

/// `over`'s values put into `into`: maps merged key by key, anything else replaced.
fn merge_into(into: &mut Map, over: Map) {
    for (k, v) in over {
        match (into.get_mut(&k), v) {
            (Some(cairn_types::Value::Map(a)), cairn_types::Value::Map(b)) => merge_into(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub base_url: String,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Option<Vec<String>>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub config: Map,
    /// The sweep this run is a trial of (`CAIRN_SWEEP_ID`, set by its agent).
    pub sweep_id: Option<String>,
    pub mode: Mode,
    pub dir: PathBuf,
    pub api_key: Option<String>,
    pub resume: Option<ResumeMode>,
    pub resume_auto: bool,
    pub heartbeat_interval: Duration,
    pub finish_timeout: Duration,
    pub init_timeout: Duration,
    pub silent: bool,
    pub metadata: Map,
    pub stats_interval: Duration,
    /// See [`env::BACKGROUND_NICE`].
    pub background_nice: i32,
    pub console: Console,
    pub extra_files: Vec<(String, Vec<u8>)>,
    pub allow_val_change: bool,
    pub fork_from: Option<StepRef>,
    pub resume_from: Option<StepRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_sweeps_trial_takes_its_run_project_and_parameters() {
        use cairn_types::map;
        let settings = || Settings::new().project("mine").run_id("chosen").config(map! {"epochs" => 3, "opt" => cairn_types::Value::Map(map! {"name" => "adam", "lr" => 0.1})});
        let trial = env_of(&[("CAIRN_SWEEP_ID", "sw1"), ("CAIRN_SWEEP_PARAMS", r#"{"opt": {"lr": 0.01}, "layers": 4}"#), ("CAIRN_RUN_ID", "trial7"), ("CAIRN_PROJECT", "swept")]);
        let r = settings().resolve_with(trial).unwrap();
        assert_eq!((r.sweep_id.as_deref(), r.run_id.as_deref(), r.project.as_deref()), (Some("sw1"), Some("trial7"), Some("swept")));
        assert_eq!(r.config, map! {"epochs" => 3, "layers" => 4, "opt" => cairn_types::Value::Map(map! {"name" => "adam", "lr" => 0.01})});
        // Outside a sweep, the arguments win as always.
        let plain = settings().resolve_with(env_of(&[("CAIRN_RUN_ID", "trial7"), ("CAIRN_PROJECT", "swept")])).unwrap();
        assert_eq!((plain.sweep_id, plain.run_id.as_deref(), plain.project.as_deref()), (None, Some("chosen"), Some("mine")));
        let bad = settings().resolve_with(env_of(&[("CAIRN_SWEEP_ID", "sw1"), ("CAIRN_SWEEP_PARAMS", "[1]")])).unwrap_err();
        assert!(bad.message.contains("JSON object"), "{}", bad.message);
    }

    #[test]
    fn arguments_win_over_the_environment() {
        let env =
            env_of(&[("CAIRN_PROJECT", "from-env"), ("CAIRN_ENTITY", "team"), ("CAIRN_MODE", "offline"), ("CAIRN_BASE_URL", "http://example:1/"), ("CAIRN_HEARTBEAT_SECS", "2.5")]);
        let r = Settings::new().project("from-args").resolve_with(&env).unwrap();
        assert_eq!(r.project.as_deref(), Some("from-args"));
        assert_eq!(r.entity.as_deref(), Some("team"));
        assert_eq!(r.mode, Mode::Offline);
        assert_eq!(r.base_url, "http://example:1");
        assert_eq!(r.heartbeat_interval, Duration::from_millis(2500));
        let r = Settings::new().mode(Mode::Disabled).resolve_with(&env).unwrap();
        assert_eq!(r.mode, Mode::Disabled);
    }

    #[test]
    fn bad_settings_are_named() {
        for bad in ["-1", "20", "low"] {
            let err = Settings::new().resolve_with(|k: &str| (k == "CAIRN_BACKGROUND_NICE").then(|| bad.to_owned())).unwrap_err();
            assert!(err.message.contains("CAIRN_BACKGROUND_NICE") && err.message.contains(bad), "{}", err.message);
        }
        assert_eq!(Settings::new().resolve_with(env_of(&[("CAIRN_BACKGROUND_NICE", "0")])).unwrap().background_nice, 0);
        assert_eq!(Settings::new().resolve_with(env_of(&[])).unwrap().background_nice, crate::priority::DEFAULT_NICE);
        let err = Settings::new().resolve_with(env_of(&[("CAIRN_MODE", "sometimes")])).unwrap_err();
        assert!(err.message.contains("sometimes"));
        let err = Settings::new().resolve_with(env_of(&[("CAIRN_HEARTBEAT_SECS", "-1")])).unwrap_err();
        assert!(err.message.contains("CAIRN_HEARTBEAT_SECS"));
        let err = Settings::new().resolve_with(env_of(&[("CAIRN_STATS_INTERVAL", "often")])).unwrap_err();
        assert!(err.message.contains("CAIRN_STATS_INTERVAL") && err.message.contains("often"));
        let err = Settings::new().resolve_with(env_of(&[("CAIRN_CONSOLE", "loud")])).unwrap_err();
        assert!(err.message.contains("loud"));
        let r = Settings::new().resolve_with(env_of(&[("CAIRN_STATS_INTERVAL", "0"), ("CAIRN_CONSOLE", "off")])).unwrap();
        assert_eq!((r.stats_interval, r.console), (Duration::ZERO, Console::Off));
        let err = Settings::new().base_url("localhost:8080").resolve_with(env_of(&[])).unwrap_err();
        assert!(err.message.contains("localhost:8080"));
    }
}
