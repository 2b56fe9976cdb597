"""``cairn.watch`` on a tiny torch model, against a real server, read back through cairn.Api.
torch is not in this suite's venv (PyPI's torch brings CUDA's libraries, gigabytes):
``scripts/test-integrations.sh`` runs this file in a venv with torch. Without torch, it skips."""

from __future__ import annotations

import time

import pytest

import cairn
from conftest import Server

torch = pytest.importorskip("torch")


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def train(run, model, steps: int, pause: float = 0.0) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # The rest of a real loop (data loading, say): time for the worker.
        time.sleep(pause)
        run.log({"loss": loss.item()})


def hist_rows(api, run, key: str) -> list[dict]:
    return [r for r in api.run(run.path).scan_history() if r.get(key) is not None]


def test_watch_all_logs_gradient_and_parameter_histograms_every_log_freq_steps(server: Server, env, api, project) -> None:
    run = cairn.init(project=project, id="watched")
    model = tiny_model()
    cairn.watch(model, log="all", log_freq=5)
    train(run, model, 20, pause=0.05)
    run.finish()
    rows = list(api.run(run.path).scan_history())
    # 20 steps, and a 21st when the last histograms were still being computed at finish.
    assert [r["_step"] for r in rows if "loss" in r] == list(range(20))
    assert len(rows) in (20, 21)
    names = {k for r in rows for k in r if k.startswith(("gradients/", "parameters/"))}
    assert names == {f"{kind}/{n}" for kind in ("gradients", "parameters") for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    grad_steps = [r["_step"] for r in rows if r.get("gradients/0.weight") is not None]
    # Taken at every 5th backward pass (steps 4, 9, 14, 19): each lands in its step's row or the next.
    assert len(grad_steps) == 4, grad_steps
    for taken, landed in zip((4, 9, 14, 19), grad_steps):
        assert landed in (taken, taken + 1), grad_steps
    h = next(r for r in rows if r.get("parameters/0.weight") is not None)["parameters/0.weight"]
    counts, bins = h.histogram, h.bins
    # A histogram of the 32 weights, with the weights' own range.
    assert (len(counts), len(bins), sum(counts)) == (64, 65, 32)
    w = model[0].weight.detach()
    assert bins[0] <= float(w.min()) + 1.0 and bins[-1] >= float(w.max()) - 1.0


def test_unwatch_stops_the_histograms_and_bad_arguments_name_themselves(server: Server, env, api, project) -> None:
    run = cairn.init(project=project, id="unwatched")
    model = tiny_model()
    run.watch(model, log="gradients", log_freq=2)
    with pytest.raises(cairn.errors.UsageError, match="watched already"):
        run.watch(model)
    train(run, model, 4)
    run.unwatch(model)
    train(run, model, 6)
    run.finish()
    steps = [r["_step"] for r in hist_rows(api, run, "gradients/0.weight")]
    assert steps and max(steps) <= 4, steps
    assert not [r for r in hist_rows(api, run, "parameters/0.weight")], "log='gradients' logged parameters"
    run2 = cairn.init(project=project, id="badwatch")
    with pytest.raises(cairn.errors.InvalidValue, match="log must be"):
        cairn.watch(model, log="weights")
    with pytest.raises(cairn.errors.InvalidValue, match="log_freq"):
        cairn.watch(model, log_freq=0)
    with pytest.raises(cairn.errors.InvalidValue, match="torch.nn.Module"):
        cairn.watch("not a model")
    run2.finish()
    with pytest.raises(cairn.errors.UsageError, match="cairn.init"):
        cairn.watch(model)
