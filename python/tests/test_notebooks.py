"""Notebooks, run by a real Jupyter kernel (ipykernel, driven by nbclient) against a real server:
links as HTML, the run page in an iframe, the cells' output in the run's console log, a second
init, and a run left open when the kernel shuts down. Read back through cairn's API."""

from __future__ import annotations

from pathlib import Path

import pytest

import cairn
from conftest import Server, wait_for

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def execute(cells: list[str], path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """Writes the notebook to `path`, runs it in a fresh kernel (shut down at the end), and
    returns the executed notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    # Jupyter Server names a kernel's notebook so; nbclient does not, the test does.
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def outputs(nb: object, i: int, kind: str) -> list[dict]:
    return [o for o in nb.cells[i].outputs if o["output_type"] == kind]


@pytest.fixture
def nb_env(env, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # The links are shown only when cairn is not silent.
    monkeypatch.delenv("CAIRN_SILENT", raising=False)
    return env


def console(api, path: str) -> list[tuple[str, str]]:
    lines = api._client.call_json("GET", f"/api/v1/runs/{path}/console?limit=1000", None)["lines"]
    return [(line.get("stream", "stdout"), line["text"]) for line in lines]


def test_a_notebook_logs_prints_shows_its_run_and_finishes(server: Server, nb_env, api, project, tmp_path: Path, monkeypatch) -> None:
    nb = execute(
        [
            f'import cairn\nrun = cairn.init(project="{project}", id="nb1", save_code=True)',
            'for i in range(3):\n    run.log({"loss": 1 / (i + 1)})\n    print(f"epoch {i} done")',
            'import sys\nprint("to stderr", file=sys.stderr)\nprint("no newline yet", end="")',
            "run",
            "run.display(height=300)",
            "run.finish()",
        ],
        tmp_path / "train.ipynb",
        monkeypatch,
    )
    url = f"{server.url}/tester/{project}/runs/nb1"
    # init: the run and project links, as links.
    links = outputs(nb, 0, "display_data")
    assert links, nb.cells[0].outputs
    markup = links[0]["data"]["text/html"]
    assert f'<a href="{url}"' in markup, markup
    assert f'<a href="{server.url}/tester/{project}"' in markup, markup
    # The cell shows its output as before.
    assert "".join(o["text"] for o in outputs(nb, 1, "stream")) == "epoch 0 done\nepoch 1 done\nepoch 2 done\n"
    assert sorted(o["name"] for o in outputs(nb, 2, "stream")) == ["stderr", "stdout"]
    # `run` as the last expression, and run.display: the run page in an iframe.
    shown = outputs(nb, 3, "execute_result")[0]["data"]["text/html"]
    assert f'<iframe src="{url}"' in shown and "height:420px" in shown, shown
    framed = outputs(nb, 4, "display_data")[0]["data"]["text/html"]
    assert f'<iframe src="{url}"' in framed and "height:300px" in framed, framed
    assert outputs(nb, 4, "execute_result")[0]["data"]["text/plain"] == "True"
    # The run: finished, its history, its console lines (both streams, the partial line too),
    # the notebook as its program and saved with it.
    run = api.run(f"tester/{project}/nb1")
    assert run.state == "finished"
    assert [r["loss"] for r in run.history(pandas=False)] == [1.0, 0.5, 1 / 3]
    lines = console(api, f"tester/{project}/nb1")
    for expected in [("stdout", "epoch 0 done"), ("stdout", "epoch 2 done"), ("stderr", "to stderr"), ("stdout", "no newline yet")]:
        assert expected in lines, lines
    assert run.metadata["program"] == str(tmp_path / "train.ipynb")
    assert "train.ipynb" in [f.name for f in run.files()]


def test_a_second_init_finishes_the_first_unless_create_new(server: Server, nb_env, api, project, tmp_path: Path, monkeypatch) -> None:
    nb = execute(
        [
            "import cairn",
            f'first = cairn.init(project="{project}", id="nb2a")\nfirst.log({{"a": 1}})',
            f'second = cairn.init(project="{project}", id="nb2b")',
            f'third = cairn.init(project="{project}", id="nb2c", reinit="create_new")\nprint(cairn.run.id)',
            "second.finish()\nthird.finish()",
        ],
        tmp_path / "twice.ipynb",
        monkeypatch,
    )
    assert "".join(o["text"] for o in outputs(nb, 3, "stream")).strip() == "nb2c"
    states = {rid: api.run(f"tester/{project}/{rid}").state for rid in ("nb2a", "nb2b", "nb2c")}
    assert states == {"nb2a": "finished", "nb2b": "finished", "nb2c": "finished"}
    # The first was finished by the second init, before the second began.
    first, second = api.run(f"tester/{project}/nb2a"), api.run(f"tester/{project}/nb2b")
    assert first.finished_at <= second.created_at


def test_a_run_left_open_is_finished_when_the_kernel_shuts_down(server: Server, nb_env, api, project, tmp_path: Path, monkeypatch) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f'import cairn\nrun = cairn.init(project="{project}", id="nb3")\nrun.log({{"loss": 0.5}})\nprint("left open")'),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell('run.log({"loss": 0.25})'),
    ]
    # An error in a cell does not end the run: the cells after it run (allow_errors), and it
    # stays open until the kernel goes.
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute()
    assert outputs(nb, 1, "error")[0]["ename"] == "ZeroDivisionError"
    run = wait_for(lambda: (r := api.run(f"tester/{project}/nb3")).state == "finished" and r, what="the run finished by the kernel's shutdown")
    assert [r["loss"] for r in run.history(pandas=False)] == [0.5, 0.25]
    assert ("stdout", "left open") in console(api, f"tester/{project}/nb3")
    assert run.exit_code == 0
