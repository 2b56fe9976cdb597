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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_env(env, fn):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_hyperband_stops_the_trials_that_rank_below_their_bracket_and_says_why(tmp_path):
    # loss = x + 1/i at iteration i; one agent runs x = 3, 1, 4, 2, 5 in turn. At iteration 2,
    # keeping the top half: 4 ranks 3rd of 3 and 5 ranks 5th of 5 (stopped); 3, 1 and 2 never
    # rank below the top half (at iteration 4 either). Nothing else is stopped.
    server = Server(tmp_path / "data", "--monitor-interval-secs", "0.3")
    try:
        env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true", "CAIRN_HEARTBEAT_SECS": "0.3"}
        config = {
            "program": str(tmp_path / "train.py"),
            "method": "grid",
            "metric": {"name": "loss", "goal": "minimize"},
            "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2, "s": 2},
            "parameters": {"x": {"values": [3, 1, 4, 2, 5]}},
        }
        sweep_id = _with_env(env, lambda: cairn.sweep(config, project="hb"))
        (tmp_path / "train.py").write_text(
            textwrap.dedent(
                """
                import argparse, time, cairn
                parser = argparse.ArgumentParser()
                parser.add_argument("--x", type=float)
                x = parser.parse_args().x
                run = cairn.init()
                for i in range(1, 7):
                    run.log({"loss": x + 1 / i})
                    time.sleep(0.6)
                run.finish()
                """
            )
        )
        child_env = {**os.environ, **env, "CAIRN_AGENT_INTERPRETER": sys.executable}
        ran = subprocess.run([cairn_binary(), "agent", f"tester/hb/{sweep_id}"], capture_output=True, text=True, env=child_env, timeout=240)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        api = cairn.Api(base_url=server.url)
        trials = _trials(api, "tester", "hb", sweep_id)
        states = {t["config"]["x"]: t["state"] for t in trials}
        assert states == {3: "finished", 1: "finished", 4: "killed", 2: "finished", 5: "killed"}, ran.stdout
        for t in trials:
            run = api._client.call_json("GET", f"/api/v1/runs/tester/hb/{t['run_id']}", None)
            if t["state"] == "killed":
                assert run["stop_reason"].startswith("stopped by hyperband at iteration 2: loss "), run
                assert "below the top 1/2" in run["stop_reason"]
                assert f"run {t['run_id']} is stopped: stopped by hyperband" in ran.stdout, ran.stdout
            else:
                assert "stop_reason" not in run, run
        decisions = api._client.call_json("GET", f"/api/v1/sweeps/tester/hb/{sweep_id}/decisions", None)
        by_run = {t["run_id"]: t["config"]["x"] for t in trials}
        stopped = sorted((by_run[d["run_id"]], d["bracket"], d["rank"], d["reached"]) for d in decisions if d["stopped"])
        assert stopped == [(4, 2, 3, 3), (5, 2, 5, 5)], decisions
        kept = {by_run[d["run_id"]] for d in decisions if not d["stopped"]}
        assert kept == {3, 1, 2}, [(by_run[d["run_id"]], d["bracket"], d["rank"], d["reached"], d["stopped"]) for d in decisions]
    finally:
        server.stop()


