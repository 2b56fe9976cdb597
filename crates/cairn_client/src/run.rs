//! The run handle: `init`, `log`, config and summary, `finish`, and the two background threads
//! (uploader and heartbeat) of an online run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_types::api::{ResumeMode, RunPatch, RunState, StreamOffsets, UpsertRunRequest};
use cairn_types::error::ErrorCode;
use cairn_types::ids::{generate_run_id, validate_name, validate_run_id};
use cairn_types::value::{Map, Value};
use cairn_types::wire::ConsoleStream;
use cairn_types::{RunPath, Timestamp, map};

use crate::core::{Core, LogOutcome, RowFields, now_micros};
use crate::error::{ClientError, ErrorKind, Result};
use crate::http::{ApiClient, CallError};
use crate::report::{self, FinishView, Links};
use crate::rundir::{RunDir, RunFile, UploadFile};
use crate::settings::{Mode, Resolved, Settings};
use crate::upload::{MAX_BATCH_BYTES, Sender};
use crate::wal::WalWriter;

/// How long the system metrics wait after `init` before they set up (at most their interval).
const STATS_SETTLE: Duration = Duration::from_secs(1);

/// How often the uploader looks for new records when idle, and how long it pauses after a batch
/// that took everything there was.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct UploadStatus {
    path: Option<RunPath>,
    acked: u64,
    error: Option<String>,
    done: bool,
    /// The files thread has uploaded what the end of the run asks for (or given up).
    files_done: bool,
    last_progress: Instant,
}

type StopCallback = Box<dyn Fn() + Send + Sync>;

/// What the run handle and its background threads share.
struct Shared {
    core: Mutex<Option<Core>>,
    committed: Arc<AtomicU64>,
    closing: AtomicBool,
    /// `finish` has begun (the console is stopped): the files thread makes its last pass. A stop
    /// from the server closes the run before this.
    finishing: AtomicBool,
    stop_requested: AtomicBool,
    on_stop: Mutex<Option<StopCallback>>,
    signal: (Mutex<()>, Condvar),
    status: Mutex<UploadStatus>,
    /// Notified with `status` when the uploader is done.
    uploaded: Condvar,
}

impl Shared {
    /// Sleeps up to `timeout`, or until woken. Returns at once when the run is closing: `closing`
    /// is set before `wake` takes the lock, so checking it under the lock loses no wake-up.
    fn wait(&self, timeout: Duration) {
        let guard = lock(&self.signal.0);
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let _ = self.signal.1.wait_timeout(guard, timeout);
    }

    /// Waits until the uploader is done, up to `timeout` (not at all when it is).
    fn wait_for_uploader(&self, timeout: Duration) {
        let status = lock(&self.status);
        if !status.done {
            let _ = self.uploaded.wait_timeout(status, timeout);
        }
    }

    fn wake(&self) {
        let _guard = lock(&self.signal.0);
        self.signal.1.notify_all();
    }

