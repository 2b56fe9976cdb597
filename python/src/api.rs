//! The query side for `cairn.Api`: a thin wrapper over the client's HTTP API. Answers come back as
//! plain Python values; `cairn/api.py` builds the public classes on top.

use std::time::Duration;

use cairn_client::http::{ApiClient, CallError};
use cairn_types::RunPath;
use cairn_types::api::{RunPatch, RunSearch, SeriesQuery};
use cairn_types::wire::ColumnValues;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList};

use crate::convert::{json_to_py, to_py};
use crate::raise;

fn call_err(py: Python<'_>, e: CallError) -> PyErr {
    raise(py, e.into())
}

fn path(py: Python<'_>, text: &str) -> PyResult<RunPath> {
    RunPath::parse(text).map_err(|e| raise(py, e.into()))
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("API types serialize")
}

#[pyclass(name = "ApiClient", module = "cairn._core", frozen)]
pub struct PyApiClient {
    client: ApiClient,
}

impl PyApiClient {
    pub(crate) fn from_client(client: ApiClient) -> PyApiClient {
        PyApiClient { client }
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_columns(
        &self,
        py: Python<'_>,
        run_path: &str,
        keys: Option<Vec<String>>,
        min_step: Option<i64>,
        max_step: Option<i64>,
        limit: usize,
        require_all: bool,
    ) -> PyResult<cairn_types::wire::Columns> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        py.detach(move || client.history_columns(&p, keys.as_deref(), min_step, max_step, limit, require_all)).map_err(|e| call_err(py, e))
    }
}

#[pymethods]
impl PyApiClient {
    #[new]
    #[pyo3(signature = (base_url, api_key = None, timeout = 60.0))]
    fn new(base_url: &str, api_key: Option<String>, timeout: f64) -> PyApiClient {
        PyApiClient { client: ApiClient::new(base_url, api_key, Duration::from_secs_f64(timeout.max(0.1))) }
    }

    #[getter]
    fn base_url(&self) -> String {
        self.client.base_url().to_owned()
    }

