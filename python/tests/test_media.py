"""Rich values: histograms logged, stored and read back through Api, as W&B code writes them."""

import math

import pytest

import cairn as wandb


def test_histograms_are_logged_stored_and_read_back(env, project, api):
    numpy = pytest.importorskip("numpy")
    run = wandb.init(project=project, id="hist")
    rng = numpy.random.default_rng(0)
    logged = []
    for step in range(100):
        weights = rng.normal(loc=step / 10, scale=1.0, size=1000)
        h = wandb.Histogram(weights, num_bins=32)
        logged.append(h)
        run.log({"weights": h, "grads": wandb.Histogram(np_histogram=numpy.histogram(weights * 0.1, bins=8)), "loss": 1 / (step + 1)})
    assert run.summary["weights"] == logged[-1], "the summary keeps the last one"
    run.finish()

    got = api.run(f"{run.entity}/{project}/hist")
    assert isinstance(got.summary["weights"], wandb.Histogram)
    assert got.summary["weights"] == logged[-1]
    rows = list(got.scan_history(keys=["weights"]))
    assert len(rows) == 100
    for row, h in zip(rows, logged):
        assert row["weights"] == h, f"step {row['_step']}"
        assert sum(row["weights"].histogram) == 1000
    grads = got.history_columns(keys=["grads"])["grads"]
    assert len(grads[7].histogram) == 8 and grads[7].bins[0] < grads[7].bins[-1]
    # The loss beside them is a plain series still.
    assert got.history(keys=["loss"], pandas=False)[0]["loss"] == 1.0

    # Merged in 10 buckets of 10 steps: every value counted, the range of all of them.
    merged = api._client.call_json("GET", f"/api/v1/runs/{run.entity}/{project}/hist/histograms?key=weights&buckets=10")
    buckets = merged["buckets"]
    assert [(b["first_step"], b["last_step"], b["count"]) for b in buckets] == [(10 * i, 10 * i + 9, 10) for i in range(10)]
    for i, b in enumerate(buckets):
        assert sum(b["values"]) == pytest.approx(10 * 1000)
        parts = logged[10 * i : 10 * i + 10]
        assert b["bins"][0] == pytest.approx(min(h.bins[0] for h in parts))
        assert b["bins"][-1] == pytest.approx(max(h.bins[-1] for h in parts))
    # The distribution moves right as the steps go, as logged.
    centers = [sum(v * (b["bins"][j] + b["bins"][j + 1]) / 2 for j, v in enumerate(b["values"])) / sum(b["values"]) for b in buckets]
    assert centers == sorted(centers)
    with pytest.raises(wandb.errors.InvalidValue, match="no histograms"):
        api._client.call_json("GET", f"/api/v1/runs/{run.entity}/{project}/hist/histograms?key=loss")


def test_a_histogram_from_a_sequence_is_what_numpy_makes():
    numpy = pytest.importorskip("numpy")
    values = [0.1, 0.5, 0.5, 2.0, 3.5, 4.0, float("nan")]
    h = wandb.Histogram(values, num_bins=4)
    counts, edges = numpy.histogram([v for v in values if not math.isnan(v)], bins=4)
    assert h.histogram == counts.astype(float).tolist()
    assert h.bins == pytest.approx(edges.tolist())
    assert wandb.Histogram([3.0, 3.0], num_bins=2).bins == [2.5, 3.0, 3.5]


def test_bad_histograms_are_clear_errors_and_the_run_goes_on(env, project, api):
    run = wandb.init(project=project, id="bad-hist")
    with pytest.raises(wandb.errors.InvalidValue, match="num_bins"):
        wandb.Histogram([1, 2], num_bins=0)
    with pytest.raises(wandb.errors.InvalidValue, match="bin edges"):
        wandb.Histogram(np_histogram=([1, 2, 3], [0, 1]))
    with pytest.raises(wandb.errors.InvalidValue, match="sequence or np_histogram"):
        wandb.Histogram()
    # A hand-made one that lies: refused with the key named, nothing logged.
    with pytest.raises(wandb.errors.InvalidValue, match='"h".*bin edges'):
        run.log({"h": {"_type": "histogram", "bins": [0, 1, 2], "values": [1, 2, 3]}})
    run.log({"h": wandb.Histogram([1, 2, 3]), "ok": 1})
    run.finish()
    got = api.run(f"{run.entity}/{project}/bad-hist")
    assert [r["_step"] for r in got.scan_history(keys=["h"])] == [0]


