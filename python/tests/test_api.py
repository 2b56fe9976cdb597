"""cairn.Api: runs, history (buckets), scan_history, update, delete, and the runs filters."""

import datetime
import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

import cairn
from cairn import errors

from conftest import sync


def make_run(project, **init):
    run = cairn.init(project=project, **init)
    return run


def test_run_fields_update_and_delete(env, api, project):
    run = make_run(project, tags=["t1"], notes="n", group="g", job_type="train", config={"lr": 0.1})
    run.log({"loss": 1.0})
    run.finish()
    remote = api.run(run.path)
    assert (remote.id, remote.name, remote.state) == (run.id, run.name, "finished")
    assert (remote.config, remote.summary, remote.tags, remote.notes, remote.group, remote.job_type) == (
        {"lr": 0.1}, {"loss": 1.0}, ["t1"], "n", "g", "train")
    assert datetime.datetime.fromisoformat(remote.created_at.replace("Z", "+00:00")).year >= 2024
    assert remote.url == f"{api.base_url}/{remote.entity}/{project}/runs/{run.id}"
    assert remote.metadata["host"] and remote.metadata["language"] == "python"
    assert api.run(f"{remote.entity}/{project}/runs/{run.id}").id == run.id
    assert api.run(f"{project}/{run.id}").id == run.id  # the default entity
    remote.tags.append("t2")
    remote.notes = "edited <b>"
    remote.name = "new-name"
    remote.group = "g2"
    remote.job_type = "eval"
    remote.update()
    again = api.run(run.path)
    assert (again.tags, again.notes, again.name, again.group, again.job_type) == (["t1", "t2"], "edited <b>", "new-name", "g2", "eval")
    again.delete()
    with pytest.raises(errors.NotFound, match=run.id):
        api.run(run.path)
    with pytest.raises(errors.InvalidValue, match="entity/project/run_id"):
        api.run("just-one-part")


def test_runtime_counts_a_pause_and_duration_does_not(env, api, project):
    run = make_run(project)
    run.log({"x": 1})
    run.finish()
    time.sleep(1.5)
    run = make_run(project, id=run.id, resume="allow")
    run.log({"x": 2})
    run.finish()
    remote = api.run(run.path)
    assert remote.runtime >= 1.5
    assert remote.duration < remote.runtime - 1.0
    assert [r.id for r in api.runs(project, filters={"duration": {"$lt": remote.runtime - 1.0}})] == [run.id]


def test_history_is_bucketed_and_keeps_spikes(env, api, project):
    run = make_run(project)
    for step in range(20_000):
        run.log({"loss": 100.0 if step == 12_345 else 1.0, "acc": step / 20_000})
    run.finish()
    remote = api.run(run.path)
    frame = remote.history(keys=["loss", "acc"], samples=100)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 100
    assert set(frame.columns) >= {"_step", "loss", "loss_min", "loss_max", "acc"}
    assert frame["loss_max"].max() == 100.0
    rows = remote.history(samples=7, pandas=False)
    assert isinstance(rows, list) and len(rows) == 7
    assert max(r["loss_max"] for r in rows) == 100.0
    by_runtime = remote.history(keys=["loss"], samples=10, x_axis="_runtime", pandas=False)
    assert by_runtime and "_runtime" in by_runtime[0]
    with pytest.raises(errors.InvalidValue, match="samples"):
        remote.history(samples=0)
    with pytest.raises(errors.NotFound, match="nope"):
        remote.history(keys=["nope"])