    /// Any JSON call of the API: `method`, a path from `/api/v1/...`, a JSON body as text.
    #[pyo3(signature = (method, path, body = None))]
    fn call_json<'py>(&self, py: Python<'py>, method: String, path: String, body: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let body = match body {
            Some(text) => Some(serde_json::from_str::<serde_json::Value>(&text).map_err(|e| crate::invalid_value(py, format!("not JSON: {e}")))?),
            None => None,
        };
        let client = self.client.clone();
        let out = py.detach(move || client.call_json(&method, &path, body.as_ref())).map_err(|e| call_err(py, e))?;
        json_to_py(py, &out)
    }

    /// Logs an artifact version: `files` as `(name, local path)`, `references` as manifest
    /// entries (`{"path", "digest", "size", "ref"}`), contents uploaded in parallel.
    #[pyo3(signature = (entity, project, run_id, name, kind, description, metadata, files, references, aliases))]
    #[allow(clippy::too_many_arguments)]
    fn log_artifact<'py>(
        &self,
        py: Python<'py>,
        entity: String,
        project: String,
        run_id: Option<String>,
        name: String,
        kind: String,
        description: Option<String>,
        metadata: &Bound<'py, PyDict>,
        files: Vec<(String, String)>,
        references: String,
        aliases: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut draft = cairn_client::artifacts::ArtifactDraft::new(&name, &kind).map_err(|e| raise(py, e))?;
        draft.description = description;
        draft.metadata = crate::convert::dict_to_map(metadata, "metadata")?;
        draft.files = files.into_iter().map(|(n, p)| (n, std::path::PathBuf::from(p))).collect();
        draft.references = serde_json::from_str(&references).map_err(|e| crate::invalid_value(py, format!("references: {e}")))?;
        let client = self.client.clone();
        let info = py.detach(move || cairn_client::artifacts::log_artifact(&client, &entity, &project, run_id.as_deref(), &draft, &aliases)).map_err(|e| raise(py, e))?;
        json_to_py(py, &to_json(&info))
    }

    /// Downloads a version's stored files into `root` (digests checked); returns `(path, local)`.
    fn download_artifact(&self, py: Python<'_>, info: String, root: String) -> PyResult<Vec<(String, Option<String>)>> {
        let info: cairn_types::artifacts::ArtifactInfo = serde_json::from_str(&info).map_err(|e| crate::invalid_value(py, format!("artifact: {e}")))?;
        let client = self.client.clone();
        let files = py.detach(move || cairn_client::artifacts::download_artifact(&client, &info, std::path::Path::new(&root))).map_err(|e| raise(py, e))?;
        Ok(files.into_iter().map(|(p, l)| (p, l.map(|l| l.display().to_string()))).collect())
    }

    /// Downloads a run file to `dest` (through a temporary file beside it, checked against
    /// `sha256` when given); returns the bytes written.
    #[pyo3(signature = (run_path, name, dest, sha256=None))]
    fn download_file(&self, py: Python<'_>, run_path: &str, name: String, dest: String, sha256: Option<String>) -> PyResult<u64> {
        let run = path(py, run_path)?;
        let client = self.client.clone();
        let result = py.detach(move || cairn_client::files::download_run_file(&client, &run, &name, std::path::Path::new(&dest), sha256.as_deref()));
        result.map_err(|e| raise(py, e))
    }

    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let info = py.detach(move || client.info()).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&info))
    }

    fn list_entities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let out = py.detach(move || client.list_entities()).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&out))
    }

    fn list_projects<'py>(&self, py: Python<'py>, entity: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let out = py.detach(move || client.list_projects(&entity)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&out))
    }

    fn get_run<'py>(&self, py: Python<'py>, run_path: &str) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let run = py.detach(move || client.get_run(&p)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&run))
    }

    #[pyo3(signature = (run_path, name = None, notes = None, tags = None, group = None, job_type = None))]
    fn update_run<'py>(
        &self,
        py: Python<'py>,
        run_path: &str,
        name: Option<String>,
        notes: Option<String>,
        tags: Option<Vec<String>>,
        group: Option<String>,
        job_type: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let patch = RunPatch { name, notes, tags, group, job_type };
        let run = py.detach(move || client.update_run(&p, &patch)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&run))
    }

    fn delete_run(&self, py: Python<'_>, run_path: &str) -> PyResult<()> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        py.detach(move || client.delete_run(&p)).map_err(|e| call_err(py, e))
    }

    fn move_runs(&self, py: Python<'_>, run_paths: Vec<String>, entity: String, project: String) -> PyResult<Vec<String>> {
        let paths = run_paths.iter().map(|p| path(py, p)).collect::<PyResult<Vec<_>>>()?;
        let client = self.client.clone();
        let moved = py.detach(move || client.move_runs(&paths, &entity, &project)).map_err(|e| call_err(py, e))?;
        Ok(moved.iter().map(ToString::to_string).collect())
    }

    fn list_forks(&self, py: Python<'_>, run_path: &str) -> PyResult<Vec<String>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        py.detach(move || client.list_forks(&p)).map_err(|e| call_err(py, e))
    }

    fn list_alerts<'py>(&self, py: Python<'py>, run_path: &str) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let alerts = py.detach(move || client.list_alerts(&p)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&alerts))
    }

    fn purge_run(&self, py: Python<'_>, run_path: &str) -> PyResult<()> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        py.detach(move || client.purge_run(&p)).map_err(|e| call_err(py, e))
    }

    fn stop_run<'py>(&self, py: Python<'py>, run_path: &str) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let run = py.detach(move || client.stop_run(&p)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&run))
    }

    /// Returns `(runs, total)`; `filter` is the filter as JSON text.
    #[pyo3(signature = (entity, project, filter = None, sort = Vec::new(), limit = 50, offset = 0))]
    fn search_runs<'py>(
        &self,
        py: Python<'py>,
        entity: String,
        project: String,
        filter: Option<String>,
        sort: Vec<String>,
        limit: usize,
        offset: usize,
    ) -> PyResult<(Bound<'py, PyAny>, u64)> {
        let filter = match filter {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| raise(py, cairn_client::ClientError::new(cairn_client::ErrorKind::InvalidValue, format!("filters are not valid JSON: {e}"))))?,
            ),
            None => None,
        };
        let search = RunSearch { filter, sort, limit: Some(limit), offset: Some(offset) };
        let client = self.client.clone();
        let page = py.detach(move || client.search_runs(&entity, &project, &search)).map_err(|e| call_err(py, e))?;
        Ok((json_to_py(py, &to_json(&page.runs))?, page.total))
    }

    fn list_keys<'py>(&self, py: Python<'py>, run_path: &str) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let keys = py.detach(move || client.list_keys(&p)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&keys))
    }

    #[pyo3(signature = (run_path, keys, x = None, buckets = None, x_min = None, x_max = None))]
    fn series<'py>(
        &self,
        py: Python<'py>,
        run_path: &str,
        keys: Vec<String>,
        x: Option<String>,
        buckets: Option<u32>,
        x_min: Option<f64>,
        x_max: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let query = SeriesQuery { keys: keys.join(","), x, buckets, x_min, x_max };
        let result = py.detach(move || client.series(&p, &query)).map_err(|e| call_err(py, e))?;
        json_to_py(py, &to_json(&result))
    }

    /// History as columns: `(steps, {name: values}, next_step, rich)`, lists of Python values
    /// with None where a row lacks the key; `rich` names the columns that hold more than numbers
    /// (the Python layer makes media objects of those). The fast path for reading many points.
    #[pyo3(signature = (run_path, keys = None, min_step = None, max_step = None, limit = 10_000_000, require_all = false))]
    fn history_columns<'py>(
        &self,
        py: Python<'py>,
        run_path: &str,
        keys: Option<Vec<String>>,
        min_step: Option<i64>,
        max_step: Option<i64>,
        limit: usize,
        require_all: bool,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>, Option<i64>, Vec<String>)> {
        let columns = self.fetch_columns(py, run_path, keys, min_step, max_step, limit, require_all)?;
        let steps = PyList::new(py, &columns.steps)?;
        let out = PyDict::new(py);
        for column in &columns.columns {
            let values = match &column.data {
                ColumnValues::Floats(values, present) => {
                    PyList::new(py, values.iter().zip(present).map(|(v, p)| if *p { PyFloat::new(py, *v).into_any() } else { py.None().into_bound(py) }))?
                }
                ColumnValues::Values(items) => {
                    let items = items.iter().map(|item| match item {
                        Some(v) => to_py(py, v),
                        None => Ok(py.None().into_bound(py)),
                    });
                    PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)?
                }
            };
            out.set_item(&column.name, values)?;
        }
        Ok((steps, out, columns.next_step, rich_columns(&columns)))
    }

    /// History as rows: `(rows, next_step, rich)`, a dict per row with `_step` and the keys it
    /// holds (what `scan_history` yields), made here rather than from columns in Python.
    #[pyo3(signature = (run_path, keys = None, min_step = None, max_step = None, limit = 10_000_000, require_all = false))]
    fn history_rows<'py>(
        &self,
        py: Python<'py>,
        run_path: &str,
        keys: Option<Vec<String>>,
        min_step: Option<i64>,
        max_step: Option<i64>,
        limit: usize,
        require_all: bool,
    ) -> PyResult<(Bound<'py, PyList>, Option<i64>, Vec<String>)> {
        let columns = self.fetch_columns(py, run_path, keys, min_step, max_step, limit, require_all)?;
        let step_key = pyo3::intern!(py, "_step");
        let names = columns.columns.iter().map(|c| pyo3::types::PyString::new(py, &c.name)).collect::<Vec<_>>();
        let mut rows = Vec::with_capacity(columns.steps.len());
        for (i, step) in columns.steps.iter().enumerate() {
            let row = PyDict::new(py);
            row.set_item(step_key, step)?;
            for (column, name) in columns.columns.iter().zip(&names) {
                match &column.data {
                    ColumnValues::Floats(values, present) if present[i] => row.set_item(name, PyFloat::new(py, values[i]))?,
                    ColumnValues::Values(items) if items[i].as_ref().is_some_and(|v| !matches!(v, cairn_types::value::Value::Null)) => {
                        row.set_item(name, to_py(py, items[i].as_ref().expect("present"))?)?
                    }
                    _ => {}
                }
            }
            rows.push(row);
        }
        Ok((PyList::new(py, rows)?, columns.next_step, rich_columns(&columns)))
    }

    /// History as arrays for numpy: `(steps, {name: (values, present)}, rich)` where `steps` is
    /// little-endian int64 bytes, each number column little-endian float64 bytes (NaN where a
    /// row lacks the key) with one byte per row that says whether it has it, and `rich` names the
    /// columns left out because they hold more than numbers. No Python object per point.
    #[pyo3(signature = (run_path, keys = None, min_step = None, max_step = None))]
    fn history_arrays<'py>(
        &self,
        py: Python<'py>,
        run_path: &str,
        keys: Option<Vec<String>>,
        min_step: Option<i64>,
        max_step: Option<i64>,
    ) -> PyResult<(Bound<'py, pyo3::types::PyBytes>, Bound<'py, PyDict>, Vec<String>)> {
        let columns = self.fetch_columns(py, run_path, keys, min_step, max_step, 10_000_000, false)?;
        let steps = pyo3::types::PyBytes::new_with(py, columns.steps.len() * 8, |out| {
            for (chunk, step) in out.chunks_exact_mut(8).zip(&columns.steps) {
                chunk.copy_from_slice(&step.to_le_bytes());
            }
            Ok(())
        })?;
        let out = PyDict::new(py);
        for column in &columns.columns {
            if let ColumnValues::Floats(values, present) = &column.data {
                let values = pyo3::types::PyBytes::new_with(py, values.len() * 8, |out| {
                    for ((chunk, v), p) in out.chunks_exact_mut(8).zip(values).zip(present) {
                        chunk.copy_from_slice(&(if *p { *v } else { f64::NAN }).to_le_bytes());
                    }
                    Ok(())
                })?;
                let present = pyo3::types::PyBytes::new_with(py, present.len(), |out| {
                    for (b, p) in out.iter_mut().zip(present) {
                        *b = *p as u8;
                    }
                    Ok(())
                })?;
                out.set_item(&column.name, (values, present))?;
            }
        }
        Ok((steps, out, rich_columns(&columns)))
    }
}

/// The columns that hold more than numbers.
fn rich_columns(columns: &cairn_types::wire::Columns) -> Vec<String> {
    columns.columns.iter().filter(|c| matches!(c.data, ColumnValues::Values(_))).map(|c| c.name.clone()).collect()
}
