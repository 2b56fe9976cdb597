"""What a sweep agent adds per trial: `cairn agent` (the server's controller) and `cairn agent
--local` (the controller in the agent), against the same program started directly, in a loop,
as often.

    .venv/bin/python bench/sweep_agent.py [TRIALS]   # uses target/release/cairn (or CAIRN_BIN)

Each trial is `import cairn; cairn.init(); run.log(...); run.finish()`. Printed per trial:
the wall time, the time from the process's start to its first `log` (read from /proc, 10 ms
ticks), and the agent's overhead (its wall per trial minus the direct loop's in the same mode:
online for `cairn agent`, offline for `--local`). `wandb agent`
cannot run here: `wandb sweep` and its controller need a W&B server, even with the local
controller of `wandb[sweeps]`."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("CAIRN_BIN") or str(ROOT / "target" / "release" / "cairn")

PROGRAM = textwrap.dedent(
    """
    import os, time
    import cairn
    run = cairn.init(project=os.environ.get("CAIRN_PROJECT", "agent-bench"))
    run.log({"loss": 1.0})
    first = time.time()
    # The process's start, from /proc (clock ticks after boot).
    ticks = os.sysconf("SC_CLK_TCK")
    start = float(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    boot = time.time() - float(open("/proc/uptime").read().split()[0])
    run.summary["spawn_to_first_log"] = first - (boot + start)
    run.finish()
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write(f"{first - (boot + start)}\\n")
    """
)


def read_latencies(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(tempfile.mkdtemp(prefix="cairn-agent-bench-"))
    (work / "train.py").write_text(PROGRAM)
    server = subprocess.Popen([BIN, "server", "--port", "0", "--data-dir", str(work / "data"), "--default-entity", "bench"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = server.stdout.readline().strip().rsplit(" ", 1)[-1]
    env = {**os.environ, "CAIRN_BASE_URL": url, "CAIRN_DIR": str(work), "CAIRN_SILENT": "true", "CAIRN_AGENT_INTERPRETER": sys.executable, "CAIRN_STATS_INTERVAL": "0"}
    rows = []
    try:
        # Direct: the program, n times in a row.
        out = work / "direct.txt"
        t = time.perf_counter()
        for _ in range(n):
            subprocess.run([sys.executable, str(work / "train.py")], env={**env, "BENCH_OUT": str(out)}, check=True)
        rows.append(("direct", (time.perf_counter() - t) / n, read_latencies(out)))

        config = {"program": str(work / "train.py"), "method": "grid", "project": "agent-bench", "parameters": {"x": {"values": list(range(n))}}}
        (work / "sweep.yaml").write_text(json.dumps(config))
        made = subprocess.run([BIN, "sweep", str(work / "sweep.yaml"), "--base-url", url], capture_output=True, text=True, env=env, check=True)
        path = made.stdout.strip().splitlines()[-1].split()[-1]
        out = work / "agent.txt"
        t = time.perf_counter()
        subprocess.run([BIN, "agent", path, "--base-url", url], env={**env, "BENCH_OUT": str(out)}, check=True, capture_output=True)
        rows.append(("cairn agent", (time.perf_counter() - t) / n, read_latencies(out)))

        out = work / "direct-offline.txt"
        t = time.perf_counter()
        for _ in range(n):
            subprocess.run([sys.executable, str(work / "train.py")], env={**env, "BENCH_OUT": str(out), "CAIRN_MODE": "offline"}, check=True)
        rows.append(("direct, offline", (time.perf_counter() - t) / n, read_latencies(out)))

        out = work / "local.txt"
        local_env = {**env, "BENCH_OUT": str(out), "CAIRN_BASE_URL": "http://127.0.0.1:9"}
        t = time.perf_counter()
        subprocess.run([BIN, "agent", "--local", str(work / "sweep.yaml")], env=local_env, check=True, capture_output=True, cwd=work)
        rows.append(("cairn agent --local", (time.perf_counter() - t) / n, read_latencies(out)))
    finally:
        server.terminate()
        server.wait()
    print(f"sweep agents: {n} trials of import + init + log + finish ({os.cpu_count()} cores)")
    print(f"  {'':<22}{'wall per trial':>16}{'spawn to first log (median)':>30}{'agent overhead per trial':>27}")
    # Each agent against the direct loop in its mode (the local agent's trials are offline runs).
    base = {"cairn agent": rows[0][1], "cairn agent --local": rows[2][1]}
    for name, wall, lat in rows:
        over = f"{(wall - base[name]) * 1e3:>8.1f} ms" if name in base else ""
        med = f"{statistics.median(lat) * 1e3:>8.0f} ms" if lat else "-"
        print(f"  {name:<22}{wall * 1e3:>13.1f} ms{med:>30}{over:>27}")


if __name__ == "__main__":
    main()
