"""How runs end: at exit, on errors, on a stop from the server, and after SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import kill_logger, run_script, sync, wait_for


def ended(tmp_path, env, api, body, **extra_env):
    result = run_script(
        """
        import sys
        import cairn
        run = cairn.init(project="ends")
        print(run.path, flush=True)
        run.log({"loss": 1.0})
        """
        + textwrap.dedent(body),
        tmp_path,
        env,
        **extra_env,
    )
    path = result.stdout.split()[0]
    return result, api.run(path)


@pytest.mark.parametrize(
    ("body", "state", "exit_code", "returncode"),
    [
        ("", "finished", 0, 0),
        ("raise ValueError('boom')", "failed", 1, 1),
        ("sys.exit(3)", "failed", 3, 3),
        ("sys.exit(0)", "finished", 0, 0),
        ("raise KeyboardInterrupt", "killed", 130, None),
    ],
)
def test_how_the_process_ends_sets_the_state(tmp_path, env, api, body, state, exit_code, returncode):
    result, run = ended(tmp_path, env, api, body)
    assert run.state == state, result.stderr
    assert run.exit_code == exit_code
    if returncode is not None:
        assert result.returncode == returncode


STOP_LOOPS = {
    # Sleeping: the interrupt cuts the sleep short.
    "sleeping": "while True:\n    time.sleep(0.05)",
    # Logging as fast as it can: a log() after the stop raises KeyboardInterrupt too, never RunFinished.
    "logging": "i = 0\nwhile True:\n    run.log({'loss': float(i)})\n    i += 1",
    # SIGINT ignored (started in the background by a shell, or under nohup): still interrupted.
    "sigint-ignored": "signal.signal(signal.SIGINT, signal.SIG_IGN)\nx = 0\nwhile True:\n    x += 1",
}


@pytest.mark.parametrize("loop", sorted(STOP_LOOPS))
def test_a_stop_from_the_server_interrupts_the_program(tmp_path, env, api, loop):
    script = tmp_path / "stoppable.py"
    body = textwrap.indent(STOP_LOOPS[loop], "    ")
    script.write_text(
        "import signal, time\n"
        "import cairn\n"
        'run = cairn.init(project="stops", settings={"heartbeat_interval": 0.2})\n'
        'run.log({"loss": 1.0})\n'
        "print(run.path, flush=True)\n"
        "try:\n"
        f"{body}\n"
        "except KeyboardInterrupt:\n"
        '    print("interrupted", flush=True)\n'
        "    raise\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env}
    )
    try:
        path = process.stdout.readline().strip()
        api.run(path).stop()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "interrupted" in out, err
    assert "RunFinished" not in err, err
    assert api.run(path).state == "killed"


def test_sigkill_then_sync_keeps_every_point_exactly_once(tmp_path, env, api, server):
    path, run_dir, last = kill_logger(
        """
        import cairn
        run = cairn.init(project="killed")
        print("path", run.path, flush=True)
        print("dir", run.dir, flush=True)
        step = 0
        while True:
            run.log({"loss": step * 0.5, "nested": {"x": step}})
            if step % 500 == 0:
                print("logged", step, flush=True)
            step += 1
        """,
        tmp_path,
        env,
        after=20_000,
    )
    result = sync(run_dir, env)
    assert path in result.stdout
    sync(run_dir, env)
    columns = api.run(path).history_columns(keys=["loss", "nested.x"])
    steps = columns["_step"]
    assert steps == list(range(len(steps)))
    assert len(steps) > last
    assert all(columns["loss"][i] == i * 0.5 and columns["nested.x"][i] == i for i in range(len(steps)))


def test_resume_auto_continues_a_killed_run_without_gap_or_duplicate(tmp_path, env, api):
    script = tmp_path / "auto.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import cairn
            run = cairn.init(project="auto", resume="auto")
            print("path", run.path, "start", run.step, flush=True)
            limit = int(sys.argv[1])
            for _ in range(limit):
                step = run.step
                run.log({"loss": step * 2.0})
                if step % 200 == 0:
                    print("logged", step, flush=True)
            print("done", flush=True)
            """
        )
    )
    first = subprocess.Popen([sys.executable, str(script), "1000000"], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env})
    path, start = (lambda parts: (parts[1], int(parts[3])))(first.stdout.readline().split())
    assert start == 0
    for line in first.stdout:
        if int(line.split()[1]) >= 5000:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run([sys.executable, str(script), "1000"], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env}, timeout=60)
    assert second.returncode == 0, second.stderr
    header = second.stdout.splitlines()[0].split()
    assert header[1] == path, "resume=auto must continue the same run"
    resumed_at = int(header[3])
    assert resumed_at > 5000
    run = api.run(path)
    assert run.state == "finished"
    columns = run.history_columns(keys=["loss"])
    assert columns["_step"] == list(range(resumed_at + 1000))
    assert columns["loss"] == [s * 2.0 for s in columns["_step"]]
    # A clean finish clears the resume file: the next run is a new one.
    third = run_script("import cairn\nrun = cairn.init(project='auto', resume='auto')\nprint(run.path)\n", tmp_path, env)
    assert third.stdout.strip() != path


