"""The run API: ``init``, ``Run``, ``Config``, ``Summary``, and what happens when the process ends.

Everything that touches data is in Rust (``cairn._core``): the write-ahead log, the upload, W&B's
step and commit rules, the summary. This module shapes it like W&B.
"""

from __future__ import annotations

import _thread
import atexit
import enum
import json
import os
import signal
import sys
import threading

from . import _core, errors, media

# Keep `import cairn` fast: no typing, json, argparse or platform at import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

__all__ = ["AlertLevel", "Settings", "Run", "Config", "Summary", "init", "finish", "log", "define_metric", "save"]

# W&B settings that cairn accepts for compatibility and has no use for.
_IGNORED_WANDB_SETTINGS = frozenset(
    {
        "start_method",
        "anonymous",
        "code_dir",
        "disable_git",
        "disable_code",
        "disable_job_creation",
        "show_info",
        "show_warnings",
        "show_errors",
        "quiet",
        "_disable_stats",
        "_disable_meta",
        "x_disable_stats",
        "x_disable_meta",
        "_service_wait",
        "program",
    }
)


class AlertLevel(str, enum.Enum):
    """How serious an alert is (W&B's ``wandb.AlertLevel``)."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Settings:
    """Settings for ``init``. Those not given come from the ``CAIRN_*`` environment variables.

    ``base_url``: the server (``CAIRN_BASE_URL``, default ``http://127.0.0.1:8080``).
    ``api_key``: sent as a bearer token (``CAIRN_API_KEY``).
    ``mode``: ``online``, ``offline`` or ``disabled`` (``CAIRN_MODE``).
    ``silent``: no terminal output (``CAIRN_SILENT``).
    ``heartbeat_interval``, ``finish_timeout``, ``init_timeout``: seconds.
    ``console``: ``auto`` (default; stdout and stderr are captured at the file-descriptor level
    and still shown) or ``off`` (``CAIRN_CONSOLE``).
    ``stats_sampling_interval`` (W&B's ``x_stats_sampling_interval``): seconds between samples
    of system metrics, 0 for none (``CAIRN_STATS_INTERVAL``, default 10).
    ``save_code``: in a Jupyter notebook, save the notebook with the run (``CAIRN_SAVE_CODE``).
    """

    _FIELDS = (
        "base_url",
        "api_key",
        "mode",
        "silent",
        "heartbeat_interval",
        "finish_timeout",
        "init_timeout",
        "console",
        "stats_sampling_interval",
        "save_code",
    )
    _ALIASES = {"x_stats_sampling_interval": "stats_sampling_interval", "_stats_sample_rate_seconds": "stats_sampling_interval"}

    def __init__(self, **kwargs: Any) -> None:
        for key in self._FIELDS:
            setattr(self, key, None)
        self.update(kwargs)

    def update(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            key = self._ALIASES.get(key, key)
            if key in self._FIELDS:
                setattr(self, key, value)
            elif key in _IGNORED_WANDB_SETTINGS:
                _debug("setting %s=%r: a W&B setting cairn has no use for, accepted and ignored", key, value)
            else:
                raise errors.InvalidSetting(f"unknown setting {key!r}; cairn knows {', '.join(self._FIELDS)}")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._FIELDS if getattr(self, k) is not None}

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _print(lines: list[str], silent: bool) -> None:
    if silent or _env_true("CAIRN_SILENT") or not lines:
        return
    stream = sys.stderr
    for line in lines:
        print(line, file=stream)
    stream.flush()


def _is_mapping(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    from collections.abc import Mapping

    return isinstance(value, Mapping)


def _config_dict(config: Any, what: str = "config") -> dict[str, Any]:
    """A config given as a dict, an argparse.Namespace, or the path of a YAML or JSON file."""
    if config is None:
        return {}
    argparse = sys.modules.get("argparse")
    if argparse is not None and isinstance(config, argparse.Namespace):
        return dict(vars(config))
    if _is_mapping(config):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise errors.InvalidValue(f"cannot read the config file {path!r}: {e.strerror}") from None
        if path.endswith(".json"):
            import json

            loaded = json.loads(text)
        else:
            loaded = _core.parse_yaml(text)
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise errors.InvalidValue(f"{what} file {path!r} must hold a mapping, not a {type(loaded).__name__}")
        # W&B's config-defaults.yaml form: {key: {"value": v, "desc": "..."}}.
        out = {}
        for key, value in loaded.items():
            if key in ("wandb_version", "_wandb"):
                continue
            if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
                value = value["value"]
            out[key] = value
        return out
    raise errors.InvalidValue(
        f"{what} must be a dict, an argparse.Namespace or the path of a YAML file, not {type(config).__name__}"
    )


class Config:
    """The run's config: attribute and item access, ``update()`` and ``setdefaults()``.

    Changing a key that has a value raises ``cairn.errors.ConfigError`` unless
    ``allow_val_change=True``.
    """

    def __init__(self, run: Run) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_cache", run._core.config_dict())

    def update(self, values: Any = None, allow_val_change: bool = False, **kwargs: Any) -> None:
        update = _config_dict(values)
        update.update(kwargs)
        if update:
            self._run._core.update_config(update, allow_val_change)
            self._cache.update(update)

    def setdefaults(self, values: Any) -> None:
        """Sets the keys that have no value yet; leaves the others as they are."""
        missing = {k: v for k, v in _config_dict(values).items() if k not in self._cache}
        self.update(missing)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._cache)

    def keys(self):  # noqa: ANN201
        return self._cache.keys()

    def values(self):  # noqa: ANN201
        return self._cache.values()

    def items(self):  # noqa: ANN201
        return self._cache.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._cache.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._cache[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._cache:
            raise KeyError(key)
        self._run._core.remove_config([key])
        del self._cache[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def __eq__(self, other: object) -> bool:
        return self._cache == (other._cache if isinstance(other, Config) else other)

    def __repr__(self) -> str:
        return f"Config({self._cache!r})"


class Summary:
    """The run's summary, dict-like. A key defaults to its last logged value (or to what
    ``define_metric`` says); setting a key overrides it until the key is logged again."""

    def __init__(self, run: Run) -> None:
        object.__setattr__(self, "_run", run)

    def _dict(self) -> dict[str, Any]:
        return media.typed(self._run._core.summary_dict())

    def update(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        update = dict(values or {})
        update.update(kwargs)
        if update:
            self._run._core.update_summary(update)

    def as_dict(self) -> dict[str, Any]:
        return self._dict()

    def keys(self):  # noqa: ANN201
        return self._dict().keys()

    def values(self):  # noqa: ANN201
        return self._dict().values()

    def items(self):  # noqa: ANN201
        return self._dict().items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._dict().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._dict():
            raise KeyError(key)
        self._run._core.update_summary({}, [key])

    def __getattr__(self, key: str) -> Any:
        try:
            return self._dict()[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"Summary({self._dict()!r})"


class Run:
    """A run, as ``cairn.init`` returns it.

    ``run.log(data, step=None, commit=None)`` goes straight to the Rust client: it writes to the
    run directory's write-ahead log and returns without waiting on the network.
    """

    def __init__(self, core: _core.Run, silent: bool) -> None:
        self._core = core
        self._silent = silent
        self._finished = False
        self._requirements: threading.Thread | None = None
        self._tags: tuple[str, ...] = ()
        self._notes = ""
        self._group: str | None = None
        self._job_type: str | None = None
        # In a notebook kernel: the wrapped Python streams, logged while the run is open.
        self._tees: Any = None
        # The hot path: a bound method of the extension, called without a Python frame in between.
        self.log = core.bound_log()
        self.config = Config(self)
        self.summary = Summary(self)

    # Identity -----------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def name(self) -> str:
        return self._core.name

    @name.setter
    def name(self, value: str) -> None:
        self._core.update(name=value)

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def entity(self) -> str | None:
        return self._core.entity

    @property
    def project(self) -> str | None:
        return self._core.project

    @property
    def path(self) -> str | None:
        """``entity/project/run_id``."""
        return self._core.path

    @property
    def url(self) -> str | None:
        return self._core.url

    def get_url(self) -> str | None:
        return self.url

    @property
    def project_url(self) -> str | None:
        return self._core.project_url

    def get_project_url(self) -> str | None:
        return self.project_url

    @property
    def dir(self) -> str | None:
        """The run directory (``<dir>/cairn/run-YYYYMMDD_HHMMSS-<id>``)."""
        return self._core.dir

    @property
    def mode(self) -> str:
        return self._core.mode

    @property
    def offline(self) -> bool:
        return self._core.mode == "offline"

    @property
    def disabled(self) -> bool:
        return self._core.mode == "disabled"

    @property
    def step(self) -> int:
        """The step the next ``log`` without a step goes to."""
        return self._core.step

    # Editable fields ----------------------------------------------------------------------------

    @property
    def notes(self) -> str:
        return self._notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._core.update(notes=value)
        self._notes = value

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Any) -> None:
        tags = tuple(value)
        if not all(isinstance(t, str) for t in tags):
            raise errors.InvalidValue(f"tags must be strings, got {list(tags)!r}")
        self._core.update(tags=list(tags))
        self._tags = tags

    @property
    def group(self) -> str | None:
        return self._group

    @group.setter
    def group(self, value: str | None) -> None:
        self._core.update(group=value or "")
        self._group = value or None

    @property
    def job_type(self) -> str | None:
        return self._job_type

    @job_type.setter
    def job_type(self, value: str | None) -> None:
        self._core.update(job_type=value or "")
        self._job_type = value or None

    # Logging ------------------------------------------------------------------------------------

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        hidden: bool = False,
        **_ignored: Any,
    ) -> None:
        """How ``name``'s summary is computed (``min``, ``max``, ``mean``, ``first``, ``last``,
        ``none``, or several joined by commas) and which key its charts use as x-axis. ``name``
        may end with ``*``."""
        self._core.define_metric(name, step_metric, summary, hidden)

    # Ending -------------------------------------------------------------------------------------

    # Artifacts ----------------------------------------------------------------------------------

    def _artifact_client(self, what: str) -> Any:
        if self._core.path is None:
            raise errors.UsageError(f"{what} needs the server: this run is {self._core.mode} (artifacts are not logged offline yet)")
        return self._core.api()

    def log_artifact(
        self,
        artifact_or_path: Any,
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
        **_ignored: Any,
    ) -> Any:
        """Logs an artifact (or a file or directory, as one) as an output of this run; returns
        it, logged: ``artifact.version`` is its ``vN``, the same content as before the same."""
        from . import artifacts

        art = artifact_or_path if isinstance(artifact_or_path, artifacts.Artifact) else artifacts.from_path(artifact_or_path, name, type)
        entity, project, run_id = self._core.path.split("/") if self._core.path else (None, None, None)
        try:
            return artifacts.log(self._artifact_client("log_artifact"), entity, project, run_id, art, aliases)
        finally:
            artifacts.cleanup_tmp(art)

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, aliases: list[str] | None = None, **_ignored: Any) -> Any:
        """Records that this run uses an artifact version (``name:alias``, ``name:v3``,
        ``entity/project/name:alias`` or a logged Artifact) and returns it, ready to download."""
        from . import artifacts

        client = self._artifact_client("use_artifact")
        if isinstance(artifact_or_name, artifacts.Artifact):
            if artifact_or_name._info is None:
                self.log_artifact(artifact_or_name, aliases=aliases)
            reference = artifact_or_name.qualified_name
        else:
            reference = str(artifact_or_name)
            if ":" not in reference.rsplit("/", 1)[-1]:
                reference += ":latest"
        info = client.call_json("POST", f"/api/v1/runs/{self._core.path}/artifacts/used", json.dumps({"artifact": reference}))
        if type is not None and info["type"] != type:
            raise errors.InvalidValue(f"{reference} is a {info['type']!r}, not a {type!r}")
        return artifacts.Artifact._from_info(info, client)

    def log_model(self, path: Any, name: str | None = None, aliases: list[str] | None = None) -> Any:
        """Logs a model file or directory as an artifact of type ``model``."""
        return self.log_artifact(path, name=name, type="model", aliases=aliases)

    def use_model(self, name: str) -> str:
        """Uses a model artifact and returns the local path of its download (the file, when it
        has one)."""
        art = self.use_artifact(name)
        stored = [e for e in art.files() if e.ref is None]
        root = art.download()
        return os.path.join(root, stored[0].path) if len(stored) == 1 else root

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Ends the run: finished when ``exit_code`` is 0 or None, failed otherwise."""
        self._finish(exit_code, None, quiet)

    def _finish(self, exit_code: int | None, state: str | None, quiet: bool | None = None) -> None:
        if self._finished:
            return
        if self.__dict__.get("_watches"):
            # What the hooks took before the end belongs to the run.
            self.unwatch()
        self._finished = True
        if self._requirements is not None and state != "killed":
            try:
                self._requirements.join(timeout=10)
            except KeyboardInterrupt:
                pass  # the run still finishes; requirements.txt may be missing
        # What Python still buffers belongs to the run's console log.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a closed or replaced stream
                pass
        if self._tees is not None:
            from . import _notebook

            _notebook.detach(self._tees)
            self._tees = None
        _, _, lines = self._core.finish(exit_code, state)
        _print(lines, self._silent or bool(quiet))
        _forget(self)

    # Alerts -----------------------------------------------------------------------------------

    def alert(self, title: str, text: str, level: str | AlertLevel = "INFO", wait_duration: Any = 60) -> bool:
        """Raises an alert, as W&B's ``run.alert``: stored with the run, shown in the UI, and
        delivered by the server to its targets (a Slack-compatible webhook, email). ``level``:
        ``INFO``, ``WARN`` or ``ERROR`` (or ``cairn.AlertLevel``). Within ``wait_duration``
        (seconds or a ``timedelta``) the same title is sent once: a repeat returns False.
        Delivery happens on the server: a target that fails is retried there, never here."""
        if hasattr(wait_duration, "total_seconds"):
            wait_duration = wait_duration.total_seconds()
        if not isinstance(wait_duration, (int, float)) or isinstance(wait_duration, bool):
            raise errors.InvalidValue(f"wait_duration must be seconds or a timedelta, not {wait_duration!r}")
        level = getattr(level, "value", level)
        if not isinstance(title, str) or not isinstance(text, str):
            raise errors.InvalidValue(f"an alert's title and text must be strings, got {title!r} and {type(text).__name__}")
        return self._core.alert(title, text, str(level), float(wait_duration))

    def watch(
        self,
        models: Any,
        criterion: Any = None,
        log: str | None = "gradients",
        log_freq: int = 1000,
        idx: int | None = None,
        log_graph: bool = False,
    ) -> None:
        """Logs histograms of a torch model's gradients (``log="gradients"``), parameters
        (``"parameters"``) or both (``"all"``) every ``log_freq`` steps, as ``wandb.watch``:
        ``gradients/<name>`` and ``parameters/<name>``. The histograms are computed by a worker
        thread, from copies the hooks take. ``criterion`` and ``log_graph`` are accepted and
        ignored."""
        from . import _watch

        _watch.watch(self, models, criterion, log, log_freq, idx, log_graph)

    def unwatch(self, models: Any = None) -> None:
        """Removes ``watch``'s hooks from ``models`` (every watched model when None), after
        logging the histograms still being computed."""
        from . import _watch

        _watch.unwatch(self, models)

    def mark_preempting(self) -> None:
        """Tells the server that this run may be preempted and go silent, as W&B's
        ``run.mark_preempting``: the run shows as preempting, and the server waits its longer
        preempting timeout (10 minutes by default) for the next sign of life before it marks the
        run crashed. Resume it (``resume="allow"`` with its id) to carry on."""
        self._core.mark_preempting()

    # Code -------------------------------------------------------------------------------------

    def log_code(
        self,
        root: str | os.PathLike[str] | None = ".",
        name: str | None = None,
        include_fn: Callable[..., bool] | None = None,
        exclude_fn: Callable[..., bool] | None = None,
    ) -> Any:
        """Saves the source code as a ``code`` artifact of this run, as W&B's ``run.log_code``:
        by default every ``*.py`` under ``root``, minus virtual environments, hidden folders and
        run directories. ``include_fn(path, root)`` and ``exclude_fn(path, root)`` choose files
        (``exclude_fn`` wins). Returns the logged artifact, or None when no file matched."""
        from . import artifacts

        base = os.path.abspath(os.fspath(root if root is not None else "."))
        include = include_fn or (lambda path, root=None: path.endswith(".py"))
        exclude = exclude_fn or (lambda path, root=None: False)
        files = [(p, os.path.relpath(p, base)) for p in _code_files(base) if include(p, base) and not exclude(p, base)]
        if not files:
            return None
        program = os.path.splitext(os.path.basename(sys.argv[0] or "code"))[0] or "code"
        default = f"source-{self.project or 'project'}-{program}"
        art = artifacts.Artifact(_artifact_name(name or default), type="code")
        for path, rel in files:
            art.add_file(path, name=rel.replace(os.sep, "/"))
        return self.log_artifact(art)

    def restore(self, name: str, run_path: str | None = None, replace: bool = False, root: str | os.PathLike[str] | None = None) -> Any:
        """Downloads ``name``, a file saved by the run ``run_path`` (``entity/project/run_id``;
        by default this run) into ``root`` (by default this run's directory), unless it is there
        already and not ``replace``; returns it opened for reading, as W&B does."""
        return restore(name, run_path or self.path, replace, root if root is not None else self.dir)

    # Files ------------------------------------------------------------------------------------

    def save(self, glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None, policy: str = "live") -> list[str]:
        """Saves files with the run, as W&B's ``run.save``. ``glob_str`` is a path or a glob;
        names in the run are relative to ``base_path`` (by default the folder before the first
        wildcard). ``policy``: ``"live"`` uploads now and again whenever the file changes,
        ``"now"`` once now, ``"end"`` when the run ends. Uploads stream from disk, resume after
        an interruption, and store each content once on the server. Returns the names matched now."""
        if policy not in ("live", "now", "end"):
            raise errors.InvalidValue(f'policy {policy!r} must be "live", "now" or "end"')
        base = os.fspath(base_path) if base_path is not None else None
        return self._core.save(os.fspath(glob_str), base, policy)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self._finish(130, "killed")
        else:
            self._finish(1, "failed")
        return False

    def __repr__(self) -> str:
        return f"<cairn.Run {self.path or self.id} ({self.name})>"

    # Notebooks ----------------------------------------------------------------------------------

    def to_html(self, height: int = 420, hidden: bool = False) -> str:
        """The run's page in an iframe, as HTML (W&B's ``run.to_html``)."""
        from . import _notebook

        return _notebook.iframe(self.url, height, hidden)

    def _repr_html_(self) -> str:
        return self.to_html()

    def display(self, height: int = 420, hidden: bool = False) -> bool:
        """Shows the run's page in the notebook, in an iframe; False outside a notebook."""
        from . import _notebook

        if _notebook.shell() is None:
            return False
        _notebook.display_html(self.to_html(height, hidden), repr(self))
        return True


