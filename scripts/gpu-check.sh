#!/usr/bin/env bash
# The GPU path, on a machine with an NVIDIA GPU (never in CI): a short PyTorch CUDA training loop
# logs to a cairn server with cairn's SDK; then the run must have
#   system.gpu.0.{gpu,memory,memoryAllocated,temp,powerWatts}, with plausible values, and
#   the metadata the Overview shows: GPU name, count, memory, driver and CUDA version
# (the Overview's "System hardware" line, read from the same fields).
#   scripts/gpu-check.sh [WHEEL]
# With a wheel (scripts/build-wheel.sh), that is installed: the server is its bundled binary, so the
# machine needs no Rust toolchain. Without one, it builds ./python and the binary here. It makes
# its own venv (.venv-gpu) and installs torch from PyPI (CUDA's libraries come with it).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this machine has no NVIDIA GPU (or no driver)"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
VENV=${VENV:-.venv-gpu}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q torch
if [ $# -ge 1 ]; then
  "$VENV/bin/python" -m pip install -q --force-reinstall "$1"
else
  "$VENV/bin/python" -m pip install -q ./python
fi
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/cairn" server --port "$port" --data-dir "$work/data" --default-entity gpu >"$work/server.log" 2>&1 &
server_pid=$!
sleep 2
cd "$work"
CAIRN_BASE_URL="http://127.0.0.1:$port" CAIRN_STATS_INTERVAL=1 "$VENV/bin/python" - <<'PY'
import time

import torch

import cairn

assert torch.cuda.is_available(), "torch sees no CUDA device"
run = cairn.init(project="gpu-check", id="gpu-run", config={"device": torch.cuda.get_device_name(0)})
model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(512, 4096, device="cuda"), torch.randint(0, 10, (512,), device="cuda")
cairn.watch(model, log="all", log_freq=50)
started = time.time()
step = 0
while time.time() - started < 12:  # long enough for several system samples
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    run.log({"loss": loss.item()})
    step += 1
torch.cuda.synchronize()
run.finish()
print(f"trained {step} steps on {torch.cuda.get_device_name(0)}")

api = cairn.Api()
r = api.run("gpu/gpu-check/gpu-run")
system = api._client.call_json("GET", "/api/v1/runs/gpu/gpu-check/gpu-run/keys", None)
names = {k["name"] for k in system if k.get("stream") == "system"}
expected = {f"system.gpu.0.{m}" for m in ("gpu", "memory", "memoryAllocated", "temp", "powerWatts")}
missing = expected - names
assert not missing, f"not logged: {sorted(missing)}; system keys: {sorted(names)}"
plausible = {"gpu": (0, 100), "memory": (0, 100), "memoryAllocated": (0, 100), "temp": (5, 110), "powerWatts": (1, 2000)}
for metric, (lo, hi) in plausible.items():
    key = f"system.gpu.0.{metric}"
    info = next(k for k in system if k["name"] == key and k.get("stream") == "system")
    assert info["count"] >= 2, f"{key}: {info['count']} samples"
    assert lo <= info["min"] and info["max"] <= hi, f"{key} outside [{lo}, {hi}]: {info['min']}..{info['max']}"
    print(f"{key}: {info['count']} samples, {info['min']:.1f}..{info['max']:.1f}")
gpu_busy = next(k for k in system if k["name"] == "system.gpu.0.gpu")
assert gpu_busy["max"] > 0, "the GPU was never busy while training"
m = r.metadata
for field in ("gpu_name", "gpu_count", "gpu_memory_gb", "gpu_driver_version", "cuda_version"):
    assert m.get(field), f"metadata has no {field}: {m}"
assert m["gpu_count"] == torch.cuda.device_count(), (m["gpu_count"], torch.cuda.device_count())
assert m["gpu_name"] == torch.cuda.get_device_name(0), (m["gpu_name"], torch.cuda.get_device_name(0))
print(f"Overview: {m['gpu_count']} x {m['gpu_name']} ({m['gpu_memory_gb']} GB), CUDA {m['cuda_version']}, driver {m['gpu_driver_version']}")
hists = [k["name"] for k in api._client.call_json("GET", "/api/v1/runs/gpu/gpu-check/gpu-run/keys", None) if k["name"].startswith(("gradients/", "parameters/"))]
assert hists, "watch logged no histograms"
print(f"watch: {len(hists)} histogram keys")
print("GPU check passed")
PY
