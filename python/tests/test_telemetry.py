"""What the client collects without being asked: system metrics, the console, metadata, files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

from conftest import Server, run_script, wait_for


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def run_url(server_url: str, project: str, run_id: str) -> str:
    return f"{server_url}/api/v1/runs/tester/{project}/{run_id}"


def test_system_metrics_follow_a_cpu_burning_child(server, env, tmp_path, project):
    result = run_script(
        f"""
        import subprocess, sys, time
        import cairn
        run = cairn.init(project={project!r}, id="burn", settings={{"stats_sampling_interval": 0.5}})
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(3)
        child.kill()
        run.finish()
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    keys = {k["name"]: k for k in get(run_url(server.url, project, "burn") + "/keys")}
    system = {name: k for name, k in keys.items() if k["stream"] == "system"}
    for name in [
        "system.cpu",
        "system.cpu.0.cpu_percent",
        "system.memory_percent",
        "system.proc.memory.rssMB",
        "system.proc.memory.percent",
        "system.proc.memory.availableMB",
        "system.disk./.usagePercent",
        "system.disk./.usageGB",
        "system.disk.in",
        "system.disk.out",
        "system.network.sent",
        "system.network.recv",
    ]:
        assert name in system, f"{name} missing from {sorted(system)}"
    # A first sample at start, then one every half second.
    assert system["system.cpu"]["count"] >= 4, system["system.cpu"]
    # The child burns one core of the machine: the process tree's share shows it.
    cores = os.cpu_count() or 1
    assert system["system.cpu"]["max"] >= 60 / cores, system["system.cpu"]
    assert system["system.cpu"]["max"] <= 100.5
    assert 0 < system["system.memory_percent"]["max"] <= 100
    assert system["system.proc.memory.rssMB"]["min"] > 5
    assert 0 < system["system.disk./.usagePercent"]["max"] <= 100
    # No GPU on this machine: no GPU keys, and no error.
    if not os.path.exists("/dev/nvidiactl"):
        assert not [n for n in system if n.startswith("system.gpu")]
    # System metrics are not history.
    assert "system.cpu" not in [n for n, k in keys.items() if k["stream"] == "history"]


CONSOLE_PROGRAM = r"""
import os, subprocess, sys, time
import cairn
from tqdm import tqdm

run = cairn.init(project=PROJECT, id=RUN_ID)
print("from python", flush=True)
os.write(1, b"from C-level write\n")
subprocess.run(["sh", "-c", "echo from a child process"], check=True)
time.sleep(0.3)
for _ in tqdm(range(2000), mininterval=0, miniters=1, ascii=True, ncols=60):
    time.sleep(0.0005)
time.sleep(0.3)
print("error line", file=sys.stderr, flush=True)
time.sleep(0.3)
sys.stdout.write("no newline at the end")
run.finish()
"""


def test_console_is_captured_at_the_descriptor_level(server, env, tmp_path, project):
    script = tmp_path / "console_program.py"
    script.write_text(f"PROJECT = {project!r}\nRUN_ID = 'console'\n" + CONSOLE_PROGRAM)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, timeout=120, cwd=tmp_path, env={**os.environ, **env}
    )
    assert result.returncode == 0, result.stderr.decode()
    out, err = result.stdout, result.stderr
    # The terminal got every byte, unchanged.
    assert out == b"from python\nfrom C-level write\nfrom a child process\nno newline at the end", out
    assert err.count(b"\r") >= 1000 and b"2000/2000" in err and err.endswith(b"error line\n"), err[-300:]

    lines = get(run_url(server.url, project, "console") + "/console?limit=1000")["lines"]
    texts = [(line["stream"], line["text"]) for line in lines]
    assert texts[:3] == [("stdout", "from python"), ("stdout", "from C-level write"), ("stdout", "from a child process")], texts
    # The progress bar is one line, holding its last state.
    bars = [t for s, t in texts if "it/s" in t or "|" in t]
    assert len(bars) == 1, texts
    assert bars[0].startswith("100%") and "2000/2000" in bars[0], bars
    assert texts[-2:] == [("stderr", "error line"), ("stdout", "no newline at the end")], texts
    assert all(line["time"] for line in lines)

    # output.log, uploaded with the run, holds the same lines.
    log = get_bytes(run_url(server.url, project, "console") + "/files/output.log").decode()
    assert log.splitlines() == [t for _, t in texts], log


