"""Sweeps end to end: the server's controller, agents in separate processes, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import cairn
from conftest import Server, cairn_binary, wait_for


def test_a_bad_configuration_names_the_parameter(env, project):
    with pytest.raises(cairn.errors.InvalidValue, match='parameter "lr": min 0.1 must be below max 0.01'):
        cairn.sweep({"method": "random", "parameters": {"lr": {"min": 0.1, "max": 0.01}}}, project=project)
    with pytest.raises(cairn.errors.UsageError, match="function"):
        cairn.agent("e/p/x")


def _trials(api, entity, project, sweep_id):
    return api._client.call_json("GET", f"/api/v1/sweeps/{entity}/{project}/{sweep_id}/trials", None)


def test_a_grid_with_three_agent_processes_runs_every_point_once_and_no_agent_idles(env, project, api, tmp_path):
    config = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "layers": {"values": [1, 2, 3]}, "opt": {"value": "adam"}},
    }
    sweep_id = cairn.sweep(config, project=project)
    entity = api.default_entity
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time, cairn
            def train():
                run = cairn.init(config={{"epochs": 2, "lr": 99}})
                # The trial's parameters win over the config given.
                assert run.config["lr"] != 99 and run.config["epochs"] == 2
                for step in range(3):
                    run.log({{"loss": run.config["lr"] * run.config["layers"] / (step + 1)}})
                time.sleep(0.4)
                run.finish()
            print("ran", cairn.agent("{entity}/{project}/{sweep_id}", function=train), flush=True)
            """
        )
    )
    agents = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env}) for _ in range(3)]
    outs = [a.communicate(timeout=180) for a in agents]
    for a, (out, err) in zip(agents, outs):
        assert a.returncode == 0, err
    counts = [int(out.split()[-1]) for out, _ in outs]
    assert sum(counts) == 9, counts
    # Nine points over three agents, 0.4 s each: none sat idle while points remained.
    assert min(counts) >= 2, counts
    trials = _trials(api, entity, project, sweep_id)
    points = sorted((t["config"]["lr"], t["config"]["layers"]) for t in trials)
    assert points == sorted((lr, layers) for lr in [0.1, 0.01, 0.001] for layers in [1, 2, 3]), "every point exactly once"
    assert {t["state"] for t in trials} == {"finished"}
    assert len({t["agent"] for t in trials}) == 3
    info = api._client.call_json("GET", f"/api/v1/sweeps/{entity}/{project}/{sweep_id}", None)
    assert (info["state"], info["finished"]) == ("finished", 9)
    assert info["best"]["value"] == pytest.approx(0.001 * 1 / 3)
    best = api.run(f"{entity}/{project}/{info['best']['run_id']}")
    assert (best.config["lr"], best.config["layers"], best.config["opt"], best.config["epochs"]) == (0.001, 1, "adam", 2)