def test_scan_history_pages_and_ranges(env, api, project):
    run = make_run(project)
    for step in range(2_500):
        data = {"loss": step * 1.0}
        if step % 2 == 0:
            data["even"] = step
        run.log(data)
    run.finish()
    remote = api.run(run.path)
    rows = list(remote.scan_history(page_size=300))
    assert [r["_step"] for r in rows] == list(range(2_500))
    assert rows[3]["loss"] == 3.0 and "even" not in rows[3]
    evens = list(remote.scan_history(keys=["even", "loss"], page_size=128))
    assert [r["_step"] for r in evens] == list(range(0, 2_500, 2))
    assert set(evens[0]) == {"_step", "even", "loss"}
    window = list(remote.scan_history(keys=["loss"], min_step=100, max_step=110))
    assert [r["_step"] for r in window] == list(range(100, 110))
    columns = remote.history_columns(keys=["loss"])
    assert columns["loss"][2_499] == 2_499.0
    with pytest.raises(errors.InvalidValue, match="page_size"):
        list(remote.scan_history(page_size=0))


def test_every_row_as_a_frame_rows_or_columns_with_gaps_and_rich_values(env, api, project):
    run = make_run(project)
    for step in range(3_000):
        data = {"loss": 1.0 / (step + 1)}
        if step % 3 == 0:
            data["acc"] = step / 3_000
        if step == 7:
            data["note"] = "seven"
        if step == 9:
            data["loss"] = float("nan")
        run.log(data)
    run.finish()
    remote = api.run(run.path)
    frame = remote.history(keys=["loss", "acc"], samples=None)
    assert list(frame.columns) == ["_step", "loss", "acc"] and len(frame) == 3_000
    assert frame["_step"].tolist() == list(range(3_000))
    assert frame["loss"][2_999] == 1.0 / 3_000 and pd.isna(frame["loss"][9])
    assert frame["acc"][3] == 3 / 3_000 and pd.isna(frame["acc"][4])
    # Text comes as objects beside the numbers; without pandas, a dict per row.
    with_note = remote.history(keys=["loss", "note"], samples=None)
    assert with_note["note"][7] == "seven" and pd.isna(with_note["note"][8])
    rows = remote.history(keys=["loss", "note"], samples=None, pandas=False)
    assert len(rows) == 1 and rows[0]["_step"] == 7, "rows that hold every key asked for"
    everything = list(remote.scan_history())
    assert len(everything) == 3_000 and set(everything[0]) == {"_step", "_runtime", "_timestamp", "loss", "acc"}
    assert {k: everything[7][k] for k in ("_step", "loss", "note")} == {"_step": 7, "loss": 1.0 / 8, "note": "seven"}
    assert "acc" not in everything[7] and everything[6]["acc"] == 6 / 3_000
    with pytest.raises(errors.InvalidValue, match="samples=0"):
        remote.history(samples=0)
    with pytest.raises(errors.InvalidValue, match="x_axis='acc'"):
        remote.history(samples=None, x_axis="acc")


def test_a_finished_run_directory_keeps_its_log_packed_and_syncs_from_it(env, api, project, tmp_path):
    run = cairn.init(project=project, mode="offline", dir=str(tmp_path))
    for step in range(40_000):
        run.log({"loss": 1.0 / (step + 1), "lr": 0.1})
    run.finish()
    wal = Path(run.dir) / "wal"
    assert [p.name for p in wal.iterdir()] == ["00000000.pack"], list(wal.iterdir())
    per_step = (wal / "00000000.pack").stat().st_size / 40_000
    assert per_step < 16, f"{per_step:.1f} bytes a step"
    sync(run.dir, env)
    columns = api.run(f"{project}/{run.id}").history_columns(keys=["loss"])
    assert columns["_step"] == list(range(40_000)) and columns["loss"][39_999] == 1.0 / 40_000


