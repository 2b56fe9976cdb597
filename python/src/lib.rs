//! `cairn._core`: the thin PyO3 layer over the Rust client. Python objects are converted to
//! cairn values here; everything else (the write-ahead log, upload, W&B step semantics, summary
//! computation, terminal output) is the Rust client's.

mod api;
mod convert;
mod fastlog;

use std::path::PathBuf;
use std::time::Duration;

use cairn_client::{ClientError, LogOutcome, Mode, ResumeMode, RunPatch, RunState, Settings};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::convert::{dict_to_map, to_py, to_value};

/// Raises the `cairn.errors` class that matches a client error.
pub(crate) fn raise(py: Python<'_>, error: ClientError) -> PyErr {
    use cairn_client::ErrorKind::*;
    let class = match error.kind {
        InvalidRunId => "InvalidRunId",
        InvalidValue => "InvalidValue",
        InvalidSetting => "InvalidSetting",
        Config => "ConfigError",
        NotFound => "NotFound",
        Conflict => "Conflict",
        Deleted => "RunDeleted",
        Finished => "RunFinished",
        Network => "CommError",
        Unauthorized => "Unauthorized",
        Forbidden => "Forbidden",
        Server => "ServerError",
        Io => "CairnIOError",
    };
    match py.import("cairn.errors").and_then(|m| m.getattr(class)) {
        Ok(class) => match class.call1((error.message.clone(),)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

pub(crate) fn invalid_value(py: Python<'_>, message: String) -> PyErr {
    raise(py, ClientError::new(cairn_client::ErrorKind::InvalidValue, message))
}

fn opt_string(kwargs: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<String>> {
    match kwargs.get_item(key)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => match v.cast::<PyString>() {
            Ok(s) => Ok(Some(s.to_str()?.to_owned())),
            Err(_) => Err(PyTypeError::new_err(format!("{key} must be a string, got {}", v.get_type().name()?))),
        },
    }
}

fn opt_secs(kwargs: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Duration>> {
    match kwargs.get_item(key)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => {
            let secs: f64 = v.extract()?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(invalid_value(v.py(), format!("{key}={secs} must be a positive number of seconds")));
            }
            Ok(Some(Duration::from_secs_f64(secs)))
        }
    }
}

/// Builds client settings from the keyword arguments that `cairn.init` prepared.
fn settings_from(py: Python<'_>, kwargs: &Bound<'_, PyDict>) -> PyResult<Settings> {
    let mut settings = Settings::new();
    settings.base_url = opt_string(kwargs, "base_url")?;
    settings.entity = opt_string(kwargs, "entity")?;
    settings.project = opt_string(kwargs, "project")?;
    settings.run_id = opt_string(kwargs, "id")?;
    settings.name = opt_string(kwargs, "name")?;
    settings.notes = opt_string(kwargs, "notes")?;
    settings.group = opt_string(kwargs, "group")?;
    settings.job_type = opt_string(kwargs, "job_type")?;
    settings.api_key = opt_string(kwargs, "api_key")?;
    settings.dir = opt_string(kwargs, "dir")?.map(PathBuf::from);
    if let Some(mode) = opt_string(kwargs, "mode")? {
        settings.mode = Some(Mode::parse(&mode).map_err(|e| raise(py, e))?);
    }
    if let Some(resume) = opt_string(kwargs, "resume")?
        && resume == "auto"
    {
        settings.resume_auto = true;
    } else if let Some(resume) = opt_string(kwargs, "resume")? {
        settings.resume = Some(match resume.as_str() {
            "allow" => ResumeMode::Allow,
            "must" => ResumeMode::Must,
            "never" => ResumeMode::Never,
            other => {
                return Err(raise(py, ClientError::new(cairn_client::ErrorKind::InvalidSetting, format!("resume={other:?} is not one of allow, must, never, auto"))));
            }
        });
    }
    if let Some(tags) = kwargs.get_item("tags")?
        && !tags.is_none()
    {
        let tags: Vec<String> = tags.extract().map_err(|_| PyTypeError::new_err("tags must be a list of strings"))?;
        settings.tags = Some(tags);
    }
    if let Some(config) = kwargs.get_item("config")?
        && !config.is_none()
    {
        let dict = config.cast::<PyDict>().map_err(|_| PyTypeError::new_err("config must be a dict"))?;
        settings.config = Some(dict_to_map(dict, "config")?);
    }
    if let Some(metadata) = kwargs.get_item("metadata")?
        && !metadata.is_none()
    {
        let dict = metadata.cast::<PyDict>().map_err(|_| PyTypeError::new_err("metadata must be a dict"))?;
        settings.metadata = dict_to_map(dict, "metadata")?;
    }
    settings.heartbeat_interval = opt_secs(kwargs, "heartbeat_interval")?;
    settings.finish_timeout = opt_secs(kwargs, "finish_timeout")?;
    settings.init_timeout = opt_secs(kwargs, "init_timeout")?;
    settings.fork_from = opt_string(kwargs, "fork_from")?;
    settings.resume_from = opt_string(kwargs, "resume_from")?;
    if let Some(allow) = kwargs.get_item("allow_val_change")?
        && !allow.is_none()
    {
        settings.allow_val_change = allow.is_truthy()?;
    }
    if let Some(console) = opt_string(kwargs, "console")? {
        settings.console = Some(cairn_client::Console::parse(&console).map_err(|e| raise(py, e))?);
    }
    if let Some(item) = kwargs.get_item("stats_interval")?
        && !item.is_none()
    {
        let secs: f64 = item.extract().map_err(|_| PyTypeError::new_err("stats_sampling_interval must be a number of seconds"))?;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(invalid_value(py, format!("stats_sampling_interval {secs} must be 0 (off) or a positive number of seconds")));
        }
        settings.stats_interval = Some(Duration::from_secs_f64(secs));
    }
    // The Python package prints the terminal output itself, through sys.stderr.
    settings.silent = Some(true);
    Ok(settings)
}

/// A run: what `cairn.init` returns wraps one.
#[pyclass(name = "Run", module = "cairn._core", frozen)]
struct PyRun {
    run: cairn_client::Run,
    /// A stop from the server interrupts the program once: by the signal that `on_stop` sends,
    /// or by the `log` call that sees the stop first.
    interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The key objects of the last rows' float values, by their place in the dict, with their
    /// ids: a training loop logs the same `str` objects every step, so an entry whose key is
    /// the object seen at its place last time skips the key's text (its UTF-8 form, the
    /// comparison, the lookup). Each is held, so its address cannot name another object.
    float_keys: std::sync::Mutex<FloatKeys>,
}

/// A `float`'s layout in every CPython this extension loads into (3.10 and later, GIL builds):
/// the object header, then the value. Subclasses (numpy's `float64`) keep it at the same place.
#[repr(C)]
struct RawFloat {
    head: pyo3::ffi::PyObject,
    value: f64,
}

/// The value of a `float` (or subclass), read where `PyFloat_AS_DOUBLE` reads it: what
/// `PyFloat_AsDouble` returns for such an object, without the call into the interpreter, which
/// the limited API does not inline: about 15 instructions a value less on `log`'s path.
///
/// # Safety
/// `value` is a live object for which `PyFloat_Check` is true.
#[inline(always)]
unsafe fn float_value(value: *mut pyo3::ffi::PyObject) -> f64 {
    // SAFETY: as the caller promises, `value` points to a float object, laid out as `RawFloat`.
    let read = unsafe { (*value.cast::<RawFloat>()).value };
    debug_assert_eq!(read.to_bits(), unsafe { pyo3::ffi::PyFloat_AsDouble(value) }.to_bits());
    read
}

/// The last rows' float keys, by place (see `PyRun::float_keys`).
#[derive(Default)]
struct FloatKeys {
    keys: Vec<Py<PyAny>>,
    ids: Vec<cairn_client::KeyId>,
    /// The values of a row that has exactly these keys, in this order, all floats.
    values: Vec<f64>,
}

impl FloatKeys {
    /// Notes the float under `key` at place `at` of the row; a place past the next one (after a
    /// value that is not a float) is not kept.
    fn remember(&mut self, py: Python<'_>, at: usize, key: *mut pyo3::ffi::PyObject, id: cairn_client::KeyId) {
        // SAFETY: a borrowed reference made strong: the cache holds the key.
        let held = unsafe { Bound::from_borrowed_ptr(py, key) }.unbind();
        match at.cmp(&self.keys.len()) {
            std::cmp::Ordering::Less => {
                self.keys[at] = held;
                self.ids[at] = id;
            }
            std::cmp::Ordering::Equal => {
                self.keys.push(held);
                self.ids.push(id);
            }
            std::cmp::Ordering::Greater => {}
        }
    }

    /// The dict's values when its keys are the ones kept, in their order, and every value is a
    /// float: the row then needs no key's text, and goes to the log in one call.
    fn same_floats(&mut self, dict: &Bound<'_, PyDict>) -> bool {
        if self.keys.is_empty() || dict.len() != self.keys.len() {
            return false;
        }
        self.values.clear();
        let mut position: pyo3::ffi::Py_ssize_t = 0;
        let mut key: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: the GIL is held and `dict` is a strong reference; no Python code runs while
        // the borrowed key and value are looked at.
        while unsafe { pyo3::ffi::PyDict_Next(dict.as_ptr(), &mut position, &mut key, &mut value) } != 0 {
            let at = self.values.len();
            if unsafe { pyo3::ffi::PyFloat_Check(value) } == 0 || self.keys.get(at).is_none_or(|k| k.as_ptr() != key) {
                return false;
            }
            self.values.push(unsafe { float_value(value) });
        }
        self.values.len() == self.keys.len()
    }
}

impl PyRun {
    pub(crate) fn log_impl(&self, py: Python<'_>, data: &Bound<'_, PyAny>, step: Option<i64>, commit: Option<bool>) -> PyResult<()> {
        let Ok(dict) = data.cast::<PyDict>() else {
            return Err(invalid_value(py, format!("log() takes a dict, got {}", data.get_type().name()?)));
        };
        // Never waited for: a log from another thread meanwhile goes without the cache.
        let mut float_keys = self.float_keys.try_lock().ok();
        if let Some(keys) = float_keys.as_mut()
            && keys.same_floats(dict)
        {
            let outcome = self.run.log_floats(step, commit, &keys.ids, &keys.values);
            return self.logged(py, outcome, None);
        }
        let mut py_error: Option<PyErr> = None;
        let mut entry = 0usize;
        let outcome = self.run.log_with(step, commit, |row| {
            let mut position: pyo3::ffi::Py_ssize_t = 0;
            let mut key_ptr: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
            let mut value_ptr: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
            // SAFETY: the GIL is held and `dict` is a strong reference. PyDict_Next lends the
            // key and value; they stay valid as long as no Python code runs, which is the case
            // on the fast path (a str key and a float value). Anything else takes its own
            // references before running Python code (a tensor's `item()`, say).
            while unsafe { pyo3::ffi::PyDict_Next(dict.as_ptr(), &mut position, &mut key_ptr, &mut value_ptr) } != 0 {
                let at = entry;
                entry += 1;
                if unsafe { pyo3::ffi::PyFloat_Check(value_ptr) } != 0
                    && let Some(keys) = float_keys.as_ref()
                    && keys.keys.get(at).is_some_and(|key| key.as_ptr() == key_ptr)
                {
                    row.float_id(keys.ids[at], unsafe { float_value(value_ptr) });
                    continue;
                }
                if unsafe { pyo3::ffi::PyUnicode_Check(key_ptr) } != 0 && unsafe { pyo3::ffi::PyFloat_Check(value_ptr) } != 0 {
                    let mut len: pyo3::ffi::Py_ssize_t = 0;
                    let utf8 = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(key_ptr, &mut len) };
                    if !utf8.is_null() {
                        // SAFETY: CPython keeps the UTF-8 form alive with the string object,
                        // which the dict holds.
                        let bytes = unsafe { std::slice::from_raw_parts(utf8.cast::<u8>(), len as usize) };
                        let key = unsafe { std::str::from_utf8_unchecked(bytes) };
                        let id = row.float(key, unsafe { float_value(value_ptr) })?;
                        if let Some(keys) = float_keys.as_mut() {
                            keys.remember(py, at, key_ptr, id);
                        }
                        continue;
                    }
                    // Not encodable (lone surrogates): the slow path below reports it.
                    unsafe { pyo3::ffi::PyErr_Clear() };
                }
                let key = unsafe { Bound::from_borrowed_ptr(py, key_ptr) };
                let value = unsafe { Bound::from_borrowed_ptr(py, value_ptr) };
                let Ok(key) = key.cast::<PyString>() else {
                    py_error = Some(invalid_value(py, format!("logged keys must be strings, got {}", key.repr().map(|r| r.to_string()).unwrap_or_default())));
                    return Err(ClientError::new(cairn_client::ErrorKind::InvalidValue, "key"));
                };
                let key = match key.to_str() {
                    Ok(k) => k.to_owned(),
                    Err(e) => {
                        py_error = Some(e);
                        return Err(ClientError::new(cairn_client::ErrorKind::InvalidValue, "key"));
                    }
                };
                match to_value(&value, &key, 0) {
                    Ok(v) => row.value(&key, v)?,
                    Err(e) => {
                        py_error = Some(e);
                        return Err(ClientError::new(cairn_client::ErrorKind::InvalidValue, "value"));
                    }
                }
            }
            Ok(())
        });
        if let Some(keys) = float_keys.as_mut() {
            // Places past this row's end belong to another row's shape.
            keys.keys.truncate(entry);
            keys.ids.truncate(entry);
        }
        self.logged(py, outcome, py_error)
    }

    /// What `log` returns for the core's outcome; `py_error` is the Python error that stopped the
    /// row, where one did.
    fn logged(&self, py: Python<'_>, outcome: Result<LogOutcome, ClientError>, mut py_error: Option<PyErr>) -> PyResult<()> {
        match outcome {
            Ok(LogOutcome::Dropped { step, current }) => {
                let warnings = py.import("warnings")?;
                warnings.call_method1(
                    "warn",
                    (format!(
                        "cairn: tried to log to step {step}, which is lower than the current step {current}; \
                         steps must increase, so this data is ignored"
                    ),),
                )?;
                Ok(())
            }
            Ok(_) => Ok(()),
            // Stopped from the server: the interrupt that the stop sends may not have reached the
            // main thread yet; `log` raises it, rather than an error about a finished run.
            Err(e) if e.kind == cairn_client::ErrorKind::Finished && self.run.stop_requested() => {
                if self.interrupted.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    // `on_stop` is sending the signal: its handler raises here, once. Give it a
                    // moment to arrive (without the GIL, which the sender needs).
                    for _ in 0..50 {
                        py.check_signals()?;
                        py.detach(|| std::thread::sleep(Duration::from_millis(2)));
                    }
                }
                Err(pyo3::exceptions::PyKeyboardInterrupt::new_err("the run was stopped from the server"))
            }
            Err(e) => Err(py_error.take().unwrap_or_else(|| raise(py, e))),
        }
    }
}

