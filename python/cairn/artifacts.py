"""Artifacts, as W&B has them: versioned datasets and models with lineage.

``cairn.Artifact(name, type)`` collects files, directories and references; ``run.log_artifact``
logs it as a version (``v0``, ``v1``, …; the same content again is the same version), and
``run.use_artifact("name:alias")`` records the run as its user and returns it, ready to
``download()`` (every file's digest is checked; files already there with the same content are
kept). The contents go to the server's blob store once, whatever logs them.
"""

from __future__ import annotations

import contextlib
import json
import os

from . import errors

# Keep `import cairn` fast: no typing, hashlib, shutil or tempfile at import time (see sdk.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import tempfile
    from collections.abc import Iterator
    from typing import Any

    from ._core import ApiClient


class ArtifactManifestEntry:
    """One file of an artifact: its path in the artifact, digest, size, and ``ref`` for a reference."""

    def __init__(self, artifact: Artifact, path: str, digest: str, size: int, ref: str | None = None, local_path: str | None = None) -> None:
        self._artifact = artifact
        self.path = path
        self.digest = digest
        self.size = size
        self.ref = ref
        self.local_path = local_path

    def download(self, root: str | None = None) -> str:
        """Downloads the version (its files are checked) and returns this file's local path."""
        if self.ref is not None:
            return self.ref
        return os.path.join(self._artifact.download(root), self.path)

    def __repr__(self) -> str:
        return f"ArtifactManifestEntry(path={self.path!r}, digest={self.digest!r}, size={self.size})"


