"""Typed errors. Every error cairn raises is a ``CairnError``; each message names the bad value."""

__all__ = [
    "CairnError",
    "InvalidRunId",
    "InvalidValue",
    "InvalidSetting",
    "ConfigError",
    "NotFound",
    "Conflict",
    "RunDeleted",
    "RunFinished",
    "CommError",
    "Unauthorized",
    "Forbidden",
    "ServerError",
    "CairnIOError",
    "UsageError",
]


class CairnError(Exception):
    """Base class of cairn's errors."""


class InvalidRunId(CairnError, ValueError):
    """A run id with forbidden characters (``/ \\ # ? % :``), empty, or too long."""


class InvalidValue(CairnError, ValueError):
    """A value that cannot be logged, or an argument out of range."""


class InvalidSetting(CairnError, ValueError):
    """A setting or ``CAIRN_*`` environment variable with a bad value."""


class ConfigError(CairnError):
    """A config key changed without ``allow_val_change=True``."""


class NotFound(CairnError, LookupError):
    """The run, project, entity, key or file does not exist."""


class Conflict(CairnError):
    """The run exists when it must not (``resume="never"``), or was deleted."""


class RunDeleted(Conflict):
    """The run id belongs to a deleted run: it is taken until the run is purged (``Api().run(path)
    .delete(purge=True)``, ``cairn runs purge``, or the server's retention window)."""


class RunFinished(CairnError):
    """The run has finished, or was stopped, and takes no more data."""


class CommError(CairnError):
    """The server could not be reached."""


class Unauthorized(CairnError, PermissionError):
    """The server needs a valid API key: none was given, or it is unknown, revoked or expired.

    Give one with ``cairn.login(key=...)``, ``CAIRN_API_KEY``, ``cairn login`` or
    ``cairn.init(settings=cairn.Settings(api_key=...))``; make one in the UI's settings or with
    ``cairn keys create``."""


class Forbidden(CairnError, PermissionError):
    """The key is valid, but its user lacks the role the request needs; the message names the
    entity and the role."""


class ServerError(CairnError):
    """The server failed."""


class CairnIOError(CairnError, OSError):
    """The run directory could not be written or read."""


class UsageError(CairnError):
    """The API was used in the wrong order, such as ``cairn.log`` before ``cairn.init``."""
