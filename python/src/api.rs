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

    /// History as columns: `(steps, {name: values}, next_step)`, lists of Python values with None
    /// where a row lacks the key. The fast path for reading many points.
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
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>, Option<i64>)> {
        let p = path(py, run_path)?;
        let client = self.client.clone();
        let columns = py.detach(move || client.history_columns(&p, keys.as_deref(), min_step, max_step, limit, require_all)).map_err(|e| call_err(py, e))?;
        let steps = PyList::new(py, &columns.steps)?;
        let out = PyDict::new(py);
        for column in &columns.columns {
            let values = PyList::empty(py);
            match &column.data {
                ColumnValues::Floats(values_f, present) => {
                    for (v, p) in values_f.iter().zip(present) {
                        if *p {
                            values.append(PyFloat::new(py, *v))?;
                        } else {
                            values.append(py.None())?;
                        }
                    }
                }
                ColumnValues::Values(items) => {
                    for item in items {
                        match item {
                            Some(v) => values.append(to_py(py, v)?)?,
                            None => values.append(py.None())?,
                        }
                    }
                }
            }
            out.set_item(&column.name, values)?;
        }
        Ok((steps, out, columns.next_step))
    }
}
