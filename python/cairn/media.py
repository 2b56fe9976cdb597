"""Rich values that ``run.log`` accepts beside numbers, as W&B has them.

A rich value is sent to the server typed (``{"_type": "histogram", ...}`` in JSON), stored as
such, and read back through :class:`cairn.Api` as the same object."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from . import errors

#: The most bins a histogram may have (the server refuses more).
MAX_BINS = 512


class Histogram:
    """A distribution, as ``wandb.Histogram``: from a ``sequence`` of numbers (``num_bins``
    equal bins over its range), or from ``np_histogram``, the ``(counts, bin_edges)`` pair that
    ``numpy.histogram`` returns. ``histogram`` holds the counts and ``bins`` the edges."""

    def __init__(
        self,
        sequence: Sequence[float] | Any | None = None,
        np_histogram: tuple[Sequence[float], Sequence[float]] | None = None,
        num_bins: int = 64,
    ) -> None:
        if not isinstance(num_bins, int) or not 1 <= num_bins <= MAX_BINS:
            raise errors.InvalidValue(f"num_bins={num_bins!r} must be an integer from 1 to {MAX_BINS}")
        if np_histogram is not None:
            if sequence is not None:
                raise errors.InvalidValue("give a Histogram a sequence or np_histogram, not both")
            try:
                counts, edges = np_histogram
            except (TypeError, ValueError):
                raise errors.InvalidValue("np_histogram must be a (counts, bin_edges) pair, as numpy.histogram returns") from None
            self.histogram = [float(c) for c in _flat(counts)]
            self.bins = [float(b) for b in _flat(edges)]
        elif sequence is not None:
            values = [float(v) for v in _flat(sequence)]
            finite = [v for v in values if math.isfinite(v)]
            lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            width = (hi - lo) / num_bins
            self.bins = [lo + width * i for i in range(num_bins)] + [hi]
            self.histogram = [0.0] * num_bins
            for v in finite:
                self.histogram[min(int((v - lo) / width), num_bins - 1)] += 1.0
        else:
            raise errors.InvalidValue("a Histogram needs a sequence or np_histogram")
        if len(self.bins) != len(self.histogram) + 1:
            raise errors.InvalidValue(f"{len(self.histogram)} counts need {len(self.histogram) + 1} bin edges, not {len(self.bins)}")
        if not 1 <= len(self.histogram) <= MAX_BINS:
            raise errors.InvalidValue(f"a histogram has 1 to {MAX_BINS} bins, not {len(self.histogram)}")

    def _cairn_value(self) -> dict[str, Any]:
        return {"_type": "histogram", "bins": self.bins, "values": self.histogram}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and other.bins == self.bins and other.histogram == self.histogram

    def __repr__(self) -> str:
        return f"Histogram({len(self.histogram)} bins from {self.bins[0]:g} to {self.bins[-1]:g}, {sum(self.histogram):g} values)"


#: The most rows and columns a logged table may have (the server refuses more).
MAX_TABLE_ROWS = 100_000
MAX_TABLE_COLUMNS = 1_000


class Table:
    """Rows under named columns, as ``wandb.Table``: from ``columns`` and ``data`` (a list of
    rows), or from a pandas ``dataframe``. Cells hold numbers, strings, bools, None, lists and
    dicts. ``add_data(*cells)`` adds a row, ``add_column(name, data)`` a column, and
    ``get_column(name)`` reads one; ``get_dataframe()`` gives a pandas DataFrame back."""

    def __init__(self, columns: Sequence[str] | None = None, data: Sequence[Sequence[Any]] | None = None, dataframe: Any = None) -> None:
        if dataframe is not None:
            if data is not None:
                raise errors.InvalidValue("give a Table data or a dataframe, not both")
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        rows = [list(r) for r in (data or [])]
        if columns is None:
            columns = [f"Column_{i + 1}" for i in range(len(rows[0]) if rows else 0)]
        self.columns: list[str] = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns) or "" in self.columns:
            raise errors.InvalidValue(f"table columns must be named, once each: {self.columns}")
        if len(self.columns) > MAX_TABLE_COLUMNS:
            raise errors.InvalidValue(f"a table has at most {MAX_TABLE_COLUMNS} columns, not {len(self.columns)}")
        self.data: list[list[Any]] = []
        for row in rows:
            self.add_data(*row)

    def add_data(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise errors.InvalidValue(f"a row of this table has {len(self.columns)} cells ({', '.join(self.columns)}), not {len(cells)}")
        if len(self.data) >= MAX_TABLE_ROWS:
            raise errors.InvalidValue(f"a table has at most {MAX_TABLE_ROWS} rows")
        self.data.append(list(cells))

    def add_column(self, name: str, data: Sequence[Any]) -> None:
        if not name or name in self.columns:
            raise errors.InvalidValue(f"column {name!r} is empty or there already")
        data = list(data)
        if self.data and len(data) != len(self.data):
            raise errors.InvalidValue(f"column {name!r} has {len(data)} cells for {len(self.data)} rows")
        if not self.data:
            self.data = [[] for _ in data]
        self.columns.append(name)
        for row, cell in zip(self.data, data):
            row.append(cell)

    def get_column(self, name: str) -> list[Any]:
        if name not in self.columns:
            raise errors.InvalidValue(f"no column {name!r}; the columns are {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def get_dataframe(self) -> Any:
        import pandas

        return pandas.DataFrame(self.data, columns=self.columns)

    def _cairn_value(self) -> dict[str, Any]:
        return {"_type": "table", "columns": self.columns, "data": self.data}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Table) and other.columns == self.columns and other.data == self.data

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Table({len(self.data)} rows × {len(self.columns)} columns: {', '.join(self.columns[:5])}{', …' if len(self.columns) > 5 else ''})"


#: The longest HTML value, in bytes (the server refuses more).
MAX_HTML_BYTES = 1 << 20


class Html:
    """A page of HTML, as ``wandb.Html``: a string, or a file-like object to read it from. The UI
    shows it in a sandboxed frame (no scripts, no access to the page around it)."""

    def __init__(self, data: str | Any, inject: bool = True) -> None:
        if hasattr(data, "read"):
            data = data.read()
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        if not isinstance(data, str):
            raise errors.InvalidValue(f"Html takes a string or a file, not {type(data).__name__}")
        if len(data.encode("utf-8")) > MAX_HTML_BYTES:
            raise errors.InvalidValue(f"an Html value holds at most {MAX_HTML_BYTES} bytes")
        self.html = data

    def _cairn_value(self) -> dict[str, Any]:
        return {"_type": "html", "html": self.html}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Html) and other.html == self.html

    def __repr__(self) -> str:
        return f"Html({len(self.html)} characters)"


def _flat(values: Any) -> Iterable[Any]:
    """Numbers out of a list, a tuple, a numpy array or a torch tensor (flattened)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if hasattr(values, "ravel") and hasattr(values, "tolist"):
        return values.ravel().tolist()
    if isinstance(values, (list, tuple)):
        out: list[Any] = []
        for v in values:
            out.extend(_flat(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else [v])
        return out
    raise errors.InvalidValue(f"expected a sequence of numbers, got {type(values).__name__}")


def typed(value: Any) -> Any:
    """``value`` as read from the server, with its rich values as objects."""
    if isinstance(value, dict):
        if value.get("_type") == "histogram" and "bins" in value and "values" in value:
            return Histogram(np_histogram=(value["values"], value["bins"]), num_bins=max(1, min(MAX_BINS, len(value["values"]))))
        if value.get("_type") == "plot" and isinstance(value.get("table"), dict):
            from .plot import Plot

            return Plot(value["kind"], typed(value["table"]), dict(value.get("fields") or {}), value.get("title") or "")
        if value.get("_type") == "html" and isinstance(value.get("html"), str):
            return Html(value["html"])
        if value.get("_type") == "table" and "columns" in value:
            return Table(columns=value["columns"], data=[typed(r) for r in value.get("data") or []])
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return value
