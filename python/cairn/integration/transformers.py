"""``CairnCallback``: a Hugging Face ``TrainerCallback`` that logs to cairn.

    from cairn.integration.transformers import CairnCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[CairnCallback(project="glue")])

(with ``report_to="none"`` in the arguments, so that no other tracker starts). The training
arguments and the model's config go to the run's config (the model's under ``model/``); train
and eval metrics are logged as ``train/<name>`` and ``eval/<name>`` with ``train/global_step``,
the x-axis of their charts; ``log_model="end"`` logs the final model as a ``model`` artifact,
``log_model="checkpoint"`` each checkpoint too."""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

import cairn

STEP = "train/global_step"


class CairnCallback(TrainerCallback):
    def __init__(self, project: str | None = None, log_model: str | bool = False, run: cairn.Run | None = None, **init_kwargs: Any) -> None:
        if log_model is True:
            log_model = "end"
        if log_model not in (False, None, "false", "end", "checkpoint"):
            raise cairn.errors.InvalidValue(f"log_model={log_model!r} must be False, 'end' or 'checkpoint'")
        self._project = project
        self._log_model = log_model or False
        self._run = run
        self._init_kwargs = init_kwargs

    def _setup(self, args: Any, state: Any, model: Any) -> None:
        if self._run is not None or not state.is_world_process_zero:
            return
        name = None if args.run_name == args.output_dir else args.run_name
        self._run = cairn.run or cairn.init(project=self._project, name=name, **self._init_kwargs)
        self._run.define_metric(STEP)
        self._run.define_metric("*", step_metric=STEP)
        config = {k: v for k, v in args.to_dict().items() if _plain(v)}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config.update({f"model/{k}": v for k, v in model_config.to_dict().items() if _plain(v)})
        if model is not None and hasattr(model, "num_parameters"):
            config["model/num_parameters"] = model.num_parameters()
        self._run.config.update(config, allow_val_change=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._setup(args, state, model)

    def on_log(self, args: Any, state: Any, control: Any, model: Any = None, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._setup(args, state, model)
        row: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for k, v in (logs or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if k in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"):
                summary[f"train/{k.removeprefix('train_')}" if k != "total_flos" else "train/total_flos"] = v
            elif k.startswith("eval_"):
                row[f"eval/{k.removeprefix('eval_')}"] = v
            elif k.startswith("test_"):
                row[f"test/{k.removeprefix('test_')}"] = v
            else:
                row[f"train/{k}"] = v
        if row:
            row[STEP] = state.global_step
            self._run.log(row)
        if summary:
            self._run.summary.update(summary)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._log_model != "checkpoint" or self._run is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            art = cairn.Artifact(f"checkpoint-{self._run.id}", type="model", metadata={"global_step": state.global_step})
            art.add_dir(folder)
            self._run.log_artifact(art, aliases=["latest", f"checkpoint-{state.global_step}"])

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        if self._log_model != "end" or self._run is None or model is None or not state.is_world_process_zero:
            return
        # In the run's directory: kept with the run's other local files.
        folder = os.path.join(self._run.dir or args.output_dir, "model")
        model.save_pretrained(folder)
        tokenizer = processing_class or kwargs.get("tokenizer")
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(folder)
        art = cairn.Artifact(f"model-{self._run.id}", type="model", metadata={"global_step": state.global_step})
        art.add_dir(folder)
        self._run.log_artifact(art, aliases=["latest", "final"])


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value))
