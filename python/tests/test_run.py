"""log, config, summary, define_metric, init parameters and the module-level API, in-process."""

import argparse
import sys
import warnings

import numpy as np
import pytest

import cairn
from cairn import errors
from conftest import run_script


def wait_uploaded(run):
    assert run._core.wait_uploaded(15.0)


def test_step_commit_and_nesting(env, api, project):
    run = cairn.init(project=project)
    run.log({"a": 1})
    assert run.step == 1
    run.log({"b": 2}, commit=False)
    run.log({"c": 3})  # merges into step 1 and commits it
    run.log({"loss": 0.5}, step=10)
    run.log({"acc": 0.9}, step=10)  # same step: merged
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"loss": 9.9}, step=5)
    assert any("lower than the current step 10" in str(w.message) for w in caught)
    run.log({"train": {"loss": 0.25, "stage": "warm"}}, step=11)
    run.finish()
    rows = list(api.run(run.path).scan_history())
    assert [r["_step"] for r in rows] == [0, 1, 10, 11]
    assert rows[1]["b"] == 2 and rows[1]["c"] == 3
    assert rows[2]["loss"] == 0.5 and rows[2]["acc"] == 0.9
    assert rows[3]["train.loss"] == 0.25 and rows[3]["train.stage"] == "warm"
    for row in rows:
        assert row["_timestamp"] > 1.7e9 and row["_runtime"] >= 0
    assert api.run(run.path).summary["train"] == {"loss": 0.25, "stage": "warm"}


def test_rows_with_keys_that_move_or_change_keep_each_value_under_its_key(env, api, project):
    """`log` remembers the key objects of the last row by their place in the dict; keys that
    swap places, new objects with the same text, new keys, and non-float values at a place
    that held a float must each land under their own key."""
    run = cairn.init(project=project)
    run.log({"a": 1.0, "b": 2.0}, step=0)
    run.log({"b": 3.0, "a": 4.0}, step=1)  # swapped places
    run.log({"".join(["a"]): 5.0, "".join(["b"]): 6.0}, step=2)  # equal text, other objects
    run.log({"c": 7.0, "a": 8.0, "b": 9.0}, step=3)  # a new key first
    run.log({"c": 10, "a": "text", "b": 11.0}, step=4)  # an int and a string where floats were
    run.log({"a": 12.0, "b": 13.0}, step=5)
    # The same keys as the last row, all floats: the row goes to the log in one call.
    run.log({"a": -1.0, "b": float("nan")}, step=6)
    run.log({"a": 14.0}, step=7)  # one key fewer
    run.log({"a": 15.0, "b": float("inf")}, step=8)
    run.log({"a": 16.0, "b": 17.0}, step=9)
    run.log({"a": 18.0, "b": 19.0}, commit=False)  # into the open row 9
    run.log({"a": 20.0, "b": 21.0}, step=10)
    run.log({"c": 22.0}, step=10)
    run.log({"a": 23.0, "b": 24.0})  # no step: into the open row, which it commits
    run.log({"a": 25.0, "b": 26.0})  # the next step
    run.finish()
    rows = {r["_step"]: r for r in api.run(run.path).scan_history()}
    got = [(s, rows[s].get("a"), rows[s].get("b"), rows[s].get("c")) for s in range(12)]
    assert got[:6] == [(0, 1.0, 2.0, None), (1, 4.0, 3.0, None), (2, 5.0, 6.0, None), (3, 8.0, 9.0, 7.0), (4, "text", 11.0, 10), (5, 12.0, 13.0, None)]
    assert got[6][1] == -1.0 and got[6][2] != got[6][2]  # NaN
    assert got[7:] == [(7, 14.0, None, None), (8, 15.0, float("inf"), None), (9, 18.0, 19.0, None), (10, 23.0, 24.0, 22.0), (11, 25.0, 26.0, None)]
    # The summary saw every value, whichever path its row took.
    assert run.summary["a"] == 25.0 and run.summary["b"] == 26.0
    summary = api.run(run.path).summary
    assert summary["a"] == 25.0 and summary["c"] == 22.0