def test_runs_filters_order_and_paging(env, api, project):
    for i in range(12):
        run = make_run(
            project,
            name=f"run-{i:02d}",
            tags=["even"] if i % 2 == 0 else ["odd"],
            config={"lr": i / 100, "opt": "adam" if i < 6 else "sgd"},
        )
        run.log({"acc": i / 12})
        if i == 11:
            run.finish(exit_code=1)
        else:
            run.finish()
    path = f"{api.default_entity}/{project}"

    def names(filters=None, order="-created_at", per_page=50):
        return [r.name for r in api.runs(path, filters=filters, order=order, per_page=per_page)]

    assert names(order="+created_at") == [f"run-{i:02d}" for i in range(12)]
    assert names({"config.lr": {"$gte": 0.09}}, order="-summary_metrics.acc") == ["run-11", "run-10", "run-09"]
    assert names({"$and": [{"config.opt": "adam"}, {"tags": {"$in": ["odd"]}}]}, "config.lr") == ["run-01", "run-03", "run-05"]
    assert names({"$or": [{"display_name": {"$regex": "^run-0[12]$"}}, {"state": "failed"}]}, "config.lr") == ["run-01", "run-02", "run-11"]
    assert names({"config.opt": {"$ne": "adam"}, "summary_metrics.acc": {"$lt": 0.6}}, "config.lr") == ["run-06", "run-07"]
    assert names({"config.lr": {"$nin": [0.0, 0.01]}, "config.opt": {"$eq": "adam"}, "tags": "even"}, "config.lr") == ["run-02", "run-04"]
    assert names({"summary_metrics.acc": {"$exists": False}}) == []
    assert names({"config.lr": {"$gt": 0.09}, "state": {"$in": ["finished"]}}, "config.lr") == ["run-10"]
    assert len(names({"created_at": {"$gte": "2000-01-01T00:00:00Z"}})) == 12
    assert names({"config.lr": {"$lte": 0.0}}) == ["run-00"]
    lazy = api.runs(path, per_page=5)
    assert len(lazy) == 12
    assert lazy[11].name == "run-00"
    assert len(list(lazy)) == 12
    with pytest.raises(errors.InvalidValue, match=r"\$near"):
        names({"config.lr": {"$near": 1}})
    with pytest.raises(errors.NotFound, match="ghost"):
        names_in_missing = list(api.runs(f"{api.default_entity}/ghost"))
        del names_in_missing
    assert [p.name for p in api.projects()].count(project) == 1


def test_errors_are_typed_and_named(env, api, project):
    with pytest.raises(errors.NotFound):
        api.run(f"nobody/{project}/nothing")
    dead = cairn.Api(base_url="http://127.0.0.1:9")
    with pytest.raises(errors.CommError, match="reach"):
        dead.run("a/b/c")
    assert issubclass(errors.InvalidRunId, errors.CairnError) and issubclass(errors.InvalidRunId, ValueError)
    assert issubclass(errors.NotFound, LookupError)


