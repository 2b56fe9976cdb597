"""Fork and rewind on a run of 1M random floats: how long the init that forks or rewinds takes,
and how much chunk data each run holds afterwards (a fork's shared chunks hold none).

    cargo build --release -p cairn_cli && .venv/bin/python bench/fork_cost.py
"""
import os, subprocess, sys, time, tempfile, signal
import cairn, random
rnd = random.Random(7).random

def db_bytes(d):
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            if f.startswith("cairn.db") or f.endswith(".db") or "-wal" in f:
                total += os.path.getsize(os.path.join(root, f))
    return total

tmp = tempfile.mkdtemp()
data = os.path.join(tmp, "data")
srv = subprocess.Popen([os.environ.get("CAIRN_BIN") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", "release", "cairn"), "server", "--port", "0", "--data-dir", data, "--default-entity", "b"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "CAIRN_LOG": "error"})
url = srv.stdout.readline().split()[-1]
os.environ.update(CAIRN_BASE_URL=url, CAIRN_DIR=tmp, CAIRN_SILENT="true")
run = cairn.init(project="fb", id="src", settings={"console": "off", "stats_sampling_interval": 0})
for i in range(1_000_000):
    run.log({"loss": rnd()})
run.finish()
time.sleep(1.5)
before = db_bytes(data)
t = time.perf_counter()
fork = cairn.init(project="fb", fork_from="src?_step=900000", settings={"console": "off", "stats_sampling_interval": 0})
fork_s = time.perf_counter() - t
fork.finish()
time.sleep(1.5)
after_fork = db_bytes(data)
t = time.perf_counter()
rw = cairn.init(project="fb", id="src", resume_from="src?_step=500000", settings={"console": "off", "stats_sampling_interval": 0})
rewind_s = time.perf_counter() - t
rw.finish()
time.sleep(1.5)
after_rewind = db_bytes(data)
api = cairn.Api(base_url=url)
n = sum(1 for _ in api.run(f"b/fb/{fork.id}").scan_history(keys=["loss"], page_size=1_000_000))
print(f"source: 1,000,000 steps (3 keys with _timestamp/_runtime); store {before/1e6:.1f} MB")
print(f"fork at 900,000: init {fork_s*1000:.0f} ms; store grew {(after_fork-before)/1e3:.0f} kB; fork reads {n} points")
print(f"rewind to 500,000: init {rewind_s*1000:.0f} ms; store grew {(after_rewind-after_fork)/1e3:.0f} kB")
srv.send_signal(signal.SIGINT); srv.wait()
import sqlite3
db = sqlite3.connect(os.path.join(data, "cairn.db"))
for run_id, n, shared, b in db.execute("""SELECT r.run_id, count(*), sum(c.shared_key IS NOT NULL), sum(length(c.data)) FROM chunks c
        JOIN run_keys k ON k.key_pk = c.key_pk JOIN runs r ON r.run_pk = k.run_pk GROUP BY r.run_id"""):
    print(f"  {run_id}: {n} chunk rows ({shared} shared), {b/1e6:.2f} MB of chunk data")
