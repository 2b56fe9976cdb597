"""Steps per second of a small Lightning fit and a small Hugging Face Trainer run, with cairn's
CairnLogger / CairnCallback, with no logger, and with wandb (offline), in one run, interleaved,
medians. Needs the integrations venv (scripts/test-integrations.sh makes it):

    .venv-integrations/bin/python bench/integrations_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

LIGHTNING = textwrap.dedent(
    """
    import json, sys, time, torch, lightning as L
    torch.set_num_threads(1)
    variant = sys.argv[1]
    class M(L.LightningModule):
        def __init__(self):
            super().__init__(); self.save_hyperparameters({"lr": 0.01}); self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        def training_step(self, b, _):
            loss = torch.nn.functional.mse_loss(self.net(b[0]), b[1]); self.log("train_loss", loss); return loss
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.01)
    x = torch.randn(4096, 32); data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, :1]), batch_size=8)
    if variant == "cairn":
        from cairn.integration.lightning import CairnLogger; logger = CairnLogger(project="bench", mode="offline")
    elif variant == "wandb":
        from lightning.pytorch.loggers import WandbLogger; logger = WandbLogger(project="bench", offline=True)
    else:
        logger = False
    t = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    t0 = time.perf_counter(); t.fit(M(), data); elapsed = time.perf_counter() - t0
    print(json.dumps({"steps_per_s": t.global_step / elapsed}))
    """
)

TRANSFORMERS = textwrap.dedent(
    """
    import json, sys, time, torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    torch.set_num_threads(1)
    variant = sys.argv[1]
    class D(torch.utils.data.Dataset):
        def __len__(self): return 2048
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i); return {"input_ids": torch.randint(0, 64, (8,), generator=g), "labels": torch.tensor(i % 2)}
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
    callbacks = []
    if variant == "cairn":
        from cairn.integration.transformers import CairnCallback; callbacks = [CairnCallback(project="bench", mode="offline")]
    report = "wandb" if variant == "wandb" else "none"
    args = TrainingArguments(output_dir="out", report_to=report, max_steps=300, logging_steps=1, per_device_train_batch_size=8, save_strategy="no", use_cpu=True, disable_tqdm=True)
    t = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=D(), callbacks=callbacks)
    t0 = time.perf_counter(); t.train(); elapsed = time.perf_counter() - t0
    print(json.dumps({"steps_per_s": 300 / elapsed}))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = ["none", "cairn", "wandb"]
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "CAIRN_DIR": work, "WANDB_DIR": work, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "CAIRN_SILENT": "true", "TOKENIZERS_PARALLELISM": "false"}
        for title, code in (("Lightning, 1024 steps (2 epochs)", LIGHTNING), ("transformers Trainer, 300 steps", TRANSFORMERS)):
            script = os.path.join(work, "loop.py")
            with open(script, "w") as f:
                f.write(code)
            results: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    out = subprocess.run([sys.executable, script, v], capture_output=True, text=True, env=env, cwd=work, check=False)
                    if out.returncode != 0:
                        sys.exit(f"{title} {v} failed:\n{out.stderr[-3000:]}")
                    results[v].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
            base = statistics.median(results["none"])
            print(f"{title}, median of {args.repeats}")
            for v in variants:
                med = statistics.median(results[v])
                label = {"none": "no logger", "cairn": "cairn (CairnLogger/CairnCallback, offline)", "wandb": "wandb offline"}[v]
                print(f"  {label:<46}{med:>8.1f} steps/s {med / base:>7.3f}")


if __name__ == "__main__":
    main()