#[pymethods]
impl PyRun {
    /// A client of the run's server, with its key (for artifacts).
    fn api(&self) -> api::PyApiClient {
        api::PyApiClient::from_client(self.run.api())
    }

    /// `log(data, step=None, commit=None)`, bound to this run: a vectorcall function without
    /// pyo3's per-call trampoline (see `fastlog`).
    fn bound_log<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        fastlog::bound_log(slf)
    }

    #[getter]
    fn step(&self) -> i64 {
        self.run.step()
    }

    #[getter]
    fn id(&self) -> String {
        self.run.id()
    }

    #[getter]
    fn name(&self) -> String {
        self.run.name()
    }

    #[getter]
    fn entity(&self) -> Option<String> {
        self.run.entity()
    }

    #[getter]
    fn project(&self) -> Option<String> {
        self.run.project()
    }

    #[getter]
    fn path(&self) -> Option<String> {
        self.run.path().map(|p| p.to_string())
    }

    #[getter]
    fn url(&self) -> Option<String> {
        self.run.url()
    }

    #[getter]
    fn project_url(&self) -> Option<String> {
        self.run.project_url()
    }

    #[getter]
    fn dir(&self) -> Option<String> {
        self.run.dir().map(|d| d.display().to_string())
    }

    #[getter]
    fn mode(&self) -> &'static str {
        self.run.mode().as_str()
    }

    fn init_lines(&self) -> Vec<String> {
        self.run.init_lines()
    }

    fn config_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &cairn_types::Value::Map(self.run.config()))
    }

    #[pyo3(signature = (update, allow_val_change = false))]
    fn update_config(&self, py: Python<'_>, update: &Bound<'_, PyDict>, allow_val_change: bool) -> PyResult<()> {
        let map = dict_to_map(update, "config")?;
        self.run.update_config(map, allow_val_change).map_err(|e| raise(py, e))
    }

    fn remove_config(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<()> {
        self.run.remove_config(keys).map_err(|e| raise(py, e))
    }

    fn summary_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &cairn_types::Value::Map(self.run.summary()))
    }

    #[pyo3(signature = (set, remove = Vec::new()))]
    fn update_summary(&self, py: Python<'_>, set: &Bound<'_, PyDict>, remove: Vec<String>) -> PyResult<()> {
        let map = dict_to_map(set, "summary")?;
        self.run.update_summary(map, remove).map_err(|e| raise(py, e))
    }

    #[pyo3(signature = (name, step_metric = None, summary = None, hidden = false))]
    fn define_metric(&self, py: Python<'_>, name: &str, step_metric: Option<&str>, summary: Option<&str>, hidden: bool) -> PyResult<()> {
        self.run.define_metric(name, step_metric, summary, hidden).map_err(|e| raise(py, e))
    }

    #[pyo3(signature = (name = None, notes = None, tags = None, group = None, job_type = None))]
    fn update(&self, py: Python<'_>, name: Option<String>, notes: Option<String>, tags: Option<Vec<String>>, group: Option<String>, job_type: Option<String>) -> PyResult<()> {
        self.run.update(RunPatch { name, notes, tags, group, job_type }).map_err(|e| raise(py, e))
    }

    /// Calls `callback()` (from a background thread) when the server asks the run to stop.
    fn on_stop(&self, callback: Py<PyAny>) {
        let interrupted = self.interrupted.clone();
        self.run.on_stop(move || {
            Python::attach(|py| {
                // Under the GIL, so that `log` on the main thread sees either the flag unset (and
                // raises itself) or the signal on its way.
                if interrupted.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    return; // `log` raised the interrupt already
                }
                if let Err(e) = callback.call0(py) {
                    e.print(py);
                }
            });
        });
    }

    fn stop_requested(&self) -> bool {
        self.run.stop_requested()
    }

    fn wait_uploaded(&self, py: Python<'_>, timeout: f64) -> bool {
        let run = self.run.clone();
        py.detach(move || run.wait_uploaded(Duration::from_secs_f64(timeout.max(0.0))))
    }

    /// Raises an alert; returns whether it was sent (false: the same title within wait_duration).
    #[pyo3(signature = (title, text, level = "INFO", wait_duration = 60.0))]
    fn alert(&self, py: Python<'_>, title: &str, text: &str, level: &str, wait_duration: f64) -> PyResult<bool> {
        let level = cairn_types::api::AlertLevel::parse(level).ok_or_else(|| invalid_value(py, format!("alert level {level:?} must be INFO, WARN or ERROR")))?;
        if !(wait_duration.is_finite() && wait_duration >= 0.0) {
            return Err(invalid_value(py, format!("wait_duration {wait_duration} must be 0 or more seconds")));
        }
        self.run.alert(title, text, level, Duration::from_secs_f64(wait_duration)).map_err(|e| raise(py, e))
    }

    /// Logs a console line of `stream` (`stdout` or `stderr`) that the file-descriptor capture
    /// does not see (a notebook kernel's Python streams); `line` rewrites an earlier one.
    /// Returns the line's number.
    #[pyo3(signature = (stream, text, line = None))]
    fn log_console(&self, py: Python<'_>, stream: &str, text: &str, line: Option<u64>) -> PyResult<u64> {
        let stream = match stream {
            "stdout" => cairn_types::wire::ConsoleStream::Stdout,
            "stderr" => cairn_types::wire::ConsoleStream::Stderr,
            other => return Err(invalid_value(py, format!("console stream {other:?} must be stdout or stderr"))),
        };
        self.run.log_console(line, stream, text).map_err(|e| raise(py, e))
    }

    /// Tells the server that the run may be preempted and go silent for a while.
    fn mark_preempting(&self, py: Python<'_>) -> PyResult<()> {
        self.run.mark_preempting().map_err(|e| raise(py, e))
    }

    /// Saves files matching a glob with the run; returns the names matched now.
    #[pyo3(signature = (glob, base = None, policy = "live"))]
    fn save(&self, py: Python<'_>, glob: &str, base: Option<PathBuf>, policy: &str) -> PyResult<Vec<String>> {
        let policy = cairn_client::Policy::parse(policy).map_err(|e| raise(py, e))?;
        let run = self.run.clone();
        let glob = glob.to_owned();
        py.detach(move || run.save(&glob, base.as_deref(), policy)).map_err(|e| raise(py, e))
    }

    /// Finishes the run; returns `(state, uploaded, lines to print)`.
    #[pyo3(signature = (exit_code = None, state = None))]
    fn finish(&self, py: Python<'_>, exit_code: Option<i32>, state: Option<&str>) -> PyResult<(String, bool, Vec<String>)> {
        let state = match state {
            None => None,
            Some(s) => Some(RunState::parse(s).ok_or_else(|| invalid_value(py, format!("state {s:?} is not a run state")))?),
        };
        let run = self.run.clone();
        let report = py.detach(move || run.finish_as(state, exit_code)).map_err(|e| raise(py, e))?;
        Ok((report.state.as_str().to_owned(), report.uploaded, report.lines))
    }
}