# The process-wide state, as in wandb: the current run, and the hooks that end runs at exit.

_lock = _thread.allocate_lock()
_active: list[Run] = []
_hooks_installed = False
_exit_code: Any = None
_exception: type[BaseException] | None = None


class _Preinit:
    """What ``cairn.config`` and ``cairn.summary`` are before ``cairn.init``."""

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "_what", what)

    def _fail(self, *_: Any, **__: Any) -> Any:
        raise errors.UsageError(f"call cairn.init() before using cairn.{self._what}")

    __getattr__ = __getitem__ = __setitem__ = __setattr__ = __contains__ = __iter__ = __len__ = update = _fail  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<cairn.{self._what} before cairn.init()>"


def _package() -> Any:
    return sys.modules[__package__]


def _set_current(run: Run | None) -> None:
    module = _package()
    module.run = run
    module.config = run.config if run is not None else _Preinit("config")
    module.summary = run.summary if run is not None else _Preinit("summary")


def _forget(run: Run) -> None:
    with _lock:
        if run in _active:
            _active.remove(run)
        current = _active[-1] if _active else None
    if getattr(_package(), "run", None) is run:
        _set_current(current)


def _install_hooks() -> None:
    """Ends runs when the process ends: failed on an uncaught exception or ``sys.exit(n)`` with
    n != 0, killed on KeyboardInterrupt, finished otherwise."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    original_exit = sys.exit
    original_hook = sys.excepthook

    def exit_hook(code: Any = None) -> None:
        global _exit_code
        _exit_code = code
        original_exit(code)

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        global _exception
        _exception = exc_type
        original_hook(exc_type, exc, tb)

    sys.exit = exit_hook
    sys.excepthook = excepthook
    atexit.register(_finish_at_exit)


def _finish_at_exit() -> None:
    if _exception is not None and issubclass(_exception, KeyboardInterrupt):
        state, code = "killed", 130
    elif _exception is not None:
        state, code = "failed", 1
    elif _exit_code is None or _exit_code == 0:
        state, code = None, 0
    elif isinstance(_exit_code, int):
        state, code = "failed", _exit_code
    else:
        state, code = "failed", 1
    for run in list(_active):
        try:
            run._finish(code, state)
        except Exception as e:  # noqa: BLE001 - the process is ending; report and go on
            print(f"cairn: could not finish run {run.id}: {e}", file=sys.stderr)


# The thread that imported cairn: the program's main thread. (Not `threading.main_thread()` at
# stop time: imported first in a background thread, `threading` takes that thread for the main one.)
_MAIN_THREAD = _thread.get_ident()


def _interrupt_main() -> None:
    """A stop from the server interrupts the program, as wandb does.

    Where Python handles SIGINT, the main thread gets a real SIGINT, which also cuts short a
    blocking call such as ``time.sleep``. Where SIGINT is ignored (a process started in the
    background by a shell, or under nohup), KeyboardInterrupt is raised in the main thread
    directly, at its next Python instruction.
    """
    main = _MAIN_THREAD
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and hasattr(signal, "pthread_kill"):
        signal.pthread_kill(main, signal.SIGINT)
    elif callable(handler):
        _thread.interrupt_main()
    else:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(KeyboardInterrupt))


def _installed_distributions() -> set[str]:
    """``name==version`` of every distribution on ``sys.path``, the first of a name winning, as
    for imports. Read from the names of the ``*.dist-info`` and ``*.egg-info`` folders, which
    carry both (``importlib.metadata`` parses every METADATA file: about 60 ms in a venv of 150
    packages, which a short run's ``finish`` waited for); only a folder without a version in its
    name (an egg-info of a source checkout) is opened."""
    import re

    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = [e.name for e in os.scandir(entry or ".")]
        except OSError:
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            parts = stem.split("-")
            if len(parts) >= 2 and parts[1] and parts[1][0].isdigit():
                dist, version = parts[0], parts[1]
            else:
                from importlib import metadata
                from pathlib import Path

                try:
                    meta = metadata.PathDistribution(Path(entry or ".", name))
                    dist, version = meta.metadata["Name"], meta.version
                except Exception:  # noqa: BLE001 - a broken folder is left out, as pip does
                    continue
                if not dist or not version:
                    continue
            key = re.sub(r"[-_.]+", "-", dist).lower()
            found.setdefault(key, f"{dist.replace('_', '-')}=={version}")
    return set(found.values())


def _write_requirements(core: _core.Run) -> threading.Thread | None:
    """``requirements.txt`` of this Python environment, saved with the run, written off the
    training thread (listing the installed distributions reads many files)."""
    directory = core.dir
    if not directory:
        return None

    def write() -> None:
        try:
            lines = sorted(_installed_distributions(), key=str.lower)
            path = os.path.join(directory, "files", "requirements.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            core.save(path, os.path.join(directory, "files"), "now")
        except Exception:  # noqa: BLE001, S110 - metadata is best effort, never the run's failure
            pass

    import threading

    thread = threading.Thread(target=write, name="cairn-requirements", daemon=True)
    thread.start()
    return thread


def save(glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None, policy: str = "live") -> list[str]:
    """Saves files with the current run (see ``Run.save``)."""
    return _current("save").save(glob_str, base_path, policy)


def _metadata() -> dict[str, Any]:
    from . import _notebook

    argv = list(sys.argv)
    program = argv[0] if argv else ""
    notebook = _notebook.notebook_path() if _notebook.shell() is not None else None
    version = sys.version_info
    extra: dict[str, Any] = {}
    if notebook is not None:
        # In a kernel, argv is the kernel's launcher: the notebook is the program.
        program = notebook
        extra["notebook"] = notebook
    elif _notebook.shell() is not None:
        extra["notebook"] = "<unknown notebook>"
    return {
        **extra,
        "program": program,
        "args": argv[1:],
        "command": " ".join(["python", *argv]) if argv else "python",
        "executable": sys.executable,
        "language": "python",
        "language_version": f"{version.major}.{version.minor}.{version.micro}",
        "python_implementation": sys.implementation.name,
    }


def init(
    entity: str | None = None,
    project: str | None = None,
    name: str | None = None,
    id: str | None = None,  # noqa: A002 - wandb's name
    notes: str | None = None,
    tags: Any = None,
    group: str | None = None,
    job_type: str | None = None,
    config: Any = None,
    mode: str | None = None,
    dir: str | os.PathLike[str] | None = None,  # noqa: A002 - wandb's name
    resume: bool | str | None = None,
    resume_from: str | None = None,
    fork_from: str | None = None,
    reinit: bool | str | None = None,
    settings: Settings | Mapping[str, Any] | None = None,
    allow_val_change: bool | None = None,
    config_exclude_keys: list[str] | None = None,
    config_include_keys: list[str] | None = None,
    save_code: bool | None = None,
    anonymous: str | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    force: bool | None = None,
) -> Run:
    """Starts a run and makes it the current one (``cairn.run``).

    ``resume``: ``"allow"`` resumes the run ``id`` if it exists and creates it otherwise,
    ``"must"`` fails when it is missing, ``"never"`` fails when it exists, ``"auto"`` (or True)
    continues the run that the last process in the same directory left unfinished.
    ``reinit``: what to do when a run is active: ``"finish_previous"`` (the default, or True),
    ``"return_previous"`` (False), or ``"create_new"`` (both stay active).
    ``fork_from="<run_id>?_step=N"``: a new run whose history up to step N is that run's (shared
    on the server, not copied); it continues at N+1 with the source's config under its own.
    ``resume_from="<run_id>?_step=N"``: rewinds that run to N and continues it at N+1; its
    history after N is archived in a hidden run linked from its overview.
    """
    global _exception, _exit_code
    policy = {None: "finish_previous", True: "finish_previous", False: "return_previous"}.get(reinit, reinit)  # type: ignore[arg-type]
    if policy not in ("finish_previous", "return_previous", "create_new", "default"):
        raise errors.InvalidSetting(f"reinit={reinit!r} is not one of finish_previous, return_previous, create_new")
    with _lock:
        previous = list(_active)
    if previous and policy == "return_previous":
        return previous[-1]
    if previous and policy in ("finish_previous", "default"):
        for run in previous:
            run.finish()

    resolved = Settings()
    if isinstance(settings, Settings):
        resolved.update(settings.as_dict())
    elif _is_mapping(settings):
        resolved.update(settings)
    elif settings is not None:
        raise errors.InvalidSetting(f"settings must be a cairn.Settings or a dict, not {type(settings).__name__}")
    if mode is not None:
        resolved.mode = mode
    silent = bool(resolved.silent) or _env_true("CAIRN_SILENT")

    config_values = _config_dict(config)
    if config_include_keys is not None:
        config_values = {k: v for k, v in config_values.items() if k in config_include_keys}
    if config_exclude_keys is not None:
        config_values = {k: v for k, v in config_values.items() if k not in config_exclude_keys}
    if tags is not None:
        tags = list(tags)
        if not all(isinstance(t, str) for t in tags):
            raise errors.InvalidValue(f"tags must be strings, got {tags!r}")

    for keyword, value in (("sync_tensorboard", sync_tensorboard), ("monitor_gym", monitor_gym), ("force", force), ("anonymous", anonymous)):
        if value is not None:
            _debug("init(%s=%r): a W&B keyword cairn has no use for, accepted and ignored", keyword, value)
    if resume is True:
        resume = "auto"
    elif resume is False:
        resume = None
    kwargs: dict[str, Any] = {
        "entity": entity,
        "project": project,
        "name": name,
        "id": id,
        "notes": notes,
        "tags": tags,
        "group": group,
        "job_type": job_type,
        "config": config_values,
        "dir": os.fspath(dir) if dir is not None else None,
        "resume": resume,
        "resume_from": resume_from,
        "fork_from": fork_from,
        "metadata": _metadata(),
        "mode": resolved.mode,
        "base_url": resolved.base_url,
        "api_key": resolved.api_key,
        "heartbeat_interval": resolved.heartbeat_interval,
        "finish_timeout": resolved.finish_timeout,
        "init_timeout": resolved.init_timeout,
        "console": resolved.console,
        "allow_val_change": bool(allow_val_change),
        "stats_interval": resolved.stats_sampling_interval,
    }
    if kwargs["base_url"] is None and not os.environ.get("CAIRN_BASE_URL") and _login_state.get("host"):
        kwargs["base_url"] = _login_state["host"]
    if kwargs["api_key"] is None:
        kwargs["api_key"] = _login_key(kwargs["base_url"] or os.environ.get("CAIRN_BASE_URL") or "http://127.0.0.1:8080")
    core = _core.init(**kwargs)
    run = Run(core, silent)
    run._tags = tuple(tags or ())
    run._notes = notes or ""
    run._group = group
    run._job_type = job_type
    if allow_val_change:
        run.config.update({}, allow_val_change=True)
    if core.mode != "disabled":
        run._requirements = _write_requirements(core)
        core.on_stop(_interrupt_main)
        _install_hooks()
        _exception, _exit_code = None, None
        with _lock:
            _active.append(run)
    from . import _notebook

    in_kernel = _notebook.shell() is not None
    if in_kernel and core.mode != "disabled" and (resolved.console or os.environ.get("CAIRN_CONSOLE") or "auto") != "off":
        run._tees = _notebook.attach(core)
    lines = core.init_lines()
    if in_kernel and lines and not silent:
        _notebook.display_html(_notebook.lines_as_html(lines), "\n".join(lines))
    else:
        _print(lines, silent)
    if save_code is None:
        save_code = resolved.save_code if resolved.save_code is not None else _env_true("CAIRN_SAVE_CODE")
    notebook = _notebook.notebook_path() if in_kernel and save_code and core.mode != "disabled" else None
    if notebook is not None and os.path.isfile(notebook):
        # Saved again whenever Jupyter writes it.
        run.save(os.path.abspath(notebook), base_path=os.path.dirname(os.path.abspath(notebook)), policy="live")
    _set_current(run)
    return run


def _current(what: str) -> Run:
    run = getattr(_package(), "run", None)
    if run is None:
        raise errors.UsageError(f"call cairn.init() before cairn.{what}()")
    return run


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Logs to the current run (see ``Run.log``)."""
    _current("log").log(data, step, commit)


