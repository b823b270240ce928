"""Where a sharded dataset's shard files are, listed and read the same way from a local folder or
an S3 prefix (PROTOCOL.md §4, "Sharded datasets"); no numpy here, so ``veritrain audit`` on the
base install checks a run's shards with it.

The shards are the folder's regular files, or the objects directly under ``s3://bucket/prefix/``
(keys further down, "folders", are left out as a folder's subfolders are), sorted by name as
bytes. S3 shards are read in parts by ranged GETs through the store's own client
(``pipeline/store/s3.py``), and their samples are then served from a local cache
(``cache.py``): a shard is only ever used whole, checked against the sha256 the run recorded,
so it is fetched whole once and read from disk after that.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from veritrain.pipeline.data.cache import ShardCache
from veritrain.pipeline.errors import ConflictError, DatasetChangedError, SpecError
from veritrain.pipeline.run.manifest import ShardEntry
from veritrain.pipeline.store.s3 import S3Store
from veritrain.pipeline.store.uris import S3_SCHEME, object_uri

# An S3 shard is fetched in parts of this size, up to PARTS_AT_ONCE at a time: a large shard
# fills at several connections' speed, and a part cut off is fetched again alone.
PART_SIZE = 8 * 1024 * 1024
PARTS_AT_ONCE = 4


def _by_bytes(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogateescape"))


class ShardSource(Protocol):
    uri: str
    # Whether the local files it gives are its own (a cache nobody else writes), not the user's.
    owns_files: bool

    def keys(self) -> list[str]:
        """The shards' keys, sorted by name as bytes; SpecError if there are none."""
        ...

    def where(self, key: str) -> str:
        """A shard's path or s3:// URI, for messages."""
        ...

    def version(self, key: str) -> str | None:
        """What names this version of the shard, as ``keys`` listed it: an S3 object's ETag and
        size (a new object under the key has another). None where there is none (a folder's
        file, which its status names instead)."""
        ...

    def read(self, key: str) -> bytes:
        """The shard's bytes as they are now, from the folder or the bucket."""
        ...

    def fetch(self, key: str, sha256: str) -> bytes:
        """The shard's bytes, which must have ``sha256`` (DatasetChangedError naming it)."""
        ...

    def keep(self, sha256: str, data: bytes) -> None:
        """Keeps a shard's bytes just read (and hashed: ``sha256``) for ``fetch``, if it can."""
        ...

    def local_file(self, key: str, sha256: str) -> Path | None:
        """A local file that holds the shard (its own, or its cache entry, filled first if it
        can be), unchecked, for memory-mapped reads; None if there is none. A source that does
        not own its files gives the shard's own file, whatever ``sha256``."""
        ...


class FolderSource:
    owns_files = False

    def __init__(self, folder: Path):
        self.folder = folder
        self.uri = str(folder)

    def keys(self) -> list[str]:
        try:
            files = [p.name for p in self.folder.iterdir() if p.is_file()]
        except OSError as e:
            raise SpecError(f"{self.folder}: cannot list the shards: {e.strerror or e}") from None
        if not files:
            raise SpecError(f"{self.folder}: no shard files (a sharded dataset needs at least one)")
        return _by_bytes(files)

    def where(self, key: str) -> str:
        return str(self.folder / key)

    def version(self, key: str) -> str | None:
        return None

    def read(self, key: str) -> bytes:
        try:
            return (self.folder / key).read_bytes()
        except OSError as e:
            raise DatasetChangedError(
                f"{self.where(key)}: cannot read the shard: {e.strerror or e}"
            ) from None

    def fetch(self, key: str, sha256: str) -> bytes:
        return changed_unless(self.read(key), sha256, self.where(key))

    def keep(self, sha256: str, data: bytes) -> None:
        pass  # the folder keeps it

    def local_file(self, key: str, sha256: str) -> Path | None:
        return self.folder / key


