"""The rest of the W&B run API, at module level and on Run: alert, log_code, restore, setup,
teardown, require and the term* printers, against a real server, read back through cairn.Api."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import cairn
from conftest import Server


def test_module_level_alert_reaches_the_current_run(server: Server, env, api, project) -> None:
    run = cairn.init(project=project, id="alerted")
    assert cairn.alert("Loss diverged", "at step 3", level=cairn.AlertLevel.ERROR) is True
    assert cairn.alert("Loss diverged", "again", level="ERROR") is False, "the same title within wait_duration is sent once"
    run.finish()
    alerts = api._client.call_json("GET", f"/api/v1/runs/{run.path}/alerts", None)
    assert [(a["title"], a["text"], a["level"]) for a in alerts] == [("Loss diverged", "at step 3", "ERROR")]
    with pytest.raises(cairn.errors.UsageError, match="cairn.init"):
        cairn.alert("no run", "none")


def write_tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("print('train')\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "notes.txt").write_text("not code\n")
    # What is never code: a virtual environment (by its pyvenv.cfg), hidden folders, run folders.
    (root / "env2" / "lib").mkdir(parents=True)
    (root / "env2" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "env2" / "lib" / "site.py").write_text("")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.py").write_text("")
    (root / "cairn").mkdir()
    (root / "cairn" / "run.py").write_text("")


def test_log_code_saves_the_source_as_a_code_artifact(server: Server, env, api, project, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src)
    run = cairn.init(project=project, id="coded")
    art = cairn.log_code(root=str(src), name="my source")
    assert (art.type, art.version, art.name.split(":")[0]) == ("code", "v0", "my-source")
    stored = api.artifact(f"{run.path.rsplit('/', 1)[0]}/my-source:latest")
    assert sorted(f.path for f in stored.files()) == ["main.py", "pkg/util.py"]
    root = Path(stored.download(root=str(tmp_path / "down")))
    assert (root / "main.py").read_text() == "print('train')\n"
    # include_fn adds, exclude_fn takes away (and wins); nothing matched is None.
    more = run.log_code(root=str(src), name="with-notes", include_fn=lambda p, r=None: p.endswith((".py", ".txt")), exclude_fn=lambda p, r=None: "pkg" in p)
    assert sorted(f.path for f in api.artifact(f"{run.path.rsplit('/', 1)[0]}/with-notes:latest").files()) == ["main.py", "notes.txt"]
    assert more.type == "code"
    assert run.log_code(root=str(src), include_fn=lambda p, r=None: p.endswith(".rs")) is None
    lineage = api.artifact(f"{run.path.rsplit('/', 1)[0]}/my-source:v0").logged_by()
    assert lineage.id == "coded"
    run.finish()


def test_restore_downloads_a_saved_file_once_unless_replaced(server: Server, env, api, project, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.bin"
    ckpt.write_bytes(b"weights v1")
    first = cairn.init(project=project, id="saver")
    first.save(str(ckpt), base_path=str(tmp_path), policy="now")
    first.finish()
    path = first.path

    resumed = cairn.init(project=project, id="restorer")
    f = cairn.restore("ckpt.bin", run_path=path)
    assert isinstance(f, io.TextIOBase) and f.read() == "weights v1"
    local = Path(f.name)
    assert local.parent == Path(resumed.dir), "into the current run's directory"
    f.close()
    local.write_text("edited here")
    assert cairn.restore("ckpt.bin", run_path=path).read() == "edited here", "there already: not downloaded again"
    assert cairn.restore("ckpt.bin", run_path=path, replace=True).read() == "weights v1"
    elsewhere = resumed.restore("ckpt.bin", run_path=path, root=str(tmp_path / "other"))
    assert Path(elsewhere.name).parent == tmp_path / "other"
    with pytest.raises(cairn.errors.NotFound, match="no file 'missing.bin'"):
        cairn.restore("missing.bin", run_path=path)
    resumed.finish()
    with pytest.raises(cairn.errors.UsageError, match="run_path"):
        cairn.restore("ckpt.bin")


def test_setup_teardown_require_and_the_printers(server: Server, env, api, project, capsys, monkeypatch) -> None:
    assert cairn.setup().settings is None
    cairn.require("service")
    a = cairn.init(project=project, id="torn-a")
    b = cairn.init(project=project, id="torn-b", reinit=True)
    cairn.teardown()
    assert cairn.run is None
    assert {api.run(r.path).state for r in (a, b)} == {"finished"}
    monkeypatch.delenv("CAIRN_SILENT")
    cairn.termlog("hello")
    cairn.termwarn("careful")
    cairn.termerror("broken")
    monkeypatch.setenv("CAIRN_SILENT", "true")
    cairn.termlog("quiet")
    cairn.termerror("still shown")
    err = capsys.readouterr().err
    assert err.splitlines() == ["cairn: hello", "cairn: WARNING careful", "cairn: ERROR broken", "cairn: ERROR still shown"]


def test_wandb_settings_and_keywords_are_accepted_and_an_unknown_keyword_is_named(server: Server, env, project, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="cairn")
    settings = {
        "mode": "online", "silent": True, "console": "off", "save_code": False, "code_dir": ".", "x_stats_sampling_interval": 0,
        "init_timeout": 30, "start_method": "thread", "_disable_stats": True, "_disable_meta": True, "disable_git": True,
    }
    run = cairn.init(project=project, id="settled", settings=settings, sync_tensorboard=False, monitor_gym=False)
    assert run.path.endswith("/settled")
    run.finish()
    ignored = [r.getMessage() for r in caplog.records if "accepted and ignored" in r.getMessage()]
    assert any("start_method" in m for m in ignored) and any("sync_tensorboard" in m for m in ignored), ignored
    with pytest.raises(TypeError, match="not_a_wandb_keyword"):
        cairn.init(project=project, not_a_wandb_keyword=1)
    with pytest.raises(cairn.errors.InvalidSetting, match="'no_such_setting'"):
        cairn.init(project=project, settings={"no_such_setting": 1})
