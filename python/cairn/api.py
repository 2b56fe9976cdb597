"""The query side: ``cairn.Api()``, as wandb's public API.

```python
api = cairn.Api()
run = api.run("nico/awesome-project/1jx1ud12")
df = run.history(keys=["loss"])                # buckets with min and max: never samples away a spike
for row in run.scan_history(keys=["loss"]):    # every row
    ...
for r in api.runs("nico/awesome-project", filters={"config.lr": {"$gt": 0.01}}, order="-summary_metrics.acc"):
    ...
```
"""

from __future__ import annotations

import os

from . import _core, errors, media

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

__all__ = ["Api", "Run", "Runs", "Project"]

_DEFAULT_BASE_URL = "http://127.0.0.1:8080"


def _split_path(path: str, default_entity: Callable[[], str], what: str) -> list[str]:
    """Splits a run or project path; a missing entity is the server's default entity."""
    parts = [p for p in path.strip("/").split("/") if p]
    if what == "run":
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) == 2:
            parts = [default_entity(), *parts]
        if len(parts) != 3:
            raise errors.InvalidValue(f"run path {path!r} is not of the form entity/project/run_id")
    else:
        if len(parts) == 1:
            parts = [default_entity(), *parts]
        if len(parts) != 2:
            raise errors.InvalidValue(f"project path {path!r} is not of the form entity/project")
    return parts


def _frame(rows: list[dict[str, Any]], pandas: bool) -> Any:
    if pandas:
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)
    return rows