def test_fork_and_rewind(env, api, tmp_path):
    import cairn

    project = "branches"
    src = cairn.init(project=project, id="trunk", config={"lr": 0.1})
    for i in range(30_000):
        src.log({"loss": i * 0.5})
    src.finish()
    path = f"tester/{project}"

    # Fork at N: the source's history up to N, then the fork's own; the summary is the fork's.
    fork = cairn.init(project=project, fork_from="trunk?_step=20000", config={"lr": 0.01})
    assert fork.step == 20_001 and fork.config["lr"] == 0.01
    fork.log({"loss": -1.0})
    fork.finish()
    forked = api.run(f"{path}/{fork.id}")
    rows = list(forked.scan_history(keys=["loss"], page_size=50_000))
    assert len(rows) == 20_002 and rows[20_000]["loss"] == 10_000.0 and rows[-1] == {"_step": 20_001, "loss": -1.0}
    assert forked.summary["loss"] == -1.0
    assert forked.metadata["fork"] == {"run_id": "trunk", "step": 20_000}
    # At step 0, and beyond the last step (a clear error, and no run is made).
    zero = cairn.init(project=project, fork_from="trunk?_step=0")
    assert zero.step == 1
    zero.finish()
    with pytest.raises(cairn.errors.CairnError, match="beyond.*29999"):
        cairn.init(project=project, fork_from="trunk?_step=30000")
    with pytest.raises(cairn.errors.InvalidValue, match="_step"):
        cairn.init(project=project, fork_from="trunk@20000")
    assert sorted(api.run(f"{path}/trunk").forks()) == sorted([fork.id, zero.id])

    # Rewind: the same id continues at N+1; the history after N is archived and readable.
    rewound = cairn.init(project=project, id="trunk", resume_from="trunk?_step=25000")
    assert rewound.step == 25_001 and rewound.id == "trunk"
    rewound.log({"loss": 7.0})
    rewound.finish()
    trunk = api.run(f"{path}/trunk")
    assert trunk.summary["loss"] == 7.0
    losses = [r["loss"] for r in trunk.scan_history(keys=["loss"], page_size=50_000)]
    assert len(losses) == 25_002 and losses[25_000] == 12_500.0 and losses[-1] == 7.0
    archive_id = trunk.metadata["rewinds"][0]["archive"]
    archived = api.run(f"{path}/{archive_id}")
    tail = list(archived.scan_history(keys=["loss"], page_size=50_000))
    assert (tail[0]["_step"], tail[-1]["_step"], len(tail)) == (25_001, 29_999, 4_999)
    assert archive_id not in [r.id for r in api.runs(path)]
    # The fork still reads its history, part of which now lives in the archive.
    assert len(list(api.run(f"{path}/{fork.id}").scan_history(keys=["loss"], page_size=50_000))) == 20_002
    with pytest.raises(cairn.errors.CairnError, match="beyond"):
        cairn.init(project=project, id="trunk", resume_from="trunk?_step=99999")
    with pytest.raises(cairn.errors.InvalidSetting, match="same run"):
        cairn.init(project=project, id="other", resume_from="trunk?_step=5")


