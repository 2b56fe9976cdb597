"""The official `wandb` client, unchanged, logging to cairn with only WANDB_BASE_URL (and a cairn
API key) set; what it logs is read back through cairn's own API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cairn
from conftest import Server, cairn_binary, wandb_env

wandb = pytest.importorskip("wandb")

# The client checks a key's shape itself: 40 or more word characters.
ANY_KEY = "local-" + "k" * 40


def run_wandb(server_url: str, tmp_path: Path, code: str, key: str | None = ANY_KEY, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}
    env.update(wandb_env(server_url, tmp_path, key))
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_init_log_config_summary_console_and_finish_land_in_cairn(server: Server, tmp_path: Path) -> None:
    done = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-basics", name="first-try", config={"lr": 0.1, "nested": {"b": 2}},
                         tags=["baseline", "cpu"], notes="from the official client", group="g1", job_type="train")
        for i in range(5):
            run.log({"loss": 1.0 / (i + 1), "acc": i * 0.1})
        run.log({"val": {"loss": 0.5}}, step=7)
        print("a line on stdout", flush=True)
        run.config.update({"epochs": 3})
        run.summary["best"] = 0.9
        run.finish()
        print("RUN", run.entity, run.project, run.id)
        """,
    )
    entity, project, run_id = done.stdout.split("RUN ")[1].split()
    assert (entity, project) == ("tester", "wb-basics")
    run = cairn.Api(base_url=server.url).run(f"{entity}/{project}/{run_id}")
    assert (run.name, run.state, run.tags, run.notes, run.group, run.job_type) == ("first-try", "finished", ["baseline", "cpu"], "from the official client", "g1", "train")
    assert run.config == {"lr": 0.1, "nested": {"b": 2}, "epochs": 3}
    assert run.summary["best"] == 0.9 and run.summary["loss"] == 0.2 and run.summary["val"] == {"loss": 0.5}
    rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4, 7]
    assert [r.get("loss") for r in rows[:5]] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    info = cairn.Api(base_url=server.url)._client.call_json("GET", f"/api/v1/runs/{entity}/{project}/{run_id}", None)
    assert info["exit_code"] == 0 and info["metadata"]["client"] == "wandb"
    console = cairn.Api(base_url=server.url)._client.call_json("GET", f"/api/v1/runs/{entity}/{project}/{run_id}/console", None)
    assert "a line on stdout" in [line["text"] for line in console["lines"]], console


