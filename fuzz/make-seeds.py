"""Makes the fuzz targets' seed corpora from real data: what the real clients send and what the
real server stores and answers.

    .venv/bin/python fuzz/make-seeds.py target/debug/cairn

It starts the cairn server behind a recording proxy, logs runs with the cairn Python client and
with the official wandb client (online, and offline for a `.wandb` log), then keeps:
- wire_batch: the binary ingest batches the cairn client sent;
- wal: the cairn client's write-ahead-log segments (their unwritten zero tail cut off);
- history_columns: the server's binary history answers;
- chunk: the stored chunks of the SQLite file (start step, then the bytes);
- graphql, file_stream: the official client's requests;
- wandb_log: the official client's offline run log;
- json_ingest, filter: the JSON bodies and filters of the API documentation and the tests.
Seeds larger than 64 KiB are left out (they slow the fuzzers down). The output replaces
fuzz/seeds/.
"""

import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SEEDS = ROOT / "seeds"
MAX_SEED = 64 << 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keep(target: str, data: bytes) -> None:
    if not data or len(data) > MAX_SEED:
        return
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def proxy(upstream: int) -> int:
    """A recording proxy in front of the server; returns its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def relay(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if self.command == "POST":
                if path.endswith("/ingest") and self.headers.get("Content-Type") == "application/x-cairn-batch":
                    keep("wire_batch", body)
                elif path.endswith("/ingest"):
                    keep("json_ingest", body)
                elif path == "/graphql":
                    keep("graphql", body)
                elif path.endswith("/file_stream"):
                    keep("file_stream", body)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length", "connection")}
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            if path.endswith("/history") and answer.getheader("Content-Type") == "application/x-cairn-columns":
                keep("history_columns", data)
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return port


def run_python(code: str, env: dict[str, str], cwd: Path, python: str = sys.executable) -> None:
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    subprocess.run([python, str(script)], env=env, cwd=cwd, check=True, timeout=300)


CAIRN_RUNS = """
import math, sys, cairn
run = cairn.init(entity="seeder", project="seeds", config={"lr": 0.01, "model": {"layers": 4, "act": "gelu"}, "tags": ["a", "b"]})
for step in range(120):
    row = {"loss": 1 / (step + 1), "acc": step / 120, "epoch": step // 40, "lr": 0.01 * math.cos(step)}
    if step % 10 == 0:
        row["eval"] = {"loss": 2 / (step + 1), "name": f"e{step}"}
        print(f"step {step}", flush=True)
    if step == 50:
        row["spike"] = float("nan")
        row["hist"] = cairn.Histogram([1, 2, 2, 3, 3, 3])
        print("a warning", file=sys.stderr, flush=True)
    run.log(row)
run.log({"sparse": 1.0}, step=500)
run.log({"sparse": "text", "big": 10 ** 12}, step=900)
run.summary["best"] = 0.99
run.config.update({"late": True})
run.finish()
"""

WANDB_RUN = """
import wandb
run = wandb.init(project="seeds-wandb", name="wb", config={"lr": 0.1, "nested": {"b": 2}})
for step in range(40):
    run.log({"loss": 1 / (step + 1), "acc": step / 40, "nested": {"x": step}})
    if step % 10 == 0:
        print(f"wandb step {step}", flush=True)
run.summary["best"] = 0.5
run.finish()
"""

WANDB_API = """
import os, wandb
api = wandb.Api()
for run in api.runs("seeds-wandb"):
    run.history(samples=10)
    list(run.scan_history(page_size=10))
    run.summary, run.config
"""

JSON_INGEST = [
    {"history": {"offset": 0, "rows": [{"_step": 0, "_timestamp": 1700000000.5, "loss": 0.5, "train": {"acc": 0.9, "lr": "NaN"}}, {"_step": 2, "loss": "Infinity"}]},
     "system": {"offset": 0, "rows": [{"_timestamp": 1700000000, "system.cpu": 50}]},
     "console": {"offset": 0, "lines": [{"line": 0, "text": "hi", "stream": "stderr"}]}},
    {"summary": {"offset": 0, "updates": [{"set": {"best": 1.0, "nested": {"a": [1, 2]}}, "remove": ["old"]}]},
     "config": {"offset": 0, "updates": [{"set": {"lr": 0.1}, "remove": []}]}},
    {"history": {"offset": 0, "rows": [{"_step": 5, "img": {"_type": "histogram", "values": [1, 2], "bins": [0, 1, 2]}, "text": "x", "flag": True, "n": None}]}},
]

FILTERS = [
    'config.lr > 0.01 and state = "finished"',
    'tags contains "three" or not (summary.acc <= 0.5)',
    'name ~ "^run-[0-9]+$" and group in ["even", "odd"]',
    'created_at >= "2026-01-01T00:00:00Z" and runtime < 3600',
    'lr = 0.02',
    '{"$and": [{"config.lr": {"$gt": 0.01}}, {"state": "finished"}]}',
    '{"$or": [{"tags": {"$in": ["three"]}}, {"summary.acc": {"$gte": 0.5, "$lt": 0.9}}]}',
    '{"config.opt": {"$regex": "^ad"}, "summary.loss": {"$exists": true}}',
    '{"$not": {"name": {"$eq": "run-1"}}}',
    '{"duration": {"$lte": 10}, "config.model.layers": {"$ne": 3}}',
    "-summary.loss",
    "config.opt",
]


def main() -> None:
    binary = Path(sys.argv[1]).resolve()
    wandb_python = os.environ.get("WANDB_PYTHON", sys.executable)
    shutil.rmtree(SEEDS, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="cairn-seeds-"))
    port = free_port()
    server = subprocess.Popen([str(binary), "server", "--data-dir", str(work / "data"), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        front = proxy(port)
        url = f"http://127.0.0.1:{front}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}
        cairn_env = {**base, "CAIRN_BASE_URL": url, "CAIRN_DIR": str(work / "cairn")}
        (work / "cairn").mkdir()
        run_python(CAIRN_RUNS, cairn_env, work)
        wandb_env = {**base, "WANDB_BASE_URL": url, "WANDB_API_KEY": "local-" + "k" * 40, "WANDB_DIR": str(work), "WANDB_SILENT": "true", "HOME": str(work), "WANDB_DISABLE_GIT": "true"}
        run_python(WANDB_RUN, wandb_env, work, wandb_python)
        run_python(WANDB_API, wandb_env, work, wandb_python)
        offline = work / "offline"
        offline.mkdir()
        run_python(WANDB_RUN, {**wandb_env, "WANDB_MODE": "offline", "WANDB_DIR": str(offline)}, offline, wandb_python)
        # The server's history answers, through the proxy.
        runs = json.load(urllib.request.urlopen(f"{url}/api/v1/projects/seeder/seeds/runs"))["runs"]
        for run in runs:
            for query in ("format=binary", "format=binary&keys=loss,acc", "format=binary&keys=sparse,big"):
                urllib.request.urlopen(f"{url}/api/v1/runs/seeder/seeds/{run['run_id']}/history?{query}").read()
        for segment in sorted((work / "cairn").rglob("wal/*.seg")):
            keep("wal", segment.read_bytes().rstrip(b"\0"))
        for log in offline.rglob("*.wandb"):
            data = log.read_bytes()
            keep("wandb_log", data[: MAX_SEED])
        db = sqlite3.connect(f"file:{work / 'data' / 'cairn.db'}?mode=ro", uri=True)
        for start, data in db.execute("SELECT start_step, data FROM chunks LIMIT 200"):
            keep("chunk", start.to_bytes(8, "little", signed=True) + bytes(data))
        for body in JSON_INGEST:
            keep("json_ingest", json.dumps(body).encode())
        for text in FILTERS:
            keep("filter", text.encode())
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    for folder in sorted(SEEDS.iterdir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