def test_a_full_run_directory_does_not_crash_training_and_what_was_written_syncs(server, tmp_path, project) -> None:
    import shutil

    import cairn
    from conftest import cairn_binary

    small = tmp_path / "small"
    small.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root, or not Linux)")
    try:
        code = f"""
import cairn
run = cairn.init(project="{project}", id="fulldisk", mode="offline")
logged = 0
for i in range(20000):
    run.log({{"loss": float(i), "text": "x" * 400}})
    logged += 1
print("survived", logged, flush=True)
run.finish()
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CAIRN_DIR": str(small), "CAIRN_SILENT": "true", "CAIRN_CONSOLE": "off"})
        # Training went on to the end; the program was told once.
        assert done.returncode == 0, done.stderr[-3000:]
        assert "survived 20000" in done.stdout
        assert done.stderr.count("logged rows are not written until it can be written again") == 1, done.stderr[-3000:]
        # And at finish, that the run's end could not be written.
        assert "the run's end was not written" in done.stderr
        # Once there is room, what was written syncs: steps from 0, contiguous, each value as logged.
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(small)], capture_output=True).returncode == 0
        run_dir = next(p for p in (small / "cairn").iterdir() if p.name.startswith("run-"))
        synced = subprocess.run([cairn_binary(), "sync", str(run_dir), "--base-url", server.url], capture_output=True, text=True, timeout=300)
        assert synced.returncode == 0, synced.stderr
        rows = list(cairn.Api(base_url=server.url).run(f"tester/{project}/fulldisk").scan_history())
        assert rows and len(rows) < 20000, len(rows)
        assert [r["_step"] for r in rows] == list(range(len(rows)))
        assert all(r["loss"] == float(r["_step"]) for r in rows)
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_a_run_directory_that_turns_read_only_does_not_crash_training_and_what_was_written_syncs(server, tmp_path, project) -> None:
    """A real ext4 on a loop device, mounted errors=remount-ro: a filesystem error mid-run turns it
    read-only under the run's open, mapped log, as a failing disk does."""
    import shutil

    import cairn
    from conftest import cairn_binary

    image, mnt = tmp_path / "disk.img", tmp_path / "ro"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    if shutil.which("mkfs.ext4") is None or subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True).returncode != 0:
        pytest.skip("no mkfs.ext4 here")
    if subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a loop device here (not root, or not Linux)")
    try:
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], capture_output=True, text=True).stdout.strip()
        trigger = f"/sys/fs/ext4/{os.path.basename(device)}/trigger_fs_error"
        if not os.path.exists(trigger):
            pytest.skip(f"this kernel has no {trigger}")
        code = f"""
import sys
import cairn
run = cairn.init(project="{project}", id="readonly", mode="offline")
for i in range(20000):
    run.log({{"loss": float(i), "text": "x" * 400}})
    if i == 4999:
        print("half", flush=True)
        sys.stdin.readline()
print("survived", flush=True)
run.finish()
"""
        env = {**os.environ, "CAIRN_DIR": str(mnt), "CAIRN_SILENT": "true", "CAIRN_CONSOLE": "off"}
        training = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert training.stdout.readline().strip() == "half"
        with open(trigger, "w") as f:
            f.write("cairn test: the disk fails")
        assert subprocess.run(["touch", str(mnt / "probe")], capture_output=True).returncode != 0, "the filesystem is still writable"
        training.stdin.write("\n")
        training.stdin.flush()
        out, err = training.communicate(timeout=300)
        # Training went on to the end, and the program was told once. (Whether the run's end
        # record is refused too depends on where it falls: the log is mapped, and a record in
        # blocks reserved before the failure lands in memory, which sync reads.)
        assert training.returncode == 0, err[-3000:]
        assert "survived" in out
        assert err.count("logged rows are not written until it can be written again") == 1, err[-3000:]
        assert "read-only" in err, err[-3000:]
        # What was written syncs from the read-only directory: steps from 0, contiguous, each
        # value as logged, at least everything logged before the disk failed.
        run_dir = next(p for p in (mnt / "cairn").iterdir() if p.name.startswith("run-"))
        synced = subprocess.run([cairn_binary(), "sync", str(run_dir), "--base-url", server.url], capture_output=True, text=True, timeout=300)
        assert synced.returncode == 0, synced.stderr
        assert "read-only filesystem" in synced.stderr, synced.stderr
        rows = list(cairn.Api(base_url=server.url).run(f"tester/{project}/readonly").scan_history())
        assert 5000 <= len(rows) < 20000, len(rows)
        assert [r["_step"] for r in rows] == list(range(len(rows)))
        assert all(r["loss"] == float(r["_step"]) for r in rows)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