def test_an_exit_code_fails_the_run_and_an_exception_is_kept_in_the_console(server: Server, tmp_path: Path) -> None:
    done = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-basics")
        run.log({"x": 1})
        print("RUN", run.entity, run.project, run.id, flush=True)
        run.finish(exit_code=3)
        """,
    )
    entity, project, run_id = done.stdout.split("RUN ")[1].split()
    info = cairn.Api(base_url=server.url)._client.call_json("GET", f"/api/v1/runs/{entity}/{project}/{run_id}", None)
    assert (info["state"], info["exit_code"]) == ("failed", 3)


def test_resume_must_allow_and_never(server: Server, tmp_path: Path) -> None:
    first = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-resume", id="resume01", config={"lr": 0.1})
        for i in range(3):
            run.log({"loss": 3 - i})
        run.finish()
        """,
    )
    assert first.returncode == 0
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-resume", id="resume01", resume="must")
        assert run.config["lr"] == 0.1, dict(run.config)
        run.log({"loss": 0.5})
        run.finish()
        """,
    )
    run = cairn.Api(base_url=server.url).run("tester/wb-resume/resume01")
    rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == [0, 1, 2, 3], rows
    assert (run.state, rows[-1]["loss"]) == ("finished", 0.5)
    refused = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        wandb.init(project="wb-resume", id="missing1", resume="must")
        """,
        check=False,
    )
    assert refused.returncode != 0 and "must" in refused.stderr, refused.stderr[-2000:]
    never = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        wandb.init(project="wb-resume", id="resume01", resume="never")
        """,
        check=False,
    )
    assert never.returncode != 0, never.stderr[-2000:]


def test_a_bad_key_is_refused_and_a_cairn_key_logs(tmp_path: Path) -> None:
    data = tmp_path / "secured"
    subprocess.run([cairn_binary(), "users", "create", "ana", "--data-dir", str(data)], check=True, capture_output=True)
    key = subprocess.run([cairn_binary(), "keys", "create", "--user", "ana", "--data-dir", str(data)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    server = Server(data, "--auth", "on")
    try:
        refused = run_wandb(server.url, tmp_path, "import wandb\nwandb.init(project='p')\n", key="cairn-" + "x" * 40, check=False)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        done = run_wandb(
            server.url,
            tmp_path,
            """
            import wandb
            run = wandb.init(project="keyed")
            run.log({"x": 1})
            run.finish()
            print("RUN", run.entity, run.id)
            """,
            key=key,
        )
        entity, run_id = done.stdout.split("RUN ")[1].split()
        assert entity == "ana"
        run = cairn.Api(base_url=server.url, api_key=key).run(f"ana/keyed/{run_id}")
        assert run.summary["x"] == 1
        # `wandb login --host` checks the key with cairn and saves it; init then needs no key.
        home = tmp_path / "home"
        home.mkdir()
        login_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}, **wandb_env(server.url, home, None)}
        wandb_cli = str(Path(sys.executable).parent / "wandb")
        # 0.19 saves a key unchecked unless asked to verify it; later versions always check.
        verify = ["--verify"] if wandb.__version__.startswith("0.19.") else []
        bad = subprocess.run([wandb_cli, "login", *verify, "--host", server.url, "cairn-" + "y" * 40], capture_output=True, text=True, env=login_env, timeout=120)
        assert bad.returncode != 0, bad.stdout + bad.stderr
        good = subprocess.run([wandb_cli, "login", *verify, "--host", server.url, key], capture_output=True, text=True, env=login_env, timeout=120)
        assert good.returncode == 0, good.stdout + good.stderr
        assert key in (home / ".netrc").read_text()
        # 0.19 writes the netrc entry with the port (`machine 127.0.0.1:PORT`) but looks it up
        # without (requests' netrc lookup), so on a server with a port it cannot find its own key.
        if not wandb.__version__.startswith("0.19."):
            run_wandb(server.url, home, "import wandb\nrun = wandb.init(project='keyed')\nrun.log({'y': 2})\nrun.finish()\n", key=None)
    finally:
        server.stop()


def test_a_run_stopped_from_cairn_ends_as_killed(server: Server, tmp_path: Path) -> None:
    import time

    env_code = """
        import time, wandb
        run = wandb.init(project="wb-stop", id="stopme01")
        print("STARTED", flush=True)
        try:
            for i in range(120):
                run.log({"x": i})
                time.sleep(1)
        finally:
            print("ENDED", flush=True)
        """
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent(env_code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}
    env.update({"WANDB_BASE_URL": server.url, "WANDB_API_KEY": ANY_KEY, "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "HOME": str(tmp_path), "WANDB_DISABLE_GIT": "true"})
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert child.stdout.readline().strip() == "STARTED"
    api = cairn.Api(base_url=server.url)
    # The run exists once the client's first request arrived.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            api.run("tester/wb-stop/stopme01")
            break
        except Exception:  # noqa: BLE001 - not there yet
            time.sleep(0.2)
    started = time.monotonic()
    api._client.call_json("POST", "/api/v1/runs/tester/wb-stop/stopme01/stop", "{}")
    out, err = child.communicate(timeout=120)
    took = time.monotonic() - started
    assert "ENDED" in out, out + err
    info = api._client.call_json("GET", "/api/v1/runs/tester/wb-stop/stopme01", None)
    assert info["state"] == "killed", (info["state"], took, err[-1500:])
    assert took < 60, took


def test_saved_files_and_images_become_the_runs_files_and_media(server: Server, tmp_path: Path) -> None:
    done = run_wandb(
        server.url,
        tmp_path,
        """
        import numpy as np, wandb
        run = wandb.init(project="wb-files")
        open("notes.txt", "w").write("hello files\\n")
        wandb.save("notes.txt", policy="now")
        pixels = np.zeros((6, 4, 3), dtype="uint8")
        pixels[:, :, 0] = 200
        for i in range(2):
            run.log({"loss": 1.0 / (i + 1), "sample": wandb.Image(pixels, caption=f"step {i}")})
        run.finish()
        print("RUN", run.entity, run.project, run.id)
        """,
    )
    entity, project, run_id = done.stdout.split("RUN ")[1].split()
    run = cairn.Api(base_url=server.url).run(f"{entity}/{project}/{run_id}")
    names = {f.name for f in run.files()}
    assert {"notes.txt", "config.yaml", "wandb-summary.json", "wandb-metadata.json"} <= names, names
    saved = run.file("notes.txt").download(root=str(tmp_path / "down"))
    assert Path(saved if isinstance(saved, str) else saved.name).read_text() == "hello files\n"
    image = run.summary["sample"]
    assert isinstance(image, cairn.Image), image
    assert (image.caption, image.width, image.height) == ("step 1", 4, 6)
    local = image.download(root=str(tmp_path / "media"))
    from PIL import Image as PILImage

    with PILImage.open(local) as opened:
        assert opened.size == (4, 6) and opened.getpixel((0, 0))[:3] == (200, 0, 0)


def test_a_forged_or_expired_upload_url_is_refused(server: Server) -> None:
    import urllib.error
    import urllib.request

    for token in ["nothex.abc", "6162.00", "zz"]:
        request = urllib.request.Request(f"{server.url}/files-upload/{token}", data=b"x", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 400 and b"upload URL" in refused.value.read()


def test_alerts_forks_and_rewinds(server: Server, tmp_path: Path) -> None:
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-branch", id="parent01")
        for i in range(5):
            run.log({"loss": 10 - i})
        run.alert(title="loss is low", text="it went below 7", level=wandb.AlertLevel.WARN)
        run.finish()
        """,
    )
    api = cairn.Api(base_url=server.url)
    alerts = api._client.call_json("GET", "/api/v1/runs/tester/wb-branch/parent01/alerts", None)
    assert [(a["title"], a["text"], a["level"]) for a in alerts] == [("loss is low", "it went below 7", "WARN")], alerts
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-branch", id="child001", fork_from="parent01?_step=2")
        run.log({"loss": 0.5})
        run.finish()
        """,
    )
    child = api.run("tester/wb-branch/child001")
    assert [(r["_step"], r["loss"]) for r in child.history(pandas=False)] == [(0, 10), (1, 9), (2, 8), (3, 0.5)]
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-branch", id="parent01", resume_from="parent01?_step=1")
        run.log({"loss": 100})
        run.finish()
        """,
    )
    parent = api.run("tester/wb-branch/parent01")
    assert [(r["_step"], r["loss"]) for r in parent.history(pandas=False)] == [(0, 10), (1, 9), (2, 100)]


