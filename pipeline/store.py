"""Storage: one write-once key space, the same keys in a local folder or an S3 bucket.

Every object veritrain writes is created once and never changed (ledger entries, records,
checkpoints, receipts, the manifest), so the store has exactly one write: a conditional create.
Creating an object that already exists with the same bytes succeeds (a resumed run re-creates what
a crash left behind); with other bytes it raises ConflictError.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from pipeline import failpoints
from pipeline.errors import ConflictError, StorageError


class NotFoundError(StorageError):
    """The object does not exist."""


class Store(Protocol):
    uri: str

    def create(self, key: str, data: bytes) -> None: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def server_time(self, key: str) -> float | None:
        """When the store's server says the object was written (Unix seconds), or None where
        only the writer keeps such a time (pipeline/finality.py)."""
        ...


class LocalStore:
    """A folder. Creates are atomic and exclusive: the bytes go to a temporary file that is fsynced
    and then hard-linked to its final name, which fails if the name exists (O_EXCL semantics
    without ever exposing a half-written file, even after SIGKILL)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.uri}: bad object key {key!r}")
        return self.root / key

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    failpoints.hit("mid-write", key)
                    f.flush()
                    os.fsync(f.fileno())
                failpoints.hit("before-link", key)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if path.read_bytes() != data:
                        raise ConflictError(f"{path}: already exists with other content") from None
                    return
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise StorageError(f"{path}: cannot write: {e.strerror}") from None

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such object") from None
        except OSError as e:
            raise StorageError(f"{path}: cannot read: {e.strerror}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def server_time(self, key: str) -> float | None:
        return None  # a file's times are set by whoever writes the folder, the trainer included

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        keys = [
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]
        return sorted(keys)


def open_store(uri: str) -> Store:
    """A store from a URI: ``s3://bucket[/prefix]``, a local path or a ``file://`` path."""
    if uri.startswith("s3://"):
        # Imported here so that local-only use never pays for (or needs) boto3.
        from pipeline.s3store import S3Store

        return S3Store(uri)
    uri = uri.removeprefix("file://")
    return LocalStore(uri)


def split_run_uri(run_uri: str) -> tuple[str, str]:
    """``<store>/runs/<run_id>`` -> (store URI, run id)."""
    head, sep, run_id = run_uri.rstrip("/").rpartition("/runs/")
    if not sep or not run_id or "/" in run_id:
        raise StorageError(f"{run_uri}: a run URI looks like <store>/runs/<run_id>")
    return head, run_id


def run_uri(store: Store, run_id: str) -> str:
    return f"{store.uri.rstrip('/')}/runs/{run_id}"