def test_log_arguments(env, project):
    """`run.log` takes `data`, `step` and `commit` by place or by name, and names what is wrong."""
    run = cairn.init(project=project, mode="offline")
    run.log({"a": 1.0}, 0, True)
    run.log(data={"a": 2.0}, step=1, commit=None)
    run.log({"a": 3.0}, step=np.int64(2))
    with pytest.raises(TypeError, match="argument 'step'"):
        run.log({"a": 1.0}, step="3")
    with pytest.raises(TypeError, match="argument 'commit'"):
        run.log({"a": 1.0}, commit="yes")
    with pytest.raises(TypeError, match="unexpected keyword argument 'stpe'"):
        run.log({"a": 1.0}, stpe=3)
    with pytest.raises(TypeError, match="multiple values for argument 'step'"):
        run.log({"a": 1.0}, 3, step=3)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'data'"):
        run.log(step=3)
    with pytest.raises(TypeError, match="from 1 to 3 positional arguments but 4 were given"):
        run.log({"a": 1.0}, 3, True, 4)
    with pytest.raises(errors.InvalidValue, match="takes a dict"):
        run.log([("a", 1.0)])
    assert run.step == 2  # the last row is open: a step given and no commit
    run.finish()


class FakeTensor:
    """Quacks like a one-element torch tensor."""

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


def test_value_types(env, api, project):
    run = cairn.init(project=project)
    run.log(
        {
            "int": 3,
            "big": 2**70,
            "float": 1.5,
            "bool": True,
            "str": "text",
            "none": None,
            "np_f32": np.float32(0.25),
            "np_i64": np.int64(7),
            "np_bool": np.bool_(False),
            "np_0d": np.array(4.5),
            "tensor": FakeTensor(0.125),
            "list": [1, 2.5, "x"],
            "nan": float("nan"),
            "inf": float("inf"),
        }
    )
    with pytest.raises(errors.InvalidValue, match="[\"']arr[\"']"):
        run.log({"arr": np.arange(3)})
    with pytest.raises(errors.InvalidValue, match="[\"']obj[\"'].*object"):
        run.log({"obj": object()})
    with pytest.raises(errors.InvalidValue, match="dict"):
        run.log([("a", 1)])
    with pytest.raises(errors.InvalidValue, match="reserved"):
        run.log({"_step": 3})
    with pytest.raises(errors.InvalidValue, match="strings"):
        run.log({1: 2})
    run.finish()
    row = next(api.run(run.path).scan_history())
    assert row["int"] == 3 and isinstance(row["int"], int)
    assert row["big"] == float(2**70)
    assert (row["float"], row["bool"], row["str"]) == (1.5, True, "text")
    assert "none" not in row or row["none"] is None
    assert row["np_f32"] == 0.25 and row["np_i64"] == 7 and row["np_bool"] is False
    assert row["np_0d"] == 4.5 and row["tensor"] == 0.125
    assert row["list"] == [1, 2.5, "x"]
    assert row["nan"] != row["nan"] and row["inf"] == float("inf")
    # Only the first log reached the server: the refused ones left nothing.
    assert [r["_step"] for r in api.run(run.path).scan_history()] == [0]