def test_the_public_wandb_api_reads_and_changes_cairns_runs(server: Server, tmp_path: Path) -> None:
    for lr, name in [(0.1, "slow"), (0.3, "fast")]:
        run_wandb(
            server.url,
            tmp_path,
            f"""
            import wandb
            run = wandb.init(project="wb-public", name="{name}", config={{"lr": {lr}}}, tags=["t"])
            for i in range(20):
                run.log({{"loss": {lr} * (20 - i), "acc": i / 20}})
            run.finish()
            """,
        )
    done = run_wandb(
        server.url,
        tmp_path,
        """
        import json, wandb
        api = wandb.Api()
        out = {}
        runs = api.runs("tester/wb-public", order="+created_at")
        out["names"] = [r.name for r in runs]
        out["fast"] = [r.name for r in api.runs("tester/wb-public", filters={"config.lr": {"$gt": 0.2}})]
        out["low_loss"] = [r.name for r in api.runs("tester/wb-public", filters={"$and": [{"summary_metrics.loss": {"$lt": 0.2}}, {"state": "finished"}]})]
        run = api.run(f"tester/wb-public/{runs[0].id}")
        out["run"] = [run.name, run.state, run.config, run.summary["loss"], run.tags]
        out["history"] = len(run.history(samples=5, pandas=False))
        out["keyed"] = [r["loss"] for r in run.history(keys=["loss"], pandas=False)][:3]
        out["scan"] = [r["_step"] for r in run.scan_history(keys=["acc"])]
        out["scan_all"] = len(list(run.scan_history()))
        out["files"] = sorted(f.name for f in run.files())
        run.tags = ["t", "checked"]
        run.name = "slow-renamed"
        run.update()
        out["updated"] = [api.run(f"tester/wb-public/{run.id}").name, api.run(f"tester/wb-public/{run.id}").tags]
        run.summary["best"] = 7
        run.summary.update()
        api.run(f"tester/wb-public/{runs[1].id}").delete()
        out["after_delete"] = [r.name for r in wandb.Api().runs("tester/wb-public")]  # a new Api: runs lists are cached
        print("OUT" + json.dumps(out))
        """,
    )
    out = __import__("json").loads(done.stdout.split("OUT", 1)[1])
    assert out["names"] == ["slow", "fast"]
    assert out["fast"] == ["fast"]
    assert out["low_loss"] == ["slow"]
    assert out["run"] == ["slow", "finished", {"lr": 0.1}, pytest.approx(0.1), ["t"]]
    assert out["history"] == 5
    assert out["keyed"] == [pytest.approx(2.0), pytest.approx(1.9), pytest.approx(1.8)]
    assert out["scan"] == list(range(20))
    assert out["scan_all"] == 20
    assert "config.yaml" in out["files"]
    assert out["updated"] == ["slow-renamed", ["t", "checked"]]
    assert out["after_delete"] == ["slow-renamed"]
    # And cairn sees the same.
    listed = cairn.Api(base_url=server.url)._client.call_json("GET", "/api/v1/projects/tester/wb-public/runs", None)
    assert [r["name"] for r in listed["runs"]] == ["slow-renamed"], listed
    # The summary written through wandb.Api is the run's, and the run stays finished.
    [kept] = listed["runs"]
    assert (kept["summary"]["best"], kept["summary"]["loss"], kept["state"]) == (7, pytest.approx(0.1), "finished"), kept


