"""``CairnLogger``: a Lightning ``Logger`` that logs to cairn.

    from cairn.integration.lightning import CairnLogger
    trainer = lightning.Trainer(logger=CairnLogger(project="mnist", log_model=True))

Hyperparameters (``save_hyperparameters`` and ``log_hyperparams``) go to the run's config;
metrics are logged with ``trainer/global_step``, the x-axis of their charts; checkpoints become
``model`` artifacts: with ``log_model=True`` the best and last once training ends, with
``log_model="all"`` each one when it is saved. ``log_model(path)`` logs a file or folder as a
model artifact. Works with ``lightning`` and with ``pytorch_lightning``."""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any, Mapping

try:
    from lightning.fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict, _sanitize_callable_params
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
except ImportError:  # the older package name
    from lightning_fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict, _sanitize_callable_params  # type: ignore[no-redef]
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[no-redef]
    from pytorch_lightning.utilities.rank_zero import rank_zero_only  # type: ignore[no-redef]

import cairn

STEP = "trainer/global_step"


class CairnLogger(Logger):
    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - W&B's name
        entity: str | None = None,
        save_dir: str | None = None,
        log_model: bool | str = False,
        prefix: str = "",
        experiment: cairn.Run | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise cairn.errors.InvalidValue(f"log_model={log_model!r} must be True, False or 'all'")
        self._project, self._name, self._id, self._entity, self._save_dir = project, name, id, entity, save_dir
        self._log_model = log_model
        self._prefix = prefix
        self._run = experiment
        self._init_kwargs = init_kwargs
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: set[str] = set()

    @property
    def name(self) -> str | None:
        return self._project

    @property
    def version(self) -> str | None:
        return self._run.id if self._run is not None else self._id

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> cairn.Run:
        """The run: the one given, the current one, or a new one."""
        if self._run is None:
            self._run = cairn.run or cairn.init(project=self._project, name=self._name, id=self._id, entity=self._entity, dir=self._save_dir, **self._init_kwargs)
            self._run.define_metric(STEP)
            self._run.define_metric("*", step_metric=STEP)
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        params = _sanitize_callable_params(_convert_params(params))
        self.experiment.config.update(_flatten_dict(params, delimiter="/") if _nested(params) else params, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = dict(_add_prefix(dict(metrics), self._prefix, self.LOGGER_JOIN_CHAR))
        if step is not None:
            row[STEP] = step
        self.experiment.log(row)

    @rank_zero_only
    def log_model(self, path: str | os.PathLike[str], name: str | None = None, aliases: list[str] | None = None, metadata: dict[str, Any] | None = None) -> Any:
        """Logs a file or folder as a ``model`` artifact of the run."""
        art = cairn.Artifact(name or f"model-{self.experiment.id}", type="model", metadata=metadata or {})
        p = os.fspath(path)
        if os.path.isdir(p):
            art.add_dir(p)
        else:
            art.add_file(p)
        return self.experiment.log_artifact(art, aliases=aliases or ["latest"])

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._checkpoint_callback = checkpoint_callback
        if self._log_model == "all":
            self._log_checkpoints(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":
            return
        if self._log_model is True and self._checkpoint_callback is not None and self._run is not None:
            self._log_checkpoints(self._checkpoint_callback)

    def _log_checkpoints(self, callback: Any) -> None:
        best = getattr(callback, "best_model_path", "") or ""
        last = getattr(callback, "last_model_path", "") or ""
        for path in dict.fromkeys(p for p in (best, last) if p and os.path.isfile(p)):
            # A file saved again (last.ckpt) is a new version.
            key = f"{path}@{os.stat(path).st_mtime_ns}"
            if key in self._logged_checkpoints:
                continue
            aliases = ["latest"] + (["best"] if path == best else [])
            score = getattr(callback, "best_model_score", None)
            metadata = {"original_filename": os.path.basename(path), "monitor": getattr(callback, "monitor", None)}
            if score is not None and path == best:
                metadata["score"] = float(score)
            self.log_model(path, aliases=aliases, metadata=metadata)
            self._logged_checkpoints.add(key)


def _nested(params: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) for v in params.values())