def test_delete_then_recreate_is_refused_until_purged(server, env, tmp_path, project):
    import cairn
    from conftest import cairn_binary

    (tmp_path / "ckpt.bin").write_bytes(b"weights of a run that goes away")
    run = cairn.init(project=project, id="doomed")
    run.log({"loss": 1.0})
    run.save(str(tmp_path / "ckpt.bin"), policy="now")
    run.finish()
    api = cairn.Api(base_url=server.url)
    sha = [f for f in _files(server, project, "doomed") if f["path"] == "ckpt.bin"][0]["sha256"]
    blobs = list(Path(server.data_dir).rglob(sha))
    assert len(blobs) == 1

    api.run(f"tester/{project}/doomed").delete()
    with pytest.raises(cairn.errors.NotFound):
        api.run(f"tester/{project}/doomed")
    assert [r.id for r in api.runs(f"tester/{project}")] == []
    # Within the retention window the id stays taken: a typed error (HTTP 409) that says why.
    with pytest.raises(cairn.errors.RunDeleted, match="doomed.*deleted"):
        cairn.init(project=project, id="doomed")
    status = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
         "-d", json.dumps({"entity": "tester", "project": project, "run_id": "doomed", "resume": "allow"}), f"{server.url}/api/v1/runs"],
        capture_output=True, text=True,
    ).stdout
    assert status == "409"

    # `cairn runs purge` removes it for good, its file's content included.
    out = subprocess.run([cairn_binary(), "runs", "purge", f"tester/{project}/doomed", "--base-url", server.url], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not blobs[0].exists()
    again = cairn.init(project=project, id="doomed")
    assert again.step == 0
    again.finish()
    assert api.run(f"tester/{project}/doomed").summary == {}


def test_deleted_runs_are_purged_when_the_retention_window_passes(tmp_path, project):
    import cairn
    from conftest import Server

    srv = Server(tmp_path / "data", "--deleted-retention-days", "0.00001", "--monitor-interval-secs", "0.2")
    try:
        run = cairn.init(project=project, id="brief", settings={"base_url": srv.url, "console": "off"}, dir=str(tmp_path))
        run.finish()
        api = cairn.Api(base_url=srv.url)
        api.run(f"tester/{project}/brief").delete()
        # 0.00001 days is under a second: the monitor purges it, and the id is free again.
        deadline = time.monotonic() + 15
        while True:
            try:
                cairn.init(project=project, id="brief", settings={"base_url": srv.url, "console": "off"}, dir=str(tmp_path)).finish()
                break
            except cairn.errors.RunDeleted:
                assert time.monotonic() < deadline, "the deleted run was not purged"
                time.sleep(0.2)
    finally:
        srv.stop()


def _files(server, project, run_id):
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/api/v1/runs/tester/{project}/{run_id}/files") as response:
        return json.load(response)


def test_move_runs_all_or_nothing(server, env, tmp_path, project):
    import cairn
    from conftest import cairn_binary

    target = project + "-target"
    for pid, run_id in [(project, "m1"), (project, "m2"), (target, "m2")]:
        run = cairn.init(project=pid, id=run_id, config={"lr": 0.1})
        run.log({"loss": 2.0})
        run.finish()
    api = cairn.Api(base_url=server.url)
    # m2 exists in the target: a clear error that names it, and nothing moves.
    with pytest.raises(cairn.errors.Conflict, match="m2.*nothing was moved"):
        api.move_runs([f"tester/{project}/m1", f"tester/{project}/m2"], f"tester/{target}")
    assert sorted(r.id for r in api.runs(f"tester/{project}")) == ["m1", "m2"]
    # To another entity: the history, config and summary go with it.
    moved = api.move_runs([f"tester/{project}/m1"], f"elsewhere/{target}")
    assert moved == [f"elsewhere/{target}/m1"]
    run = api.run(f"elsewhere/{target}/m1")
    assert run.config["lr"] == 0.1 and run.summary["loss"] == 2.0
    assert list(run.scan_history(keys=["loss"]))[0]["loss"] == 2.0
    with pytest.raises(cairn.errors.NotFound):
        api.run(f"tester/{project}/m1")
    out = subprocess.run(
        [cairn_binary(), "runs", "move", f"tester/{project}/m2", "--to", f"elsewhere/{target}", "--base-url", server.url],
        capture_output=True, text=True,
    )
    assert out.returncode == 0 and f"moved tester/{project}/m2 to elsewhere/{target}/m2" in out.stdout, out.stderr
    bad = subprocess.run(
        [cairn_binary(), "runs", "move", f"elsewhere/{target}/m2", "--to", f"tester/{target}", "--base-url", server.url],
        capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "already has a run with id \"m2\"" in bad.stderr, bad.stderr


def test_tags_and_notes_from_the_cli(server, env, project):
    import cairn
    from conftest import cairn_binary

    run = cairn.init(project=project, id="tagged", tags=["a", "b"], notes="first")
    run.tags = run.tags + ("from-sdk",)
    run.finish()
    path = f"tester/{project}/tagged"
    cli = [cairn_binary(), "runs", "update", path, "--base-url", server.url]
    out = subprocess.run([*cli, "--add-tag", "c", "--remove-tag", "a", "--notes", "edited <b>"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = cairn.Api(base_url=server.url).run(path)
    assert info.tags == ["b", "from-sdk", "c"] and info.notes == "edited <b>"
    bad = subprocess.run([*cli, "--remove-tag", "zzz"], capture_output=True, text=True)
    assert bad.returncode != 0 and "zzz" in bad.stderr
    nothing = subprocess.run(cli, capture_output=True, text=True)
    assert nothing.returncode != 0 and "nothing to change" in nothing.stderr