def alert(title: str, text: str, level: str | AlertLevel = "INFO", wait_duration: Any = 60) -> bool:
    """Raises an alert on the current run (see ``Run.alert``)."""
    return _current("alert").alert(title, text, level, wait_duration)


def watch(
    models: Any,
    criterion: Any = None,
    log: str | None = "gradients",
    log_freq: int = 1000,
    idx: int | None = None,
    log_graph: bool = False,
) -> None:
    """Logs histograms of a torch model's gradients or parameters to the current run (see
    ``Run.watch``)."""
    _current("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: Any = None) -> None:
    """Removes ``watch``'s hooks (see ``Run.unwatch``)."""
    _current("unwatch").unwatch(models)


def mark_preempting() -> None:
    """Tells the server that the current run may be preempted (see ``Run.mark_preempting``)."""
    _current("mark_preempting").mark_preempting()


def log_code(
    root: str | os.PathLike[str] | None = ".",
    name: str | None = None,
    include_fn: Callable[..., bool] | None = None,
    exclude_fn: Callable[..., bool] | None = None,
) -> Any:
    """Saves the source code as a ``code`` artifact of the current run (see ``Run.log_code``)."""
    return _current("log_code").log_code(root, name, include_fn, exclude_fn)


#: Folders never searched for code: environments, caches and run directories.
_NOT_CODE = {"venv", ".venv", "env", "site-packages", "node_modules", "__pycache__", "wandb", "cairn", "build", "dist"}


def _code_files(base: str) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in _NOT_CODE and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        )
        out.extend(os.path.join(folder, f) for f in sorted(files))
    return out