def test_tables_are_logged_and_read_back_with_their_cells(env, project, api):
    run = wandb.init(project=project, id="table")
    table = wandb.Table(columns=["id", "guess", "confidence", "ok"])
    for i in range(30):
        table.add_data(i, str(i % 10), 1 / (i + 1), i % 3 == 0)
    table.add_column("note", [None if i % 2 else {"tag": f"t{i}"} for i in range(30)])
    assert table.get_column("guess")[:3] == ["0", "1", "2"]
    run.log({"predictions": table})
    assert run.summary["predictions"] == table
    run.finish()

    got = api.run(f"{run.entity}/{project}/table")
    back = got.summary["predictions"]
    assert isinstance(back, wandb.Table) and back == table
    assert back.columns == ["id", "guess", "confidence", "ok", "note"]
    assert back.get_column("confidence")[29] == pytest.approx(1 / 30)
    assert [r["predictions"] for r in got.scan_history(keys=["predictions"])] == [table]


def test_a_dataframe_becomes_a_table_and_comes_back(env, project, api):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"epoch": [1, 2, 3], "loss": [0.5, 0.25, 0.125], "split": ["a", "b", "c"]})
    run = wandb.init(project=project, id="frame")
    run.log({"results": wandb.Table(dataframe=frame)})
    run.finish()
    back = api.run(f"{run.entity}/{project}/frame").summary["results"].get_dataframe()
    assert back.equals(frame)


def test_bad_tables_are_clear_errors(env, project):
    with pytest.raises(wandb.errors.InvalidValue, match="2 cells"):
        wandb.Table(columns=["a", "b"], data=[[1, 2, 3]])
    with pytest.raises(wandb.errors.InvalidValue, match="once each"):
        wandb.Table(columns=["a", "a"])
    run = wandb.init(project=project, id="bad-table")
    with pytest.raises(wandb.errors.InvalidValue, match='"t".*row 0 has 1 cells for 2 columns'):
        run.log({"t": {"_type": "table", "columns": ["a", "b"], "data": [[1]]}})
    run.log({"t": wandb.Table(columns=["a"], data=[[1]])})
    run.finish()


def test_html_is_logged_and_read_back(env, project, api, tmp_path):
    page = tmp_path / "report.html"
    page.write_text("<h1>Report</h1><script>document.title='x'</script>")
    run = wandb.init(project=project, id="html")
    run.log({"report": wandb.Html(open(page))})
    run.log({"report": wandb.Html("<p>second</p>")})
    run.finish()
    got = api.run(f"{run.entity}/{project}/html")
    assert got.summary["report"] == wandb.Html("<p>second</p>")
    assert [r["report"].html for r in got.scan_history(keys=["report"])][0].startswith("<h1>Report</h1>")
    with pytest.raises(wandb.errors.InvalidValue, match="string or a file"):
        wandb.Html(42)


def test_every_wandb_plot_is_logged_and_read_back(env, project, api):
    numpy = pytest.importorskip("numpy")
    rng = numpy.random.default_rng(1)
    table = wandb.Table(columns=["epoch", "acc", "model"], data=[[e, e / 10, "a" if e % 2 else "b"] for e in range(10)])
    y_true = rng.integers(0, 3, size=200)
    probas = rng.dirichlet([1, 1, 1], size=200)
    probas[numpy.arange(200), y_true] += 0.8
    probas /= probas.sum(axis=1, keepdims=True)
    charts = {
        "line": wandb.plot.line(table, "epoch", "acc", stroke="model", title="Accuracy"),
        "scatter": wandb.plot.scatter(table, "epoch", "acc"),
        "bar": wandb.plot.bar(table, "model", "acc", title="By model"),
        "hist": wandb.plot.histogram(table, "acc"),
        "series": wandb.plot.line_series(xs=[0, 1, 2], ys=[[1, 2, 3], [3, 2, 1]], keys=["up", "down"], xname="step"),
        "cm": wandb.plot.confusion_matrix(probs=probas, y_true=y_true, class_names=["cat", "dog", "fish"]),
        "pr": wandb.plot.pr_curve(y_true, probas, labels=["cat", "dog", "fish"]),
        "roc": wandb.plot.roc_curve(y_true, probas, labels=["cat", "dog", "fish"]),
    }
    run = wandb.init(project=project, id="plots")
    run.log(charts)
    run.finish()
    summary = api.run(f"{run.entity}/{project}/plots").summary
    for key, chart in charts.items():
        assert summary[key] == chart, key
    cm = summary["cm"].table
    assert sum(cm.get_column("nPredictions")) == 200
    diagonal = sum(n for a, p, n in cm.data if a == p)
    assert diagonal > 150, "the true class got most of the probability"
    roc = summary["roc"].table
    cat = [(f, t) for c, f, t in roc.data if c == "cat"]
    assert cat[0] == (0.0, 0.0) and cat[-1] == (1.0, 1.0) and cat == sorted(cat)
    pr = [(r, p) for c, r, p in summary["pr"].table.data if c == "dog"]
    assert pr[-1][0] == 1.0 and all(0 <= p <= 1 for _, p in pr)
    with pytest.raises(wandb.errors.InvalidValue, match="lacks"):
        wandb.plot.line(table, "epoch", "loss")