def test_console_off(server, env, tmp_path, project):
    result = run_script(
        f"""
        import cairn
        run = cairn.init(project={project!r}, id="quiet", settings={{"console": "off"}})
        print("not captured", flush=True)
        run.finish()
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "not captured\n"
    assert get(run_url(server.url, project, "quiet") + "/console")["lines"] == []
    names = [f["path"] for f in get(run_url(server.url, project, "quiet") + "/files")]
    assert "output.log" not in names


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True, capture_output=True
    )


def test_metadata_in_a_clean_then_dirty_git_repository(server, env, tmp_path, project):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            import cairn
            run = cairn.init(project={project!r}, id=sys.argv[1])
            run.log({{"loss": 1.0}})
            run.finish()
            """
        )
    )
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", "https://example.com/team/repo.git")
    command = [sys.executable, "train.py"]
    clean = subprocess.run([*command, "clean", "--lr", "0.1"], cwd=repo, capture_output=True, text=True, env={**os.environ, **env})
    assert clean.returncode == 0, clean.stderr
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# tuned\n")
    dirty = subprocess.run([*command, "dirty"], cwd=repo, capture_output=True, text=True, env={**os.environ, **env})
    assert dirty.returncode == 0, dirty.stderr

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    info = get(run_url(server.url, project, "clean"))
    meta = info["metadata"]
    assert meta["git"] == {"root": str(repo), "commit": head, "branch": "main", "remote": "https://example.com/team/repo.git", "dirty": False}
    assert meta["program"].endswith("train.py") and meta["args"] == ["clean", "--lr", "0.1"]
    assert meta["executable"] == sys.executable
    assert meta["language"] == "python" and meta["language_version"] == ".".join(map(str, sys.version_info[:3]))
    for key in ["host", "os", "username", "client_version", "cpu_count", "cpu_count_logical", "memory_gb"]:
        assert meta.get(key) not in (None, ""), f"{key} missing from {meta}"
    assert meta["cpu_count_logical"] == os.cpu_count()
    clean_files = wait_for(
        lambda: (f := [f["path"] for f in get(run_url(server.url, project, "clean") + "/files")]) and "requirements.txt" in f and f,
        what="requirements.txt",
    )
    assert "diff.patch" not in clean_files
    requirements = get_bytes(run_url(server.url, project, "clean") + "/files/requirements.txt").decode()
    assert "pytest==" in requirements

    dirty_meta = get(run_url(server.url, project, "dirty"))["metadata"]
    assert dirty_meta["git"]["dirty"] is True
    patch = get_bytes(run_url(server.url, project, "dirty") + "/files/diff.patch").decode()
    assert "+# tuned" in patch


