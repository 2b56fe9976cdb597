"""The seed's snippets, verbatim but for the import, run in fresh processes against the real server."""

import re

from conftest import run_script

NAME = re.compile(r"^[a-z]+-[a-z]+-\d+$")


def test_first_snippet_logs_one_point(tmp_path, env, api):
    result = run_script(
        """
        import cairn as wandb

        run = wandb.init(entity="nico", project="awesome-project")
        run.log({"accuracy": 0.9, "loss": 0.1})
        print(run.path)
        """,
        tmp_path,
        env,
        CAIRN_SILENT="false",
    )
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip().splitlines()[-1]
    run = api.run(path)
    assert path.startswith("nico/awesome-project/")
    assert re.fullmatch(r"[a-z0-9]{8}", run.id)
    assert NAME.match(run.name), run.name
    assert run.state == "finished"
    assert run.summary == {"accuracy": 0.9, "loss": 0.1}
    rows = list(run.scan_history())
    assert len(rows) == 1
    assert rows[0]["accuracy"] == 0.9 and rows[0]["loss"] == 0.1 and rows[0]["_step"] == 0
    # The terminal output has the seed's shape.
    err = result.stderr
    assert f"cairn: Syncing run {run.name}" in err
    assert "cairn: ⭐️ View project at http" in err and "/nico/awesome-project" in err
    assert f"cairn: 🚀 View run at http" in err and f"/nico/awesome-project/runs/{run.id}" in err
    assert "cairn: Run history:" in err and "cairn: Run summary:" in err
    assert "cairn: accuracy 0.9\ncairn:     loss 0.1" in err
    assert f"cairn: 🚀 View run {run.name} at: " in err
    assert re.search(r"cairn: Find logs at: \S*cairn/run-\d{8}_\d{6}-" + run.id + "/logs", err), err


def test_training_loop_snippet(tmp_path, env, api):
    result = run_script(
        """
        import random

        import cairn as wandb

        epochs = 10
        lr = 0.01

        run = wandb.init(
            entity="nico",
            project="awesome-project",
            config={
                "learning_rate": lr,
                "epochs": epochs,
            },
        )

        offset = random.random() / 5

        # simulating a training run
        for epoch in range(epochs):
            acc = 1 - 2**-epoch - random.random() / (epoch + 1) - offset
            loss = 2**-epoch + random.random() / (epoch + 1) + offset
            print(f"epoch={epoch}, accuracy={acc}, loss={loss}")
            run.log({"accuracy": acc, "loss": loss})
        print(run.path)
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    path = lines[-1]
    printed = [tuple(float(part.split("=")[1]) for part in line.split(", ")[1:]) for line in lines[:-1]]
    run = api.run(path)
    assert run.config == {"learning_rate": 0.01, "epochs": 10}
    assert run.state == "finished"
    assert NAME.match(run.name)
    history = run.history_columns(keys=["accuracy", "loss"])
    assert history["_step"] == list(range(10))
    assert list(zip(history["accuracy"], history["loss"])) == printed
    assert run.summary["accuracy"] == printed[-1][0]
    assert run.summary["loss"] == printed[-1][1]


def test_third_snippet_gets_a_generated_id_and_name(tmp_path, env, api):
    result = run_script(
        """
        import cairn as wandb

        run = wandb.init(entity="wandbee", project="awesome-project")
        print(run.id, run.name, run.path, run.url)
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    run_id, name, path, url = result.stdout.split()
    assert re.fullmatch(r"[a-z0-9]{8}", run_id)
    assert NAME.match(name)
    assert path == f"wandbee/awesome-project/{run_id}"
    assert url.endswith(f"/wandbee/awesome-project/runs/{run_id}")
    run = api.run(path)
    assert (run.name, run.state) == (name, "finished")


def test_placeholder_snippets_with_id_and_name(tmp_path, env, api, project):
    result = run_script(
        f"""
        import cairn as wandb

        run = wandb.init(entity="nico", project="{project}", id="my-run-id")
        run.finish()
        run = wandb.init(entity="nico", project="{project}", name="my-run-name")
        print(run.id)
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert api.run(f"nico/{project}/my-run-id").state == "finished"
    named = api.run(f"nico/{project}/{result.stdout.strip()}")
    assert named.name == "my-run-name"
