"""The ``cairn`` command of the Python package: the Rust ``cairn`` binary (the server with its web
UI, ``sync``, ``runs``, ``artifact``, ``sweep``, ``agent``, ``import``, ``keys``, ``migrate``...),
which the package carries as ``cairn/_bin/cairn``. One CLI, the same flags, whichever way it
was installed."""

from __future__ import annotations

import os
import sys


def binary() -> str | None:
    """The bundled binary, or None in a package built without it (``CAIRN_WHEEL_SERVER=0``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "cairn")
    return path if os.path.isfile(path) else None


def main() -> int:
    path = binary()
    if path is None:
        print(
            "cairn: this package was built without its cairn binary (CAIRN_WHEEL_SERVER=0): "
            "reinstall it with `pip install ./python`, or use a cairn binary from `cargo install --path crates/cairn_cli`",
            file=sys.stderr,
        )
        return 2
    try:
        os.execv(path, ["cairn", *sys.argv[1:]])
    except OSError as e:
        print(f"cairn: cannot run {path}: {e}", file=sys.stderr)
        return 2
    return 0  # not reached: execv replaces this process