def test_save_policies_and_content_addressing(server, env, tmp_path, project):
    result = run_script(
        f"""
        import os, time
        import cairn
        os.makedirs("ckpt", exist_ok=True)
        open("ckpt/a.pt", "wb").write(b"A" * 1000)
        open("notes.txt", "w").write("v1")
        open("final.txt", "w").write("the end")
        run = cairn.init(project={project!r}, id="saver")
        assert run.save("ckpt/*.pt", policy="now") == ["a.pt"]
        run.save("notes.txt", policy="live")
        run.save("final.txt", policy="end")
        time.sleep(3)
        open("notes.txt", "w").write("v2, longer")
        time.sleep(3)
        run.finish()
        other = cairn.init(project={project!r}, id="saver2")
        other.save("ckpt/a.pt", policy="now")
        other.finish()
        """,
        tmp_path,
        env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = {f["path"]: f for f in get(run_url(server.url, project, "saver") + "/files")}
    assert {"a.pt", "notes.txt", "final.txt"} <= set(files), files
    assert get_bytes(run_url(server.url, project, "saver") + "/files/notes.txt") == b"v2, longer"
    assert get_bytes(run_url(server.url, project, "saver") + "/files/final.txt") == b"the end"
    other = {f["path"]: f for f in get(run_url(server.url, project, "saver2") + "/files")}
    assert other["a.pt"]["sha256"] == files["a.pt"]["sha256"] == hashlib.sha256(b"A" * 1000).hexdigest()
    logs = list(tmp_path.glob("cairn/run-*-saver/logs/debug.log"))
    debug = logs[0].read_text()
    # notes.txt went up twice (live), the other files once.
    assert debug.count("file notes.txt:") == 2, debug
    # The second run's copy of a.pt sent nothing: the server had the content.
    debug2 = next(tmp_path.glob("cairn/run-*-saver2/logs/debug.log")).read_text()
    assert "file a.pt: 1000 bytes stored (0 sent)" in debug2, debug2

    bad = run_script(
        f"""
        import cairn
        run = cairn.init(project={project!r})
        try:
            run.save("x", policy="sometimes")
        except cairn.errors.InvalidValue as e:
            print(e)
        run.finish()
        """,
        tmp_path,
        env,
    )
    assert "sometimes" in bad.stdout, bad.stderr


def test_a_2gb_checkpoint_streams_and_resumes_after_the_server_dies(tmp_path, project):
    data = tmp_path / "server-data"
    server = Server(data)
    port = server.url.rsplit(":", 1)[-1]
    env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true", "CAIRN_FINISH_TIMEOUT_SECS": "60"}
    size = 2 << 30
    script = tmp_path / "big.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import resource, sys
            import cairn
            with open("big.ckpt", "wb") as f:
                f.truncate({size})
            run = cairn.init(project={project!r}, id="big")
            run.save("big.ckpt", policy="now")
            run.finish()
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            """
        )
    )
    client = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Kill the server while the upload is under way, then start it again on the same data.
        parts = lambda: [p for p in data.rglob("upload-*.part") if p.stat().st_size > (64 << 20)]  # noqa: E731
        wait_for(parts, timeout=120, what="the upload to start")
        server.process.kill()
        server.process.wait()
        held = parts()[0].stat().st_size
        time.sleep(1)
        server = _restart(data, port)
        out, err = client.communicate(timeout=300)
    finally:
        client.kill()
    assert client.returncode == 0, err
    peak_rss_mb = int(out.strip().splitlines()[-1]) / 1024
    assert peak_rss_mb < 300, f"client peak RSS {peak_rss_mb:.0f} MB for a 2 GB file"
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    server_peak_mb = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
    assert server_peak_mb < 300, f"server peak RSS {server_peak_mb:.0f} MB"
    files = get(f"{server.url}/api/v1/runs/tester/{project}/big/files")
    zeros = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        zeros.update(block)
    assert files[0]["size"] == size and files[0]["sha256"] == zeros.hexdigest(), files
    debug = next(tmp_path.glob("cairn/run-*-big/logs/debug.log")).read_text()
    assert "file big.ckpt: resumed at byte" in debug, debug
    resumed_at = int(debug.split("resumed at byte ")[1].split()[0])
    assert resumed_at >= held > 0, (resumed_at, held)
    print(f"2 GB save: client peak RSS {peak_rss_mb:.0f} MB, server peak RSS {server_peak_mb:.0f} MB, resumed at {resumed_at} bytes")
    server.stop()


def _restart(data: Path, port: str) -> Server:
    deadline = time.monotonic() + 10
    while True:
        try:
            return Server(data, port=port)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_child_that_outlives_the_run_keeps_its_output_and_does_not_hold_finish(server, env, tmp_path, project):
    result = run_script(
        f"""
        import subprocess, sys, time
        import cairn
        run = cairn.init(project={project!r}, id="outlived")
        child = subprocess.Popen([sys.executable, "-c",
            "import time\\nfor i in range(30):\\n    print('tick', i, flush=True)\\n    time.sleep(0.1)\\nprint('late', flush=True)"])
        time.sleep(0.3)
        started = time.monotonic()
        run.finish()
        print(f"finish took {{time.monotonic() - started:.2f}}", flush=True)
        print("child exit", child.wait(), flush=True)
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    took = float(out.split("finish took ")[1].split()[0])
    assert took < 5, out
    # The child was not killed by SIGPIPE, and what it printed after the run reached the terminal.
    assert "child exit 0" in out and "late" in out and "tick 29" in out, out


def test_a_resumed_run_keeps_the_console_of_its_earlier_processes(server, env, tmp_path, project):
    for word in ["first", "second"]:
        result = run_script(
            f"""
            import cairn
            run = cairn.init(project={project!r}, id="twice", resume="allow")
            print("{word} process, line one", flush=True)
            print("{word} process, line two", flush=True)
            run.finish()
            """,
            tmp_path,
            env,
        )
        assert result.returncode == 0, result.stderr
    lines = [line["text"] for line in get(run_url(server.url, project, "twice") + "/console?limit=1000")["lines"]]
    assert lines == ["first process, line one", "first process, line two", "second process, line one", "second process, line two"], lines
    names = sorted(f["path"] for f in get(run_url(server.url, project, "twice") + "/files"))
    logs = [n for n in names if n.startswith("output")]
    assert len(logs) == 2 and "output.log" in logs, names
