"""Rich values that ``run.log`` accepts beside numbers, as W&B has them: histograms, tables,
HTML, and media (images, audio, video).

A rich value is sent to the server typed (``{"_type": "histogram", ...}`` in JSON), stored as
such, and read back through :class:`cairn.Api` as the same object."""

from __future__ import annotations

import math
# Keep `import cairn` fast: no typing at import time (see sdk.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
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


class _Media:
    """What images, audio and video share: data to log (staged as it is by ``log``, then
    encoded and uploaded by the client's background thread), or, read back through
    :class:`cairn.Api`, the reference to a stored file: ``path`` (the run file), ``sha256``,
    ``size``, ``format``, ``caption``, and ``download(root)``."""

    _kind = ""

    def __init__(self, caption: str | None) -> None:
        if caption is not None and not isinstance(caption, str):
            caption = str(caption)
        self.caption: str | None = caption
        self.path: str | None = None
        self.sha256: str | None = None
        self.size: int | None = None
        self.format: str | None = None
        self._data: Any = None
        self._run: Any = None
        self._ref: dict[str, Any] | None = None

    @classmethod
    def _from_ref(cls, ref: dict[str, Any], run: Any) -> Any:
        self = cls.__new__(cls)
        _Media.__init__(self, ref.get("caption"))
        self._ref = dict(ref)
        self.path, self.sha256, self.size, self.format = ref.get("path"), ref.get("sha256"), ref.get("size"), ref.get("format")
        self._run = run
        if isinstance(self, Image):
            self.width, self.height, self.thumb = ref.get("width"), ref.get("height"), ref.get("thumb")
        return self

    def _source(self) -> tuple[str, tuple[Any, ...]]:
        raise NotImplementedError

    def _cairn_media(self) -> tuple[str, str, str | None, tuple[Any, ...]] | None:
        if self._ref is not None:
            return None
        fmt, source = self._source()
        return (self._kind, fmt, self.caption, source)

    def _cairn_value(self) -> dict[str, Any]:
        assert self._ref is not None
        return self._ref

    def download(self, root: str = ".", replace: bool = True) -> str:
        """Downloads the stored file to ``root/<path>`` (checked against its sha256); returns
        the local path."""
        if self._ref is None or self._run is None:
            raise errors.InvalidValue(f"this {type(self).__name__} was not read from a server: nothing to download")
        import os

        dest = os.path.join(root, self.path or "")
        if replace or not os.path.exists(dest):
            self._run._api._client.download_file(self._run._path(), self.path, dest, self.sha256)
        return dest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return False
        if self._ref is not None or other._ref is not None:
            return self.sha256 == other.sha256 and self.caption == other.caption
        return self is other

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.sha256 or id(self)))

    def __repr__(self) -> str:
        if self._ref is not None:
            return f"{type(self).__name__}({self.path}, {self.size} bytes{f', {self.caption!r}' if self.caption else ''})"
        return f"{type(self).__name__}(not logged yet{f', {self.caption!r}' if self.caption else ''})"


def _file_source(kind: str, data: Any, formats: tuple[str, ...], fmt: str | None) -> tuple[str, tuple[Any, ...]] | None:
    """A path or encoded bytes as a media source, or None when ``data`` is neither."""
    import os

    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            raise errors.InvalidValue(f"{kind} file {path!r} does not exist")
        ext = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
        if ext not in formats:
            raise errors.InvalidValue(f"{kind} file {path!r} is not one of {', '.join(formats)}")
        return ext, ("file", os.path.abspath(path))
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        ext = (fmt or _sniff(data) or "").lower()
        if ext not in formats:
            raise errors.InvalidValue(f"{kind} bytes of an unknown format: pass format= (one of {', '.join(formats)})")
        return ext, ("bytes", data)
    return None


