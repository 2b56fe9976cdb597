"""Runs in a Jupyter kernel (ipykernel): links as HTML, the run page in an iframe, the Python
streams logged, and the notebook as the run's program.

In a kernel, ``print`` writes to ipykernel's own stream objects (sent to the cell over ZMQ), not
to file descriptor 1: the file-descriptor capture sees only what C code and child processes
write. So while a run is open, ``sys.stdout`` and ``sys.stderr`` are wrapped: each write goes to
the cell as before and, cut into lines, to the run's console log. The kernel's shutdown (or
restart) ends the process normally, so the run is finished by the exit hook every run has."""

from __future__ import annotations

import html
import os
import re
import sys
from typing import Any

_URL = re.compile(r"https?://[^\s<>\"']+")


def shell() -> Any:
    """The IPython shell of a kernel, or None outside one (a terminal IPython is not a kernel)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        sh = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython is no kernel
        return None
    return sh if sh is not None and getattr(sh, "kernel", None) is not None else None


def notebook_path() -> str | None:
    """The notebook this kernel runs, when it can be known: the session name Jupyter Server gives
    its kernels (``JPY_SESSION_NAME``), or VS Code's ``__vsc_ipynb_file__``."""
    sh = shell()
    candidates = [os.environ.get("JPY_SESSION_NAME")]
    if sh is not None:
        candidates += [sh.user_ns.get("__vsc_ipynb_file__"), sh.user_ns.get("__session__")]
    for c in candidates:
        if isinstance(c, str) and c.endswith(".ipynb"):
            return c
    return None


def display_html(markup: str, text: str) -> None:
    from IPython.display import display

    display({"text/html": markup, "text/plain": text}, raw=True)


def lines_as_html(lines: list[str]) -> str:
    """Terminal lines with their URLs as links."""

    def one(line: str) -> str:
        out, last = [], 0
        for m in _URL.finditer(line):
            url = m.group(0).rstrip(".,;)")
            out.append(html.escape(line[last : m.start()]))
            out.append(f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(url)}</a>')
            last = m.start() + len(url)
        out.append(html.escape(line[last:]))
        return "".join(out)

    return '<div class="cairn-run" style="font-family: monospace">' + "<br>".join(one(line) for line in lines) + "</div>"


def iframe(url: str | None, height: int, hidden: bool = False) -> str:
    if url is None:
        return "<div>cairn: this run is offline; <code>cairn sync</code> sends it to a server, whose page then shows it</div>"
    style = f"border:none;width:100%;height:{int(height)}px" + (";display:none" if hidden else "")
    return f'<iframe src="{html.escape(url)}" style="{style}" title="cairn run"></iframe>'


class Tee:
    """A kernel stream that also logs what is written to it, by whole lines, to a run."""

    def __init__(self, inner: Any, core: Any, stream: str) -> None:
        self._inner = inner
        self._core = core
        self._stream = stream
        self._partial = ""
        self._closed = False

    def write(self, text: str) -> int:
        n = self._inner.write(text)
        if not self._closed and isinstance(text, str) and text:
            self._feed(text)
        return n

    def _feed(self, text: str) -> None:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        # `\r` starts a line over (a progress bar): its last state is the line.
        if len(self._partial) > 64 * 1024:
            parts.append(self._partial)
            self._partial = ""
        for part in parts:
            self._log(part.rsplit("\r", 1)[-1])

    def _log(self, line: str) -> None:
        try:
            self._core.log_console(self._stream, line)
        except Exception:  # noqa: BLE001 - the run ended; the cell still gets its output
            self._closed = True

    def detach(self) -> Any:
        """Logs a partial line that is left and stops logging; returns the wrapped stream."""
        if self._partial and not self._closed:
            self._log(self._partial.rsplit("\r", 1)[-1])
        self._partial = ""
        self._closed = True
        return self._inner

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def attach(core: Any) -> tuple[Tee, Tee]:
    out, err = Tee(sys.stdout, core, "stdout"), Tee(sys.stderr, core, "stderr")
    sys.stdout, sys.stderr = out, err
    return out, err


def detach(tees: tuple[Tee, Tee] | None) -> None:
    if tees is None:
        return
    out, err = tees
    # Put back only what is still ours; a stream someone set since stays, and ours passes through.
    inner_out, inner_err = out.detach(), err.detach()
    if sys.stdout is out:
        sys.stdout = inner_out
    if sys.stderr is err:
        sys.stderr = inner_err