def _artifact_name(name: str) -> str:
    """``name`` with what an artifact name cannot hold replaced by ``-``."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name)[:128]
    return cleaned or "source"


def restore(name: str, run_path: str | None = None, replace: bool = False, root: str | os.PathLike[str] | None = None) -> Any:
    """Downloads ``name``, a file that the run ``run_path`` (``entity/project/run_id``; by default
    the current run) saved, into ``root`` (by default the current run's directory, else the
    working directory), unless it is there already and not ``replace``; returns it opened for
    reading. A file the run does not have raises ``cairn.errors.NotFound``."""
    current = getattr(_package(), "run", None)
    path = run_path or (current.path if current is not None else None)
    if not path:
        raise errors.UsageError("cairn.restore needs run_path='entity/project/run_id', or cairn.init() first")
    folder = os.fspath(root) if root is not None else (current.dir if current is not None and current.dir else ".")
    local = os.path.join(folder, name)
    if replace or not os.path.exists(local):
        from .api import Api

        online = current is not None and current._core.path is not None
        api = Api(base_url=current._core.api().base_url if online else None)
        local = api.run(path).file(name).download(root=folder, replace=True)
    return open(local)


def _debug(message: str, *args: Any) -> None:
    import logging

    logging.getLogger("cairn").debug(message, *args)


class _Setup:
    """What ``cairn.setup()`` returns: the settings this process uses."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