def test_an_offline_run_is_synced_by_wandb_sync(server: Server, tmp_path: Path) -> None:
    offline = {"WANDB_MODE": "offline"}
    code = """
        import wandb
        run = wandb.init(project="wb-offline", id="offline1", config={"a": 1})
        for i in range(10):
            run.log({"loss": i})
        run.finish()
        """
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent(code))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}, **wandb_env("http://127.0.0.1:9", tmp_path, ANY_KEY), **offline}
    subprocess.run([sys.executable, str(script)], check=True, env=env, cwd=tmp_path, timeout=120)
    [run_dir] = list((tmp_path / "wandb").glob("offline-run-*"))
    env = {**env, "WANDB_BASE_URL": server.url}
    env.pop("WANDB_MODE")
    synced = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", str(run_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    run = cairn.Api(base_url=server.url).run("tester/wb-offline/offline1")
    assert (run.state, run.config, run.summary["loss"]) == ("finished", {"a": 1}, 9)
    assert [r["loss"] for r in run.history(pandas=False)] == list(range(10))


def test_a_server_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server(tmp_path / "data", port=port)
    try:
        code = """
            import time, wandb
            run = wandb.init(project="wb-restart", id="restart1")
            for i in range(40):
                run.log({"x": i})
                time.sleep(0.1)
            print("LOGGED", flush=True)
            run.finish()
            """
        script = tmp_path / "long.py"
        script.write_text(textwrap.dedent(code))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}, **wandb_env(server.url, tmp_path, ANY_KEY)}
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        time.sleep(2.5)
        server.process.kill()
        server.process.wait()
        time.sleep(1.5)
        server = Server(tmp_path / "data", port=port)
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0 and "LOGGED" in out, err[-2000:]
        run = cairn.Api(base_url=server.url).run("tester/wb-restart/restart1")
        assert run.state == "finished"
        assert [r["x"] for r in run.history(pandas=False)] == list(range(40))
    finally:
        server.stop()


