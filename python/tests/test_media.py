"""Rich values: histograms logged, stored and read back through Api, as W&B code writes them."""

import math

import pytest

import cairn as wandb

from conftest import kill_logger, sync


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


def _png_pixels(path):
    """The pixels of a PNG file, decoded by Pillow."""
    from PIL import Image as PILImage

    numpy = pytest.importorskip("numpy")
    with PILImage.open(path) as img:
        return numpy.asarray(img)


def test_media_is_logged_stored_and_read_back_byte_for_byte(env, project, api, tmp_path):
    numpy = pytest.importorskip("numpy")
    pytest.importorskip("PIL")
    from PIL import Image as PILImage

    rng = numpy.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(224, 224, 3), dtype=numpy.uint8)
    chw = rng.random((3, 40, 30))
    gray = rng.integers(0, 256, size=(300, 500), dtype=numpy.uint8)
    pil = PILImage.fromarray(rng.integers(0, 256, size=(20, 10, 4), dtype=numpy.uint8), "RGBA")
    jpeg = tmp_path / "photo.jpg"
    PILImage.fromarray(rgb).save(jpeg, quality=90)
    samples = numpy.sin(numpy.linspace(0, 440 * 2 * numpy.pi, 8000)).astype(numpy.float32) * 0.5
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 10)

    run = wandb.init(project=project, id="media")
    for step in range(3):
        run.log(
            {
                "rgb": wandb.Image(rgb if step == 2 else rgb // (step + 2), caption=f"step {step}"),
                "chw": wandb.Image(chw),
                "gray": wandb.Image(gray, mode="L"),
                "pil": wandb.Image(pil),
                "jpeg": wandb.Image(str(jpeg)),
                "many": [wandb.Image(rgb[:8, :8]), wandb.Image(rgb[8:16, :8])],
                "audio": wandb.Audio(samples, sample_rate=8000, caption="tone"),
                "video": wandb.Video(str(video)),
                "loss": 1.0 / (step + 1),
            }
        )
    run.finish()

    got = api.run(f"{run.entity}/{project}/media")
    summary = got.summary
    img = summary["rgb"]
    assert isinstance(img, wandb.Image), summary
    assert (img.width, img.height, img.caption, img.format) == (224, 224, "step 2", "png")
    assert img.path.startswith("media/images/rgb/") and img.thumb is None
    local = img.download(str(tmp_path / "dl"))
    assert (_png_pixels(local) == rgb).all(), "the PNG holds the pixels logged"
    assert (numpy.asarray(img.image) == rgb).all()
    # CHW floats became HWC bytes.
    chw_back = _png_pixels(summary["chw"].download(str(tmp_path / "dl")))
    assert chw_back.shape == (40, 30, 3)
    assert (chw_back == (chw.transpose(1, 2, 0) * 255 + 0.5).astype(numpy.uint8)).all()
    # A large image has a thumbnail that fits 256 px.
    g = summary["gray"]
    assert (g.width, g.height) == (500, 300) and g.thumb and g.thumb.endswith(".thumb.png")
    assert (_png_pixels(g.download(str(tmp_path / "dl"))) == gray).all()
    assert (_png_pixels(summary["pil"].download(str(tmp_path / "dl"))) == numpy.asarray(pil)).all()
    # Files are stored as they were given, byte for byte.
    j = summary["jpeg"]
    assert (j.format, j.width, j.height) == ("jpg", 224, 224)
    assert open(j.download(str(tmp_path / "dl")), "rb").read() == jpeg.read_bytes()
    v = summary["video"]
    assert isinstance(v, wandb.Video) and v.format == "mp4"
    assert open(v.download(str(tmp_path / "dl")), "rb").read() == video.read_bytes()
    a = summary["audio"]
    assert isinstance(a, wandb.Audio) and a.caption == "tone" and a.format == "wav"
    wav = open(a.download(str(tmp_path / "dl")), "rb").read()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * 8000
    pcm = numpy.frombuffer(wav[44:], dtype="<i2")
    assert numpy.abs(pcm / 32767.0 - samples).max() < 1e-4
    assert [i.width for i in summary["many"]] == [8, 8]

    # Every step's value is in the history, each its own file.
    rows = list(got.scan_history(keys=["rgb"]))
    assert [r["rgb"].caption for r in rows] == ["step 0", "step 1", "step 2"]
    assert len({r["rgb"].sha256 for r in rows}) == 3
    first = _png_pixels(rows[0]["rgb"].download(str(tmp_path / "dl0")))
    assert (first == rgb // 2).all()
    # The same image logged at each step is one file.
    assert len({r["chw"].sha256 for r in got.scan_history(keys=["chw"])}) == 1
    names = {f.name for f in got.files()}
    assert img.path in names and g.thumb in names and v.path in names


def test_tables_hold_images_and_dataframes_read_back(env, project, api, tmp_path):
    numpy = pytest.importorskip("numpy")
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("PIL")
    digits = [numpy.full((8, 8), 30 * i, dtype=numpy.uint8) for i in range(5)]
    run = wandb.init(project=project, id="tbl")
    table = wandb.Table(columns=["image", "guess", "confidence"])
    for i, d in enumerate(digits):
        table.add_data(wandb.Image(d), i, 1.0 - i / 10)
    frame = pandas.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    run.log({"predictions": table, "frame": wandb.Table(dataframe=frame)})
    run.finish()

    got = api.run(f"{run.entity}/{project}/tbl").summary
    predictions = got["predictions"]
    assert predictions.columns == ["image", "guess", "confidence"]
    images = predictions.get_column("image")
    assert all(isinstance(i, wandb.Image) for i in images)
    for image, d in zip(images, digits):
        assert (_png_pixels(image.download(str(tmp_path))) == d).all()
    assert got["frame"].get_dataframe().equals(frame)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda np: wandb.Image(np.full((4, 4, 4), 2.5)), r'"bad".*\[0, 1\].*4×4×4 float64.*2\.5'),
        (lambda np: wandb.Image(np.zeros((4, 4, 2))), r'"bad".*1, 3 or 4 channels'),
        (lambda np: wandb.Image(np.zeros((4, 4)), mode="RGB"), r".bad..*mode 'RGB' needs 3"),
        (lambda np: wandb.Image(object()), r'"bad".*Image takes'),
        (lambda np: wandb.Image("/no/such/file.png"), r'"bad".*does not exist'),
        (lambda np: wandb.Audio(np.zeros(10)), r'"bad".*sample_rate'),
        (lambda np: wandb.Audio(np.full(10, 3.0), sample_rate=8000), r'"bad".*\[-1, 1\]'),
        (lambda np: wandb.Video(np.zeros((2, 3, 4, 4))), r'"bad".*Video takes a file'),
    ],
)
def test_bad_media_is_a_clear_error_naming_the_key_and_the_run_goes_on(env, project, api, make, message):
    numpy = pytest.importorskip("numpy")
    run = wandb.init(project=project)
    with pytest.raises(wandb.errors.InvalidValue, match=message):
        run.log({"bad": make(numpy), "loss": 1.0})
    run.log({"loss": 2.0, "ok": wandb.Image(numpy.zeros((2, 2), dtype=numpy.uint8))})
    run.finish()
    got = api.run(f"{run.entity}/{project}/{run.id}")
    assert got.summary["loss"] == 2.0 and isinstance(got.summary["ok"], wandb.Image)
    assert "bad" not in got.summary
    with pytest.raises(wandb.errors.InvalidValue, match="summary"):
        r = wandb.init(project=project)
        r.summary["img"] = wandb.Image(numpy.zeros((2, 2), dtype=numpy.uint8))


