"""What logging an image costs the training thread: cairn.Image against wandb.Image (wandb offline
mode), in one run of this script, on the same pixels.

    .venv/bin/python bench/media_log.py [--images 500] [--wandb-python /tmp/bench_peers/venv-wandb/bin/python]

Each tracker runs in a process of its own. Timed per image: `run.log({"img": Image(pixels)})`,
the object's construction included, as a training loop writes it. Then `finish()` (for cairn
online: until every image is encoded, uploaded and stored on a real server). The wandb venv
comes from ../shared/bench/peers/setup.sh, with numpy and pillow added; without it, cairn's
figures are printed alone. Figures only; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pixels(n: int):
    import numpy

    rng = numpy.random.default_rng(7)
    # 16 distinct photos' worth of noise, cycled: every logged image is a 224x224 RGB uint8 array.
    base = [rng.integers(0, 256, size=(224, 224, 3), dtype=numpy.uint8) for _ in range(16)]
    return [base[i % 16] for i in range(n)]


def worker(kind: str, n: int, out_dir: str) -> dict:
    images = pixels(n)
    times = []
    started = time.perf_counter()
    if kind.startswith("cairn"):
        import cairn as lib

        run = lib.init(project="media-bench", mode="offline" if kind == "cairn-offline" else "online", dir=out_dir)
    else:
        import wandb as lib

        run = lib.init(project="media-bench", mode="offline", dir=out_dir)
    init_s = time.perf_counter() - started
    for i, img in enumerate(images):
        t = time.perf_counter()
        run.log({"img": lib.Image(img, caption=f"sample {i}")}, step=i)
        times.append(time.perf_counter() - t)
    loop_s = sum(times)
    t = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - t
    times.sort()
    return {
        "kind": kind,
        "images": n,
        "init_s": init_s,
        "median_ms": statistics.median(times) * 1e3,
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3,
        "max_ms": times[-1] * 1e3,
        "loop_s": loop_s,
        "finish_s": finish_s,
    }


def start_server(data: str) -> tuple[subprocess.Popen, str]:
    binary = os.environ.get("CAIRN_BIN") or os.path.join(ROOT, "target", "release", "cairn")
    proc = subprocess.Popen(
        [binary, "server", "--port", "0", "--data-dir", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CAIRN_LOG": "warn"},
    )
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--wandb-python", default="/tmp/bench_peers/venv-wandb/bin/python")
    parser.add_argument("worker", nargs="*")
    args = parser.parse_args()
    if args.worker:
        kind, out_dir = args.worker
        print(json.dumps(worker(kind, args.images, out_dir)))
        return

    tmp = tempfile.mkdtemp(prefix="cairn-media-bench-")
    server, url = start_server(os.path.join(tmp, "server"))
    rows = []
    try:
        plan = [("cairn-online", sys.executable), ("cairn-offline", sys.executable)]
        if os.path.exists(args.wandb_python):
            plan.append(("wandb-offline", args.wandb_python))
        else:
            print(f"(no wandb venv at {args.wandb_python}: run ../shared/bench/peers/setup.sh wandb, then pip install numpy pillow in it)")
        for kind, python in plan:
            out = os.path.join(tmp, kind)
            os.makedirs(out)
            env = {**os.environ, "CAIRN_BASE_URL": url, "CAIRN_SILENT": "true", "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
            result = subprocess.run(
                [python, os.path.abspath(__file__), "--images", str(args.images), kind, out], capture_output=True, text=True, env=env, timeout=1800
            )
            if result.returncode != 0:
                print(f"{kind} failed:\n{result.stderr[-2000:]}")
                continue
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"log of a 224x224 RGB image on the training thread, {args.images} images, construction included")
    print(f"{'tracker':<15} {'median':>9} {'p99':>9} {'max':>9} {'loop':>8} {'finish':>8}")
    for r in rows:
        print(f"{r['kind']:<15} {r['median_ms']:>7.3f}ms {r['p99_ms']:>7.3f}ms {r['max_ms']:>7.2f}ms {r['loop_s']:>7.2f}s {r['finish_s']:>7.2f}s")
    by = {r["kind"]: r for r in rows}
    if "wandb-offline" in by and "cairn-online" in by:
        w, c = by["wandb-offline"], by["cairn-online"]
        print(f"wandb offline / cairn online: median {w['median_ms'] / c['median_ms']:.1f}x, p99 {w['p99_ms'] / c['p99_ms']:.1f}x")


if __name__ == "__main__":
    main()