def test_define_metric_summaries_are_the_runs_summary(server: Server, tmp_path: Path) -> None:
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-define", id="define01")
        run.define_metric("acc", summary="max")
        run.define_metric("loss", summary="min,last")
        run.define_metric("val/*", step_metric="epoch")
        for i, acc in enumerate([0.1, 0.5, 0.3, 0.2, 0.4]):
            run.log({"acc": acc, "loss": 5 - i, "epoch": i, "val/x": i * 2})
        run.finish()
        """,
    )
    run = cairn.Api(base_url=server.url).run("tester/wb-define/define01")
    assert run.summary["acc"] == {"max": 0.5}, run.summary
    assert run.summary["loss"] == {"min": 1, "last": 1}, run.summary
    assert [r["acc"] for r in run.history(pandas=False)] == [0.1, 0.5, 0.3, 0.2, 0.4]


def test_artifacts_logged_and_used_by_the_official_client_are_cairns(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello artifact")
    (data / "sub").mkdir()
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    logged = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-art")
        art = wandb.Artifact("mydata", type="dataset", description="two files", metadata={"rows": 2})
        art.add_dir("data")
        run.log_artifact(art, aliases=["best"])
        run.finish()
        print("RUN", run.id)
        """,
    )
    producer = logged.stdout.split("RUN ")[1].split()[0]
    api = cairn.Api(base_url=server.url)
    art = api.artifact("tester/wb-art/mydata:best")
    assert (art.type, art.version, art.description, art.metadata) == ("dataset", "v0", "two files", {"rows": 2})
    assert sorted(art.aliases) == ["best", "latest"]
    assert sorted(f.path for f in art.files()) == ["a.txt", "sub/b.bin"]
    root = Path(art.download(root=str(tmp_path / "cairn-download")))
    assert (root / "a.txt").read_text() == "hello artifact" and (root / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 40
    # The run's files keep nothing of the upload's staging.
    assert not [f for f in api.run(f"tester/wb-art/{producer}").files() if f.name.startswith(".wandb-artifacts")]

    used = run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-art")
        art = run.use_artifact("mydata:latest")
        path = art.download(root="wandb-download")
        print("GOT", art.type, art.version, open(path + "/a.txt").read(), len(open(path + "/sub/b.bin", "rb").read()))
        run.finish()
        print("RUN", run.id)
        """,
    )
    assert "GOT dataset v0 hello artifact 10240" in used.stdout, used.stdout
    consumer = used.stdout.split("RUN ")[1].split()[0]
    art = api.artifact("tester/wb-art/mydata:v0")
    assert art.logged_by().id == producer
    assert [r.id for r in art.used_by()] == [consumer]

    # A forged download URL or draft id is refused, by name.
    import json
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as forged:
        urllib.request.urlopen(f"{server.url}/wandb-artifacts/{'00' * 8}.{'00' * 32}/manifest")
    assert forged.value.code == 400 and "not one cairn made" in forged.value.read().decode()
    body = json.dumps({"query": "mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { artifact { id } } }", "variables": {"artifactID": "nope"}}).encode()
    request = urllib.request.Request(f"{server.url}/graphql", data=body, headers={"Content-Type": "application/json", "Authorization": "Bearer " + ANY_KEY})
    try:
        answer = json.load(urllib.request.urlopen(request))
    except urllib.error.HTTPError as e:
        answer = json.load(e)
    assert "not a draft this server made" in answer["errors"][0]["message"], answer


def test_mark_preempting_from_the_official_client_marks_the_run(server: Server, tmp_path: Path) -> None:
    run_wandb(
        server.url,
        tmp_path,
        """
        import wandb
        run = wandb.init(project="wb-preempt", id="preempt1")
        run.log({"loss": 1.0})
        run.mark_preempting()
        run.log({"loss": 0.5})
        run.finish()
        """,
    )
    run = cairn.Api(base_url=server.url).run("tester/wb-preempt/preempt1")
    # Finished cleanly, and it had said it may be preempted (the flag of its file_stream).
    assert run.state == "finished"
    assert run.preempting_at is not None