def test_media_logged_offline_then_synced_arrives_complete(env, project, api, tmp_path):
    numpy = pytest.importorskip("numpy")
    run = wandb.init(project=project, id="offmedia", mode="offline")
    frames = [numpy.full((64, 64, 3), i, dtype=numpy.uint8) for i in range(20)]
    for f in frames:
        run.log({"frame": wandb.Image(f)})
    run_dir = run.dir
    run.finish()
    sync(run_dir, env)
    got = api.run(f"tester/{project}/offmedia")
    rows = list(got.scan_history(keys=["frame"]))
    assert len(rows) == 20
    for row, f in zip(rows, frames):
        assert (_png_pixels(row["frame"].download(str(tmp_path / str(row["_step"])))) == f).all()


def test_sigkill_during_media_uploads_loses_nothing_log_accepted(tmp_path, env, api):
    pytest.importorskip("numpy")
    path, run_dir, last = kill_logger(
        """
        import numpy
        import cairn
        run = cairn.init(project="killed-media")
        print("path", run.path, flush=True)
        print("dir", run.dir, flush=True)
        step = 0
        while True:
            pixels = numpy.full((96, 96, 3), step % 256, dtype=numpy.uint8)
            pixels[0, 0] = [step // 256 % 256, step % 256, 7]
            run.log({"img": cairn.Image(pixels), "step_copy": step})
            print("logged", step, flush=True)
            step += 1
        """,
        tmp_path,
        env,
        after=300,
    )
    sync(run_dir, env)
    got = api.run(path)
    rows = list(got.scan_history(keys=["img", "step_copy"]))
    assert len(rows) > last
    assert [r["step_copy"] for r in rows] == list(range(len(rows)))
    stored = {f.name for f in got.files()}
    for row in rows[:: max(1, len(rows) // 25)] + rows[-3:]:
        image = row["img"]
        assert image.path in stored, f"step {row['_step']}: {image.path} was not uploaded"
        pixels = _png_pixels(image.download(str(tmp_path / "dl" / str(row["_step"]))))
        s = row["step_copy"]
        assert list(pixels[0, 0]) == [s // 256 % 256, s % 256, 7] and pixels[5, 5, 0] == s % 256


def test_a_file_rewritten_at_every_step_keeps_each_steps_content(env, project, api, tmp_path):
    pytest.importorskip("PIL")
    numpy = pytest.importorskip("numpy")
    from PIL import Image as PILImage

    plot = tmp_path / "plot.png"
    run = wandb.init(project=project, id="rewrite")
    for step in range(3):
        PILImage.fromarray(numpy.full((10, 10, 3), 50 * step, dtype=numpy.uint8)).save(plot)
        run.log({"plot": wandb.Image(str(plot))})
    run.finish()
    rows = list(api.run(f"{run.entity}/{project}/rewrite").scan_history(keys=["plot"]))
    reds = [int(_png_pixels(r["plot"].download(str(tmp_path / str(r["_step"]))))[0, 0, 0]) for r in rows]
    assert reds == [0, 50, 100], "each step keeps the file as it was when logged"