class Api:
    """Reads runs from a cairn server.

    ``base_url`` defaults to ``overrides["base_url"]``, then ``CAIRN_BASE_URL``, then
    ``http://127.0.0.1:8080``; ``api_key`` to the key of ``cairn.login``, then ``CAIRN_API_KEY``,
    then the key ``cairn login`` saved for the server.
    """

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> None:
        overrides = dict(overrides or {})
        from . import sdk

        self.base_url = (
            base_url
            or overrides.get("base_url")
            or os.environ.get("CAIRN_BASE_URL")
            or sdk._login_state.get("host")
            or _DEFAULT_BASE_URL
        ).rstrip("/")
        key = api_key or sdk._login_key(self.base_url)
        self._client = _core.ApiClient(self.base_url, _core.resolve_key(self.base_url, key), timeout or 60.0)
        self._default_entity: str | None = overrides.get("entity") or os.environ.get("CAIRN_ENTITY")
        self._project_override: str | None = overrides.get("project") or os.environ.get("CAIRN_PROJECT")

    @property
    def default_entity(self) -> str:
        if self._default_entity is None:
            self._default_entity = self._client.info()["default_entity"]
        return self._default_entity

    def _artifact_path(self, name: str) -> tuple[str, str, str, str]:
        """``[entity/][project/]name[:alias]`` → entity, project, name, version (``latest`` by default)."""
        path, _, version = name.partition(":")
        parts = [p for p in path.split("/") if p]
        if len(parts) == 1:
            project = self._project_override
            if not project:
                raise errors.InvalidValue(f"artifact {name!r} names no project: give project/name:alias, or Api(overrides={{'project': ...}})")
            parts = [project, *parts]
        if len(parts) == 2:
            parts = [self.default_entity, *parts]
        if len(parts) != 3:
            raise errors.InvalidValue(f"artifact {name!r} is not of the form [entity/][project/]name[:alias]")
        return parts[0], parts[1], parts[2], version or "latest"

    def artifact(self, name: str, type: str | None = None) -> Any:
        """An artifact version by ``entity/project/name:alias`` (or ``:v3``; ``latest`` by default)."""
        from urllib.parse import quote

        from .artifacts import Artifact

        entity, project, collection, version = self._artifact_path(name)
        info = self._client.call_json("GET", "/api/v1/artifacts/" + "/".join(quote(x, safe="") for x in (entity, project, collection, version)))
        if type is not None and info["type"] != type:
            raise errors.InvalidValue(f"{name} is a {info['type']!r}, not a {type!r}")
        return Artifact._from_info(info, self._client)

    def artifacts(self, type_name: str, name: str, per_page: int = 50) -> list[Any]:
        """The versions of a collection (``[entity/]project/name``), newest first."""
        from urllib.parse import quote

        from .artifacts import Artifact

        entity, project, collection, _ = self._artifact_path(name)
        rows = self._client.call_json("GET", "/api/v1/artifacts/" + "/".join(quote(x, safe="") for x in (entity, project, collection)))
        return [Artifact._from_info(r, self._client) for r in rows if r["type"] == type_name]

    def artifact_types(self, project: str | None = None) -> list[Any]:
        """The artifact types of a project (``[entity/]project``); each has ``.name``."""
        entity, proj = _split_path(project or self._project_override or "", lambda: self.default_entity, "project")
        names = self._client.call_json("GET", f"/api/v1/projects/{entity}/{proj}/artifact-types")
        return [ArtifactType(self, entity, proj, n) for n in names]

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        try:
            self.artifact(name, type)
            return True
        except errors.NotFound:
            return False

    def run(self, path: str) -> Run:
        """A run by ``entity/project/run_id`` (``entity/project/runs/run_id`` works too)."""
        entity, project, run_id = _split_path(path, lambda: self.default_entity, "run")
        return Run(self, self._client.get_run(f"{entity}/{project}/{run_id}"))

    def runs(
        self,
        path: str,
        filters: Mapping[str, Any] | None = None,
        order: str = "-created_at",
        per_page: int = 50,
    ) -> Runs:
        """The runs of ``entity/project`` that match Mongo-style ``filters``, lazily, page by page.

        Filters: ``$and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex`` over
        ``config.*``, ``summary_metrics.*``, ``state``, ``tags``, ``display_name``,
        ``created_at``, ``runtime`` and ``duration``; a bare name (``val_loss``) is the summary or
        config key of that name, as in W&B. ``order``: a field with ``-`` (descending) or ``+``
        in front.
        """
        entity, project = _split_path(path, lambda: self.default_entity, "project")
        if not isinstance(per_page, int) or per_page < 1:
            raise errors.InvalidValue(f"per_page={per_page!r} must be a positive integer")
        return Runs(self, entity, project, filters, order, per_page)

    def move_runs(self, paths: list[str], to: str) -> list[str]:
        """Moves runs (``entity/project/run_id`` each) to the project ``to`` (``entity/project``,
        or ``project`` of the default entity), created when missing. All move or none: an id that
        the target holds already raises ``cairn.errors.Conflict``, a running run
        ``InvalidValue``. Returns the new paths. The same operation as the UI's "Move to project"
        and ``cairn runs move``."""
        entity, project = _split_path(to, lambda: self.default_entity, "project")
        full = ["/".join(_split_path(p, lambda: self.default_entity, "run")) for p in paths]
        return self._client.move_runs(full, entity, project)

    def projects(self, entity: str | None = None) -> list[Project]:
        return [Project(self, p) for p in self._client.list_projects(entity or self.default_entity)]

    def project(self, name: str, entity: str | None = None) -> Project:
        entity = entity or self.default_entity
        for project in self.projects(entity):
            if project.name == name:
                return project
        raise errors.NotFound(f"project {entity}/{name} not found")


class Project:
    def __init__(self, api: Api, attrs: dict[str, Any]) -> None:
        self._api = api
        self.entity: str = attrs["entity"]
        self.name: str = attrs["name"]
        self.run_count: int = attrs["run_count"]
        self.created_at: str = attrs["created_at"]
        self.last_activity_at: str | None = attrs.get("last_activity_at")

    @property
    def path(self) -> list[str]:
        return [self.entity, self.name]

    def runs(self, **kwargs: Any) -> Runs:
        return self._api.runs(f"{self.entity}/{self.name}", **kwargs)

    def __repr__(self) -> str:
        return f"<Project {self.entity}/{self.name}>"