def _sniff(data: bytes) -> str | None:
    for magic, fmt in ((b"\x89PNG", "png"), (b"\xff\xd8", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3")):
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF":
        return {b"WAVE": "wav", b"WEBP": "webp"}.get(data[8:12])
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1aE\xdf\xa3":
        return "webm"
    return None


IMAGE_FORMATS = ("png", "jpg", "jpeg", "gif", "webp", "bmp")
AUDIO_FORMATS = ("wav", "mp3", "ogg", "flac", "m4a", "webm")
VIDEO_FORMATS = ("mp4", "webm", "ogg", "gif", "mov")


class Image(_Media):
    """An image, as ``wandb.Image``: ``data`` is a numpy array (HW, HWC or CHW with 1, 3 or 4
    channels; uint8, or floats in [0, 1]), a PIL image, a torch tensor, a path, or encoded bytes.
    ``mode`` ("L", "RGB", "RGBA") says how many channels to expect. Logging one costs the
    training thread a copy of its pixels: the PNG is encoded and uploaded in the background."""

    _kind = "image"

    def __init__(self, data: Any, caption: str | None = None, mode: str | None = None, file_type: str | None = None) -> None:
        super().__init__(caption)
        if mode is not None and mode not in ("L", "RGB", "RGBA"):
            raise errors.InvalidValue(f"mode={mode!r} must be 'L', 'RGB' or 'RGBA'")
        self._data, self._mode, self._file_type = data, mode, file_type
        self.width: int | None = None
        self.height: int | None = None
        self.thumb: str | None = None

    def _source(self) -> tuple[str, tuple[Any, ...]]:
        data = self._data
        found = _file_source("image", data, IMAGE_FORMATS, self._file_type)
        if found is not None:
            return found
        import numpy as np

        if hasattr(data, "convert") and hasattr(data, "mode") and hasattr(data, "size"):
            # A PIL image. 32-bit float and 16/32-bit integer modes go through numpy (PIL's own
            # conversion clips them); the rest convert to L, RGB or RGBA.
            if data.mode in ("F", "I", "I;16", "I;16B", "I;16L") and self._mode in (None, "L"):
                data = np.asarray(data)
            else:
                mode = self._mode or ("RGBA" if data.mode in ("RGBA", "LA", "PA") or "transparency" in data.info else "L" if data.mode in ("L", "1") else "RGB")
                data = data.convert(mode)

        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        try:
            a = np.asarray(data)
        except Exception:
            a = None
        if a is None or a.dtype == object:
            raise errors.InvalidValue(f"an Image takes an array, a PIL image, a tensor, a path or bytes, not {type(self._data).__name__}")
        what = f"a {'×'.join(map(str, a.shape))} {a.dtype} array"
        if a.size == 0:
            raise errors.InvalidValue(f"an Image needs pixels; this is {what}")
        if a.ndim == 3 and a.shape[-1] > 4 and a.shape[0] in (1, 3, 4):
            a = a.transpose(1, 2, 0)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
            raise errors.InvalidValue(f"an Image is HW, HWC or CHW with 1, 3 or 4 channels; this is {what}")
        channels = 1 if a.ndim == 2 else a.shape[-1]
        want = {"L": 1, "RGB": 3, "RGBA": 4}.get(self._mode or "")
        if want is not None and want != channels:
            raise errors.InvalidValue(f"mode {self._mode!r} needs {want} channel(s); this is {what}")
        if a.dtype != np.uint8:
            if a.dtype == np.bool_:
                a = a.astype(np.uint8) * 255
            elif a.dtype == np.uint16:
                # 16-bit images keep their top 8 bits.
                a = (a >> 8).astype(np.uint8)
            elif a.dtype.kind == "f":
                lo, hi = float(a.min()), float(a.max())
                if not (0.0 <= lo and hi <= 1.0):
                    raise errors.InvalidValue(f"a float image holds values in [0, 1]; this is {what} from {lo:g} to {hi:g}")
                a = (a * 255.0 + 0.5).astype(np.uint8)
            elif a.dtype.kind in "iub":
                lo, hi = int(a.min()), int(a.max())
                if lo < 0 or hi > 255:
                    raise errors.InvalidValue(f"an integer image holds values from 0 to 255; this is {what} from {lo} to {hi}")
                a = a.astype(np.uint8)
            else:
                raise errors.InvalidValue(f"an Image needs numbers; this is {what}")
        a = np.ascontiguousarray(a)
        self.height, self.width = int(a.shape[0]), int(a.shape[1])
        return "png", ("pixels", self.width, self.height, channels, a.tobytes())

    @property
    def image(self) -> Any:
        """The stored image as a PIL image (downloaded to a temporary folder)."""
        import tempfile

        from PIL import Image as PILImage

        with tempfile.TemporaryDirectory() as root:
            with PILImage.open(self.download(root)) as img:
                img.load()
                return img.copy()


class Audio(_Media):
    """Audio, as ``wandb.Audio``: a path or encoded bytes, or a numpy array of samples (floats in
    [-1, 1], or int16; shape (n,) or (n, channels)) with ``sample_rate``, stored as WAV."""

    _kind = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None) -> None:
        super().__init__(caption)
        self._data, self.sample_rate = data_or_path, sample_rate

    def _source(self) -> tuple[str, tuple[Any, ...]]:
        found = _file_source("audio", self._data, AUDIO_FORMATS, None)
        if found is not None:
            return found
        import numpy as np

        a = np.asarray(self._data.detach().cpu().numpy() if hasattr(self._data, "detach") else self._data)
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise errors.InvalidValue("audio samples need sample_rate (a positive integer)")
        if a.ndim not in (1, 2) or a.size == 0:
            raise errors.InvalidValue(f"audio samples are shaped (n,) or (n, channels), not {a.shape}")
        if a.ndim == 2 and a.shape[0] <= 8 and a.shape[1] > a.shape[0]:
            # (channels, n), as torchaudio has it.
            a = a.T
        if a.ndim == 2 and a.shape[1] > 32:
            raise errors.InvalidValue(f"audio has at most 32 channels; these samples are shaped {a.shape}")
        if a.dtype == np.int16:
            a = a.astype(np.float32) / 32768.0
        elif a.dtype.kind != "f":
            raise errors.InvalidValue(f"audio samples are floats in [-1, 1] or int16, not {a.dtype}")
        lo, hi = float(a.min()), float(a.max())
        if not (-1.0 <= lo and hi <= 1.0):
            raise errors.InvalidValue(f"audio samples are floats in [-1, 1]; these go from {lo:g} to {hi:g}")
        channels = 1 if a.ndim == 1 else a.shape[1]
        return "wav", ("samples", self.sample_rate, channels, np.ascontiguousarray(a, dtype="<f4").tobytes())


class Video(_Media):
    """A video, as ``wandb.Video``: a path or encoded bytes (mp4, webm, ogg, gif, mov), logged
    as it is."""

    _kind = "video"

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int | None = None, format: str | None = None) -> None:
        super().__init__(caption)
        self._data, self.fps, self._format = data_or_path, fps, format

    def _source(self) -> tuple[str, tuple[Any, ...]]:
        found = _file_source("video", self._data, VIDEO_FORMATS, self._format)
        if found is None:
            raise errors.InvalidValue(
                f"a Video takes a file or encoded bytes ({', '.join(VIDEO_FORMATS)}), not {type(self._data).__name__}; "
                "encode frames to a file first (imageio, moviepy)"
            )
        return found


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


_MEDIA_TYPES: dict[str, type[_Media]] = {"image-file": Image, "audio-file": Audio, "video-file": Video}


def typed(value: Any, run: Any = None) -> Any:
    """``value`` as read from the server, with its rich values as objects (media able to
    download their files from ``run``)."""
    if isinstance(value, dict):
        if value.get("_type") in _MEDIA_TYPES and "sha256" in value:
            return _MEDIA_TYPES[value["_type"]]._from_ref(value, run)
        if value.get("_type") == "histogram" and "bins" in value and "values" in value:
            return Histogram(np_histogram=(value["values"], value["bins"]), num_bins=max(1, min(MAX_BINS, len(value["values"]))))
        if value.get("_type") == "plot" and isinstance(value.get("table"), dict):
            from .plot import Plot

            return Plot(value["kind"], typed(value["table"], run), dict(value.get("fields") or {}), value.get("title") or "")
        if value.get("_type") == "html" and isinstance(value.get("html"), str):
            return Html(value["html"])
        if value.get("_type") == "table" and "columns" in value:
            return Table(columns=value["columns"], data=[typed(r, run) for r in value.get("data") or []])
        return {k: typed(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v, run) for v in value]
    return value