class S3Source:
    owns_files = True

    def __init__(self, uri: str, cache: ShardCache | None = None):
        self.store = S3Store(uri)
        self.uri = self.store.uri
        self.cache = cache if cache is not None else ShardCache.from_env()
        self._versions: dict[str, str] = {}

    def keys(self) -> list[str]:
        listing = self.store.listing("")
        self._versions = {k: f"{etag} {size}" for k, (etag, size) in listing.items() if etag}
        keys = [k for k in listing if "/" not in k]
        if not keys:
            raise SpecError(
                f"{self.uri}/: no shard objects under the prefix (a sharded dataset needs at "
                "least one)"
            )
        return _by_bytes(keys)

    def where(self, key: str) -> str:
        return object_uri(self.store, key)

    def version(self, key: str) -> str | None:
        return self._versions.get(key)

    def read(self, key: str) -> bytes:
        """The object's bytes, in parts read PARTS_AT_ONCE at a time, each pinned to the first
        part's ETag (If-Match), so that all are of one version of the object; that version is
        the key's ``version`` from now on (what was read, whatever the listing said)."""
        first, size, etag = self.store.read_range(key, 0, PART_SIZE)
        self._versions.pop(key, None)
        if size <= len(first):
            self._versions.update({key: f"{etag} {size}"} if etag else {})
            return first
        starts = range(len(first), size, PART_SIZE)
        try:
            with ThreadPoolExecutor(PARTS_AT_ONCE) as pool:
                rest = pool.map(
                    lambda at: self.store.read_range(key, at, at + PART_SIZE, etag)[0], starts
                )
                data = b"".join([first, *rest])
        except ConflictError:
            data = b""
        # Replaced between the parts: refused by its ETag, or by its size by a server without one.
        if len(data) != size:
            raise DatasetChangedError(f"{self.where(key)}: the shard changed while it was read")
        self._versions.update({key: f"{etag} {size}"} if etag else {})
        return data

    def fetch(self, key: str, sha256: str) -> bytes:
        data = self.cache.get(sha256)
        if data is None:
            data = changed_unless(self.read(key), sha256, self.where(key))
            self.cache.put(sha256, data)
        return data

    def keep(self, sha256: str, data: bytes) -> None:
        self.cache.put(sha256, data)

    def local_file(self, key: str, sha256: str) -> Path | None:
        path = self.cache.file(sha256)
        if path is None:
            self.fetch(key, sha256)  # into the cache, unless it is larger than the budget
            path = self.cache.file(sha256)
        return path


def open_source(uri: str) -> ShardSource:
    return S3Source(uri) if uri.startswith(S3_SCHEME) else FolderSource(Path(uri))


def changed_unless(data: bytes, sha256: str, where: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetChangedError(
            f"{where}: the shard changed after its root was computed; nothing was trained on it"
        )
    return data


def require_listing(
    source: ShardSource, here: list[str], recorded: list[ShardEntry], by: str
) -> None:
    """DatasetChangedError naming the first shard where the listing ``here`` is not the one
    ``by`` (a run's manifest) records."""
    for i in range(max(len(here), len(recorded))):
        if i >= len(recorded) or i >= len(here) or here[i] != recorded[i].key:
            key = here[i] if i < len(here) else recorded[i].key
            raise DatasetChangedError(
                f"{source.where(key)}: the shards under {source.uri} are not the ones {by} "
                f"records ({len(here)} here, {len(recorded)} recorded; they differ at this one)"
            )


def not_recorded(where: str, sha256: str, recorded: ShardEntry, by: str) -> DatasetChangedError:
    return DatasetChangedError(
        f"{where}: not the shard {by} records (sha256 {sha256[:16]}..., recorded "
        f"{recorded.sha256[:16]}...)"
    )


def check_recorded_shards(uri: str, recorded: list[ShardEntry], by: str) -> None:
    """The shards at ``uri`` are the ones ``by`` records, by listing and sha256 (each read once
    from where it is kept, not from the cache); DatasetChangedError naming the first that is
    not. What ``veritrain audit`` checks of a sharded run's dataset."""
    source = open_source(uri)
    require_listing(source, source.keys(), recorded, by)
    for entry in recorded:
        sha256 = hashlib.sha256(source.read(entry.key)).hexdigest()
        if sha256 != entry.sha256:
            raise not_recorded(source.where(entry.key), sha256, entry, by)
