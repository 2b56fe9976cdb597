"""Import speed: `cairn import wandb` of a 1M-step W&B offline run and `cairn import mlflow` of a
1M-point MLflow SQLite store, both written by the real clients, into a release server.

    python3 bench/import_speed.py [--steps 1000000] [--work /tmp/import-bench] [--python .venv/bin/python]

Needs `cargo build --release -p cairn_cli`, and wandb and mlflow-skinny (with sqlalchemy and
alembic) in the Python given. The sources are written once and kept in --work. Prints rows per
second, wall time and the importer's peak memory."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAIRN = ROOT / "target" / "release" / "cairn"

WANDB = """
import math, sys, wandb
n = int(sys.argv[1])
run = wandb.init(project="import-bench", id="big1m", config={"n": n})
for i in range(n):
    run.log({"loss": math.sin(i / 7) * 100 + i})
run.finish()
"""

MLFLOW = """
import math, sys, time, mlflow
from mlflow.entities import Metric
n = int(sys.argv[1])
mlflow.set_tracking_uri(sys.argv[2])
client = mlflow.tracking.MlflowClient()
exp = client.create_experiment("import-bench")
run = client.create_run(exp)
now = int(time.time() * 1000)
for start in range(0, n, 1000):
    client.log_batch(run.info.run_id, metrics=[Metric("loss", math.sin(i / 7) * 100 + i, now + i, i) for i in range(start, min(n, start + 1000))])
client.set_terminated(run.info.run_id)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_import(args: list[str], url: str) -> tuple[float, float, str]:
    """Wall seconds, the importer's peak resident memory in MB (GNU time's %M), and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", str(CAIRN), "import", *args, "--base-url", url], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--work", default="/tmp/import-bench")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    assert CAIRN.exists(), "build it first: cargo build --release -p cairn_cli"

    wandb_dir = work / f"wandb-{args.steps}"
    if not list(wandb_dir.glob("wandb/offline-run-*/run-big1m.wandb")):
        print(f"writing a {args.steps}-step W&B offline run (the real client; minutes) ...", flush=True)
        shutil.rmtree(wandb_dir, ignore_errors=True)
        wandb_dir.mkdir()
        (wandb_dir / "gen.py").write_text(textwrap.dedent(WANDB))
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(wandb_dir), "HOME": str(wandb_dir)}
        subprocess.run([args.python, "gen.py", str(args.steps)], cwd=wandb_dir, env=env, check=True)
    mlflow_db = work / f"mlflow-{args.steps}.db"
    if not mlflow_db.exists():
        print(f"writing a {args.steps}-point MLflow SQLite store (the real client) ...", flush=True)
        (work / "gen_mlflow.py").write_text(textwrap.dedent(MLFLOW))
        subprocess.run([args.python, "gen_mlflow.py", str(args.steps), f"sqlite:///{mlflow_db}"], cwd=work, check=True, capture_output=True)

    data = work / "server"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    server = subprocess.Popen([str(CAIRN), "server", "--data-dir", str(data), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening on" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        log = next(wandb_dir.glob("wandb/offline-run-*/run-big1m.wandb"))
        print(f"\nW&B run log: {log.stat().st_size / 1e6:.0f} MB, {args.steps} steps")
        for label, source in [("wandb", ["wandb", str(wandb_dir / "wandb")]), ("mlflow", ["mlflow", str(mlflow_db)])]:
            wall, peak, out = timed_import(source, url)
            print(f"import {label:6}  {wall:6.2f} s  {args.steps / wall:10,.0f} rows/s  peak {peak:6,.0f} MB   {out}")
            wall, _, out = timed_import(source, url)
            print(f"again  {label:6}  {wall:6.2f} s  (nothing to send)              {out}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
