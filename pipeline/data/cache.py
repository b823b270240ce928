"""The local cache of S3 shards: ``$VERITRAIN_CACHE/shards/<sha256>`` (default
``~/.cache/veritrain``), at most ``$VERITRAIN_SHARD_CACHE_BYTES`` bytes (default 4 GiB; a number of
bytes, or with a K, M or G suffix).

Content-addressed by the sha256 the run recorded for the shard, so an entry is the same bytes for
every run and spec that names them. An entry is checked by its sha256 when it is filled and again
when it is read (a disk can change a file too; a bad entry is dropped and fetched again), written
to a temporary file and renamed into place (a crash leaves no partial entry, and processes sharing
the cache never see one), and the least recently used entries are evicted once the cache holds
more than its budget. A shard larger than the whole budget is not cached: it is held in memory
while it is used, and fetched again when it is needed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from veritrain.pipeline.errors import StorageError

CACHE_ENV = "VERITRAIN_CACHE"
BUDGET_ENV = "VERITRAIN_SHARD_CACHE_BYTES"
DEFAULT_BUDGET = 4 * 2**30
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def cache_folder() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "veritrain") / "shards"


def budget_from_env() -> int:
    raw = os.environ.get(BUDGET_ENV, "")
    if not raw:
        return DEFAULT_BUDGET
    m = _SIZE.match(raw)
    if not m:
        raise StorageError(
            f"{BUDGET_ENV}={raw!r} is not a size in bytes (a whole number, or with K, M or G)"
        )
    return int(m.group(1)) * 1024 ** " KMG".index(m.group(2).upper() or " ")


class ShardCache:
    def __init__(self, folder: Path, budget: int):
        self.folder, self.budget = folder, budget

    @classmethod
    def from_env(cls) -> ShardCache:
        return cls(cache_folder(), budget_from_env())

    def _path(self, sha256: str) -> Path:
        assert _SHA256.match(sha256), sha256
        return self.folder / sha256

    def get(self, sha256: str) -> bytes | None:
        """The entry's bytes, or None if there is none (or it was bad, and is now dropped)."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the time of last use, which eviction goes by
        return data

    def file(self, sha256: str) -> Path | None:
        """The entry's file if there is one, unchecked (its reader checks it: pipeline/data/
        shards.py trusts it by its status once its bytes were checked)."""
        path = self._path(sha256)
        return path if path.is_file() else None

    def put(self, sha256: str, data: bytes) -> None:
        """Keeps ``data`` as the entry ``sha256`` (checked here), then evicts beyond the budget.
        A cache that cannot be written (full disk, read-only folder) only costs fetches again."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"cache entry {sha256[:16]}...: the bytes have another sha256")
        if len(data) > self.budget:
            return
        path = self._path(sha256)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._evict(keep=path)
        except OSError:
            return

    def _evict(self, keep: Path) -> None:
        entries = []
        for p in self.folder.iterdir():
            if _SHA256.match(p.name):
                with contextlib.suppress(OSError):
                    st = p.stat()
                    entries.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= self.budget:
                break
            if p != keep:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                total -= size

    def entries(self) -> list[str]:
        """The sha256 of every entry held now."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if _SHA256.match(p.name))