def setup(settings: Any = None) -> _Setup:
    """Accepted for W&B code (``wandb.setup()`` starts its service process; cairn has none)."""
    _debug("cairn.setup: nothing to start (settings %r)", settings)
    return _Setup(settings)


def teardown(exit_code: int | None = None) -> None:
    """Finishes every run this process has open, as W&B's ``wandb.teardown``."""
    for run in list(_active):
        run.finish(exit_code)


def require(requirement: Any = None, experiment: Any = None) -> None:
    """Accepted and ignored (W&B's feature flags), with a debug log line."""
    _debug("cairn.require(%r): accepted and ignored", requirement or experiment)


def _term(prefix: str, string: str, newline: bool, silent_ok: bool) -> None:
    if silent_ok and _env_true("CAIRN_SILENT"):
        return
    sys.stderr.write(f"cairn: {prefix}{string}" + ("\n" if newline else ""))
    sys.stderr.flush()


def termlog(string: str = "", newline: bool = True, repeat: bool = True) -> None:
    """Prints ``cairn: string`` to stderr, as W&B's ``termlog`` (quiet with ``CAIRN_SILENT``)."""
    _term("", string, newline, True)


def termwarn(string: str, newline: bool = True, repeat: bool = True) -> None:
    _term("WARNING ", string, newline, True)


