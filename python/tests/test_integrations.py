"""Integrations that `import wandb` themselves, unchanged, logging to cairn: the Hugging Face
Trainer (`report_to="wandb"`) and Lightning's `WandbLogger`. They need torch, which this suite's
venv does not install (PyPI's torch brings CUDA's libraries, gigabytes); `scripts/test-integrations.sh`
makes a venv with torch, transformers and lightning and runs this file. Without torch, it skips.

What they logged is read back from cairn's REST API, not through the cairn package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from conftest import Server, wandb_env

pytest.importorskip("wandb")
pytest.importorskip("torch")

KEY = "local-" + "k" * 40


def get(server: Server, path: str) -> dict:
    with urllib.request.urlopen(f"{server.url}{path}") as response:
        return json.load(response)


def train(server: Server, tmp_path: Path, code: str, project: str) -> tuple[dict, list[dict]]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}
    env.update(wandb_env(server.url, tmp_path, KEY))
    env.update({"WANDB_PROJECT": project, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    run_id = done.stdout.split("RUN ")[1].split()[0]
    run = get(server, f"/api/v1/runs/tester/{project}/{run_id}")
    rows = get(server, f"/api/v1/runs/tester/{project}/{run_id}/history?limit=100000")["rows"]
    return run, rows


def test_the_hugging_face_trainer_reports_to_cairn(server: Server, tmp_path: Path) -> None:
    run, rows = train(
        server,
        tmp_path,
        """
        import torch, wandb
        from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

        torch.manual_seed(0)
        config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
        model = BertForSequenceClassification(config)

        class Data(torch.utils.data.Dataset):
            def __len__(self):
                return 32
            def __getitem__(self, i):
                g = torch.Generator().manual_seed(i)
                return {"input_ids": torch.randint(0, 64, (8,), generator=g), "labels": torch.tensor(i % 2)}

        args = TrainingArguments(output_dir="out", report_to="wandb", run_name="hf-tiny", max_steps=8, logging_steps=1,
                                 per_device_train_batch_size=4, eval_strategy="steps", eval_steps=4, save_strategy="no",
                                 learning_rate=1e-3, use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=Data(), eval_dataset=Data())
        trainer.train()
        print("RUN", wandb.run.id, flush=True)
        wandb.finish()
        """,
        "hf-trainer",
    )
    assert (run["name"], run["state"]) == ("hf-tiny", "finished")
    assert run["config"]["learning_rate"] == 1e-3 and run["config"]["max_steps"] == 8
    assert run["config"]["hidden_size"] == 16, "the model's config is in the run's config"
    # The Trainer logs flat keys with slashes, `train/loss` at `train/global_step`.
    losses = [(r["train/global_step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert [step for step, _ in losses] == list(range(1, 9)), losses
    assert all(isinstance(loss, float) for _, loss in losses)
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(evals) == 2, rows
    assert run["summary"]["train/global_step"] == 8 and "train_runtime" in run["summary"], run["summary"]


def test_lightnings_wandb_logger_logs_to_cairn(server: Server, tmp_path: Path) -> None:
    run, rows = train(
        server,
        tmp_path,
        """
        import torch, wandb
        import lightning as L
        from lightning.pytorch.loggers import WandbLogger

        class Tiny(L.LightningModule):
            def __init__(self, lr=0.05, hidden=4):
                super().__init__()
                self.save_hyperparameters()
                self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            def training_step(self, batch, _):
                x, y = batch
                loss = torch.nn.functional.mse_loss(self.net(x), y)
                self.log("train_loss", loss)
                return loss
            def validation_step(self, batch, _):
                x, y = batch
                self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

        torch.manual_seed(0)
        x = torch.randn(64, 3)
        data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        logger = WandbLogger(project="pl-logger", name="pl-tiny")
        trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False, accelerator="cpu",
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Tiny(), loader, loader)
        print("RUN", logger.experiment.id, flush=True)
        wandb.finish()
        """,
        "pl-logger",
    )
    assert (run["name"], run["state"]) == ("pl-tiny", "finished")
    assert (run["config"]["lr"], run["config"]["hidden"]) == (0.05, 4)
    train_steps = [r["trainer/global_step"] for r in rows if "train_loss" in r]
    assert train_steps == list(range(16)), train_steps
    assert len([r for r in rows if "val_loss" in r]) == 2
    assert run["summary"]["epoch"] == 1
