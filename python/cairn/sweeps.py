"""Sweeps, as W&B has them: ``cairn.sweep(config)`` creates one on the server, whose controller
hands out trials; ``cairn.agent(sweep_id, function)`` runs ``function`` once per trial in this
process, and ``cairn.init()`` inside it picks up the trial's run and parameters. ``cairn agent
ENTITY/PROJECT/ID`` runs the configuration's program as a subprocess per trial instead."""

from __future__ import annotations

import json
import os
import sys
import time

# Keep `import cairn` fast: no typing, socket or traceback at import time (see sdk.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

from . import _core, errors

#: What an agent sets for the trial it runs (read by ``init``).
_TRIAL_ENV = ("CAIRN_SWEEP_ID", "CAIRN_SWEEP_PARAMS", "CAIRN_RUN_ID", "CAIRN_ENTITY", "CAIRN_PROJECT")


def _load(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    from collections.abc import Mapping

    if isinstance(config, Mapping):
        return dict(config)
    with open(config, encoding="utf-8") as f:
        loaded = _core.parse_yaml(f.read())
    if not isinstance(loaded, dict):
        raise errors.InvalidValue(f"{config} does not hold a sweep configuration (a mapping)")
    return loaded


def _api() -> Any:
    from .api import Api

    return Api()


def sweep(sweep: Mapping[str, Any] | str | os.PathLike[str], entity: str | None = None, project: str | None = None) -> str:
    """Creates a sweep from its configuration (a dict, or a YAML file's path) and returns its id.
    A configuration that cannot run raises ``cairn.errors.InvalidValue`` naming the parameter
    and the problem."""
    config = _load(sweep)
    api = _api()
    entity = entity or config.get("entity") or os.environ.get("CAIRN_ENTITY") or api._client.info()["default_entity"]
    project = project or config.get("project") or os.environ.get("CAIRN_PROJECT")
    if not project:
        raise errors.UsageError("say which project the sweep's runs go to: cairn.sweep(config, project=...), or project: in the configuration")
    info = api._client.call_json("POST", f"/api/v1/projects/{entity}/{project}/sweeps", json.dumps({"config": config}))
    sys.stderr.write(f"cairn: created sweep {info['sweep_id']}; run an agent with: cairn agent {entity}/{project}/{info['sweep_id']}\n")
    return info["sweep_id"]


def _sweep_path(sweep_id: str, entity: str | None, project: str | None) -> tuple[str, str, str]:
    parts = sweep_id.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 1:
        project = project or os.environ.get("CAIRN_PROJECT")
        if not project:
            raise errors.UsageError(f"sweep {sweep_id!r}: give it as ENTITY/PROJECT/ID, or pass project=")
        entity = entity or os.environ.get("CAIRN_ENTITY") or _api()._client.info()["default_entity"]
        return entity, project, sweep_id
    raise errors.UsageError(f"{sweep_id!r} is not a sweep: write ENTITY/PROJECT/ID or ID")


def _was_stopped(client: Any, entity: str, project: str, run_id: str) -> bool:
    try:
        run = client.call_json("GET", f"/api/v1/runs/{entity}/{project}/{run_id}", None)
    except Exception:  # noqa: BLE001 - not found, or unreachable: not known to be stopped
        return False
    return bool(run.get("stop_requested")) or run.get("state") == "killed"


def agent(
    sweep_id: str,
    function: Callable[[], Any] | None = None,
    entity: str | None = None,
    project: str | None = None,
    count: int | None = None,
) -> int:
    """Runs ``function`` once per trial of the sweep until its controller says stop (or
    ``count`` trials ran); returns how many ran. Inside it, ``cairn.init()`` makes the trial's
    run, with the trial's parameters over the config it is given (``run.config`` holds them). A
    trial that raises is finished as failed and the agent goes on."""
    if function is None:
        raise errors.UsageError("cairn.agent runs a function per trial: pass function=...; to run the configuration's program, use `cairn agent ENTITY/PROJECT/ID`")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise errors.InvalidValue(f"count={count!r} must be a positive integer")
    entity, project, sid = _sweep_path(sweep_id, entity, project)
    client = _api()._client
    import socket

    name = f"{socket.gethostname()}-{os.getpid()}"
    ran = 0
    said = ""
    last: str | None = None
    while count is None or ran < count:
        asked = {"agent": name} if last is None else {"agent": name, "last": last}
        step = client.call_json("POST", f"/api/v1/sweeps/{entity}/{project}/{sid}/next", json.dumps(asked))
        if step["action"] == "stop":
            return ran
        if step["action"] == "wait":
            if step["reason"] != said:
                said = step["reason"]
                sys.stderr.write(f"cairn: agent waiting: {said}\n")
            time.sleep(min(60.0, max(0.1, float(step.get("retry_secs", 2.0)))))
            continue
        said = ""
        saved = {k: os.environ.get(k) for k in _TRIAL_ENV}
        os.environ.update(
            {
                "CAIRN_SWEEP_ID": sid,
                "CAIRN_SWEEP_PARAMS": json.dumps(step["config"]),
                "CAIRN_RUN_ID": step["run_id"],
                "CAIRN_ENTITY": entity,
                "CAIRN_PROJECT": project,
            }
        )
        import cairn

        try:
            function()
        except KeyboardInterrupt:
            # The sweep stopped this trial (early termination, or a cancel): its run ended as
            # killed, and the agent goes on. Any other interrupt stops the agent. (The run may
            # be closed already, by a `with cairn.init()` block: the server is asked.)
            if not _was_stopped(client, entity, project, step["run_id"]):
                raise
            sys.stderr.write(f"cairn: trial {step['run_id']} was stopped by the sweep\n")
        except Exception:
            import traceback

            traceback.print_exc()
            if cairn.run is not None:
                cairn.run.finish(exit_code=1)
        finally:
            if cairn.run is not None:
                cairn.run.finish()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        last = step["run_id"]
        ran += 1
    return ran