class Runs:
    """A lazy, paged sequence of runs: iterating fetches pages of ``per_page`` as needed."""

    def __init__(self, api: Api, entity: str, project: str, filters: Mapping[str, Any] | None, order: str, per_page: int) -> None:
        self._api = api
        self.entity, self.project = entity, project
        if filters:
            import json

            self._filter = json.dumps(dict(filters))
        else:
            self._filter = None
        order = (order or "").strip()
        self._sort = [order.replace("summary_metrics.", "summary.")] if order else []
        self._per_page = per_page
        self._loaded: list[Run] = []
        self._total: int | None = None

    def _load_page(self) -> bool:
        """Loads the next page; returns whether it brought anything."""
        if self._total is not None and len(self._loaded) >= self._total:
            return False
        runs, total = self._api._client.search_runs(
            self.entity, self.project, self._filter, self._sort, self._per_page, len(self._loaded)
        )
        self._total = total
        self._loaded.extend(Run(self._api, r) for r in runs)
        return bool(runs)

    def __iter__(self) -> Iterator[Run]:
        i = 0
        while True:
            while i < len(self._loaded):
                yield self._loaded[i]
                i += 1
            if not self._load_page():
                return

    def __len__(self) -> int:
        if self._total is None:
            self._load_page()
        return self._total or 0

    def __getitem__(self, index: int) -> Run:
        if index < 0:
            index += len(self)
        while index >= len(self._loaded) and self._load_page():
            pass
        return self._loaded[index]

    def __repr__(self) -> str:
        return f"<Runs {self.entity}/{self.project} ({len(self)})>"


