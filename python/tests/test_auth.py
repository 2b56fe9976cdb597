"""The Python SDK against a server with auth on: keys from every source, typed errors at once,
and `cairn sync` with a good and a revoked key."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Server, cairn_binary, run_script


def admin(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([cairn_binary(), *args, "--data-dir", str(data_dir)], input=stdin, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("secured")
    admin(data, "users", "create", "ana")
    admin(data, "teams", "create", "lab")
    admin(data, "teams", "add-member", "lab", "ana", "--role", "member")
    srv = Server(data, "--auth", "on")
    yield srv
    srv.stop()


def new_key(server: Server) -> str:
    return admin(server.data_dir, "keys", "create", "--user", "ana").strip().splitlines()[-1]


@pytest.fixture
def auth_env(secured: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "CAIRN_BASE_URL": secured.url,
        "CAIRN_DIR": str(tmp_path),
        "CAIRN_SILENT": "true",
        "CAIRN_CONFIG_DIR": str(tmp_path / "config"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("CAIRN_API_KEY", "CAIRN_MODE", "CAIRN_ENTITY", "CAIRN_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    return values


def test_a_bad_or_missing_key_fails_init_at_once(auth_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import cairn
    from cairn.errors import Unauthorized

    for key in (None, "cairn_" + "x" * 43):
        if key:
            monkeypatch.setenv("CAIRN_API_KEY", key)
        started = time.monotonic()
        with pytest.raises(Unauthorized) as info:
            cairn.init(entity="lab", project="auth")
        assert time.monotonic() - started < 5, "no offline retry loop"
        assert "API key" in str(info.value) or "credentials" in str(info.value)
        assert isinstance(info.value, PermissionError)
    assert cairn.run is None


def test_keys_from_the_environment_from_login_and_from_the_saved_file(
    secured: Server, auth_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cairn
    from cairn.errors import Forbidden, Unauthorized

    key = new_key(secured)
    monkeypatch.setenv("CAIRN_API_KEY", key)
    with cairn.init(entity="lab", project="auth", id="from-env") as run:
        run.log({"loss": 1.0})
    with pytest.raises(Forbidden) as info:
        cairn.init(entity="elsewhere", project="auth")
    assert "elsewhere" in str(info.value)
    monkeypatch.delenv("CAIRN_API_KEY")

    # cairn.login: checked, used in this process, saved (0600) for the next ones.
    with pytest.raises(Unauthorized):
        cairn.login(key="cairn_" + "y" * 43, host=secured.url)
    assert cairn.login(key=key, host=secured.url)
    with cairn.init(entity="lab", project="auth", id="from-login") as run:
        run.log({"loss": 0.5})
    saved = list((tmp_path / "config" / "keys").iterdir())
    assert len(saved) == 1 and stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert saved[0].read_text().strip() == key
    result = run_script(
        """
        import cairn
        with cairn.init(entity="lab", project="auth", id="from-file") as run:
            run.log({"loss": 0.25})
        print(cairn.Api().run("lab/auth/from-file").summary["loss"])
        """,
        tmp_path,
        auth_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("0.25")
    api = cairn.Api(base_url=secured.url, api_key=key)
    assert {r.id for r in api.runs("lab/auth")} >= {"from-env", "from-login", "from-file"}


def test_sync_with_a_key_and_with_a_revoked_one(secured: Server, auth_env: dict[str, str], tmp_path: Path) -> None:
    key = new_key(secured)
    code = """
        import cairn
        run = cairn.init(entity="lab", project="auth", id="{id}", mode="offline")
        for i in range(5):
            run.log({{"acc": i}})
        run.finish()
        print(run.dir)
    """
    for run_id in ("sync-ok", "sync-revoked"):
        done = run_script(code.format(id=run_id), tmp_path, auth_env)
        assert done.returncode == 0, done.stderr
    dirs = {p.name.split("-", 2)[-1]: p for p in (tmp_path / "cairn").iterdir()}
    env = {**os.environ, **auth_env, "CAIRN_API_KEY": key}
    synced = subprocess.run([cairn_binary(), "sync", str(dirs["sync-ok"])], capture_output=True, text=True, env=env)
    assert synced.returncode == 0, synced.stderr
    admin(secured.data_dir, "keys", "revoke", key)
    time.sleep(1.1)
    refused = subprocess.run([cairn_binary(), "sync", str(dirs["sync-revoked"])], capture_output=True, text=True, env=env)
    assert refused.returncode != 0
    assert "API key is not valid" in refused.stderr, refused.stderr
    assert dirs["sync-revoked"].exists()
    env["CAIRN_API_KEY"] = new_key(secured)
    again = subprocess.run([cairn_binary(), "sync", str(dirs["sync-revoked"])], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    import cairn

    run = cairn.Api(base_url=secured.url, api_key=env["CAIRN_API_KEY"]).run("lab/auth/sync-revoked")
    assert run.summary["acc"] == 4


def test_a_big_file_that_someone_else_stored_is_sent_again_not_refused(secured: Server, auth_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cairn
    import cairn.sdk

    # Keys from the environment only (an earlier test logged in for this process).
    monkeypatch.setattr(cairn.sdk, "_login_state", {"host": None, "keys": {}})
    admin(secured.data_dir, "users", "create", "bo")
    bo_key = admin(secured.data_dir, "keys", "create", "--user", "bo").strip().splitlines()[-1]
    data = os.urandom(9 << 20)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(data)
    # Ana logs a checkpoint in her private project.
    monkeypatch.setenv("CAIRN_API_KEY", new_key(secured))
    run = cairn.init(entity="ana", project="private-ckpt", id="a")
    art = cairn.Artifact("weights", type="model")
    art.add_file(str(weights))
    run.log_artifact(art)
    run.finish()
    # Bo, who cannot read it, has the same bytes: the server holds them, but he must send them.
    monkeypatch.setenv("CAIRN_API_KEY", bo_key)
    run = cairn.init(entity="bo", project="mine", id="b")
    art = cairn.Artifact("weights", type="model")
    art.add_file(str(weights))
    run.log_artifact(art)
    run.finish()
    got = cairn.Api().artifact("bo/mine/weights:latest")
    root = got.download(str(tmp_path / "down"))
    assert (Path(root) / "weights.bin").read_bytes() == data
    # And knowing the hash alone is still not enough to name it.
    with pytest.raises(cairn.errors.Forbidden):
        cairn.Api()._client.call_json(
            "POST",
            "/api/v1/projects/bo/mine/artifacts",
            json.dumps({"name": "stolen", "type": "model", "entries": [{"path": "x", "digest": "0" * 63 + "1", "size": 1}]}),
        )
