"""Soak: many client processes log into one server for a long time (not in CI).

    .venv/bin/python bench/soak.py [--clients 50] [--minutes 10] [--rate 100] [--bin target/release/cairn]

Every 30 s it prints the server's resident memory, as its heap, the part of it the embedded
database holds (SQLite's page caches: they fill as the data grows, up to their bound), and its
mapped files (the database, read through mmap, grows with the data), and its open file
descriptors (the heap less the database's part, and the descriptors, must stay flat once warm;
the database's part must stay under its bound), the ingest backlog (rows logged by the clients that the server does not hold yet),
the rows the server took in that window, and the clients' `log()` latency: the p99 and the worst
of each client's window, as the median and the maximum over clients. At the end every run must be
finished and hold exactly the rows its client logged; the script exits 1 if not, or if memory or
descriptors grew.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLIENT = r"""
import json, os, sys, time
import cairn
i, rate, until, window = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
run = cairn.init(project="soak", id=f"client-{i}", config={"client": i})
period = 1.0 / rate
logged, lat, next_report, t_next = 0, [], time.monotonic() + window, time.monotonic()
while time.monotonic() < until:
    row = {f"m{k}": logged * 0.001 + k for k in range(10)}
    t0 = time.perf_counter_ns()
    run.log(row)
    lat.append(time.perf_counter_ns() - t0)
    logged += 1
    now = time.monotonic()
    if now >= next_report:
        lat.sort()
        print(json.dumps({"logged": logged, "p99_us": lat[int(len(lat) * 0.99)] / 1e3, "max_us": lat[-1] / 1e3}), flush=True)
        lat, next_report = [], now + window
    t_next += period
    if t_next > now:
        time.sleep(t_next - now)
