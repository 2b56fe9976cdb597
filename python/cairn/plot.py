"""Charts over tables, as ``wandb.plot``: each returns a value to log (``run.log({"pr": ...})``)
that holds its table and which columns the chart draws; the run's Workspace draws it."""

from __future__ import annotations

# Keep `import cairn` fast: no typing at import time (see sdk.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

from . import errors
from .media import Table


class Plot:
    """A chart of ``kind`` over ``table``; ``fields`` maps its parts (``x``, ``y``, ...) to
    columns."""

    def __init__(self, kind: str, table: Table, fields: dict[str, str], title: str = "") -> None:
        if not isinstance(table, Table):
            raise errors.InvalidValue(f"a {kind} chart needs a cairn.Table, not {type(table).__name__}")
        for part, column in fields.items():
            if column not in table.columns:
                raise errors.InvalidValue(f"the chart's {part} is column {column!r}, which the table lacks (its columns: {', '.join(table.columns)})")
        self.kind, self.table, self.fields, self.title = kind, table, dict(fields), title or ""

    def _cairn_value(self) -> dict[str, Any]:
        return {"_type": "plot", "kind": self.kind, "title": self.title, "fields": self.fields, "table": self.table._cairn_value()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plot) and (other.kind, other.title, other.fields, other.table) == (self.kind, self.title, self.fields, self.table)

    def __repr__(self) -> str:
        return f"Plot({self.kind}, {self.title!r}, {len(self.table)} rows)"


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "") -> Plot:
    fields = {"x": x, "y": y} | ({"series": stroke} if stroke else {})
    return Plot("line", table, fields, title)


def scatter(table: Table, x: str, y: str, title: str = "") -> Plot:
    return Plot("scatter", table, {"x": x, "y": y}, title)


def bar(table: Table, label: str, value: str, title: str = "") -> Plot:
    return Plot("bar", table, {"label": label, "value": value}, title)


def histogram(table: Table, value: str, title: str = "") -> Plot:
    return Plot("histogram", table, {"value": value}, title)


def line_series(xs: Sequence[Any], ys: Sequence[Sequence[float]], keys: Sequence[str] | None = None, title: str = "", xname: str = "x") -> Plot:
    """Several lines: ``xs`` shared by all, or one sequence per line; ``ys`` one per line."""
    ys = [list(y) for y in ys]
    keys = list(keys) if keys is not None else [f"line_{i}" for i in range(len(ys))]
    if len(keys) != len(ys):
        raise errors.InvalidValue(f"{len(keys)} keys for {len(ys)} lines")
    shared = len(xs) > 0 and not isinstance(xs[0], (list, tuple)) and not hasattr(xs[0], "__len__")
    table = Table(columns=["series", xname, "y"])
    for i, (key, y) in enumerate(zip(keys, ys)):
        x = list(xs) if shared else list(xs[i])
        if len(x) != len(y):
            raise errors.InvalidValue(f"line {key!r} has {len(y)} values for {len(x)} x values")
        for xv, yv in zip(x, y):
            table.add_data(key, xv, yv)
    return Plot("line_series", table, {"series": "series", "x": xname, "y": "y"}, title)


def _classes(y_true: Sequence[Any], labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is not None:
        if len(labels) != n:
            raise errors.InvalidValue(f"{len(labels)} labels for {n} classes")
        return [str(label) for label in labels]
    return [str(i) for i in range(n)]


def confusion_matrix(probs: Any = None, y_true: Sequence[int] | None = None, preds: Sequence[int] | None = None, class_names: Sequence[str] | None = None, title: str = "") -> Plot:
    """Counts of (actual, predicted) pairs, from ``preds`` or from the argmax of ``probs``."""
    if y_true is None or (probs is None) == (preds is None):
        raise errors.InvalidValue("confusion_matrix needs y_true and either preds or probs")
    if preds is None:
        preds = [max(range(len(p)), key=lambda i, p=p: p[i]) for p in (probs.tolist() if hasattr(probs, "tolist") else probs)]
    y_true = [int(v) for v in (y_true.tolist() if hasattr(y_true, "tolist") else y_true)]
    preds = [int(v) for v in (preds.tolist() if hasattr(preds, "tolist") else preds)]
    if len(y_true) != len(preds):
        raise errors.InvalidValue(f"{len(y_true)} true labels for {len(preds)} predictions")
    n = max([*y_true, *preds], default=-1) + 1 if class_names is None else len(class_names)
    names = _classes(y_true, class_names, n)
    counts = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, preds):
        if not (0 <= t < n and 0 <= p < n):
            raise errors.InvalidValue(f"class {max(t, p)} is beyond the {n} class names")
        counts[t][p] += 1
    table = Table(columns=["Actual", "Predicted", "nPredictions"])
    for t in range(n):
        for p in range(n):
            table.add_data(names[t], names[p], counts[t][p])
    return Plot("confusion_matrix", table, {"actual": "Actual", "predicted": "Predicted", "value": "nPredictions"}, title)


def _scores(y_true: Sequence[int], y_probas: Any, labels: Sequence[str] | None, classes_to_plot: Sequence[int] | None):
    probas = y_probas.tolist() if hasattr(y_probas, "tolist") else [list(p) for p in y_probas]
    y_true = [int(v) for v in (y_true.tolist() if hasattr(y_true, "tolist") else y_true)]
    if len(probas) != len(y_true):
        raise errors.InvalidValue(f"{len(y_true)} true labels for {len(probas)} rows of probabilities")
    n = len(probas[0]) if probas else 0
    names = _classes(y_true, labels, n)
    for c in classes_to_plot if classes_to_plot is not None else range(n):
        yield names[c], [(p[c], t == c) for p, t in zip(probas, y_true)]


def _curve(pairs: list[tuple[float, bool]]) -> list[tuple[int, int]]:
    """(true positives, false positives) at each distinct threshold, highest first."""
    pairs = sorted(pairs, key=lambda p: -p[0])
    out, tp, fp = [], 0, 0
    for i, (score, positive) in enumerate(pairs):
        tp, fp = tp + positive, fp + (not positive)
        if i + 1 == len(pairs) or pairs[i + 1][0] != score:
            out.append((tp, fp))
    return out


def pr_curve(y_true: Sequence[int], y_probas: Any, labels: Sequence[str] | None = None, classes_to_plot: Sequence[int] | None = None, title: str = "") -> Plot:
    """Precision against recall for each class, one against the rest."""
    table = Table(columns=["class", "recall", "precision"])
    for name, pairs in _scores(y_true, y_probas, labels, classes_to_plot):
        positives = sum(p for _, p in pairs)
        table.add_data(name, 0.0, 1.0)
        for tp, fp in _curve(pairs):
            table.add_data(name, tp / positives if positives else 0.0, tp / (tp + fp))
    return Plot("pr_curve", table, {"series": "class", "x": "recall", "y": "precision"}, title)


def roc_curve(y_true: Sequence[int], y_probas: Any, labels: Sequence[str] | None = None, classes_to_plot: Sequence[int] | None = None, title: str = "") -> Plot:
    """True against false positive rate for each class, one against the rest."""
    table = Table(columns=["class", "fpr", "tpr"])
    for name, pairs in _scores(y_true, y_probas, labels, classes_to_plot):
        positives = sum(p for _, p in pairs)
        negatives = len(pairs) - positives
        table.add_data(name, 0.0, 0.0)
        for tp, fp in _curve(pairs):
            table.add_data(name, fp / negatives if negatives else 0.0, tp / positives if positives else 0.0)
    return Plot("roc_curve", table, {"series": "class", "x": "fpr", "y": "tpr"}, title)
