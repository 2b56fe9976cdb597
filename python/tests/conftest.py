"""Fixtures: the real ``cairn server`` binary on a free port, and helpers to run scripts in fresh
Python processes (atexit, signals and sys.exit only behave for real in a process of their own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cairn_binary() -> str:
    path = os.environ.get("CAIRN_BIN") or str(ROOT / "target" / "debug" / "cairn")
    if not os.path.exists(path):
        pytest.fail(f"the cairn binary is not at {path}; build it with `cargo build -p cairn_cli` or set CAIRN_BIN")
    return path


class Server:
    def __init__(self, data_dir: Path, *extra: str, port: int | str = 0) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [cairn_binary(), "server", "--port", str(port), "--data-dir", str(data_dir), "--default-entity", "tester", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "CAIRN_LOG": "warn"},
        )
        line = self.process.stdout.readline()
        assert "listening on" in line, line
        self.url = line.strip().rsplit(" ", 1)[-1]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("server-data"))
    yield srv
    srv.stop()


@pytest.fixture
def env(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Points cairn at the test server and keeps run directories in the test's folder."""
    values = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CAIRN_MODE", raising=False)
    monkeypatch.delenv("CAIRN_ENTITY", raising=False)
    monkeypatch.delenv("CAIRN_PROJECT", raising=False)
    return values


@pytest.fixture
def project() -> str:
    """A project name of its own for each test."""
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(server: Server):
    import cairn

    return cairn.Api(base_url=server.url)


@pytest.fixture(autouse=True)
def _finish_runs():
    yield
    # Only where a test imported cairn (the integration tests' venv has none).
    cairn = sys.modules.get("cairn")
    while cairn is not None and getattr(cairn, "run", None) is not None:
        cairn.run.finish(quiet=True)


def run_script(code: str, tmp_path: Path, env: dict[str, str], timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process; returns its result (stdout and stderr as text)."""
    script = tmp_path / f"script_{uuid.uuid4().hex[:6]}.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={**os.environ, **env, **extra_env},
    )


def wait_for(check, timeout: float = 15.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_logger(code: str, tmp_path: Path, env: dict[str, str], after: int) -> tuple[str, str, int]:
    """Runs a logging script that prints ``path <run path>``, ``dir <run dir>``, then
    ``logged <n>`` lines; SIGKILLs it once ``n`` reaches ``after``. Returns the run's path, its
    directory, and the last ``n`` printed."""
    script = tmp_path / f"logger_{uuid.uuid4().hex[:6]}.py"
    script.write_text(textwrap.dedent(code))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env})
    path = process.stdout.readline().split()[1]
    run_dir = process.stdout.readline().split()[1]
    last = 0
    for line in process.stdout:
        last = int(line.split()[1])
        if last >= after:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    return path, run_dir, last


def sync(run_dir: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``cairn sync`` of a run directory; asserts that it succeeds."""
    result = subprocess.run([cairn_binary(), "sync", run_dir], capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result


def wandb_env(server_url: str, tmp_path: Path, key: str | None) -> dict[str, str]:
    """What the official wandb client needs to talk to `server_url`, with its files in `tmp_path`."""
    env = {
        "WANDB_BASE_URL": server_url,
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "HOME": str(tmp_path),
    }
    if key is not None:
        env["WANDB_API_KEY"] = key
    return env