t0 = time.perf_counter()
run.finish()
print(json.dumps({"logged": logged, "finish_s": time.perf_counter() - t0, "done": True}), flush=True)
"""


def proc_stats(pid: int) -> tuple[float, float, int]:
    """Resident memory in MiB, as the heap (anonymous) and the mapped files (the database, which
    SQLite reads through mmap: it grows with the data), and open descriptors."""
    kb = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                kb[name] = int(value.split()[0])
    return kb.get("RssAnon", 0) / 1024, (kb.get("RssFile", 0) + kb.get("RssShmem", 0)) / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def held_rows(url: str, run_id: str) -> tuple[int, str | None]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/runs/tester/soak/{run_id}", timeout=10) as r:
            info = json.load(r)
        return int(info["offsets"]["history"]), info["state"]
    except Exception:  # not created yet
        return 0, None


# SQLite's page caches: 8 MiB for the writer, 2 MiB for each of 4 readers
# (crates/cairn_store/src/sqlite/pool.rs), and a few MiB of its own besides.
DATABASE_HEAP_BOUND_MIB = 16 + 6


def database_heap(url: str) -> float:
    """What the server says its embedded database holds in its heap, in MiB."""
    with urllib.request.urlopen(f"{url}/api/v1/info", timeout=10) as r:
        return json.load(r).get("database_heap_bytes", 0) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="steps per second per client (10 floats each)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between reports")
    parser.add_argument("--bin", default=os.environ.get("CAIRN_BIN", str(ROOT / "target" / "release" / "cairn")))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cairn-soak-"))
    server = subprocess.Popen([args.bin, "server", "--port", "0", "--data-dir", str(work / "data"), "--default-entity", "tester"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "CAIRN_LOG": "warn"})
    url = server.stdout.readline().split()[-1]
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    print(f"server {url} (pid {server.pid}), {args.clients} clients × {args.rate:g} steps/s for {args.minutes:g} min; data in {work}", flush=True)

    until = time.monotonic() + args.minutes * 60
    env = {**os.environ, "CAIRN_BASE_URL": url, "CAIRN_DIR": str(work / "runs"), "CAIRN_SILENT": "true", "CAIRN_CONSOLE": "off"}
    reports: dict[int, dict] = {}
    lock = threading.Lock()
    clients = []
    for i in range(args.clients):
        p = subprocess.Popen([sys.executable, "-c", CLIENT, str(i), str(args.rate), str(until), str(args.interval)],
                             stdout=subprocess.PIPE, text=True, env=env)
        clients.append(p)
    # The clients take the deadline on the monotonic clock, which all processes share on Linux.
    for i, p in enumerate(clients):
        def read(i=i, p=p):
            for line in p.stdout:
                with lock:
                    reports.setdefault(i, {}).update(json.loads(line))
        threading.Thread(target=read, daemon=True).start()

    print(f"{'t s':>5} {'heap MiB':>8} {'of it db':>8} {'files MiB':>9} {'FDs':>5} {'backlog rows':>12} {'rows/s in':>10} {'log p99 µs (median, max)':>26} {'log max µs':>10}", flush=True)
    samples = []
    last_held, last_t, start = 0, time.monotonic(), time.monotonic()
    while any(p.poll() is None for p in clients):
        deadline = time.monotonic() + args.interval
        while time.monotonic() < deadline and any(p.poll() is None for p in clients):
            time.sleep(0.2)
        rss, mapped, fds = proc_stats(server.pid)
        db_heap = database_heap(url)
        with lock:
            snapshot = {i: dict(r) for i, r in reports.items()}
        held = sum(held_rows(url, f"client-{i}")[0] for i in range(args.clients))
        logged = sum(r.get("logged", 0) for r in snapshot.values())
        now = time.monotonic()
        p99s = [r["p99_us"] for r in snapshot.values() if "p99_us" in r]
        maxes = [r["max_us"] for r in snapshot.values() if "max_us" in r]
        p99 = f"{statistics.median(p99s):.1f}, {max(p99s):.1f}" if p99s else "-"
        print(f"{now - start:5.0f} {rss:8.1f} {db_heap:8.1f} {mapped:9.1f} {fds:5d} {max(0, logged - held):12d} {(held - last_held) / (now - last_t):10.0f} {p99:>26} {max(maxes) if maxes else 0:10.0f}", flush=True)
        samples.append((rss, db_heap, fds))
        last_held, last_t = held, now

    failures = []
    for i, p in enumerate(clients):
        if p.wait() != 0:
            failures.append(f"client {i} exited {p.returncode}")
    finishes = []
    for i in range(args.clients):
        held, state = held_rows(url, f"client-{i}")
        r = reports.get(i, {})
        finishes.append(r.get("finish_s", float("nan")))
        if held != r.get("logged") or state != "finished":
            failures.append(f"client-{i}: logged {r.get('logged')}, the server holds {held}, state {state}")
    print(f"finish: median {statistics.median(finishes) * 1e3:.1f} ms, max {max(finishes) * 1e3:.1f} ms", flush=True)
    # Flat: after the first third (warm), the heap less the database's part grows by less than
    # 10 % (and 2 MiB), and descriptors not at all (the mapped database, and the database's
    # caches up to their bound, grow with the data, as they should).
    warm = samples[len(samples) // 3:] if len(samples) >= 3 else samples
    if warm:
        (rss0, db0, fd0), (rss1, db1, fd1) = warm[0], warm[-1]
        own0, own1 = rss0 - db0, rss1 - db1
        top = max(db for _, db, _ in samples)
        print(f"warm: heap {rss0:.1f} → {rss1:.1f} MiB, of it the database's {db0:.1f} → {db1:.1f} MiB (at most {top:.1f}), the rest {own0:.1f} → {own1:.1f} MiB; FDs {fd0} → {fd1}", flush=True)
        if own1 > own0 * 1.1 + 2:
            failures.append(f"the server's heap, less the database's part, grew from {own0:.1f} to {own1:.1f} MiB")
        if top > DATABASE_HEAP_BOUND_MIB:
            failures.append(f"the database held {top:.1f} MiB of the heap, over its bound of {DATABASE_HEAP_BOUND_MIB} MiB")
        if fd1 > fd0 + 2:
            failures.append(f"the server's descriptors grew from {fd0} to {fd1}")
    server.terminate()
    server.wait(timeout=30)
    for f in failures:
        print("FAIL:", f, flush=True)
    print("ok" if not failures else f"{len(failures)} failures", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
