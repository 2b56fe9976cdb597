"""cairn's own integrations, run as their README examples (examples/lightning_cairn.py and
examples/transformers_cairn.py) against a real server: Lightning's CairnLogger and the Hugging
Face Trainer's CairnCallback. torch is not in this suite's venv (PyPI's torch is gigabytes):
scripts/test-integrations.sh runs this file in a venv with torch. Without them, it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cairn
from conftest import ROOT, Server

pytest.importorskip("torch")


def run_example(name: str, env: dict[str, str], tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, **env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done.stdout.split("RUN ")[1].split()[0]


def test_lightning_cairn_logger(server: Server, env, api, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    run_id = run_example("lightning_cairn.py", env, tmp_path)
    run = api.run(f"tester/lightning-example/{run_id}")
    assert (run.name, run.state) == ("tiny", "finished")
    assert (run.config["lr"], run.config["hidden"]) == (0.05, 4), run.config
    rows = list(run.scan_history())
    train = [(r["trainer/global_step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    # 64 samples in batches of 8: 8 steps an epoch, 2 epochs.
    assert [s for s, _ in train] == list(range(16)), train
    assert len([r for r in rows if r.get("val_loss") is not None]) == 2
    # log_model=True: the best and the last checkpoint, as model artifacts.
    models = [a for a in run.logged_artifacts() if a.type == "model"]
    assert models, "no checkpoint was logged"
    aliases = {alias for a in models for alias in a.aliases}
    assert {"best", "latest"} <= aliases, aliases
    assert any(f.path.endswith(".ckpt") for a in models for f in a.files())


def test_transformers_cairn_callback(server: Server, env, api, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    run_id = run_example("transformers_cairn.py", env, tmp_path)
    run = api.run(f"tester/transformers-example/{run_id}")
    assert (run.name, run.state) == ("bert-tiny", "finished")
    assert (run.config["learning_rate"], run.config["max_steps"]) == (1e-3, 8)
    assert run.config["model/hidden_size"] == 16 and run.config["model/num_parameters"] > 0, run.config
    rows = list(run.scan_history())
    losses = [r["train/global_step"] for r in rows if r.get("train/loss") is not None]
    assert losses == list(range(1, 9)), losses
    assert len([r for r in rows if r.get("eval/loss") is not None]) == 2
    assert run.summary["train/runtime"] > 0
    model = next(a for a in run.logged_artifacts() if a.type == "model")
    assert "final" in model.aliases and {"config.json", "model.safetensors"} <= {f.path for f in model.files()}