def _sha256(path: str) -> tuple[str, int]:
    import hashlib

    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class Artifact:
    """A versioned collection of files: ``Artifact(name, type, description=None, metadata=None)``."""

    def __init__(self, name: str, type: str, description: str | None = None, metadata: dict[str, Any] | None = None, **_ignored: Any) -> None:
        if not name or ":" in name or "/" in name:
            raise errors.InvalidValue(f"artifact name {name!r} must not be empty or contain ':' or '/'")
        self._name = name
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._files: list[tuple[str, str]] = []
        self._references: list[dict[str, Any]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._info: dict[str, Any] | None = None
        self._client: ApiClient | None = None
        self._aliases: list[str] = []
        self._entries: list[ArtifactManifestEntry] | None = None

    # What the server says, once logged or fetched ---------------------------------------------

    @classmethod
    def _from_info(cls, info: dict[str, Any], client: ApiClient) -> Artifact:
        art = cls(info["name"], info["type"], info.get("description"), info.get("metadata") or {})
        art._info = info
        art._client = client
        art._aliases = [a for a in info.get("aliases", [])]
        return art

    def _require_logged(self, what: str) -> dict[str, Any]:
        if self._info is None or self._client is None:
            raise errors.UsageError(f"{what} needs a logged artifact: log it with run.log_artifact, or fetch it with run.use_artifact or Api().artifact")
        return self._info

    @property
    def name(self) -> str:
        """``name:vN`` once logged (as W&B has it), the name given before."""
        return f"{self._name}:{self._info['version']}" if self._info else self._name

    @property
    def source_name(self) -> str:
        return self.name

    @property
    def version(self) -> str | None:
        return self._info["version"] if self._info else None

    @property
    def entity(self) -> str | None:
        return self._info["entity"] if self._info else None

    @property
    def project(self) -> str | None:
        return self._info["project"] if self._info else None

    @property
    def qualified_name(self) -> str:
        info = self._require_logged("qualified_name")
        return f"{info['entity']}/{info['project']}/{info['name']}:{info['version']}"

    @property
    def id(self) -> str | None:
        return self._info["digest"] if self._info else None

    @property
    def digest(self) -> str | None:
        return self._info["digest"] if self._info else None

    @property
    def size(self) -> int:
        if self._info:
            return int(self._info["size"])
        return sum(os.path.getsize(p) for _, p in self._files) + sum(int(r["size"]) for r in self._references)

    @property
    def file_count(self) -> int:
        return int(self._info["file_count"]) if self._info else len(self._files) + len(self._references)

    @property
    def created_at(self) -> str | None:
        return self._info["created_at"] if self._info else None

    @property
    def state(self) -> str:
        return "COMMITTED" if self._info else "PENDING"

    @property
    def aliases(self) -> list[str]:
        """The version's aliases; change the list and ``save()`` to keep the change."""
        return self._aliases

    @aliases.setter
    def aliases(self, value: list[str]) -> None:
        self._aliases = list(value)

    # Building ---------------------------------------------------------------------------------

    def _check_draft(self) -> None:
        if self._info is not None:
            raise errors.UsageError(f"{self.name} is logged: its files cannot change; make a new Artifact for a new version")

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None, **_ignored: Any) -> ArtifactManifestEntry:
        self._check_draft()
        path = os.fspath(local_path)
        if not os.path.isfile(path):
            raise errors.InvalidValue(f"{path} is not a file")
        entry_name = (name or os.path.basename(path)).replace(os.sep, "/")
        self._files = [(n, p) for n, p in self._files if n != entry_name] + [(entry_name, path)]
        return ArtifactManifestEntry(self, entry_name, "", os.path.getsize(path), local_path=path)

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None, **_ignored: Any) -> None:
        self._check_draft()
        root = os.fspath(local_path)
        if not os.path.isdir(root):
            raise errors.InvalidValue(f"{root} is not a directory")
        for dirpath, _, filenames in os.walk(root):
            for filename in sorted(filenames):
                full = os.path.join(dirpath, filename)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                self.add_file(full, f"{name.strip('/')}/{rel}" if name else rel)

    def add_reference(self, uri: str, name: str | None = None, checksum: bool = True, **_ignored: Any) -> list[ArtifactManifestEntry]:
        """Records a file that stays where it is: ``file://`` (its SHA-256), ``s3://`` (its ETag,
        with boto3), ``http(s)://`` (its ETag or Last-Modified). Never uploaded."""
        self._check_draft()
        entry_name = name or uri.rstrip("/").rsplit("/", 1)[-1]
        digest, size = uri, 0
        if uri.startswith("file://"):
            path = uri[len("file://") :]
            if not os.path.isfile(path):
                raise errors.InvalidValue(f"reference {uri}: no such file")
            digest, size = _sha256(path) if checksum else (uri, os.path.getsize(path))
        elif uri.startswith(("http://", "https://")):
            import urllib.request

            try:
                with urllib.request.urlopen(urllib.request.Request(uri, method="HEAD"), timeout=30) as response:
                    digest = response.headers.get("ETag") or response.headers.get("Last-Modified") or uri
                    size = int(response.headers.get("Content-Length") or 0)
            except OSError as e:
                raise errors.CommError(f"reference {uri}: {e}") from e
        elif uri.startswith("s3://"):
            try:
                import boto3  # type: ignore[import-not-found]
            except ImportError:
                if checksum:
                    raise errors.InvalidValue(f"reference {uri}: reading its ETag needs boto3 (pip install boto3), or pass checksum=False") from None
            else:
                bucket, _, key = uri[len("s3://") :].partition("/")
                head = boto3.client("s3").head_object(Bucket=bucket, Key=key)
                digest, size = head["ETag"], int(head["ContentLength"])
        else:
            raise errors.InvalidValue(f"reference {uri!r}: only file://, s3:// and http(s):// are supported")
        entry = {"path": entry_name, "digest": digest, "size": size, "ref": uri}
        self._references = [r for r in self._references if r["path"] != entry_name] + [entry]
        return [ArtifactManifestEntry(self, entry_name, digest, size, ref=uri)]

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[Any]:
        """A file to write, added to the artifact when the block ends."""
        self._check_draft()
        if self._tmp is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="cairn-artifact-")
        path = os.path.join(self._tmp.name, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
        self.add_file(path, name)

    # Logged: reading -------------------------------------------------------------------------

    def _manifest(self) -> list[ArtifactManifestEntry]:
        info = self._require_logged("the manifest")
        if self._entries is None:
            rows = self._call("GET", "/manifest")
            self._entries = [ArtifactManifestEntry(self, r["path"], r["digest"], int(r["size"]), r.get("ref")) for r in rows]
        return self._entries

    def _url(self, tail: str = "") -> str:
        info = self._require_logged("this")
        from urllib.parse import quote

        parts = [quote(info[k], safe="") for k in ("entity", "project", "name", "version")]
        return "/api/v1/artifacts/" + "/".join(parts) + tail

    def _call(self, method: str, tail: str = "", body: Any = None) -> Any:
        assert self._client is not None
        return self._client.call_json(method, self._url(tail), None if body is None else json.dumps(body))

    def files(self) -> list[ArtifactManifestEntry]:
        return list(self._manifest())

    @property
    def manifest(self) -> dict[str, ArtifactManifestEntry]:
        return {e.path: e for e in self._manifest()}

    def get_entry(self, name: str) -> ArtifactManifestEntry:
        for entry in self._manifest():
            if entry.path == name:
                return entry
        raise errors.NotFound(f"{self.name} has no file {name!r}")

    get_path = get_entry

    def download(self, root: str | None = None, **_ignored: Any) -> str:
        """Downloads the version's files into ``root`` (``./artifacts/NAME:VERSION``), checking
        each against its digest, in parallel; returns ``root``."""
        info = self._require_logged("download")
        root = root or os.path.join("artifacts", f"{info['name']}:{info['version']}")
        assert self._client is not None
        self._client.download_artifact(json.dumps(info), os.fspath(root))
        return root

    def file(self, root: str | None = None) -> str:
        """Downloads a one-file version and returns the file's path."""
        entries = [e for e in self._manifest() if e.ref is None]
        if len(entries) != 1:
            raise errors.InvalidValue(f"{self.name} has {len(entries)} stored files; file() needs exactly one (use download())")
        return os.path.join(self.download(root), entries[0].path)

    def verify(self, root: str | None = None) -> None:
        """Checks that ``root`` holds the version's files with their digests."""
        root = root or os.path.join("artifacts", self.name)
        for e in self._manifest():
            if e.ref is not None:
                continue
            path = os.path.join(root, e.path)
            if not os.path.isfile(path) or _sha256(path)[0] != e.digest:
                raise errors.InvalidValue(f"{path} is missing or does not match {self.name}")

    def wait(self, timeout: float | None = None) -> Artifact:
        """Logging returns once the version is committed: there is nothing to wait for."""
        self._require_logged("wait")
        return self

    def save(self) -> None:
        """Saves the aliases as they are now (``latest`` is the server's to move)."""
        info = self._call("PUT", "/aliases", {"aliases": [a for a in self._aliases if a != "latest"]})
        self._info = info
        self._aliases = list(info["aliases"])

    def delete(self, delete_aliases: bool = False) -> None:
        self._call("DELETE", "?delete_aliases=true" if delete_aliases else "")

    def logged_by(self) -> Any:
        """The run that logged this version (``cairn.apis.public`` Run), or None."""
        lineage = self._call("GET", "/lineage")
        from .api import Api

        return Api(base_url=self._client.base_url).run(lineage["logged_by"]) if lineage.get("logged_by") else None  # type: ignore[union-attr]

    def used_by(self) -> list[Any]:
        lineage = self._call("GET", "/lineage")
        from .api import Api

        api = Api(base_url=self._client.base_url)  # type: ignore[union-attr]
        return [api.run(path) for path in lineage.get("used_by", [])]

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name if self._info else self._name} type={self.type!r}>"


