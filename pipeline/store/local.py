"""The local store: a folder, with atomic exclusive creates."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from veritrain.pipeline.errors import ConflictError, StorageError
from veritrain.pipeline.store import failpoints
from veritrain.pipeline.store.base import NotFoundError, writing


def _file_mode() -> int:
    """0666 less the process umask, as open(2) applies it (mkstemp's files are 0600)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    # Without /proc (not Linux): reading the umask means setting it, briefly, for every thread.
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


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
        with writing():
            self._create(key, path, data)

    def _create(self, key: str, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    # Readable by whoever the umask lets read (an auditor on a shared folder).
                    os.fchmod(f.fileno(), _file_mode())
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

    def probe(self) -> None:
        # The folder need not exist yet (the first create makes it): its nearest existing
        # ancestor must be a folder this process may create entries in.
        here = self.root
        while not here.exists() and here != here.parent:
            here = here.parent
        if not here.is_dir():
            raise StorageError(f"{self.uri}: cannot be a store: {here} is not a folder")
        if not os.access(here, os.W_OK | os.X_OK):
            raise StorageError(f"{self.uri}: cannot write: {here} is not writable by this user")

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
