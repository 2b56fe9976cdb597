"""Artifacts with W&B code, unchanged but for the import: datasets and models, dedup, aliases,
`latest`, lineage both ways, references, downloads that check every file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import cairn as wandb
from conftest import Server


def test_the_wandb_artifact_snippets(env: dict[str, str], project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # downloads without a root go to ./artifacts
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.png").write_bytes(b"\x89PNG a")
    (data / "images" / "b.png").write_bytes(b"\x89PNG b")
    (data / "labels.csv").write_text("a,0\nb,1\n")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(os.urandom(1000))

    # Log a dataset.
    run = wandb.init(project=project, job_type="upload")
    artifact = wandb.Artifact("mnist", type="dataset", description="digits", metadata={"rows": 2})
    artifact.add_dir(str(data / "images"), name="images")
    artifact.add_file(str(data / "labels.csv"))
    with artifact.new_file("README.md") as f:
        f.write("two images\n")
    artifact.add_reference(f"file://{raw}", name="raw.bin")
    run.log_artifact(artifact, aliases=["best"])
    assert artifact.version == "v0" and artifact.name == "mnist:v0"
    assert sorted(artifact.aliases) == ["best", "latest"]
    assert artifact.file_count == 5
    # The same content again is the same version; a change is v1 and takes `latest`.
    again = wandb.Artifact("mnist", type="dataset")
    again.add_dir(str(data / "images"), name="images")
    again.add_file(str(data / "labels.csv"))
    with again.new_file("README.md") as f:
        f.write("two images\n")
    again.add_reference(f"file://{raw}", name="raw.bin")
    assert run.log_artifact(again).version == "v0"
    (data / "labels.csv").write_text("a,0\nb,2\n")
    changed = run.log_artifact(str(data / "labels.csv"), name="mnist", type="dataset")
    assert changed.version == "v1" and "latest" in changed.aliases
    producer = run.id
    run.finish()

    # Use it in another run and download it: every file checked.
    run = wandb.init(project=project, job_type="train")
    best = run.use_artifact("mnist:best")
    assert best.version == "v0" and best.metadata == {"rows": 2} and best.description == "digits"
    root = best.download(str(tmp_path / "download"))
    assert (Path(root) / "images" / "a.png").read_bytes() == b"\x89PNG a"
    assert (Path(root) / "README.md").read_text() == "two images\n"
    assert not (Path(root) / "raw.bin").exists(), "references are not downloaded"
    assert best.get_entry("raw.bin").ref == f"file://{raw}"
    assert best.get_entry("raw.bin").digest == hashlib.sha256(raw.read_bytes()).hexdigest()
    best.download(str(tmp_path / "download"))  # again: the files are there already
    latest = run.use_artifact("mnist:latest")
    assert latest.version == "v1"
    assert Path(latest.file(str(tmp_path / "latest"))).read_text() == "a,0\nb,2\n"

    # A model, by log_model and use_model.
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    model = run.log_model(str(weights), name="net", aliases=["candidate"])
    assert model.type == "model"
    consumer = run.id
    run.finish()
    run = wandb.init(project=project, job_type="eval")
    path = run.use_model("net:candidate")
    assert Path(path).read_bytes() == b"weights"
    run.finish()

    # The public API: lineage both ways, aliases saved, types, versions, delete.
    api = wandb.Api()
    v0 = api.artifact(f"{project}/mnist:v0")
    assert v0.logged_by().id == producer
    assert [r.id for r in v0.used_by()] == [consumer]
    v0.aliases.append("production")
    v0.save()
    assert "production" in api.artifact(f"{project}/mnist:production").aliases
    assert {t.name for t in api.artifact_types(project)} == {"dataset", "model"}
    assert [a.version for a in api.artifacts("dataset", f"{project}/mnist")] == ["v1", "v0"]
    with pytest.raises(wandb.errors.NotFound):
        api.artifact(f"{project}/mnist:v9")
    with pytest.raises(wandb.errors.InvalidValue):
        api.artifact(f"{project}/mnist:v0").delete()  # it has aliases: best, production
    api.artifact(f"{project}/mnist:v1").delete()  # `latest` is the server's: it moves back
    assert api.artifact(f"{project}/mnist:latest").version == "v0"
    api.artifact(f"{project}/mnist:v0").delete(delete_aliases=True)
    with pytest.raises(wandb.errors.NotFound):
        api.artifact(f"{project}/mnist:latest")


def test_a_tampered_file_is_caught_on_download(env: dict[str, str], project: str, tmp_path: Path, server: Server) -> None:
    content = os.urandom(5000)
    (tmp_path / "w.bin").write_bytes(content)
    with wandb.init(project=project) as run:
        art = wandb.Artifact("weights", type="model")
        art.add_file(str(tmp_path / "w.bin"))
        run.log_artifact(art)
    sha = hashlib.sha256(content).hexdigest()
    blob = server.data_dir / "blobs" / sha[:2] / sha
    assert blob.exists(), blob
    blob.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    fetched = wandb.Api().artifact(f"{project}/weights:latest")
    with pytest.raises(wandb.errors.CairnError) as info:
        fetched.download(str(tmp_path / "out"))
    assert "damaged" in str(info.value) and "w.bin" in str(info.value)
    assert not (tmp_path / "out" / "w.bin").exists()


def test_five_processes_logging_one_collection_get_distinct_versions(env: dict[str, str], project: str, tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import sys, cairn
        i = int(sys.argv[1])
        with cairn.init(project="{project}", id=f"writer{{i}}") as run:
            art = cairn.Artifact("shared", type="dataset")
            with art.new_file("part.txt") as f:
                f.write(f"content of writer {{i}}")
            run.log_artifact(art, aliases=[f"from-{{i}}"])
            print(art.version)
        """
    )
    script = tmp_path / "writer.py"
    script.write_text(code)
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}) for i in range(5)]
    versions = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        versions.append(out.strip().splitlines()[-1])
    assert sorted(versions) == ["v0", "v1", "v2", "v3", "v4"]
    api = wandb.Api()
    for i, version in enumerate(versions):
        assert api.artifact(f"{project}/shared:from-{i}").version == version, "no alias lost"
    assert api.artifact(f"{project}/shared:latest").version == "v4"


def test_the_api_lists_a_runs_logged_and_used_artifacts(server, env, api, project, tmp_path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    maker = wandb.init(project=project, id="maker")
    art = wandb.Artifact("net", type="model")
    art.add_file(str(f))
    maker.log_artifact(art, aliases=["best"])
    maker.finish()
    user = wandb.init(project=project, id="user")
    user.use_artifact(f"{project}/net:best")
    user.finish()
    logged = api.run(f"tester/{project}/maker").logged_artifacts()
    assert [(a.name.split(":")[0], a.type, sorted(a.aliases)) for a in logged] == [("net", "model", ["best", "latest"])]
    assert [a.version for a in api.run(f"tester/{project}/user").used_artifacts()] == ["v0"]
    assert api.run(f"tester/{project}/user").logged_artifacts() == []