def test_numpy_and_torch_are_not_imported(tmp_path, env):
    result = run_script(
        """
        import sys
        import cairn
        run = cairn.init(project="imports", mode="offline")
        run.log({"loss": 0.5, "n": 3, "s": "x"})
        run.finish()
        print("numpy" in sys.modules, "torch" in sys.modules)
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_import_cairn_loads_only_what_it_needs() -> None:
    """`import cairn` is part of every script's start-up: the standard library's slower modules
    (typing alone pulls in re, collections and contextlib) are imported where they are used."""
    import subprocess

    heavy = ["typing", "hashlib", "socket", "tempfile", "shutil", "traceback", "argparse", "platform", "subprocess", "email", "importlib.metadata", "numpy"]
    code = f"import sys, cairn; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import cairn imported {result.stdout.strip()}"


def test_config_sources_and_changes(tmp_path, env, api, project):
    yaml_path = tmp_path / "config-defaults.yaml"
    yaml_path.write_text("wandb_version: 1\nlr:\n  desc: learning rate\n  value: 0.01\nlayers: [64, 32]\nname: resnet\n")
    run = cairn.init(project=project, config=str(yaml_path))
    assert run.config.lr == 0.01 and run.config["layers"] == [64, 32]
    run.config.update(argparse.Namespace(batch_size=32, seed=1))
    run.config.setdefaults({"seed": 99, "epochs": 5})
    assert (run.config.seed, run.config.epochs) == (1, 5)
    run.config.dropout = 0.1
    run.config["momentum"] = 0.9
    with pytest.raises(errors.ConfigError, match="[\"']lr[\"'].*0.02.*allow_val_change"):
        run.config.update({"lr": 0.02})
    with pytest.raises(errors.ConfigError):
        run.config.lr = 0.5
    run.config.update({"lr": 0.02}, allow_val_change=True)
    run.config.update({"lr": 0.02})  # the same value is not a change
    del run.config["name"]
    assert "name" not in run.config and len(run.config) == 7
    with pytest.raises(AttributeError):
        run.config.missing
    run.finish()
    assert api.run(run.path).config == {
        "lr": 0.02, "layers": [64, 32], "batch_size": 32, "seed": 1, "epochs": 5, "dropout": 0.1, "momentum": 0.9,
    }
    with pytest.raises(errors.InvalidValue, match="config must be"):
        cairn.init(project=project, config=42)
    with pytest.raises(errors.InvalidValue, match="cannot read"):
        cairn.init(project=project, config=str(tmp_path / "missing.yaml"))


def test_summary_and_define_metric(env, api, project):
    run = cairn.init(project=project)
    run.define_metric("val/*", summary="max")
    run.define_metric("loss", summary="min,mean")
    run.define_metric("noise", summary="none")
    run.define_metric("epoch_acc", step_metric="epoch")
    for i, (loss, val) in enumerate([(3.0, 0.2), (1.0, 0.9), (2.0, 0.5)]):
        run.log({"loss": loss, "val/acc": val, "noise": i, "acc": i / 10})
    assert run.summary["loss"] == {"min": 1.0, "mean": 2.0}
    assert run.summary["val/acc"] == {"max": 0.9}
    assert "noise" not in run.summary
    assert run.summary.acc == 0.2
    run.summary["best"] = "epoch 1"
    run.summary.update({"acc": 1.0})
    assert run.summary["acc"] == 1.0
    del run.summary["best"]
    assert "best" not in run.summary
    with pytest.raises(errors.InvalidValue, match="[\"']best[\"']"):
        run.define_metric("x", summary="best")
    run.finish()
    remote = api.run(run.path).summary
    assert remote["loss"] == {"min": 1.0, "mean": 2.0}
    assert remote["val/acc"] == {"max": 0.9}
    assert "noise" not in remote and "best" not in remote
    assert remote["acc"] == 1.0


def test_init_parameters(env, api, project, tmp_path):
    run = cairn.init(
        entity="team",
        project=project,
        name="first",
        id="abc-123",
        notes="notes here",
        tags=["a", "b"],
        group="exp-1",
        job_type="train",
        config={"x": 1},
        dir=str(tmp_path / "runs"),
        settings=cairn.Settings(heartbeat_interval=5),
    )
    assert run.dir.startswith(str(tmp_path / "runs" / "cairn" / "run-"))
    assert (run.tags, run.notes, run.group, run.job_type) == (("a", "b"), "notes here", "exp-1", "train")
    run.tags = ["c"]
    run.notes = "changed"
    run.name = "renamed"
    run.group = "exp-2"
    run.job_type = "eval"
    run.finish()
    remote = api.run("team/" + project + "/abc-123")
    assert (remote.name, remote.notes, remote.tags, remote.group, remote.job_type) == ("renamed", "changed", ["c"], "exp-2", "eval")
    assert remote.metadata["language"] == "python"
    assert remote.metadata["language_version"] == ".".join(map(str, sys.version_info[:3]))

    # resume modes
    with pytest.raises(errors.Conflict, match="abc-123"):
        cairn.init(entity="team", project=project, id="abc-123", resume="never")
    with pytest.raises(errors.NotFound, match="nope"):
        cairn.init(entity="team", project=project, id="nope", resume="must")
    resumed = cairn.init(entity="team", project=project, id="abc-123", resume="must", config={"y": 2})
    assert resumed.config.as_dict() == {"x": 1, "y": 2}
    resumed.finish()

    # offline and disabled modes
    offline = cairn.init(project=project, mode="offline")
    assert offline.offline and offline.url is None
    offline.log({"a": 1})
    offline.finish()
    disabled = cairn.init(project=project, mode="disabled")
    disabled.log({"a": 1})
    disabled.finish()
    assert disabled.dir is None

    with pytest.raises(errors.InvalidRunId, match="a/b"):
        cairn.init(project=project, id="a/b")
    with pytest.raises(errors.InvalidSetting, match="sometimes"):
        cairn.init(project=project, mode="sometimes")
    with pytest.raises(errors.InvalidSetting, match="'colour'"):
        cairn.init(project=project, settings={"colour": "red"})
    with pytest.raises(errors.InvalidSetting, match="resume"):
        cairn.init(project=project, resume="perhaps")
    with pytest.raises(errors.InvalidSetting, match="reinit"):
        cairn.init(project=project, reinit="sometimes")
    assert cairn.run is None


def test_reinit_and_module_level_api(env, api, project):
    with pytest.raises(errors.UsageError, match="init"):
        cairn.log({"a": 1})
    with pytest.raises(errors.UsageError, match="init"):
        cairn.config["a"]
    first = cairn.init(project=project)
    assert cairn.run is first and cairn.config is first.config
    cairn.log({"a": 1})
    cairn.config.update({"lr": 0.1})
    cairn.summary["note"] = "x"
    assert cairn.init(project=project, reinit=False) is first
    second = cairn.init(project=project)  # finishes the first
    assert api.run(first.path).state == "finished"
    third = cairn.init(project=project, reinit="create_new")
    assert cairn.run is third
    third.finish()
    assert cairn.run is second
    cairn.finish()
    assert cairn.run is None
    assert api.run(first.path).config == {"lr": 0.1}
    assert api.run(first.path).summary["note"] == "x"
    with cairn.init(project=project) as run:
        run.log({"b": 2})
    assert api.run(run.path).state == "finished"
    with pytest.raises(ZeroDivisionError):
        with cairn.init(project=project) as failing:
            1 / 0
    assert api.run(failing.path).state == "failed"


def test_terminal_output_and_silence(tmp_path, env):
    offline = run_script(
        """
        import cairn
        run = cairn.init(project="out", mode="offline")
        for i in range(30):
            run.log({"loss": 1 / (i + 1), "acc": i / 30, "_hidden": i})
        """,
        tmp_path,
        env,
        CAIRN_SILENT="false",
    )
    err = offline.stderr
    assert "cairn: Run `cairn sync " in err and "cairn: cairn sync " in err
    assert "View run" not in err
    history = err.split("cairn: Run history:\n")[1].split("cairn:\n")[0].splitlines()
    assert [line.split()[1] for line in history] == ["loss", "acc"]
    assert all(set(line.split()[2]) <= set("▁▂▃▄▅▆▇█") for line in history)
    assert "_hidden" not in err
    silent = run_script(
        """
        import cairn
        run = cairn.init(project="out", mode="offline")
        run.log({"loss": 1})
        """,
        tmp_path,
        env,
        CAIRN_SILENT="true",
    )
    assert silent.returncode == 0 and "cairn:" not in silent.stderr


def test_resume_merges_config_and_keeps_tags_and_notes(env, project, api):
    import cairn

    first = cairn.init(project=project, id="resumable", config={"lr": 0.1, "layers": 4}, tags=["base"], notes="first try")
    first.log({"loss": 1.0})
    first.finish()
    # New keys are added; a changed value is kept as it was (W&B's rule without allow_val_change).
    again = cairn.init(project=project, id="resumable", resume="allow", config={"lr": 0.5, "dropout": 0.2})
    assert dict(again.config) == {"lr": 0.1, "layers": 4, "dropout": 0.2}
    again.log({"loss": 0.5})
    again.finish()
    run = api.run(f"tester/{project}/resumable")
    assert run.config == {"lr": 0.1, "layers": 4, "dropout": 0.2}
    assert run.tags == ["base"] and run.notes == "first try"
    # allow_val_change lets the new values win; new tags replace the old ones.
    third = cairn.init(project=project, id="resumable", resume="must", config={"lr": 0.5}, allow_val_change=True, tags=["tuned"])
    assert third.config["lr"] == 0.5
    third.finish()
    run = api.run(f"tester/{project}/resumable")
    assert run.config["lr"] == 0.5 and run.tags == ["tuned"] and run.notes == "first try"
    assert [row["loss"] for row in run.scan_history(keys=["loss"])] == [1.0, 0.5]
