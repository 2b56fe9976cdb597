"""``cairn.watch``: histograms of a torch model's gradients and parameters, as ``wandb.watch``.

Hooks count the model's forward passes (parameters) and each parameter's gradients; every
``log_freq``-th time they copy the tensors (a device-side copy: on a GPU the training thread does
not wait for it). A worker thread turns the copies into histograms (min, max and counts in 64
equal bins, by torch on the tensor's own device), and the training thread logs the finished ones
into the run's open row, with ``commit=False``, at its next ``log`` call or forward pass. A set
lands in the row of the step it was taken at when the worker is done before that step is logged,
or in a later one, before the next set. A set falls due while the one before it is still being
computed: it is skipped, so at most one set of copies is held, and two sets never meet in one row.
``unwatch`` (and ``finish``) logs what is still being computed.

torch is imported only here, and only by a ``watch`` call."""

from __future__ import annotations

import logging
import math
import queue
import threading
from typing import Any

from . import errors
from .media import Histogram

_log = logging.getLogger("cairn")

LOG_KINDS = ("gradients", "parameters", "all")


class _Watch:
    """What one ``watch`` call installed on one run."""

    def __init__(self, run: Any, models: list[Any], log: str | None, log_freq: int, bins: int, prefixes: list[str]) -> None:
        self.run = run
        self.models = models
        self.log_freq = log_freq
        self.bins = bins
        self.handles: list[Any] = []
        self.ready: list[dict[str, Any]] = []
        self.ready_lock = threading.Lock()
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.skipped = 0
        # The last round taken, per kind (negative: that round is being skipped), and how many
        # of its histograms are not logged yet.
        self.rounds: dict[str, int] = {}
        self.undrained: dict[str, int] = {}
        self.forward_calls = [0] * len(models)
        self.grad_calls: dict[str, int] = {}
        self.closed = False
        gradients = log in ("gradients", "all")
        parameters = log in ("parameters", "all")
        for i, (model, prefix) in enumerate(zip(models, prefixes)):
            if parameters:
                self.handles.append(model.register_forward_hook(self._forward_hook(i, model, prefix)))
            else:
                # The drain point, where finished histograms join the run's open row.
                self.handles.append(model.register_forward_pre_hook(lambda *_: self.drain()))
            if gradients:
                for name, param in model.named_parameters():
                    if param.requires_grad:
                        self.handles.append(param.register_hook(self._grad_hook(f"{prefix}gradients/{name}")))
        self.worker = threading.Thread(target=self._work, name="cairn-watch", daemon=True)
        self.worker.start()
        # The run's log drains first, so that histograms taken during a step join its row.
        inner = run.log

        def log_first(data: Any, step: int | None = None, commit: bool | None = None) -> None:
            if self.ready:
                self.drain()
            inner(data, step, commit)

        self.inner_log = inner
        self.wrapper = log_first
        run.log = log_first

    # Hooks, on the training thread ---------------------------------------------------------------

    def _forward_hook(self, i: int, model: Any, prefix: str) -> Any:
        def hook(*_: Any) -> None:
            if self.ready:
                self.drain()
            self.forward_calls[i] += 1
            n = self.forward_calls[i]
            if n % self.log_freq == 0 and self._due(f"parameters{i}", n // self.log_freq):
                import torch

                with torch.no_grad():
                    snap = {f"{prefix}parameters/{name}": p.detach().clone() for name, p in model.named_parameters()}
                self._submit(f"parameters{i}", snap)

        return hook

    def _grad_hook(self, key: str) -> Any:
        def hook(grad: Any) -> None:
            n = self.grad_calls.get(key, 0) + 1
            self.grad_calls[key] = n
            if n % self.log_freq == 0 and self._due("gradients", n // self.log_freq):
                self._submit("gradients", {key: grad.detach().clone()})

        return hook

    def _due(self, kind: str, round_: int) -> bool:
        """Whether this round of ``kind`` is taken: a new round is skipped while the last one's
        histograms are not logged yet (with all of its keys)."""
        with self.ready_lock:
            last = self.rounds.get(kind)
            if last == round_:
                return True
            if last == -round_:
                return False
            if self.undrained.get(kind, 0) > 0:
                self.rounds[kind] = -round_
                self.skipped += 1
                if self.skipped in (1, 10, 100, 1000):
                    _log.debug("cairn.watch: %d histogram sets skipped, the one before was not logged yet", self.skipped)
                return False
            self.rounds[kind] = round_
            return True

    def _submit(self, kind: str, snap: dict[str, Any]) -> None:
        with self.ready_lock:
            self.undrained[kind] = self.undrained.get(kind, 0) + len(snap)
        self.jobs.put((kind, snap))

    # The worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            kind, snap = job
            done: dict[str, Any] = {}
            for key, t in snap.items():
                try:
                    done[key] = histogram(t, self.bins)
                except Exception as e:  # noqa: BLE001 - a histogram must never break training
                    _log.warning("cairn.watch: the histogram of %s failed: %s", key, e)
            with self.ready_lock:
                self.ready.append((kind, len(snap), done))

    def drain(self) -> None:
        """Logs the finished histograms into the run's open row (training thread)."""
        with self.ready_lock:
            ready, self.ready = self.ready, []
            for kind, n, _ in ready:
                self.undrained[kind] -= n
        row: dict[str, Any] = {}
        for _, _, done in ready:
            row.update(done)
        if row:
            try:
                self.inner_log(row, None, False)
            except errors.CairnError as e:
                _log.warning("cairn.watch: histograms not logged: %s", e)

    def close(self, flush: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in self.handles:
            handle.remove()
        self.jobs.put(None)
        self.worker.join(timeout=30)
        if flush:
            self.drain()
        # Unwrapped only when this watch's wrapper is the outermost; inside another it passes
        # through, with nothing left to drain.
        if self.run.log is self.wrapper:
            self.run.log = self.inner_log


def histogram(tensor: Any, bins: int) -> Histogram:
    """A Histogram of a tensor's finite values, computed by torch where the tensor is: its min
    and max, then each value's bin counted (``bincount``, several times faster than ``histc``)."""
    import torch

    t = tensor.detach()
    if t.is_sparse:
        t = t.coalesce().values()
    t = t.reshape(-1).float()
    lo, hi = (float(v) for v in torch.aminmax(t)) if t.numel() else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # NaN or an infinity somewhere: only the finite values count.
        t = t[torch.isfinite(t)]
        lo, hi = (float(v) for v in torch.aminmax(t)) if t.numel() else (0.0, 0.0)
    if t.numel() == 0:
        counts, lo, hi = [0] * bins, 0.0, 1.0
    else:
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        index = torch.sub(t, lo).mul_(bins / (hi - lo)).to(torch.int32).clamp_(0, bins - 1)
        counts = torch.bincount(index, minlength=bins).cpu().tolist()
    width = (hi - lo) / bins
    edges = [lo + width * i for i in range(bins)] + [hi]
    return Histogram(np_histogram=(counts, edges))


def watch(
    run: Any,
    models: Any,
    criterion: Any = None,
    log: str | None = "gradients",
    log_freq: int = 1000,
    idx: int | None = None,
    log_graph: bool = False,
) -> None:
    """Installs the hooks on ``models`` (a torch module or a sequence of them) for ``run``."""
    try:
        import torch
    except ImportError:
        raise errors.UsageError("cairn.watch needs torch (pip install torch)") from None
    if log not in (*LOG_KINDS, None):
        raise errors.InvalidValue(f"watch(log={log!r}): log must be 'gradients', 'parameters', 'all' or None")
    if not isinstance(log_freq, int) or isinstance(log_freq, bool) or log_freq < 1:
        raise errors.InvalidValue(f"watch(log_freq={log_freq!r}): log_freq must be a positive integer")
    listed = list(models) if isinstance(models, (list, tuple)) else [models]
    for m in listed:
        if not isinstance(m, torch.nn.Module):
            raise errors.InvalidValue(f"cairn.watch takes torch.nn.Module models, got {type(m).__name__}")
    if criterion is not None or log_graph:
        _log.debug("cairn.watch: criterion and log_graph are accepted and ignored")
    if log is None:
        return
    watches: list[_Watch] = run.__dict__.setdefault("_watches", [])
    for w in watches:
        if any(m in w.models for m in listed):
            raise errors.UsageError("this model is watched already: call cairn.unwatch(model) first")
    # As W&B: a second model watched in the same run gets its index in its names.
    start = sum(len(w.models) for w in watches) if idx is None else idx
    prefixes = ["" if start + i == 0 else f"graph_{start + i}/" for i in range(len(listed))]
    watches.append(_Watch(run, listed, log, log_freq, 64, prefixes))


def unwatch(run: Any, models: Any = None) -> None:
    """Removes the hooks of ``models`` (all, when None) and logs what is still waiting."""
    watches: list[_Watch] = run.__dict__.get("_watches", [])
    listed = None if models is None else (list(models) if isinstance(models, (list, tuple)) else [models])
    # Later watches wrap the log of earlier ones: close newest first.
    for w in reversed(list(watches)):
        if listed is None or any(m in w.models for m in listed):
            w.close()
            watches.remove(w)
