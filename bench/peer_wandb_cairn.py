"""The official wandb client logging online to cairn, for the peer benchmark
(../shared/bench/peers): run it with the wandb venv's Python beside `wandb-offline`, in one run,
to see whether cairn's server is the bottleneck of an unchanged W&B script.

    python3 bench.py --configs wandb-offline,wandb-cairn --workloads w2,w4 \\
        --adapter wandb-cairn=/work/main/bench/peer_wandb_cairn.py:/tmp/bench_peers/venv-wandb/bin/python

setup() starts a real `cairn server` (the release binary, or CAIRN_BIN) on the sandbox's data
dir, a child of the worker, so its CPU and memory count too; the client gets WANDB_BASE_URL and
any 40-character key (auth is off). W5 reads back through the official `wandb.Api()`, against cairn.
"""

import atexit
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (the harness puts its folder on PYTHONPATH)
from peer_cairn import _stop  # noqa: E402  (beside this file; it imports cairn only in its setup)

NAME = "wandb-cairn"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(variant, data_dir):
    binary = os.environ.get("CAIRN_BIN") or os.path.join(ROOT, "target", "release", "cairn")
    proc = subprocess.Popen(
        [binary, "server", "--port", "0", "--data-dir", os.path.join(data_dir, "server"), "--default-entity", "bench"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CAIRN_LOG": "error"},
    )
    url = proc.stdout.readline().split()[-1]
    atexit.register(_stop, proc)
    os.environ.update({"WANDB_BASE_URL": url, "WANDB_API_KEY": "bench-" + "k" * 40, "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"})
    os.environ.pop("WANDB_MODE", None)
    import wandb

    return {"wandb": wandb, "dir": data_dir, "url": url}


def versions():
    import wandb

    return {"wandb": wandb.__version__, "server": "cairn"}


def init(ctx, run_name):
    return ctx["wandb"].init(project="bench", name=run_name, dir=ctx["dir"])


def log(run, metrics, step):
    run.log(metrics, step=step)


def finish(run):
    run.finish()


def run_info(ctx, run):
    return {"path": f"bench/bench/{run.id}"}


def read_back(ctx, info, key):
    run = ctx["wandb"].Api().run(info["path"])
    rows = list(run.scan_history(keys=[key], page_size=100_000))
    return [r["_step"] for r in rows], [r[key] for r in rows]


if __name__ == "__main__":
    common.main(sys.modules[__name__])