    /// The server said stop: the run ends as killed, and the program is told.
    fn trigger_stop(&self) {
        if self.stop_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(core) = lock(&self.core).as_mut()
            && !core.finished
        {
            let event = Value::Map(map! {"type" => "finish", "state" => "killed", "time" => now_micros() as f64 / 1e6});
            let _ = core.write_event(&event);
            core.finished = true;
            core.close_media();
        }
        self.closing.store(true, Ordering::Release);
        self.wake();
        if let Some(callback) = lock(&self.on_stop).as_ref() {
            callback();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Identity {
    entity: Option<String>,
    project: Option<String>,
    run_id: String,
    name: String,
}

/// What `finish` reports: the final state, whether everything reached the server, and the lines
/// it printed (or would have, when silent).
#[derive(Debug, Clone, PartialEq)]
pub struct FinishReport {
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub uploaded: bool,
    pub pending: Option<String>,
    pub lines: Vec<String>,
}

struct Inner {
    shared: Arc<Shared>,
    ident: Mutex<Identity>,
    mode: Mode,
    silent: bool,
    base_url: String,
    api_key: Option<String>,
    run_dir: Mutex<Option<RunDir>>,
    dir_path: Option<PathBuf>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    report: Mutex<Option<FinishReport>>,
    finish_timeout: Duration,
    /// With `resume="auto"`: removed when the run finishes cleanly, kept otherwise.
    resume_file: Mutex<Option<PathBuf>>,
    /// Printed after the init lines: the server could not be reached, say.
    init_warning: Option<String>,
    /// Console capture, stopped when the run finishes.
    console: Mutex<Option<crate::console::Capture>>,
    /// When each alert title was last sent, for `wait_duration`.
    alerts_sent: Mutex<std::collections::HashMap<String, Instant>>,
}

/// A run. Cheap to clone; every clone is the same run. Dropping the last clone finishes the run
/// (as failed when the thread is panicking).
#[derive(Clone)]
pub struct Run {
    inner: Arc<Inner>,
}

/// Starts a helper thread of the run, at the helpers' lower priority (see [`crate::priority`]).
fn spawn(name: &str, what: &str, work: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    let work = move || {
        crate::priority::lower_this_thread();
        work()
    };
    std::thread::Builder::new().name(name.into()).spawn(work).map_err(|e| ClientError::new(ErrorKind::Io, format!("cannot start the {what} thread: {e}")))
}

/// Starts a run. Settings not given come from the `CAIRN_*` environment variables.
pub fn init(settings: Settings) -> Result<Run> {
    Run::start(settings.resolve()?)
}

fn upsert_request(r: &Resolved, run_id: &str, metadata: Map, started_at: i64) -> UpsertRunRequest {
    UpsertRunRequest {
        entity: r.entity.clone(),
        project: r.project.clone(),
        run_id: run_id.to_owned(),
        name: r.name.clone(),
        notes: r.notes.clone(),
        tags: r.tags.clone(),
        group: r.group.clone(),
        job_type: r.job_type.clone(),
        config: Some(Value::Map(r.config.clone())),
        metadata: Some(Value::Map(metadata)),
        started_at: Some(Timestamp(started_at)),
        resume: if r.resume_from.is_some() {
            ResumeMode::Must
        } else if r.fork_from.is_some() {
            ResumeMode::Never
        } else {
            r.resume.unwrap_or(if r.run_id.is_some() { ResumeMode::Allow } else { ResumeMode::Never })
        },
        allow_val_change: r.allow_val_change,
        fork_from: r.fork_from.clone(),
        resume_from: r.resume_from.clone(),
    }
}

/// The upsert request as a value, stored as the log's first record so `cairn sync` can create the
/// run on a server that never heard of it.
/// `continues`: the log goes on from an earlier process's log of the same run (an offline
/// resume), whose records the server must have first.
pub(crate) fn run_start_value(request: &UpsertRunRequest, mode: Mode, continues: bool) -> Value {
    let mut value = Value::from_json(&serde_json::to_value(request).expect("requests serialize"));
    if let Value::Map(m) = &mut value {
        m.insert("mode".into(), Value::from(mode.as_str()));
        if continues {
            m.insert("continues".into(), Value::Bool(true));
        }
    }
    value
}

/// Whether a log's first record says that it continues an earlier log.
pub(crate) fn run_start_continues(value: &Value) -> bool {
    value.as_map().and_then(|m| m.get("continues")).is_some_and(|v| *v == Value::Bool(true))
}

pub(crate) fn upsert_from_run_start(value: &Value) -> Result<UpsertRunRequest> {
    let mut json = value.to_json();
    if let Some(object) = json.as_object_mut() {
        object.remove("mode");
        object.remove("continues");
    }
    serde_json::from_value(json).map_err(|e| ClientError::new(ErrorKind::Io, format!("the run's first record is unreadable: {e}")))
}

impl Run {
    fn start(r: Resolved) -> Result<Run> {
        crate::priority::set_background_nice(r.background_nice);
        let run_id = r.run_id.clone().unwrap_or_else(generate_run_id);
        validate_run_id(&run_id).map_err(ClientError::from)?;
        if let Some(entity) = &r.entity {
            validate_name("entity", entity).map_err(ClientError::from)?;
        }
        if let Some(project) = &r.project {
            validate_name("project", project).map_err(ClientError::from)?;
        }
        if let Some(tags) = &r.tags {
            cairn_types::api::validate_tags(tags).map_err(ClientError::from)?;
        }
        if r.mode == Mode::Disabled {
            return Ok(Run::disabled(&r, run_id));
        }
        let mut r = r;
        let mut run_id = run_id;
        if r.fork_from.is_some() || r.resume_from.is_some() {
            let what = if r.fork_from.is_some() { "fork_from" } else { "resume_from" };
            if r.mode != Mode::Online {
                return Err(ClientError::new(ErrorKind::InvalidSetting, format!("{what} needs the server, which holds the history: use mode=\"online\"")));
            }
            if r.fork_from.is_some() && r.resume_from.is_some() {
                return Err(ClientError::new(ErrorKind::InvalidSetting, "fork_from and resume_from cannot be given together"));
            }
            if r.resume_auto || r.resume.is_some() {
                return Err(ClientError::new(ErrorKind::InvalidSetting, format!("{what} cannot be combined with resume")));
            }
        }
        if let Some(at) = &r.resume_from {
            // A rewind keeps the run's id: the one in resume_from.
            match &r.run_id {
                Some(id) if *id != at.run_id => {
                    return Err(ClientError::new(ErrorKind::InvalidSetting, format!("resume_from names run {:?} but id is {id:?}; a rewind continues the same run", at.run_id)));
                }
                _ => {}
            }
            run_id = at.run_id.clone();
            r.run_id = Some(run_id.clone());
        }
        if r.resume_auto {
            if let Some(previous) = auto_resume(&r)? {
                run_id = previous;
                r.run_id = Some(run_id.clone());
            }
            r.resume = Some(ResumeMode::Allow);
        }
        // Resuming continues after everything earlier processes logged for this id: online, what
        // they left unsent is uploaded first; offline, the new log continues their offsets.
        let resume = r.resume.unwrap_or(if r.run_id.is_some() { ResumeMode::Allow } else { ResumeMode::Never });
        let mut continue_from = None;
        if matches!(resume, ResumeMode::Allow | ResumeMode::Must) {
            match r.mode {
                Mode::Online => crate::sync::sync_earlier_dirs(&r.dir, &run_id, &r.base_url, r.api_key.clone())?,
                Mode::Offline => match crate::rundir::dirs_of_run(&r.dir, &run_id).last() {
                    Some(dir) => {
                        drop(RunDir::open(dir)?);
                        continue_from = Some(crate::sync::log_end(&dir.join("wal"))?);
                    }
                    None if resume == ResumeMode::Must => {
                        return Err(ClientError::new(
                            ErrorKind::NotFound,
                            format!(
                                "run {run_id:?} has no earlier log in {}, so it cannot be resumed offline with \
                                 resume=\"must\"; resume it online, or use resume=\"allow\"",
                                r.dir.join("cairn").display()
                            ),
                        ));
                    }
                    None => {}
                },
                Mode::Disabled => {}
            }
        }
        let started_at = now_micros();
        let mut metadata = crate::metadata::collect();
        metadata.extend(r.metadata.clone());
        let git = std::env::current_dir().ok().and_then(|cwd| crate::metadata::git_state(&cwd));
        if let Some(git) = &git {
            metadata.insert("git".into(), Value::Map(git.meta.clone()));
        }
        if let Some(diff) = git.and_then(|g| g.diff) {
            r.extra_files.push(("diff.patch".into(), diff));
        }
        let request = upsert_request(&r, &run_id, metadata, started_at);
        let run_dir = RunDir::create(&r.dir, &run_id, started_at / 1_000_000)?;
        let dir_path = run_dir.path.clone();
        let resume_auto = r.resume_auto.then(|| crate::rundir::resume_file_path(&r.dir));
        match Run::start_in(r, run_id, request, run_dir, continue_from) {
            Ok(run) => {
                if let Some(resume_path) = resume_auto {
                    let file = crate::rundir::ResumeFile { run_id: run.id(), run_dir: dir_path };
                    crate::rundir::write_json(&resume_path, &file)?;
                    *lock(&run.inner.resume_file) = Some(resume_path);
                }
                Ok(run)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir_path);
                Err(e)
            }
        }
    }

    fn start_in(r: Resolved, run_id: String, request: UpsertRunRequest, run_dir: RunDir, continue_from: Option<crate::sync::LogEnd>) -> Result<Run> {
        let mut ident = Identity { entity: r.entity.clone(), project: r.project.clone(), name: r.name.clone().unwrap_or_else(|| run_id.clone()), run_id: run_id.clone() };
        let mut seqs = StreamOffsets::default();
        let mut next_step = 0;
        let mut runtime_offset_us = 0;
        let mut config = r.config.clone();
        if let Some(end) = &continue_from {
            seqs = end.offsets;
            next_step = end.last_step.map_or(0, |s| s + 1);
            runtime_offset_us = end.runtime_us;
            config = end.config.clone();
        }
        let mut path = None;
        let mut degraded = None;
        let api = ApiClient::new(&r.base_url, r.api_key.clone(), r.init_timeout);
        if r.mode == Mode::Online {
            match api.upsert_run(&request) {
                Ok(info) => {
                    ident = Identity { entity: Some(info.entity.clone()), project: Some(info.project.clone()), run_id: info.run_id.clone(), name: info.name.clone() };
                    seqs = info.offsets;
                    if let Some(last) = info.last_step {
                        next_step = last + 1;
                        runtime_offset_us = (info.runtime_secs * 1e6) as i64;
                    }
                    config = info.config.clone();
                    path = Some(info.path());
                }
                Err(CallError::Transport(message)) if r.run_id.is_none() => {
                    degraded = Some(message);
                }
                Err(CallError::Transport(message)) => {
                    return Err(ClientError::new(
                        ErrorKind::Network,
                        format!(
                            "cannot reach the server at {} to start run {run_id:?}, which may exist already: {message}. \
                             Start the server, or log offline (mode=\"offline\") and `cairn sync` later",
                            r.base_url
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }

        let wal = WalWriter::create(&run_dir.wal_dir()).map_err(|e| ClientError::io("create the log in", &run_dir.path, e))?;
        let committed = wal.committed();
        // An offline resume follows the server's rule: new keys, or every value with
        // allow_val_change.
        let mut config_update = r.config.clone();
        if !r.allow_val_change {
            config_update.retain(|k, _| !config.contains_key(k));
        }
        let mut core = Core::new(wal, seqs, next_step, runtime_offset_us, config);
        core.stage_media_in(&run_dir.path);
        core.write_run_start(&run_start_value(&request, r.mode, continue_from.is_some()))?;
        if continue_from.is_some() {
            // The server applies a log's first record only to a run it does not have yet; what
            // this process's init changes goes into the streams, which always apply.
            core.update_config(config_update, true)?;
            let patch = RunPatch { name: r.name.clone(), notes: r.notes.clone(), tags: r.tags.clone(), group: r.group.clone(), job_type: r.job_type.clone() };
            if patch != RunPatch::default() {
                core.write_event(&update_event(&patch))?;
            }
        }
        crate::rundir::debug_log(
            &run_dir.path,
            &format!(
                "cairn {} run {run_id} mode={} server={} {}",
                env!("CARGO_PKG_VERSION"),
                r.mode.as_str(),
                r.base_url,
                match (&path, &degraded) {
                    (Some(path), _) => format!("path={path}"),
                    (None, Some(e)) => format!("server unreachable at init ({e}); retrying in the background"),
                    (None, None) => "offline".to_owned(),
                }
            ),
        );
        run_dir.write_run_file(&RunFile {
            run_id: run_id.clone(),
            entity: ident.entity.clone(),
            project: ident.project.clone(),
            base_url: r.base_url.clone(),
            mode: r.mode.as_str().to_owned(),
            started_at: request.started_at.map_or(0, |t| t.micros()),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
        })?;
        // A local sweep's trial: which sweep it belongs to travels with the run directory.
        crate::sweep::adopt(&run_dir.path)?;

        // Files the client writes for the run: uploaded once, now.
        let files_dir = run_dir.path.join("files");
        for (name, content) in &r.extra_files {
            let target = files_dir.join(name);
            std::fs::write(&target, content).map_err(|e| ClientError::io("write", &target, e))?;
            crate::files::record_save(&run_dir.path, &crate::files::Save::literal(&target, &files_dir, crate::files::Policy::Now)?)?;
        }
        let started_secs = started_at_secs(&request);
        let shared = Arc::new(Shared {
            core: Mutex::new(Some(core)),
            committed,
            closing: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            on_stop: Mutex::new(None),
            signal: (Mutex::new(()), Condvar::new()),
            status: Mutex::new(UploadStatus { path, acked: 0, error: None, done: false, files_done: false, last_progress: Instant::now() }),
            uploaded: Condvar::new(),
        });
        let mut threads = Vec::new();
        if r.mode == Mode::Online {
            let uploader = Uploader {
                shared: shared.clone(),
                api: ApiClient::new(&r.base_url, r.api_key.clone(), Duration::from_secs(60)),
                wal_dir: run_dir.wal_dir(),
                run_dir: run_dir.path.clone(),
                // The uploader creates the run when init could not reach the server, and again
                // if the server lost it; an existing run (an earlier attempt whose answer was
                // lost, or the run as it stands) is left as it is.
                upsert: UpsertRunRequest { resume: ResumeMode::Keep, ..request },
                initial_offsets: seqs,
                finish_timeout: r.finish_timeout,
            };
            threads.push(spawn("cairn-uploader", "uploader", move || uploader.run())?);
            let (shared2, api2, interval) = (shared.clone(), ApiClient::new(&r.base_url, r.api_key.clone(), Duration::from_secs(10)), r.heartbeat_interval);
            threads.push(spawn("cairn-heartbeat", "heartbeat", move || heartbeat_loop(shared2, api2, interval))?);
        }
        if r.mode == Mode::Online {
            let files = FilesThread {
                shared: shared.clone(),
                api: ApiClient::new(&r.base_url, r.api_key.clone(), Duration::from_secs(120)),
                run_dir: run_dir.path.clone(),
                finish_timeout: r.finish_timeout,
            };
            threads.push(spawn("cairn-files", "files", move || files.run())?);
        } else {
            lock(&shared.status).files_done = true;
        }
        if !r.stats_interval.is_zero() {
            let (shared2, interval, dir) = (shared.clone(), r.stats_interval, run_dir.path.clone());
            threads.push(spawn("cairn-stats", "system metrics", move || stats_loop(shared2, interval, dir))?);
        }
        let console = match r.console {
            crate::settings::Console::Off => None,
            crate::settings::Console::Auto => {
                // A resumed run keeps the output.log of its earlier processes: this one's gets a
                // name of its own (the Logs tab shows all of it, in order).
                let log_name = if seqs.console > 0 { format!("output-{}.log", crate::rundir::local_stamp(started_secs)) } else { "output.log".to_owned() };
                let log_path = files_dir.join(&log_name);
                let out = std::fs::File::create(&log_path).map_err(|e| ClientError::io("create", &log_path, e))?;
                crate::files::record_save(&run_dir.path, &crate::files::Save::literal(&log_path, &files_dir, crate::files::Policy::End)?)?;
                let sink = ConsoleSink { shared: shared.clone(), out: std::io::BufWriter::new(out) };
                match crate::console::Capture::start(Box::new(sink)) {
                    Ok(capture) => Some(capture),
                    Err(e) => {
                        crate::rundir::debug_log(&run_dir.path, &format!("console capture is off: {e}"));
                        None
                    }
                }
            }
        };
        let dir_path = Some(run_dir.path.clone());
        let run = Run {
            inner: Arc::new(Inner {
                shared,
                ident: Mutex::new(ident),
                mode: r.mode,
                silent: r.silent,
                base_url: r.base_url.clone(),
                api_key: r.api_key.clone(),
                run_dir: Mutex::new(Some(run_dir)),
                dir_path,
                threads: Mutex::new(threads),
                report: Mutex::new(None),
                finish_timeout: r.finish_timeout,
                resume_file: Mutex::new(None),
                init_warning: degraded
                    .as_ref()
                    .map(|message| format!("{} cannot reach the server at {} ({message}); logging locally and retrying in the background", report::PREFIX, r.base_url)),
                console: Mutex::new(console),
                alerts_sent: Mutex::new(Default::default()),
            }),
        };
        if !run.inner.silent {
            for line in run.init_lines() {
                eprintln!("{line}");
            }
        }
        Ok(run)
    }

    fn disabled(r: &Resolved, run_id: String) -> Run {
        Run {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    core: Mutex::new(None),
                    committed: Arc::new(AtomicU64::new(0)),
                    closing: AtomicBool::new(true),
                    finishing: AtomicBool::new(true),
                    stop_requested: AtomicBool::new(false),
                    on_stop: Mutex::new(None),
                    signal: (Mutex::new(()), Condvar::new()),
                    status: Mutex::new(UploadStatus { path: None, acked: 0, error: None, done: true, files_done: true, last_progress: Instant::now() }),
                    uploaded: Condvar::new(),
                }),
                ident: Mutex::new(Identity { entity: r.entity.clone(), project: r.project.clone(), name: r.name.clone().unwrap_or_else(|| "disabled".into()), run_id }),
                mode: Mode::Disabled,
                silent: true,
                base_url: r.base_url.clone(),
                api_key: r.api_key.clone(),
                run_dir: Mutex::new(None),
                dir_path: None,
                threads: Mutex::new(Vec::new()),
                report: Mutex::new(None),
                finish_timeout: r.finish_timeout,
                resume_file: Mutex::new(None),
                init_warning: None,
                console: Mutex::new(None),
                alerts_sent: Mutex::new(Default::default()),
            }),
        }
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    pub fn id(&self) -> String {
        lock(&self.inner.ident).run_id.clone()
    }

    pub fn name(&self) -> String {
        lock(&self.inner.ident).name.clone()
    }

    pub fn entity(&self) -> Option<String> {
        lock(&self.inner.ident).entity.clone()
    }

    pub fn project(&self) -> Option<String> {
        lock(&self.inner.ident).project.clone()
    }

    /// `entity/project/run_id`, once the server has told the entity.
    pub fn path(&self) -> Option<RunPath> {
        self.inner.path()
    }

    /// A client of the run's server, with the run's key.
    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.inner.base_url, self.inner.api_key.clone(), Duration::from_secs(120))
    }

    /// The run's path, or why there is none (an offline or disabled run logs no artifacts).
    fn online_path(&self, what: &str) -> Result<RunPath> {
        self.path().ok_or_else(|| {
            ClientError::new(ErrorKind::InvalidValue, format!("{what} needs the server: this run is {} (artifacts are not logged offline yet)", self.mode().as_str()))
        })
    }

    /// Logs `draft` as an output of this run (see [`crate::artifacts::log_artifact`]).
    pub fn log_artifact(&self, draft: &crate::artifacts::ArtifactDraft, aliases: &[String]) -> Result<cairn_types::artifacts::ArtifactInfo> {
        let path = self.online_path("log_artifact")?;
        crate::artifacts::log_artifact(&self.api(), &path.entity, &path.project, Some(&path.run_id), draft, aliases)
    }

    /// Notes that this run uses an artifact version (`[entity/project/]name[:alias|:vN]`).
    pub fn use_artifact(&self, reference: &str) -> Result<cairn_types::artifacts::ArtifactInfo> {
        let path = self.online_path("use_artifact")?;
        self.api().use_artifact(&path, reference).map_err(ClientError::from)
    }

    pub fn url(&self) -> Option<String> {
        self.inner.url()
    }

    pub fn project_url(&self) -> Option<String> {
        self.inner.project_url()
    }

    /// The lines printed at init (links, or where the offline run is kept).
    pub fn init_lines(&self) -> Vec<String> {
        if self.inner.mode == Mode::Disabled {
            return Vec::new();
        }
        let offline = (self.inner.mode == Mode::Offline).then(|| self.inner.dir_display());
        let mut lines = report::init_lines(&self.inner.links(), offline.as_deref());
        lines.extend(self.inner.init_warning.clone());
        lines
    }

    /// The run directory (none when disabled).
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir_path.as_deref()
    }

    fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<Option<R>> {
        match lock(&self.inner.shared.core).as_mut() {
            Some(core) => f(core).map(Some),
            None => Ok(None),
        }
    }

    /// Logs a row at the next step: `run.log([("loss", 0.5), ("acc", 0.9)])`. Maps are stored nested.
    pub fn log<K: AsRef<str>, V: Into<Value>>(&self, data: impl IntoIterator<Item = (K, V)>) -> Result<LogOutcome> {
        self.log_with(None, None, |row| {
            for (k, v) in data {
                row.value(k.as_ref(), v.into())?;
            }
            Ok(())
        })
    }

    /// Logs at an explicit step. With `commit` false the row stays open for more values at the same
    /// step; a later step, a commit, or `finish` closes it. A step lower than the current one is
    /// dropped (the outcome says so).
    pub fn log_at<K: AsRef<str>, V: Into<Value>>(&self, step: i64, data: impl IntoIterator<Item = (K, V)>, commit: bool) -> Result<LogOutcome> {
        self.log_with(Some(step), Some(commit), |row| {
            for (k, v) in data {
                row.value(k.as_ref(), v.into())?;
            }
            Ok(())
        })
    }

    /// The general form, for bindings: `fill` adds fields to the row. `commit: None` follows W&B:
    /// commit unless a step was given.
    #[inline]
    pub fn log_with(&self, step: Option<i64>, commit: Option<bool>, fill: impl FnOnce(&mut RowFields<'_>) -> Result<()>) -> Result<LogOutcome> {
        let mut guard = lock(&self.inner.shared.core);
        match guard.as_mut() {
            Some(core) => core.log_row(step, commit, fill),
            None => Ok(LogOutcome::Disabled),
        }
    }

    /// Logs a row of floats under keys that earlier rows named: see [`Core::log_floats`].
    pub fn log_floats(&self, step: Option<i64>, commit: Option<bool>, ids: &[crate::core::KeyId], values: &[f64]) -> Result<LogOutcome> {
        let mut guard = lock(&self.inner.shared.core);
        match guard.as_mut() {
            Some(core) => core.log_floats(step, commit, ids, values),
            None => Ok(LogOutcome::Disabled),
        }
    }

    /// The step the next `log` without a step goes to.
    pub fn step(&self) -> i64 {
        lock(&self.inner.shared.core).as_ref().map_or(0, Core::step)
    }

    pub fn config(&self) -> Map {
        lock(&self.inner.shared.core).as_ref().map(|c| c.config.clone()).unwrap_or_default()
    }

    /// Merges keys into the config. Changing a key's value fails unless `allow_val_change`.
    pub fn update_config(&self, update: Map, allow_val_change: bool) -> Result<()> {
        self.with_core(|core| core.update_config(update, allow_val_change)).map(|_| ())
    }

    pub fn remove_config(&self, keys: Vec<String>) -> Result<()> {
        self.with_core(|core| core.remove_config(keys)).map(|_| ())
    }

    /// The summary: the last value of each key unless `define_metric` says otherwise, with explicit
    /// updates on top.
    pub fn summary(&self) -> Map {
        lock(&self.inner.shared.core).as_mut().map(Core::summary).unwrap_or_default()
    }

    pub fn update_summary(&self, set: Map, remove: Vec<String>) -> Result<()> {
        self.with_core(|core| core.update_summary(set, remove)).map(|_| ())
    }

    /// Sets how a metric's summary is computed (`min`, `max`, `mean`, `first`, `last`, `none`, or
    /// several joined by commas) and which key charts use as its x-axis. `name` may use `*`.
    pub fn define_metric(&self, name: &str, step_metric: Option<&str>, summary: Option<&str>, hidden: bool) -> Result<()> {
        if name.is_empty() {
            return Err(ClientError::new(ErrorKind::InvalidValue, "define_metric needs a metric name"));
        }
        let modes: Vec<String> = match summary {
            None => Vec::new(),
            Some(text) => {
                let modes: Vec<String> = text.split(',').map(|m| m.trim().to_lowercase()).filter(|m| !m.is_empty()).collect();
                for mode in &modes {
                    if !["min", "max", "mean", "first", "last", "none"].contains(&mode.as_str()) {
                        return Err(ClientError::new(ErrorKind::InvalidValue, format!("summary {mode:?} is not one of min, max, mean, first, last, none")));
                    }
                }
                modes
            }
        };
        let mut event = map! {"type" => "define_metric", "name" => name, "hidden" => hidden};
        if let Some(step_metric) = step_metric {
            event.insert("step_metric".into(), Value::from(step_metric));
        }
        if !modes.is_empty() {
            event.insert("summary".into(), Value::from(modes.join(",")));
        }
        self.with_core(|core| core.define_metric(name, modes, &Value::Map(event))).map(|_| ())
    }

    /// Changes tags, notes, name, group or job type.
    pub fn update(&self, patch: RunPatch) -> Result<()> {
        patch.validate().map_err(ClientError::from)?;
        if let Some(name) = &patch.name {
            lock(&self.inner.ident).name = name.clone();
        }
        let event = update_event(&patch);
        self.with_core(|core| core.write_event(&event)).map(|_| ())
    }

    /// Logs one row of system metrics (`system.*` keys).
    pub fn log_system(&self, timestamp_us: i64, fields: &[(&str, f64)]) -> Result<()> {
        self.with_core(|core| core.log_system(timestamp_us, fields)).map(|_| ())
    }

    /// Logs a console line; pass the number of an earlier line to rewrite it (`\r` progress bars).
    pub fn log_console(&self, line: Option<u64>, stream: ConsoleStream, text: &str) -> Result<u64> {
        self.with_core(|core| core.log_console(line, stream, text)).map(|l| l.unwrap_or(0))
    }

    /// Saves files matching `glob` with the run (W&B's `run.save`): names are relative to `base`
    /// (by default the folder before the first wildcard). `Live` files are uploaded again when
    /// they change; every saved file is uploaded as it stands when the run ends.
    pub fn save(&self, glob: &str, base: Option<&Path>, policy: crate::files::Policy) -> Result<Vec<String>> {
        let save = crate::files::Save::new(glob, base, policy)?;
        let Some(dir) = self.inner.dir_path.as_deref() else { return Ok(Vec::new()) };
        if lock(&self.inner.shared.core).as_ref().is_none_or(|c| c.finished) {
            return Err(ClientError::new(ErrorKind::Finished, format!("the run has finished; {glob:?} was not saved")));
        }
        crate::files::record_save(dir, &save)?;
        self.inner.shared.wake();
        Ok(save.matches().into_iter().map(|(name, _)| name).collect())
    }

    /// Raises an alert (W&B's `run.alert`): stored with the run, shown in the UI, and delivered
    /// by the server to its targets (a Slack-compatible webhook, email). The same title is sent
    /// once within `wait_duration`: a repeat returns `false` and sends nothing. Delivery happens
    /// on the server, so a failing target never fails the program.
    pub fn alert(&self, title: &str, text: &str, level: cairn_types::api::AlertLevel, wait_duration: Duration) -> Result<bool> {
        if title.trim().is_empty() {
            return Err(ClientError::new(ErrorKind::InvalidValue, "an alert needs a title, not an empty one"));
        }
        if title.len() > 1024 || text.len() > 64 * 1024 {
            return Err(ClientError::new(
                ErrorKind::InvalidValue,
                format!("alert {:?}: the title is limited to 1 KiB and the text to 64 KiB", title.chars().take(60).collect::<String>()),
            ));
        }
        {
            let mut sent = lock(&self.inner.alerts_sent);
            if sent.get(title).is_some_and(|t| t.elapsed() < wait_duration) {
                return Ok(false);
            }
            sent.insert(title.to_owned(), Instant::now());
        }
        let event = Value::Map(map! {
            "type" => "alert",
            "title" => title,
            "text" => text,
            "level" => level.as_str(),
            "wait_duration" => wait_duration.as_secs_f64(),
            "time" => now_micros() as f64 / 1e6,
        });
        self.with_core(|core| core.write_event(&event)).map(|_| true)
    }

    /// Tells the server that the run may be preempted and go silent (W&B's `mark_preempting`):
    /// the crash monitor then waits its longer preempting timeout before it marks the run
    /// crashed, and the run shows as preempting until it resumes. Sent at once, through the
    /// run's write-ahead log like every event, so it survives a kill that follows.
    pub fn mark_preempting(&self) -> Result<()> {
        let event = Value::Map(map! {"type" => "preempting", "time" => now_micros() as f64 / 1e6});
        self.with_core(|core| core.write_event(&event))?;
        self.inner.shared.wake();
        Ok(())
    }

    /// Whether the server asked the run to stop (from the UI or `cairn runs stop`).
    pub fn stop_requested(&self) -> bool {
        self.inner.shared.stop_requested.load(Ordering::Acquire)
    }

    /// Called once, from a background thread, when the server asks the run to stop.
    pub fn on_stop(&self, callback: impl Fn() + Send + Sync + 'static) {
        *lock(&self.inner.shared.on_stop) = Some(Box::new(callback));
    }

    /// `(uploaded, written)` log positions: equal once the server has everything.
    pub fn upload_progress(&self) -> (u64, u64) {
        (lock(&self.inner.shared.status).acked, self.inner.shared.committed.load(Ordering::Acquire))
    }

    /// Waits until the server has everything logged so far, up to `timeout`. For tests and tools.
    /// The uploader is woken from its pause, so that the wait is as short as the upload.
    pub fn wait_uploaded(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let (acked, written) = self.upload_progress();
            if acked >= written {
                return true;
            }
            self.inner.shared.wake();
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Finishes the run: exit code 0 or none means finished, anything else failed.
    pub fn finish(&self, exit_code: Option<i32>) -> Result<FinishReport> {
        self.inner.finish_as(None, exit_code)
    }

    /// Finishes with an explicit state (`Killed` after a KeyboardInterrupt, say). Waits for the
    /// upload while it makes progress, and never longer than the finish timeout without progress:
    /// what is left stays in the run directory for `cairn sync`.
    pub fn finish_as(&self, state: Option<RunState>, exit_code: Option<i32>) -> Result<FinishReport> {
        self.inner.finish_as(state, exit_code)
    }
}

impl Inner {
    fn path(&self) -> Option<RunPath> {
        let ident = lock(&self.ident);
        Some(RunPath::new(ident.entity.clone()?, ident.project.clone()?, ident.run_id.clone()))
    }

    fn url(&self) -> Option<String> {
        self.path().map(|p| format!("{}/{}/{}/runs/{}", self.base_url, p.entity, p.project, p.run_id))
    }

    fn project_url(&self) -> Option<String> {
        self.path().map(|p| format!("{}/{}/{}", self.base_url, p.entity, p.project))
    }

    /// The run directory, relative to the working directory when it is below it.
    fn dir_display(&self) -> String {
        let Some(dir) = self.dir_path.as_deref() else { return String::new() };
        std::env::current_dir().ok().and_then(|cwd| dir.strip_prefix(cwd).ok().map(|p| p.display().to_string())).unwrap_or_else(|| dir.display().to_string())
    }

    fn links(&self) -> Links {
        let online = self.mode == Mode::Online;
        let run_name = lock(&self.ident).name.clone();
        Links { run_name, run_url: self.url().filter(|_| online), project_url: self.project_url().filter(|_| online) }
    }

    fn finish_as(&self, state: Option<RunState>, exit_code: Option<i32>) -> Result<FinishReport> {
        if let Some(s @ (RunState::Running | RunState::Crashed)) = state {
            return Err(ClientError::new(ErrorKind::InvalidValue, format!("a run can only be finished as finished, failed or killed, not {}", s.as_str())));
        }
        let mut report_slot = lock(&self.report);
        if let Some(report) = report_slot.as_ref() {
            return Ok(report.clone());
        }
        let final_state = state.unwrap_or(RunState::from_exit_code(exit_code.unwrap_or(0)));
        // The console first: its last lines belong to the run (and `output.log` is complete).
        if let Some(capture) = lock(&self.console).take() {
            capture.stop();
        }
        let shared = &self.shared;
        shared.finishing.store(true, Ordering::Release);
        let (summary, sparklines, ended_state, log_end) = {
            let mut guard = lock(&shared.core);
            let Some(core) = guard.as_mut() else {
                let report = FinishReport { state: final_state, exit_code, uploaded: true, pending: None, lines: Vec::new() };
                *report_slot = Some(report.clone());
                return Ok(report);
            };
            // A run stopped from the server has already ended, as killed.
            let ended_state = if core.finished {
                RunState::Killed
            } else {
                let mut event = map! {"type" => "finish", "state" => final_state.as_str(), "time" => now_micros() as f64 / 1e6};
                if let Some(code) = exit_code {
                    event.insert("exit_code".into(), Value::from(code));
                }
                if let Err(e) = core.write_event(&Value::Map(event)) {
                    // A run directory that cannot be written does not keep the run from ending
                    // here; its log lacks the end.
                    let Some(why) = core.take_unwritable() else { return Err(e) };
                    eprintln!("cairn: {}: the run's end was not written; `cairn sync` of the directory sends what was written (the server marks the run crashed)", why.describe());
                }
                core.finished = true;
                core.close_media();
                final_state
            };
            let sparklines = core
                .keys()
                .iter()
                .filter(|k| k.stream == cairn_types::wire::KeyStream::History)
                .filter_map(|k| k.sparkline.as_ref().map(|s| (k.name.clone(), s.render())))
                .collect::<Vec<_>>();
            core.flush();
            (core.summary(), sparklines, ended_state, core.seal_log())
        };
        shared.closing.store(true, Ordering::Release);
        shared.wake();
        // Nothing more goes into the log: it is packed (a lossless, smaller copy that replaces
        // it) while the upload finishes, on another core.
        let wal_dir = lock(&self.run_dir).as_ref().filter(|d| !d.read_only).map(|d| d.wal_dir());
        let packer = wal_dir.and_then(|dir| {
            std::thread::Builder::new()
                .name("cairn-pack".into())
                .spawn(move || {
                    let started = std::time::Instant::now();
                    crate::wal::pack_log(&dir, log_end).map(|report| (report, started.elapsed()))
                })
                .ok()
        });
        // Wait while the upload makes progress; a thread stuck in a call to a hung server is left
        // behind (what it did not send stays in the run directory).
        if self.mode == Mode::Online {
            let mut status = lock(&shared.status);
            while !(status.done && status.files_done) && status.last_progress.elapsed() <= self.finish_timeout + Duration::from_millis(500) {
                status = shared.uploaded.wait_timeout(status, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        // Only a finished uploader is joined. The heartbeat thread may be inside a call to a
        // server that does not answer, and the stats thread inside its first setup (loading
        // the GPU library, listing disks: about 100 ms, which a short run's `finish` waited
        // for): they are left to end by themselves (they see `closing`, and a sample after the
        // end is not written).
        let uploader_done = lock(&shared.status).done;
        for thread in lock(&self.threads).drain(..) {
            let name = thread.thread().name();
            if (uploader_done && name == Some("cairn-uploader")) || (name == Some("cairn-stats") && thread.is_finished()) {
                let _ = thread.join();
            }
        }
        if let Some(packer) = packer {
            match packer.join() {
                Ok(Ok((report, took))) => {
                    if let Some(dir) = &self.dir_path
                        && report.packed > 0
                    {
                        crate::rundir::debug_log(
                            dir,
                            &format!("the log was packed: {} bytes of records in {} bytes, in {} ms", report.bytes_before, report.bytes_after, took.as_millis()),
                        );
                    }
                }
                Ok(Err(e)) => {
                    if let Some(dir) = &self.dir_path {
                        crate::rundir::debug_log(dir, &format!("the log was not packed (it stays as written): {e}"));
                    }
                }
                Err(_) => {}
            }
        }
        let written = shared.committed.load(Ordering::Acquire);
        let (uploaded, pending) = if self.mode == Mode::Online {
            let status = lock(&shared.status);
            if status.acked >= written && status.files_done && status.error.is_none() {
                (true, None)
            } else {
                let why = status.error.clone().unwrap_or_else(|| "the server did not answer in time".into());
                let dir = self.dir_display();
                (false, Some(format!("Some of this run was not uploaded ({why}). It is safe in {dir}; upload it with `cairn sync {dir}`")))
            }
        } else {
            (false, None)
        };
        if let Some(dir) = lock(&self.run_dir).as_mut() {
            if self.mode == Mode::Offline {
                let _ = dir.write_upload_file(&UploadFile::default());
            }
            dir.unlock();
        }
        let logs_dir = self.dir_path.as_ref().map(|_| format!("{}/logs", self.dir_display())).unwrap_or_default();
        let lines = report::finish_lines(&FinishView {
            links: &self.links(),
            sparklines,
            summary: &summary,
            logs_dir,
            offline_dir: (self.mode == Mode::Offline).then(|| self.dir_display()),
            pending_warning: pending.clone(),
        });
        if !self.silent {
            for line in &lines {
                eprintln!("{line}");
            }
        }
        if ended_state == RunState::Finished
            && let Some(resume_path) = lock(&self.resume_file).take()
        {
            let _ = std::fs::remove_file(resume_path);
        }
        if let Some(dir) = &self.dir_path {
            crate::rundir::debug_log(dir, &format!("finished as {} (exit code {exit_code:?}); uploaded={uploaded}", ended_state.as_str()));
        }
        let report = FinishReport { state: ended_state, exit_code, uploaded, pending, lines };
        *report_slot = Some(report.clone());
        Ok(report)
    }
}

/// The events-stream record of a change to a run's name, notes, tags, group or job type.
fn update_event(patch: &RunPatch) -> Value {
    let mut event = match Value::from_json(&serde_json::to_value(patch).expect("patches serialize")) {
        Value::Map(m) => m,
        _ => Map::new(),
    };
    event.retain(|_, v| !v.is_null());
    event.insert("type".into(), Value::from("update"));
    Value::Map(event)
}

/// `resume="auto"`: the id of the run that the last process in this directory left unfinished
/// (what earlier processes left unsent is uploaded before the run resumes).
fn auto_resume(r: &Resolved) -> Result<Option<String>> {
    let path = crate::rundir::resume_file_path(&r.dir);
    let Ok(file) = crate::rundir::read_json::<crate::rundir::ResumeFile>(&path) else {
        return Ok(None);
    };
    if let Some(id) = &r.run_id
        && *id != file.run_id
    {
        return Ok(None);
    }
    Ok(Some(file.run_id))
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.mode == Mode::Disabled {
            return;
        }
        let _ = if std::thread::panicking() { self.finish_as(Some(RunState::Failed), Some(1)) } else { self.finish_as(None, None) };
    }
}

struct Uploader {
    shared: Arc<Shared>,
    api: ApiClient,
    wal_dir: PathBuf,
    run_dir: PathBuf,
    upsert: UpsertRunRequest,
    initial_offsets: StreamOffsets,
    finish_timeout: Duration,
}

impl Uploader {
    fn save_state(&self, acked: u64, complete: bool) {
        let status = lock(&self.shared.status);
        let upload = UploadFile { acked, run_path: status.path.as_ref().map(ToString::to_string), complete, error: status.error.clone() };
        drop(status);
        let _ = crate::rundir::write_json(&self.run_dir.join("upload.json"), &upload);
    }

    fn fail(&self, message: String) {
        crate::rundir::debug_log(&self.run_dir, &format!("upload stopped: {message}"));
        lock(&self.shared.status).error = Some(message);
    }

    fn note_retry(&self, failures: &mut u32, what: &str, error: &CallError) {
        *failures += 1;
        if failures.is_power_of_two() {
            crate::rundir::debug_log(&self.run_dir, &format!("{what} failed ({failures} times in a row), retrying: {error}"));
        }
    }

    /// The client for the next call: once the run is closing, a call may not outlast what is left
    /// of the finish timeout, so that a hung server cannot hold `finish`.
    fn client(&self) -> std::borrow::Cow<'_, ApiClient> {
        if !self.shared.closing.load(Ordering::Acquire) {
            return std::borrow::Cow::Borrowed(&self.api);
        }
        let idle = lock(&self.shared.status).last_progress.elapsed();
        let left = self.finish_timeout.saturating_sub(idle).max(Duration::from_millis(500));
        std::borrow::Cow::Owned(self.api.with_timeout(left))
    }

    /// Sleeps before a retry; once the run is closing, never past the finish timeout.
    fn pause(&self, wanted: Duration) {
        if self.shared.closing.load(Ordering::Acquire) {
            let idle = lock(&self.shared.status).last_progress.elapsed();
            std::thread::sleep(wanted.min(self.finish_timeout.saturating_sub(idle) + Duration::from_millis(10)));
        } else {
            self.shared.wait(wanted);
        }
    }

    fn run(self) {
        let mut sender = Sender::new(&self.wal_dir, 0, self.initial_offsets);
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        let mut gaps = 0u32;
        let mut last_saved = Instant::now();
        loop {
            let closing = self.shared.closing.load(Ordering::Acquire);
            if closing && lock(&self.shared.status).last_progress.elapsed() > self.finish_timeout {
                lock(&self.shared.status).error.get_or_insert_with(|| "the server could not be reached before the finish timeout".into());
                break;
            }
            let path = lock(&self.shared.status).path.clone();
            let path = match path {
                Some(path) => path,
                None => match self.client().upsert_run(&self.upsert) {
                    Ok(info) => {
                        let path = info.path();
                        sender.server_offsets = info.offsets;
                        let mut status = lock(&self.shared.status);
                        status.path = Some(path.clone());
                        status.last_progress = Instant::now();
                        path
                    }
                    Err(e) if e.is_retryable() => {
                        self.note_retry(&mut failures, "creating the run on the server", &e);
                        self.pause(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                    Err(e) => {
                        self.fail(format!("the server refused the run: {e}"));
                        break;
                    }
                },
            };
            let written = self.shared.committed.load(Ordering::Acquire);
            let batch = match sender.next_batch(written, closing, MAX_BATCH_BYTES) {
                Ok(batch) => batch,
                Err(e) => {
                    self.fail(format!("cannot read the run's log: {e}"));
                    break;
                }
            };
            let Some(batch) = batch else {
                lock(&self.shared.status).acked = sender.acked;
                if closing {
                    break;
                }
                self.shared.wait(FLUSH_INTERVAL);
                continue;
            };
            match sender.send(&self.client(), &path, &batch) {
                Ok(ack) => {
                    backoff = Duration::from_millis(100);
                    failures = 0;
                    gaps = 0;
                    {
                        let mut status = lock(&self.shared.status);
                        status.acked = sender.acked;
                        status.last_progress = Instant::now();
                    }
                    if ack.stop {
                        self.shared.trigger_stop();
                    }
                    if last_saved.elapsed() > Duration::from_secs(2) {
                        self.save_state(sender.acked, false);
                        last_saved = Instant::now();
                    }
                    // A batch that took everything there was is followed by a pause, not by the
                    // next handful of rows: while the program logs, the uploader and the server
                    // then wake twice a second, not at every step, and leave the cores to it. A
                    // full batch means more is waiting, and the next one goes at once; `finish`
                    // and `wait_uploaded` wake the uploader.
                    if !batch.full {
                        self.shared.wait(FLUSH_INTERVAL);
                    }
                }
                Err(CallError::Api { error, .. }) if error.code == ErrorCode::OffsetGap => {
                    // The sender starts over with the server's offsets. A gap that persists
                    // means the log lacks what the server needs: give up rather than spin.
                    gaps += 1;
                    if gaps > 5 {
                        self.fail(format!("the server's offsets do not match the run's log: {}", error.message));
                        break;
                    }
                    self.pause(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(CallError::Api { error, .. }) if error.code == ErrorCode::RunNotFound => {
                    lock(&self.shared.status).path = None;
                }
                Err(e) if e.is_retryable() => {
                    self.note_retry(&mut failures, "uploading a batch", &e);
                    self.pause(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    self.fail(format!("the server refused the run's data: {e}"));
                    break;
                }
            }
        }
        let written = self.shared.committed.load(Ordering::Acquire);
        let closing = self.shared.closing.load(Ordering::Acquire);
        let acked = sender.acked;
        let complete = {
            let mut status = lock(&self.shared.status);
            status.acked = acked;
            closing && acked >= written && status.error.is_none()
        };
        self.save_state(acked, complete);
        lock(&self.shared.status).done = true;
        self.shared.uploaded.notify_all();
    }
}

fn heartbeat_loop(shared: Arc<Shared>, api: ApiClient, interval: Duration) {
    loop {
        shared.wait(interval);
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        let path = lock(&shared.status).path.clone();
        if let Some(path) = path
            && let Ok(reply) = api.heartbeat(&path)
            && reply.stop
        {
            shared.trigger_stop();
        }
    }
}

fn started_at_secs(request: &UpsertRunRequest) -> i64 {
    request.started_at.map_or(0, |t| t.micros() / 1_000_000)
}

/// Console lines go into the run's log (stream `console`) and into `files/output.log`.
struct ConsoleSink {
    shared: Arc<Shared>,
    out: std::io::BufWriter<std::fs::File>,
}

impl crate::console::Sink for ConsoleSink {
    fn line(&mut self, rewrite: Option<u64>, stream: ConsoleStream, text: &str, done: bool) -> Option<u64> {
        use std::io::Write;
        if done {
            let _ = self.out.write_all(text.as_bytes());
            let _ = self.out.write_all(b"\n");
        }
        let mut guard = lock(&self.shared.core);
        let core = guard.as_mut()?;
        if core.finished {
            return None;
        }
        core.log_console(rewrite, stream, text).ok()
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = self.out.flush();
    }
}

/// Samples system metrics every `interval` (the first soon after start) until the run closes,
/// and notes in the debug log what sampling cost.
fn stats_loop(shared: Arc<Shared>, interval: Duration, run_dir: PathBuf) {
    // The moments after `init` are the program's: it loads its data and starts its loop. The
    // sampler (a walk over every process, the disks, the network, NVML) sets up once they are
    // past, or sooner when samples are asked for more often.
    shared.wait(interval.min(STATS_SETTLE));
    if shared.closing.load(Ordering::Acquire) {
        return;
    }
    let started = crate::system::thread_cpu_time();
    let mut sampler = crate::system::Sampler::new();
    // CPU usage is measured between two readings: the first sample comes after a short wait.
    shared.wait(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(200)));
    let mut samples = 0u32;
    let mut sampling = Duration::ZERO;
    while !shared.closing.load(Ordering::Acquire) {
        let before = crate::system::thread_cpu_time();
        let sample = sampler.sample();
        sampling += crate::system::thread_cpu_time().saturating_sub(before);
        samples += 1;
        let fields: Vec<(&str, f64)> = sample.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        {
            let mut guard = lock(&shared.core);
            match guard.as_mut() {
                Some(core) if !core.finished => {
                    let _ = core.log_system(now_micros(), &fields);
                }
                _ => break,
            }
        }
        shared.wait(interval);
    }
    if samples > 0 {
        let per_sample = sampling / samples;
        crate::rundir::debug_log(
            &run_dir,
            &format!(
                "system metrics: {samples} samples, {:.2} ms of CPU each ({:.4}% of one core at {:.1} s intervals; setup {:.2} ms)",
                per_sample.as_secs_f64() * 1e3,
                per_sample.as_secs_f64() / interval.as_secs_f64() * 100.0,
                interval.as_secs_f64(),
                crate::system::thread_cpu_time().saturating_sub(started).saturating_sub(sampling).as_secs_f64() * 1e3,
            ),
        );
    }
}

/// Uploads saved files: `now` and changed `live` files every couple of seconds, and everything
/// due when the run ends.
struct FilesThread {
    shared: Arc<Shared>,
    api: ApiClient,
    run_dir: PathBuf,
    finish_timeout: Duration,
}

impl FilesThread {
    fn run(self) {
        let mut tracker = crate::files::Tracker::default();
        let log_dir = self.run_dir.clone();
        let mut log = move |m: &str| crate::rundir::debug_log(&log_dir, m);
        loop {
            let closing = self.shared.finishing.load(Ordering::Acquire);
            if !closing && self.shared.closing.load(Ordering::Acquire) {
                // Stopped from the server: `finish` is on its way (and `wait` no longer sleeps).
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let path = lock(&self.shared.status).path.clone();
            let stalled = || lock(&self.shared.status).last_progress.elapsed() > self.finish_timeout;
            if closing && path.is_some() && !lock(&self.shared.status).done && !stalled() {
                // The last pass waits for the uploader, which stores the media it sends as files;
                // it says when it is done.
                self.shared.wait_for_uploader(Duration::from_millis(100));
                continue;
            }
            if let Some(path) = path {
                // While the run goes on, a file that cannot be uploaded waits for the next pass;
                // once it ends, for as long as uploads make progress.
                let mut give_up = |failures: u32| if closing { stalled() } else { failures >= 3 };
                let mut progress = |_sent: u64| lock(&self.shared.status).last_progress = Instant::now();
                let saves = crate::files::read_saves(&self.run_dir);
                let result = crate::files::upload_due(&self.api, &path, &saves, &mut tracker, closing, &mut log, &mut progress, &mut give_up);
                if closing {
                    if let Err(e) = result {
                        let message = format!("some saved files were not uploaded ({e})");
                        log(&message);
                        lock(&self.shared.status).error.get_or_insert(message);
                        // `cairn sync` uploads them later: the directory is not complete.
                        let path = self.run_dir.join("upload.json");
                        if let Ok(mut upload) = crate::rundir::read_json::<UploadFile>(&path) {
                            upload.complete = false;
                            let _ = crate::rundir::write_json(&path, &upload);
                        }
                    }
                    break;
                }
            } else if closing && (stalled() || lock(&self.shared.status).done) {
                break;
            }
            if self.shared.finishing.load(Ordering::Acquire) {
                // `finish` has begun: the last pass comes next, as soon as the uploader is done
                // (at once when it is).
                self.shared.wait_for_uploader(Duration::from_millis(50));
            } else if self.shared.closing.load(Ordering::Acquire) {
                // Stopped from the server (`wait` no longer sleeps once the run is closing).
                std::thread::sleep(Duration::from_millis(50));
            } else {
                self.shared.wait(Duration::from_secs(2));
            }
        }
        lock(&self.shared.status).files_done = true;
        self.shared.uploaded.notify_all();
    }
}
