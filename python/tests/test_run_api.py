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


def test_mark_preempting_gets_the_longer_wait_then_crashes_and_a_resume_clears_it(tmp_path: Path, monkeypatch, project) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from conftest import wait_for

    # A server of its own, with a short heartbeat timeout and a longer preempting one.
    srv = Server(tmp_path / "data", "--heartbeat-timeout-secs", "1", "--preempting-timeout-secs", "5", "--monitor-interval-secs", "0.2")
    try:
        env = {"CAIRN_BASE_URL": srv.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true", "CAIRN_HEARTBEAT_SECS": "0.2"}
        api = cairn.Api(base_url=srv.url)
        # Two processes log, one says it may be preempted; both are then killed at once.
        code = textwrap.dedent(
            """
            import sys, time, cairn
            run = cairn.init(project=sys.argv[1], id=sys.argv[2])
            run.log({"loss": 1.0})
            if sys.argv[2] == "preempted":
                cairn.mark_preempting()
            run._core.wait_uploaded(10)
            print("ready", flush=True)
            time.sleep(60)
            """
        )
        script = tmp_path / "logger.py"
        script.write_text(code)
        procs = [subprocess.Popen([sys.executable, str(script), project, rid], stdout=subprocess.PIPE, text=True, env={**os.environ, **env}) for rid in ("calm", "preempted")]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        assert wait_for(lambda: api.run(f"tester/{project}/preempted").state == "preempting", what="the preempting state")
        assert api.run(f"tester/{project}/preempted").preempting_at is not None
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        killed = time.monotonic()
        # The calm run is crashed after the heartbeat timeout; the preempting one is not.
        wait_for(lambda: api.run(f"tester/{project}/calm").state == "crashed", what="the calm run's crash")
        assert api.run(f"tester/{project}/preempted").state == "preempting", "marked crashed within the normal timeout"
        # After the longer wait it is crashed, and still says it was preempting.
        wait_for(lambda: api.run(f"tester/{project}/preempted").state == "crashed", timeout=20, what="the preempted run's crash")
        assert time.monotonic() - killed > 3.5, "the preempting timeout was not waited"
        gone = api.run(f"tester/{project}/preempted")
        assert gone.preempting_at is not None
        # Resumed (as a requeued job does), it runs again and is no longer preempting.
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        run = cairn.init(project=project, id="preempted", resume="allow")
        back = api.run(f"tester/{project}/preempted")
        assert (back.state, back.preempting_at) == ("running", None)
        run.finish()
        with pytest.raises(cairn.errors.UsageError, match="cairn.init"):
            cairn.mark_preempting()
    finally:
        srv.stop()


def test_watch_without_torch_says_what_it_needs(server: Server, env, project) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here: test_watch.py tests watch itself")
    run = cairn.init(project=project, id="notorch")
    with pytest.raises(cairn.errors.UsageError, match="needs torch"):
        cairn.watch(object(), log="all", log_freq=100)
    cairn.unwatch()  # nothing watched: nothing to do
    run.finish()