def test_the_cli_creates_a_sweep_and_its_agent_runs_the_program(env, project, api, tmp_path):
    program = tmp_path / "train.py"
    program.write_text(
        textwrap.dedent(
            """
            import argparse, cairn
            parser = argparse.ArgumentParser()
            parser.add_argument("--x", type=float)
            parser.add_argument("--kind")
            args = parser.parse_args()
            run = cairn.init()
            # The command line and the run's config agree.
            assert run.config["x"] == args.x and run.config["kind"] == args.kind, (run.config, args)
            run.log({"score": args.x * (2 if args.kind == "b" else 1)})
            run.finish()
            """
        )
    )
    (tmp_path / "sweep.yaml").write_text(
        textwrap.dedent(
            f"""
            program: {program}
            method: grid
            metric:
              name: score
              goal: maximize
            parameters:
              x:
                values: [1.5, 2.5]
              kind:
                values: [a, b]
            """
        )
    )
    cli = cairn_binary()
    child_env = {**os.environ, **env, "CAIRN_AGENT_INTERPRETER": sys.executable}
    made = subprocess.run([cli, "sweep", str(tmp_path / "sweep.yaml"), "--project", project], capture_output=True, text=True, env=child_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    last = made.stdout.strip().splitlines()[-1]
    assert last.startswith("cairn agent ") and "/sweeps/" in made.stdout, made.stdout
    path = last.split()[-1]
    ran = subprocess.run([cli, "agent", path], capture_output=True, text=True, env=child_env, cwd=tmp_path, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "done after 4 trials" in ran.stdout, ran.stdout
    entity, proj, sweep_id = path.split("/")
    trials = _trials(api, entity, proj, sweep_id)
    assert sorted((t["config"]["x"], t["config"]["kind"]) for t in trials) == [(1.5, "a"), (1.5, "b"), (2.5, "a"), (2.5, "b")]
    assert {t["state"] for t in trials} == {"finished"}, ran.stdout
    info = api._client.call_json("GET", f"/api/v1/sweeps/{path}", None)
    assert info["best"]["value"] == 5.0
    # A finished sweep stays so; another is paused, resumed and canceled from the CLI.
    over = subprocess.run([cli, "sweep", "--pause", path], capture_output=True, text=True, env=child_env)
    assert over.returncode != 0 and "is finished: it cannot become paused" in over.stderr, over.stderr
    again = subprocess.run([cli, "sweep", str(tmp_path / "sweep.yaml"), "--project", project], capture_output=True, text=True, env=child_env, cwd=tmp_path)
    second = again.stdout.strip().splitlines()[-1].split()[-1]
    for flag, state in [("--pause", "paused"), ("--resume", "running"), ("--cancel", "canceled")]:
        out = subprocess.run([cli, "sweep", flag, second], capture_output=True, text=True, env=child_env)
        assert out.returncode == 0 and f"is {state}" in out.stdout, out.stdout + out.stderr
    # A bad file is named, with the parameter and the problem.
    (tmp_path / "bad.yaml").write_text("method: grid\nparameters:\n  x:\n    min: 0.0\n    max: 1.0\n")
    bad = subprocess.run([cli, "sweep", str(tmp_path / "bad.yaml"), "--project", project], capture_output=True, text=True, env=child_env)
    assert bad.returncode != 0 and 'parameter "x": a grid search takes value, values or int_uniform' in bad.stderr, bad.stderr


def test_a_trial_whose_agent_is_killed_is_crashed_and_its_point_runs_again(tmp_path):
    # A server that marks a silent run crashed after 2 s.
    server = Server(tmp_path / "data", "--heartbeat-timeout-secs", "2", "--monitor-interval-secs", "0.5")
    try:
        env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true", "CAIRN_HEARTBEAT_SECS": "0.5"}
        api = cairn.Api(base_url=server.url)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            sweep_id = cairn.sweep({"method": "grid", "parameters": {"a": {"values": [1, 2]}}}, project="killed")
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        script = tmp_path / "slow.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import sys, time, cairn
                def train():
                    run = cairn.init()
                    run.log({{"a": run.config["a"]}})
                    print("trial", run.id, flush=True)
                    time.sleep(float(sys.argv[1]))
                    run.finish()
                cairn.agent("tester/killed/{sweep_id}", function=train)
                """
            )
        )
        victim = subprocess.Popen([sys.executable, str(script), "600"], stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
        killed_run = victim.stdout.readline().split()[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        wait_for(lambda: api.run(f"tester/killed/{killed_run}").state == "crashed", timeout=30, what="the killed trial to be marked crashed")
        rescue = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
        assert rescue.returncode == 0, rescue.stderr
        trials = _trials(api, "tester", "killed", sweep_id)
        by_state = sorted((t["state"], t["config"]["a"]) for t in trials)
        crashed_point = next(t["config"]["a"] for t in trials if t["run_id"] == killed_run)
        assert by_state.count(("crashed", crashed_point)) == 1 and by_state.count(("finished", crashed_point)) == 1, by_state
        assert sorted(a for s, a in by_state if s == "finished") == [1, 2], by_state
    finally:
        server.stop()