class Run:
    """A run as the server has it. Edit ``tags``, ``notes``, ``name``, ``group`` or ``job_type`` and
    call ``update()`` to save them."""

    def __init__(self, api: Api, attrs: dict[str, Any]) -> None:
        self._api = api
        self._load(attrs)

    def _load(self, attrs: dict[str, Any]) -> None:
        self._attrs = attrs
        self.entity: str = attrs["entity"]
        self.project: str = attrs["project"]
        self.id: str = attrs["run_id"]
        self.name: str = attrs["name"]
        #: When it said it may be preempted (``mark_preempting``); None otherwise or once resumed.
        self.preempting_at: str | None = attrs.get("preempting_at")
        #: As W&B's: ``preempting`` while a running run has said it may be preempted.
        self.state: str = "preempting" if attrs["state"] == "running" and self.preempting_at else attrs["state"]
        self.config: dict[str, Any] = attrs["config"]
        self.summary: dict[str, Any] = media.typed(attrs["summary"], self)
        self.tags: list[str] = list(attrs["tags"])
        self.notes: str = attrs["notes"]
        self.group: str | None = attrs["group"]
        self.job_type: str | None = attrs["job_type"]
        self.metadata: dict[str, Any] = attrs["metadata"]
        self.created_at: str = attrs["created_at"]
        self.heartbeat_at: str | None = attrs.get("heartbeat_at")
        self.finished_at: str | None = attrs.get("finished_at")
        self.exit_code: int | None = attrs.get("exit_code")
        self.runtime: float = attrs.get("runtime_secs", 0.0)
        #: Seconds the run was active: pauses between a finish and a resume left out.
        self.duration: float = attrs.get("duration_secs", self.runtime)
        self.last_step: int | None = attrs.get("last_step")
        #: The sweep this run is a trial of (when read alone).
        self.sweep_id: str | None = attrs.get("sweep_id")

    @property
    def display_name(self) -> str:
        return self.name

    @display_name.setter
    def display_name(self, value: str) -> None:
        self.name = value

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    @property
    def url(self) -> str:
        return f"{self._api.base_url}/{self.entity}/{self.project}/runs/{self.id}"

    def _path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    def load(self) -> Run:
        """Fetches the run again."""
        self._load(self._api._client.get_run(self._path()))
        return self

    def update(self) -> None:
        """Saves changes to ``tags``, ``notes``, ``name``, ``group`` and ``job_type``."""
        attrs = self._api._client.update_run(
            self._path(),
            name=self.name,
            notes=self.notes,
            tags=[str(t) for t in self.tags],
            group=self.group or "",
            job_type=self.job_type or "",
        )
        self._load(attrs)

    def delete(self, purge: bool = False) -> None:
        """Deletes the run: softly (it disappears, and its id stays taken until the server's
        retention window passes; re-using it raises ``cairn.errors.RunDeleted``), or for good
        with ``purge=True`` (history, console and files; the id is free again). The same
        operation as the UI's delete and ``cairn runs delete`` / ``cairn runs purge``."""
        if purge:
            self._api._client.purge_run(self._path())
        else:
            self._api._client.delete_run(self._path())

    def forks(self) -> list[str]:
        """Ids of the runs forked from this one (``init(fork_from="<id>?_step=N")``)."""
        return self._api._client.list_forks(self._path())

    def alerts(self) -> list[dict[str, Any]]:
        """The run's alerts (``run.alert``), oldest first: title, text, level, time, and how their
        delivery went (``pending``, ``delivered``, ``failed`` or ``stored``)."""
        return self._api._client.list_alerts(self._path())

    def stop(self) -> None:
        """Asks the run's process to stop; it ends as killed at its next heartbeat."""
        self._load(self._api._client.stop_run(self._path()))

    def keys(self) -> list[dict[str, Any]]:
        """The keys the run logged, with counts and ranges."""
        return self._api._client.list_keys(self._path())

    def _numeric_keys(self) -> list[str]:
        return [k["name"] for k in self.keys() if k["stream"] == "history" and k["numeric_count"] > 0]

    def history(
        self,
        keys: list[str] | None = None,
        samples: int | None = 500,
        x_axis: str = "_step",
        pandas: bool = True,
    ) -> Any:
        """At most ``samples`` rows for the numeric ``keys`` (all when None), one per bucket of
        ``x_axis``: each key's mean, with ``<key>_min`` and ``<key>_max`` so that no spike is lost.
        Nothing is sampled at random. A pandas DataFrame when pandas is installed and ``pandas``,
        else a list of dicts.

        ``samples=None`` reads every row, unsampled: ``_step`` and each key (NaN in a DataFrame,
        absent in a dict, where a row lacks it). As a DataFrame it goes from the server's binary
        columns into numpy arrays, with no Python object per point."""
        if samples is None:
            return self._every_row(keys, x_axis, pandas)
        if not isinstance(samples, int) or not 1 <= samples <= 100_000:
            raise errors.InvalidValue(f"samples={samples!r} must be an integer from 1 to 100000, or None for every row")
        keys = list(keys) if keys is not None else self._numeric_keys()
        if not keys:
            return _frame([], pandas)
        result = self._api._client.series(self._path(), keys, x_axis, samples)
        rows: dict[int, dict[str, Any]] = {}
        for series in result["series"]:
            b = series["buckets"]
            key = series["key"]
            for i, index in enumerate(b["index"]):
                row = rows.setdefault(index, {x_axis: b["x"][i]})
                row[key] = b["mean"][i]
                row[f"{key}_min"] = b["min"][i]
                row[f"{key}_max"] = b["max"][i]
        return _frame([rows[i] for i in sorted(rows)], pandas)

    def _every_row(self, keys: list[str] | None, x_axis: str, pandas: bool) -> Any:
        if x_axis != "_step":
            raise errors.InvalidValue(f"x_axis={x_axis!r}: every row (samples=None) is read by _step; read the key {x_axis!r} as one of the keys")
        keys = list(keys) if keys is not None else None
        pd = None
        if pandas:
            try:
                import numpy as np
                import pandas as pd
            except ImportError:
                pd = None
        if pd is None:
            return list(self.scan_history(keys=keys))
        steps, arrays, rich = self._api._client.history_arrays(self._path(), keys)
        data: dict[str, Any] = {"_step": np.frombuffer(steps, dtype="<i8")}
        for name, (values, _present) in arrays.items():
            data[name] = np.frombuffer(values, dtype="<f8")
        if rich:
            # Columns of more than numbers (text, media) come as objects, read for the same rows.
            _, columns, _, _ = self._api._client.history_columns(self._path(), keys)
            for name in rich:
                data[name] = [media.typed(v, self) for v in columns[name]]
        return pd.DataFrame(data, copy=False)

    def scan_history(
        self,
        keys: list[str] | None = None,
        page_size: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row from ``min_step`` up to ``max_step`` (exclusive), fetched ``page_size`` rows
        at a time (by default as many as make about a million values). With ``keys``, only rows
        that hold all of them, with ``_step`` and those keys."""
        if page_size is not None and (not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1):
            raise errors.InvalidValue(f"page_size={page_size!r} must be a positive integer")
        keys = list(keys) if keys is not None else None
        if page_size is None:
            width = len(keys) if keys is not None else max(1, sum(1 for k in self.keys() if k["stream"] == "history"))
            page_size = max(1000, 1_000_000 // width)
        cursor = min_step
        while True:
            rows, next_step, rich = self._api._client.history_rows(self._path(), keys, cursor, max_step, page_size, keys is not None)
            if rich:
                for row in rows:
                    for name in rich:
                        if name in row:
                            row[name] = media.typed(row[name], self)
            yield from rows
            if next_step is None:
                return
            cursor = next_step

    def history_columns(
        self, keys: list[str] | None = None, min_step: int | None = None, max_step: int | None = None
    ) -> dict[str, list[Any]]:
        """Every point of ``keys`` as columns: ``{"_step": [...], key: [...]}`` (None where a row
        lacks a key). The fast way to read a long history into lists."""
        steps, columns, _, rich = self._api._client.history_columns(self._path(), keys, min_step, max_step)
        for name in rich:
            columns[name] = media.typed(columns[name], self)
        return {"_step": steps, **columns}

    def files(self) -> list[File]:
        """The run's files (saved with ``run.save``, logged media, the client's own)."""
        listed = self._api._client.call_json("GET", f"/api/v1/runs/{self._path()}/files", None)
        return [File(self, f) for f in listed]

    def logged_artifacts(self) -> list[Any]:
        """The artifact versions this run logged (W&B's ``run.logged_artifacts()``)."""
        return self._artifacts("outputs")

    def used_artifacts(self) -> list[Any]:
        """The artifact versions this run used (W&B's ``run.used_artifacts()``)."""
        return self._artifacts("inputs")

    def _artifacts(self, side: str) -> list[Any]:
        from .artifacts import Artifact

        listed = self._api._client.call_json("GET", f"/api/v1/runs/{self._path()}/artifacts", None)
        return [Artifact._from_info(info, self._api._client) for info in listed[side]]

    def file(self, name: str) -> File:
        """One of the run's files by name."""
        for f in self.files():
            if f.name == name:
                return f
        raise errors.NotFound(f"run {self._path()} has no file {name!r}")

    def __repr__(self) -> str:
        return f"<Run {self._path()} ({self.state})>"


class File:
    """A run file: ``name``, ``size``, ``sha256``, and ``download(root)``."""

    def __init__(self, run: Run, attrs: dict[str, Any]) -> None:
        self._run = run
        self.name: str = attrs["path"]
        self.size: int = attrs.get("size", 0)
        self.sha256: str | None = attrs.get("sha256")

    def download(self, root: str = ".", replace: bool = False) -> str:
        """Downloads the file to ``root/<name>`` (checked against its sha256); returns the path.
        An existing file is kept unless ``replace``."""
        import os

        dest = os.path.join(root, self.name)
        if os.path.exists(dest) and not replace:
            raise errors.InvalidValue(f"{dest} exists; pass replace=True to overwrite it")
        self._run._api._client.download_file(self._run._path(), self.name, dest, self.sha256)
        return dest

    def __repr__(self) -> str:
        return f"<File {self.name} ({self.size} bytes)>"


class ArtifactType:
    """An artifact type of a project: its ``name`` and its ``collections()``."""

    def __init__(self, api: Api, entity: str, project: str, name: str) -> None:
        self._api, self.entity, self.project, self.name = api, entity, project, name

    def collections(self) -> list[dict[str, Any]]:
        return self._api._client.call_json("GET", f"/api/v1/projects/{self.entity}/{self.project}/artifacts?type={self.name}")

    def __repr__(self) -> str:
        return f"<ArtifactType {self.name}>"
