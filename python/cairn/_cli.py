"""The ``cairn`` command of the Python package: ``sync`` and ``runs``, as the Rust binary has them.

``cairn server`` runs the Rust binary (``CAIRN_SERVER_BIN``, or a ``cairn`` binary on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from . import _core, errors
from .api import Api


def _sync(args: argparse.Namespace) -> int:
    failures = 0
    for path in args.dirs:
        try:
            run_path, records = _core.sync_run_dir(path, args.base_url, args.api_key)
            print(f"synced {path} -> {run_path} ({records} records sent)")
        except errors.CairnError as e:
            print(f"error: cannot sync {path}: {e}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def _runs(args: argparse.Namespace) -> int:
    api = Api(base_url=args.base_url, api_key=args.api_key)
    if args.runs_command == "list":
        filters = json.loads(args.filter) if args.filter else None
        runs = api.runs(args.project, filters=filters, order=args.sort or "-created_at", per_page=args.limit)
        for i, run in enumerate(runs):
            if i >= args.limit:
                break
            print(f"{run.id}  {run.name}  {run.state}  {run.created_at}")
        print(f"{min(len(runs), args.limit)} of {len(runs)} runs")
    elif args.runs_command == "show":
        run = api.run(args.run)
        print(json.dumps(run._attrs, indent=2, default=str))
    elif args.runs_command == "stop":
        api.run(args.run).stop()
        print(f"stop requested for {args.run}; it ends at its next heartbeat")
    return 0


def _server(rest: list[str]) -> int:
    candidates = [os.environ.get("CAIRN_SERVER_BIN")]
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidates.append(os.path.join(directory, "cairn"))
    for candidate in candidates:
        if not candidate or not os.path.isfile(candidate):
            continue
        with open(candidate, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        os.execv(candidate, [candidate, "server", *rest])
    print(
        "error: the cairn server is the Rust binary; build it with `cargo build --release -p cairn_cli` "
        "and put target/release/cairn on PATH, or set CAIRN_SERVER_BIN",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:
        return _server(argv[1:])
    parser = argparse.ArgumentParser(prog="cairn", description="cairn: self-hosted experiment tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="upload run directories logged offline or cut off")
    sync.add_argument("dirs", nargs="+")
    sync.add_argument("--base-url")
    sync.add_argument("--api-key", default=os.environ.get("CAIRN_API_KEY"))
    runs = commands.add_parser("runs", help="list, show and stop runs")
    runs.add_argument("--base-url")
    runs.add_argument("--api-key", default=os.environ.get("CAIRN_API_KEY"))
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_commands.add_parser("list")
    listing.add_argument("project", help="entity/project")
    listing.add_argument("--filter")
    listing.add_argument("--sort")
    listing.add_argument("--limit", type=int, default=50)
    for name in ("show", "stop"):
        runs_commands.add_parser(name).add_argument("run", help="entity/project/run_id")
    commands.add_parser("server", help="start the server (the Rust binary)")
    args = parser.parse_args(argv)
    try:
        return _sync(args) if args.command == "sync" else _runs(args)
    except errors.CairnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