def termerror(string: str, newline: bool = True, repeat: bool = True) -> None:
    """Errors print even when silent."""
    _term("ERROR ", string, newline, False)


def define_metric(name: str, step_metric: str | None = None, summary: str | None = None, hidden: bool = False) -> None:
    _current("define_metric").define_metric(name, step_metric, summary, hidden)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finishes the current run, if there is one."""
    run = getattr(_package(), "run", None)
    if run is not None:
        run.finish(exit_code, quiet)


#: What ``login`` set for this process: ``host`` and ``keys`` by host.
_login_state: dict[str, Any] = {"host": None, "keys": {}}


def _login_key(base_url: str) -> str | None:
    return _login_state["keys"].get(base_url.rstrip("/"))


def login(key: str | None = None, host: str | None = None, *, relogin: bool = False, verify: bool = True) -> bool:
    """Uses an API key with the server at ``host`` (``CAIRN_BASE_URL``, else
    ``http://127.0.0.1:8080``) for this process, and saves it for that server (mode 0600) for
    later processes, ``cairn sync`` and ``cairn runs``.

    Without ``key``: the key already known for the host (``CAIRN_API_KEY`` or saved), else a
    prompt when a terminal is attached. The key is checked against the server first
    (``verify``); a bad key raises ``cairn.errors.Unauthorized``. Returns True when a key is in use.
    """
    base = (host or os.environ.get("CAIRN_BASE_URL") or _login_state.get("host") or "http://127.0.0.1:8080").rstrip("/")
    if key is None and not relogin:
        key = _login_key(base) or _core.resolve_key(base)
    if key is None:
        if not sys.stdin.isatty():
            raise errors.Unauthorized(
                f"no API key for {base}: pass cairn.login(key=...), set CAIRN_API_KEY, or run `cairn login`"
            )
        import getpass

        key = getpass.getpass(f"API key for {base}: ")
    _core.login(base, key, verify)
    _login_state["host"] = base
    _login_state["keys"][base] = key.strip()
    return True