def log(client: ApiClient, entity: str, project: str, run_id: str | None, artifact: Artifact, aliases: list[str] | None) -> Artifact:
    """Logs ``artifact`` (uploading what the server lacks) and makes it the logged version."""
    if artifact._info is not None:
        raise errors.UsageError(f"{artifact.name} is logged already")
    info = client.log_artifact(
        entity,
        project,
        run_id,
        artifact._name,
        artifact.type,
        artifact.description,
        artifact.metadata,
        artifact._files,
        json.dumps(artifact._references),
        list(aliases or []),
    )
    artifact._info = info
    artifact._client = client
    artifact._aliases = list(info["aliases"])
    return artifact


def from_path(path: str | os.PathLike[str], name: str | None, type: str | None) -> Artifact:
    """``run.log_artifact("data/")``: a file or a directory as an artifact of its own name."""
    p = os.fspath(path)
    art = Artifact(name or os.path.basename(os.path.normpath(p)).replace(":", "_") or "artifact", type or "unspecified")
    if os.path.isdir(p):
        art.add_dir(p)
    else:
        art.add_file(p)
    return art


def cleanup_tmp(artifact: Artifact) -> None:
    if artifact._tmp is not None:
        import shutil

        shutil.rmtree(artifact._tmp.name, ignore_errors=True)
