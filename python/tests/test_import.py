"""`cairn import wandb` on offline runs the real wandb client wrote, and `cairn import mlflow` on
stores the real mlflow package wrote; every value is read back through `cairn.Api`."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import cairn
from conftest import Server, cairn_binary, wandb_env


def cairn_import(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([cairn_binary(), "import", *args, "--base-url", server.url], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CAIRN_"))}
    env.update(wandb_env("http://127.0.0.1:9", tmp_path, None))
    env["WANDB_MODE"] = "offline"
    return env


def write(tmp_path: Path, name: str, code: str) -> Path:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return script


def value(step: int) -> float:
    """What the scripts log at a step, so a test knows every value without reading the run."""
    return math.sin(step / 7) * 100 + step


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="the wandb package is not installed")
class TestWandb:
    def test_an_offline_run_imports_with_every_value_and_a_second_import_adds_nothing(self, server: Server, tmp_path: Path) -> None:
        script = write(
            tmp_path,
            "train.py",
            """
            import sys, numpy as np, wandb
            sys.path.insert(0, ".")
            run = wandb.init(project="wb-import", id="imp00001", name="imported", config={"lr": 0.01, "opt": {"name": "adam", "beta": 0.9}},
                             tags=["a", "b"], notes="from an offline run", group="g", job_type="train")
            run.define_metric("acc", summary="max")
            import math
            for i in range(300):
                row = {"loss": math.sin(i / 7) * 100 + i, "acc": i / 300, "nested": {"x": i}}
                if i == 150:
                    row["spike"] = float("nan")
                run.log(row)
                if i % 50 == 0:
                    print(f"step {i}", flush=True)
            sys.stdout.write("progress 10%\\rprogress 100%\\n"); sys.stdout.flush()
            print("to stderr", file=sys.stderr, flush=True)
            run.log({"img": wandb.Image(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))})
            run.config.update({"late": 5})
            run.summary["best"] = 42
            open("saved.txt", "w").write("hello from the run")
            run.save("saved.txt", policy="now")
            run.finish(exit_code=3)
            """,
        )
        subprocess.run([sys.executable, str(script)], check=True, env=offline_env(tmp_path), cwd=tmp_path, timeout=180, capture_output=True)
        first = cairn_import(server, "wandb", str(tmp_path / "wandb"))
        assert "imported 1 run " in first.stdout and "0 failed" in first.stdout, first.stdout

        run = cairn.Api(base_url=server.url).run("tester/wb-import/imp00001")
        assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("imported", ["a", "b"], "from an offline run", "g", "train")
        assert run.config == {"lr": 0.01, "opt": {"name": "adam", "beta": 0.9}, "late": 5}
        info = cairn.Api(base_url=server.url)._client.call_json("GET", "/api/v1/runs/tester/wb-import/imp00001", None)
        assert (info["state"], info["exit_code"]) == ("failed", 3)
        assert info["metadata"]["language"] == "python" and info["metadata"]["program"].endswith("train.py")
        rows = list(run.scan_history())
        assert [r["_step"] for r in rows] == list(range(301))
        assert [r["loss"] for r in rows[:300]] == [value(i) for i in range(300)]
        assert [r["nested"]["x"] if "nested" in r else r.get("nested.x") for r in rows[:300]] == list(range(300))
        assert math.isnan(rows[150]["spike"])
        assert rows[0]["_timestamp"] > 1.7e9 and rows[299]["_runtime"] >= rows[0]["_runtime"]
        assert run.summary["best"] == 42 and run.summary["acc"] == {"max": 299 / 300}
        image = run.summary["img"]
        assert isinstance(image, cairn.Image), image
        assert image.image.size == (4, 4)
        saved = run.file("saved.txt").download(root=str(tmp_path / "down"), replace=True)
        assert Path(saved).read_text() == "hello from the run"
        assert isinstance(rows[300]["img"], cairn.Image) and rows[300]["img"].image.size == (4, 4)
        console = cairn.Api(base_url=server.url)._client.call_json("GET", "/api/v1/runs/tester/wb-import/imp00001/console", None)
        lines = [(line["text"], line["stream"]) for line in console["lines"]]
        assert ("step 0", "stdout") in lines and ("step 250", "stdout") in lines
        assert ("progress 100%", "stdout") in lines and ("progress 10%", "stdout") not in lines
        assert ("to stderr", "stderr") in lines

        again = cairn_import(server, "wandb", str(tmp_path / "wandb"))
        assert "imported 0 runs" in again.stdout and "skipped 1 already imported" in again.stdout, again.stdout
        assert len(list(cairn.Api(base_url=server.url).run("tester/wb-import/imp00001").scan_history())) == 301
        console2 = cairn.Api(base_url=server.url)._client.call_json("GET", "/api/v1/runs/tester/wb-import/imp00001/console", None)
        assert console2 == console

    def test_a_run_killed_mid_run_imports_up_to_its_last_whole_record_and_wandb_sync_agrees(self, server: Server, tmp_path: Path) -> None:
        script = write(
            tmp_path,
            "killed.py",
            """
            import math, wandb
            run = wandb.init(project="wb-killed", id="killed01", config={"a": 1})
            i = 0
            while True:
                run.log({"loss": math.sin(i / 7) * 100 + i})
                if i % 100 == 0:
                    print("logged", i, flush=True)
                i += 1
            """,
        )
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=offline_env(tmp_path), cwd=tmp_path)
        for line in process.stdout:
            if int(line.split()[1]) >= 2000:
                break
        process.send_signal(signal.SIGKILL)
        process.wait()
        [log] = list((tmp_path / "wandb").glob("offline-run-*/run-killed01.wandb"))
        # The client's service, a process of its own, writes what it holds until it sees its
        # parent gone: the log is whole once it stops growing.
        size = -1
        while log.stat().st_size != size:
            size = log.stat().st_size
            time.sleep(1.5)
        assert size > 0

        done = cairn_import(server, "wandb", str(log.parent))
        assert "imported 1 run " in done.stdout, done.stdout
        run = cairn.Api(base_url=server.url).run("tester/wb-killed/killed01")
        rows = list(run.scan_history())
        assert len(rows) >= 1000, len(rows)
        assert [r["_step"] for r in rows] == list(range(len(rows)))
        assert [r["loss"] for r in rows] == [value(i) for i in range(len(rows))]
        assert run.state == "crashed" and run.config == {"a": 1}

        # A log cut inside a record: every whole record before the cut, and a warning that says where.
        cut = tmp_path / "cut" / "offline-run-cut" / "run-killed01.wandb"
        cut.parent.mkdir(parents=True)
        data = log.read_bytes()
        cut.write_bytes(data[: len(data) // 2 + 3])
        partial = cairn_import(server, "wandb", str(cut), "--project", "wb-cut")
        assert "cut off at byte" in partial.stderr, partial.stderr
        rows_cut = list(cairn.Api(base_url=server.url).run("tester/wb-cut/killed01").scan_history())
        assert 0 < len(rows_cut) < len(rows)
        assert [r["loss"] for r in rows_cut] == [value(i) for i in range(len(rows_cut))]

        # The official `wandb sync` of the same directory to cairn reads the same log the same way.
        env = {k: v for k, v in offline_env(tmp_path).items() if k != "WANDB_MODE"}
        env.update({"WANDB_BASE_URL": server.url, "WANDB_API_KEY": "local-" + "k" * 40, "WANDB_PROJECT": "wb-killed-synced"})
        synced = subprocess.run(
            [str(Path(sys.executable).parent / "wandb"), "sync", "-p", "wb-killed-synced", str(log.parent)], capture_output=True, text=True, env=env, timeout=300
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
        synced_rows = list(cairn.Api(base_url=server.url).run("tester/wb-killed-synced/killed01").scan_history())
        assert [r["loss"] for r in synced_rows] == [r["loss"] for r in rows]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="the mlflow package is not installed")
class TestMlflow:
    LOG = """
        import sys, mlflow
        mlflow.set_tracking_uri(sys.argv[1])
        mlflow.set_experiment("exp one")
        with mlflow.start_run(run_name="r1") as run:
            mlflow.log_params({"lr": 0.01, "opt": "adam", "layers": 3})
            mlflow.set_tag("team", "vision")
            mlflow.set_tag("mlflow.note.content", "a note")
            for s in range(20):
                mlflow.log_metric("loss", 1.0 / (s + 1), step=s)
                if s % 2 == 0:
                    mlflow.log_metric("acc", s * 0.05, step=s)
            mlflow.log_metric("nan_metric", float("nan"), step=20)
            open("model.txt", "w").write("weights")
            mlflow.log_artifact("model.txt", artifact_path="models")
            print("R1", run.info.run_id)
        with mlflow.start_run(run_name="r2") as run:
            mlflow.log_metric("x", 1.0)
            mlflow.log_metric("x", 2.0)
            mlflow.log_metric("x", 3.0)
            print("R2", run.info.run_id)
        mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, "FAILED")
        with mlflow.start_run(run_name="gone") as run:
            pass
        mlflow.delete_run(run.info.run_id)
        """

    @pytest.mark.parametrize("kind", ["sqlite", "mlruns"])
    def test_a_store_imports_with_params_metrics_tags_artifacts_and_status(self, server: Server, tmp_path: Path, kind: str) -> None:
        script = write(tmp_path, "log.py", self.LOG)
        uri = f"sqlite:///{tmp_path}/mlflow.db" if kind == "sqlite" else f"file://{tmp_path}/mlruns"
        env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
        out = subprocess.run([sys.executable, str(script), uri], check=True, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180).stdout
        ids = dict(line.split() for line in out.splitlines() if line.startswith(("R1", "R2")))
        source = uri if kind == "sqlite" else str(tmp_path / "mlruns")
        project = f"ml-{kind}"
        done = cairn_import(server, "mlflow", source, "--project", project)
        assert "imported 2 runs" in done.stdout and "1 deleted at the source" in done.stdout, done.stdout

        api = cairn.Api(base_url=server.url)
        r1 = api.run(f"tester/{project}/{ids['R1']}")
        assert (r1.name, r1.state, r1.notes, r1.tags) == ("r1", "finished", "a note", ["team=vision"])
        assert r1.config == {"lr": 0.01, "opt": "adam", "layers": 3}
        rows = r1.history(pandas=False)
        assert [r["_step"] for r in rows] == list(range(21))
        assert [r["loss"] for r in rows[:20]] == [1.0 / (s + 1) for s in range(20)]
        assert [r.get("acc") for r in rows[:20:2]] == [s * 0.05 for s in range(0, 20, 2)]
        assert "acc" not in rows[1]
        assert math.isnan(rows[20]["nan_metric"])
        assert r1.summary["loss"] == 1.0 / 20
        downloaded = tmp_path / "down"
        r1.file("models/model.txt").download(root=str(downloaded), replace=True)
        assert (downloaded / "models" / "model.txt").read_text() == "weights"

        r2 = api.run(f"tester/{project}/{ids['R2']}")
        assert r2.state == "failed"
        assert [r["x"] for r in r2.history(pandas=False)] == [1.0, 2.0, 3.0], "three points at MLflow's default step 0"

        again = cairn_import(server, "mlflow", source, "--project", project)
        assert "imported 0 runs" in again.stdout and "skipped 2 already imported" in again.stdout, again.stdout
        assert len(api.run(f"tester/{project}/{ids['R1']}").history(pandas=False)) == 21

    def test_what_is_not_an_mlflow_store_is_refused_by_name(self, server: Server, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        refused = cairn_import(server, "mlflow", str(tmp_path / "empty"), check=False)
        assert refused.returncode != 0 and "no MLflow experiment" in refused.stderr, refused.stderr
        (tmp_path / "x.db").write_bytes(b"not a database at all, not even close" * 10)
        refused = cairn_import(server, "mlflow", str(tmp_path / "x.db"), check=False)
        assert refused.returncode != 0 and "x.db" in refused.stderr, refused.stderr
        refused = cairn_import(server, "wandb", str(tmp_path / "empty"), check=False)
        assert refused.returncode != 0 and "no W&B run" in refused.stderr, refused.stderr
