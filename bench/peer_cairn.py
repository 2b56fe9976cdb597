"""cairn adapter for the peer benchmark (../shared/bench/peers, see its README).

Online (the default): setup() starts a real `cairn server` (the release binary, or CAIRN_BIN) on
the sandbox's data dir; runs upload to it, finish() returns once everything is stored, and W5 reads
back through cairn.Api (`run.history_columns`). The server is a child of the worker, so its CPU and
memory count too.
CAIRN_BENCH_MODE=offline writes the run directory only (like wandb offline); W5 is then N/A.
CAIRN_BENCH_AUTH=on starts the server with --auth on and logs with an API key (peer_cairn_auth.py
sets it, so that one harness run measures both).
"""

import atexit
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (the harness puts its folder on PYTHONPATH)

NAME = "cairn"
MODE = os.environ.get("CAIRN_BENCH_MODE", "online")
AUTH = os.environ.get("CAIRN_BENCH_AUTH") == "on"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def setup(variant, data_dir):
    import cairn

    ctx = {"cairn": cairn, "dir": data_dir, "mode": MODE, "url": None, "key": None}
    if MODE == "online":
        binary = os.environ.get("CAIRN_BIN") or os.path.join(ROOT, "target", "release", "cairn")
        server_dir = os.path.join(data_dir, "server")
        extra = []
        if AUTH:
            # W5 reads in a fresh process on the same data: the user is there already.
            subprocess.run([binary, "users", "create", "bench", "--data-dir", server_dir], capture_output=True)
            made = subprocess.run([binary, "keys", "create", "--user", "bench", "--data-dir", server_dir], check=True, capture_output=True, text=True)
            ctx["key"] = made.stdout.strip().splitlines()[-1]
            extra = ["--auth", "on"]
        proc = subprocess.Popen(
            [binary, "server", "--port", "0", "--data-dir", server_dir, "--default-entity", "bench", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "CAIRN_LOG": "error"},
        )
        ctx["url"] = proc.stdout.readline().split()[-1]
        # Registered before cairn's own exit hook, so it runs after it: runs finish first.
        atexit.register(_stop, proc)
    return ctx


def versions():
    import cairn

    return {"cairn": cairn.__version__}


def init(ctx, run_name):
    settings = {"silent": True}
    if ctx["url"]:
        settings["base_url"] = ctx["url"]
    if ctx["key"]:
        settings["api_key"] = ctx["key"]
    return ctx["cairn"].init(project="bench", name=run_name, mode=ctx["mode"], dir=ctx["dir"], settings=settings)


def log(run, metrics, step):
    run.log(metrics, step=step)


def finish(run):
    run.finish()


def run_info(ctx, run):
    return {"path": run.path, "dir": run.dir, "run_id": run.id}


def read_back(ctx, info, key):
    if ctx["mode"] != "online":
        raise NotImplementedError("offline runs are read after `cairn sync`, like wandb offline")
    # Lists, as the harness wants sequences: history(samples=None) gives a DataFrame faster,
    # but a fresh process then pays for importing pandas (about 0.3 s) inside the timing.
    columns = ctx["cairn"].Api(base_url=ctx["url"], api_key=ctx["key"]).run(info["path"]).history_columns(keys=[key])
    return columns["_step"], columns[key]


if __name__ == "__main__":
    common.main(sys.modules[__name__])