def test_a_server_restarted_mid_sweep_loses_no_trial_and_the_agent_goes_on(tmp_path):
    port = _free_port()
    server = Server(tmp_path / "data", port=port)
    try:
        env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true"}
        config = {"program": str(tmp_path / "train.py"), "method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2, 3, 4, 5, 6]}}}
        sweep_id = _with_env(env, lambda: cairn.sweep(config, project="restart"))
        (tmp_path / "train.py").write_text(
            textwrap.dedent(
                """
                import argparse, time, cairn
                parser = argparse.ArgumentParser()
                parser.add_argument("--x", type=int)
                x = parser.parse_args().x
                run = cairn.init()
                for i in range(4):
                    run.log({"loss": x / (i + 1)})
                    time.sleep(0.3)
                run.finish()
                """
            )
        )
        child_env = {**os.environ, **env, "CAIRN_AGENT_INTERPRETER": sys.executable}
        agent = subprocess.Popen([cairn_binary(), "agent", f"tester/restart/{sweep_id}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env)
        lines = []
        while sum("ended" in line for line in lines) < 2:
            line = agent.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        # Killed mid-sweep, the server comes back on the same data and port after a while.
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        time.sleep(2)
        server = Server(tmp_path / "data", port=port)
        out, _ = agent.communicate(timeout=180)
        out = "".join(lines) + out
        assert agent.returncode == 0, out
        assert "cannot reach the sweep's controller" in out and "done after 6 trials" in out, out
        api = cairn.Api(base_url=server.url)
        trials = _trials(api, "tester", "restart", sweep_id)
        assert sorted(t["config"]["x"] for t in trials) == [1, 2, 3, 4, 5, 6], trials
        wait_for(lambda: {t["state"] for t in _trials(api, "tester", "restart", sweep_id)} == {"finished"}, timeout=30, what="every trial finished")
        for t in trials:
            assert len(api.run(f"tester/restart/{t['run_id']}").history(pandas=False)) == 4, t
    finally:
        server.stop()


def test_a_local_sweep_runs_without_a_server_shares_its_grid_and_syncs_into_a_sweep(tmp_path):
    # No server at all while the sweep runs: the base URL points at a closed port.
    work = tmp_path / "node"
    work.mkdir()
    (work / "train.py").write_text(
        textwrap.dedent(
            """
            import argparse, time, cairn
            parser = argparse.ArgumentParser()
            parser.add_argument("--x", type=int)
            x = parser.parse_known_args()[0].x
            run = cairn.init()
            for i in range(1, 7):
                run.log({"loss": x + 1 / i})
                time.sleep(float(run.config.get("pause", 0.5)))
            run.finish()
            """
        )
    )
    (work / "grid.yaml").write_text("program: train.py\nmethod: grid\nproject: offline-sweep\nmetric: {name: loss}\nparameters:\n  x: {values: [1, 2, 3, 4, 5, 6]}\n  pause: {value: 0.05}\n")
    (work / "hb.yaml").write_text(
        "program: train.py\nmethod: grid\nproject: offline-sweep\nmetric: {name: loss}\n"
        "early_terminate: {type: hyperband, min_iter: 2, eta: 2, s: 2}\nparameters:\n  x: {values: [3, 1, 4]}\n"
    )
    env = {**os.environ, "CAIRN_BASE_URL": "http://127.0.0.1:9", "CAIRN_DIR": str(work), "CAIRN_SILENT": "true", "CAIRN_AGENT_INTERPRETER": sys.executable}
    cli = cairn_binary()
    agents = [subprocess.Popen([cli, "agent", "--local", "grid.yaml"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=work) for _ in range(2)]
    outs = [a.communicate(timeout=180)[0] for a in agents]
    assert all(a.returncode == 0 for a in agents), outs
    assert all("every one of the 6 grid points ran" in out for out in outs), outs
    counts = [out.count(" ended: finished") for out in outs]
    assert sum(counts) == 6 and min(counts) >= 1, outs
    sweep_id = outs[0].split()[2]
    trials = [json.loads(line) for line in (work / "cairn" / "sweeps" / sweep_id / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["config"]["x"] for t in trials) == [1, 2, 3, 4, 5, 6], "every point once, across both agents"
    hb = subprocess.run([cli, "agent", "--local", "hb.yaml"], capture_output=True, text=True, env=env, cwd=work, timeout=180)
    assert hb.returncode == 0, hb.stdout + hb.stderr
    assert "stopped by hyperband at iteration 2: loss" in hb.stdout, hb.stdout
    hb_id = hb.stdout.split()[2]

    # Later, with a server: `cairn sync` uploads the runs into their sweeps.
    server = Server(tmp_path / "data")
    try:
        dirs = sorted(str(p) for p in (work / "cairn").glob("run-*"))
        assert len(dirs) == 9
        for _ in range(2):  # syncing twice changes nothing
            synced = subprocess.run([cli, "sync", *dirs, "--base-url", server.url], capture_output=True, text=True, env=env)
            assert synced.returncode == 0, synced.stdout + synced.stderr
        api = cairn.Api(base_url=server.url)
        info = api._client.call_json("GET", f"/api/v1/sweeps/tester/offline-sweep/{sweep_id}", None)
        assert (info["state"], info["trials"], info["finished"], info["method"]) == ("finished", 6, 6, "grid"), info
        assert info["best"]["value"] == pytest.approx(1 + 1 / 6)
        best = api.run(f"tester/offline-sweep/{info['best']['run_id']}")
        assert best.config["x"] == 1
        run = api._client.call_json("GET", f"/api/v1/runs/tester/offline-sweep/{info['best']['run_id']}", None)
        assert run["sweep_id"] == sweep_id
        hb_trials = _trials(api, "tester", "offline-sweep", hb_id)
        assert {t["config"]["x"]: t["state"] for t in hb_trials} == {3: "finished", 1: "finished", 4: "killed"}, hb_trials
        killed = next(t for t in hb_trials if t["state"] == "killed")
        reason = api._client.call_json("GET", f"/api/v1/runs/tester/offline-sweep/{killed['run_id']}", None)["stop_reason"]
        assert reason.startswith("stopped by hyperband at iteration 2: loss 4.5 ranks 3 of the 3 trials"), reason
        sweeps = api._client.call_json("GET", "/api/v1/projects/tester/offline-sweep/sweeps", None)
        assert len(sweeps) == 2
    finally:
        server.stop()
