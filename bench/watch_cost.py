"""What `watch(log="all", log_freq=100)` costs a training loop: steps per second of a small MLP
with and without it, for cairn and for wandb (offline), in one run, interleaved, medians.

Needs a venv with torch, wandb and cairn (scripts/test-integrations.sh makes one):

    .venv-integrations/bin/python bench/watch_cost.py [--steps 3000] [--repeats 3]

Each variant runs in a fresh process; the loop logs the loss every step, so the variants without
watch are each tracker's floor."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

LOOP = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    tracker, watched, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    if tracker == "cairn":
        import cairn as lib
        run = lib.init(project="watch-bench", mode="offline")
    elif tracker == "wandb":
        import wandb as lib
        run = lib.init(project="watch-bench", mode="offline")
    else:
        lib = run = None
    if watched:
        lib.watch(model, log="all", log_freq=100)
    for _ in range(50):  # warm-up, untimed
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if run is not None:
            run.log({"loss": loss.item()})
    elapsed = time.perf_counter() - t0
    if run is not None:
        run.finish()
    print(json.dumps({"steps_per_s": steps / elapsed}))
    """
)

VARIANTS = [("none", "0"), ("cairn", "0"), ("cairn", "1"), ("wandb", "0"), ("wandb", "1")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "loop.py")
        with open(script, "w") as f:
            f.write(LOOP)
        env = {**os.environ, "CAIRN_DIR": work, "WANDB_DIR": work, "WANDB_SILENT": "true", "CAIRN_SILENT": "true", "WANDB_MODE": "offline"}
        for _ in range(args.repeats):
            for tracker, watched in VARIANTS:
                out = subprocess.run([sys.executable, script, tracker, watched, str(args.steps)], capture_output=True, text=True, env=env, cwd=work, check=False)
                if out.returncode != 0:
                    sys.exit(f"{tracker} watch={watched} failed:\n{out.stderr[-3000:]}")
                results[(tracker, watched)].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
    print(f"small MLP (784-256-256-10, batch 64, CPU, 1 thread), {args.steps} steps, median of {args.repeats}")
    print(f"{'variant':<28}{'steps/s':>10}{'vs its floor':>14}{'vs none':>12}")
    for tracker, watched in VARIANTS:
        med = statistics.median(results[(tracker, watched)])
        floor = statistics.median(results[(tracker, "0")])
        label = f"{tracker} {'watch(all, 100)' if watched == '1' else 'no watch' if tracker != 'none' else '(no tracker)'}"
        print(f"{label:<28}{med:>10.0f}{med / floor:>14.3f}{med / statistics.median(results[('none', '0')]):>12.3f}")


if __name__ == "__main__":
    main()