/// Starts a run. Keyword arguments are prepared by `cairn.init`.
#[pyfunction]
#[pyo3(signature = (**kwargs))]
fn init(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<PyRun> {
    let empty = PyDict::new(py);
    let settings = settings_from(py, kwargs.unwrap_or(&empty))?;
    let run = py.detach(move || cairn_client::init(settings)).map_err(|e| raise(py, e))?;
    Ok(PyRun { run, interrupted: Default::default(), float_keys: Default::default() })
}

/// Uploads a run directory (`cairn sync`). Returns `(run path, records sent)`.
#[pyfunction]
#[pyo3(signature = (dir, base_url = None, api_key = None))]
fn sync_run_dir(py: Python<'_>, dir: String, base_url: Option<String>, api_key: Option<String>) -> PyResult<(String, usize)> {
    let report = py.detach(move || cairn_client::sync::sync_run_dir(std::path::Path::new(&dir), base_url.as_deref(), api_key, &mut |_, _| {})).map_err(|e| raise(py, e))?;
    Ok((report.run_path.to_string(), report.records_sent))
}

/// The key for `base_url`: the one given, else `CAIRN_API_KEY`, else the one `cairn login` saved.
#[pyfunction]
#[pyo3(signature = (base_url, given = None))]
fn resolve_key(base_url: &str, given: Option<String>) -> Option<String> {
    cairn_client::credentials::resolve(given, base_url)
}

/// Checks `key` against the server at `base_url` and saves it for that server (mode 0600);
/// returns the user the key belongs to (None when the server has auth off) and the file.
#[pyfunction]
#[pyo3(signature = (base_url, key, verify = true))]
fn login(py: Python<'_>, base_url: String, key: String, verify: bool) -> PyResult<(Option<String>, String)> {
    let key = key.trim().to_owned();
    cairn_client::credentials::check_format(&key).map_err(|e| raise(py, e))?;
    let user = if verify {
        let api = cairn_client::http::ApiClient::new(&base_url, Some(key.clone()), std::time::Duration::from_secs(30));
        py.detach(|| api.viewer()).map_err(|e| raise(py, e.into()))?.user
    } else {
        None
    };
    let path = cairn_client::credentials::save_key(&base_url, &key).map_err(|e| raise(py, e))?;
    Ok((user, path.display().to_string()))
}

/// Parses YAML text into Python values (for `config="path.yaml"`).
#[pyfunction]
fn parse_yaml<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let json: serde_json::Value = serde_norway::from_str(text).map_err(|e| invalid_value(py, format!("invalid YAML: {e}")))?;
    to_py(py, &cairn_types::Value::from_json(&json))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRun>()?;
    m.add_class::<api::PyApiClient>()?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(sync_run_dir, m)?)?;
    m.add_function(wrap_pyfunction!(parse_yaml, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_key, m)?)?;
    m.add_function(wrap_pyfunction!(login, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
