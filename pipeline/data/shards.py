"""A sharded dataset: shard files in a local folder or an S3 prefix, read lazily (PROTOCOL.md §4,
"Sharded datasets").

The shards are what ``sources.py`` lists (a folder's regular files, or the objects directly under
an S3 prefix), sorted by name as bytes; each is one ``.safetensors`` or ``.npz`` file (the spec's
``format``) holding a slice of the samples: arrays ``x`` and ``y`` (classification, regression)
or ``tokens`` (language_model: windows of ``context + 1`` tokens, one row each). Each shard is
read from where it is kept, checked by its task's rules and hashed alone: its sample count, root
(the dataset root of its own samples) and sha256 are what the manifest records.

Samples are read by global index from a local file holding the shard (its own file in a folder;
for S3, its entry in the local cache): the file's arrays are memory-mapped (safetensors, and npz
members stored uncompressed; a compressed npz member is read whole), at most ``HELD_SHARDS``
shards at a time, and only the rows asked for are copied out and converted. A shard is trusted
by its file's status (device, inode, size, modification and change times) as it was when its
sha256 was last checked, the way git and make trust files; a shard seen for the first time, one
whose status changed, or one whose modification time was too close to the check to tell a later
write apart ("racy", as git calls it) is read whole and checked by sha256 again (an S3 cache entry
that fails is fetched again), or DatasetChangedError names it. The same dataset built again in
one process (the preflight, the run, each epoch's trainer) reads and hashes only the shards that
changed since: what a shard's read found is kept by its identity (a trusted file status, or the
ETag and size an S3 object was read at, which a later listing must show again).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from veritrain.pipeline.data.sources import (
    ShardSource,
    not_recorded,
    open_source,
    require_listing,
)
from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.manifest import ShardEntry
from veritrain.pipeline.run.tasks import Task

ShardFormat = Literal["safetensors", "npz"]

# Shards held open (memory-mapped, or read whole for a compressed npz member) at once.
HELD_SHARDS = 16
# A file modified this close to the moment its sha256 was checked may be written again within
# the same timestamp tick: such a shard is checked again when it is next opened.
RACY_SECONDS = 2.0

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
    "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def _arrays(data: bytes, fmt: ShardFormat, names: tuple[str, ...], key: str) -> dict[str, Any]:
    try:
        if fmt == "safetensors":
            from safetensors.numpy import load

            arrays = load(data)
        else:
            if not zipfile.is_zipfile(io.BytesIO(data)):
                raise SpecError(f"{key}: not a npz shard (not a zip archive)")
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                arrays = {n: f[n] for n in names if n in f.files}
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed file can fail its parser in any way
        detail = " ".join(str(e).split())
        raise SpecError(f"{key}: not a {fmt} shard: {type(e).__name__}: {detail}") from None
    for n in names:
        if n not in arrays:
            raise SpecError(f"{key}: no array {n!r}; a shard holds arrays {' and '.join(names)}")
    return arrays


def _status(path: Path) -> tuple[int, ...] | None:
    """The file's status, None if it is not there (an S3 cache entry evicted since)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _mapped_safetensors(path: Path, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The arrays ``names`` of a safetensors file, memory-mapped; None if one is not mappable."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name in names:
        info = header[name]
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            return None
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == begin:
            out[name] = np.empty(shape, dtype=dtype)
        else:
            # A plain array over the mapping (indexing a memmap costs a Python call per take).
            out[name] = np.asarray(
                np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape)
            )
    return out


def _mapped_npz(path: Path, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The arrays ``names`` of a npz file, memory-mapped where stored uncompressed; None if one
    is compressed (or not a plain array)."""
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for name in names:
            info = z.getinfo(f"{name}.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                return None
            f.seek(info.header_offset)
            local = f.read(30)
            skip = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + skip[0] + skip[1])
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
            if dtype.hasobject:
                return None
            order: Literal["F", "C"] = "F" if fortran else "C"
            if int(np.prod(shape)) == 0:
                out[name] = np.empty(shape, dtype=dtype, order=order)
            else:
                out[name] = np.asarray(
                    np.memmap(
                        path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order=order
                    )
                )
    return out


@dataclass(frozen=True)
class _Seen:
    """What reading and checking one shard found: its sample count, root, sha256 and classes,
    its arrays' dtypes and its first sample (the shapes)."""

    count: int
    root: bytes
    sha256: str
    classes: int
    kinds: tuple[str, ...]
    head: Any  # a Dataset of the first sample


# Per process, by the shard's identity (``Shards._identity``): the same dataset built again in one
# process (the preflight, then the run, then each epoch's trainer) reads and hashes only the
# shards that changed since. At most SEEN_SHARDS are kept, the oldest dropped first.
SEEN_SHARDS = 100_000
_SEEN: OrderedDict[tuple[Any, ...] | None, _Seen] = OrderedDict()


def _remember(identity: tuple[Any, ...] | None, seen: _Seen) -> None:
    if identity is None:
        return
    _SEEN[identity] = seen
    while len(_SEEN) > SEEN_SHARDS:
        _SEEN.popitem(last=False)


def _read(data: bytes, fmt: ShardFormat, task: Task, names: tuple[str, ...], where: str) -> _Seen:
    """Checks one shard's bytes by its task's rules and hashes them."""
    from veritrain.pipeline.data.datasets import shard_dataset

    arrays = _arrays(data, fmt, names, where)
    d = shard_dataset(arrays, task, where)
    return _Seen(
        count=len(d),
        root=d.root(),
        sha256=hashlib.sha256(data).hexdigest(),
        classes=d.classes,
        kinds=tuple(str(np.asarray(arrays[n]).dtype) for n in names),
        head=replace(d, x=d.x[:1].copy(), y=d.y[:1].copy()),
    )


class Shards:
    """The shards at ``uri`` (a folder or ``s3://bucket/prefix``) as one dataset of ``task``:
    each read, checked and hashed once here (one at a time; an S3 shard also fills the cache),
    then read again by ``take`` when its samples are needed."""

    def __init__(self, uri: str, fmt: ShardFormat, task: Task):
        from veritrain.pipeline.data.datasets import Dataset

        self.source: ShardSource = open_source(uri)
        self.fmt, self.task = fmt, task
        self.keys = self.source.keys()
        self.counts: list[int] = []
        self.roots: list[bytes] = []
        self.sha256: list[str] = []
        self.classes = 0
        first: Dataset | None = None
        dtypes: tuple[str, ...] = ()
        # Each shard's local file status when its sha256 was last checked (None: check it when
        # its samples are first read). A folder's shard is trusted from this read on, by the
        # status seen before it; an S3 shard's cache entry is checked on its first use.
        self._trusted: list[tuple[int, ...] | None] = []
        for key in self.keys:
            where = self.source.where(key)
            own = None if self.source.owns_files else self.source.local_file(key, "")
            before = _status(own) if own is not None else None
            seen = _SEEN.get(self._identity(key, own, before))
            if seen is None:
                data = self.source.read(key)
                same = own is not None and before == _status(own)
                trusted = self._trust(before) if same else None
                seen = _read(data, fmt, task, self.names, where)
                self.source.keep(seen.sha256, data)  # S3: into the cache, for training
                _remember(self._identity(key, own, trusted), seen)
            else:  # unchanged since this process read it (the preflight, an earlier epoch)
                trusted = before
            self._trusted.append(trusted)
            if first is None:
                first, dtypes = seen.head, seen.kinds
            elif seen.kinds != dtypes:
                raise SpecError(
                    f"{where}: arrays of dtypes {', '.join(seen.kinds)}; the first shard "
                    f"{self.keys[0]}'s are {', '.join(dtypes)}"
                )
            elif (
                seen.head.x.shape[1:] != first.x.shape[1:]
                or seen.head.y.shape[1:] != first.y.shape[1:]
            ):
                d = seen.head
                raise SpecError(
                    f"{where}: samples of shape x {d.x.shape[1:]}, y {d.y.shape[1:]}; the first "
                    f"shard {self.keys[0]}'s are x {first.x.shape[1:]}, y {first.y.shape[1:]}"
                )
            self.counts.append(seen.count)
            self.roots.append(seen.root)
            self.sha256.append(seen.sha256)
            self.classes = max(self.classes, seen.classes)
        assert first is not None
        # The first shard's first sample: the dataset's shapes and dtypes.
        self.head = first
        self.starts = np.cumsum([0, *self.counts])
        self._held: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def _identity(
        self, key: str, own: Path | None, status: tuple[int, ...] | None
    ) -> tuple[Any, ...] | None:
        """What names this version of shard ``key`` as read here: its own file's path and
        status if that status is trusted (not racy), else its source's version (an S3 object's
        ETag); None if neither (then it is read again)."""
        if own is not None:
            status = self._trust(status)
            return None if status is None else (str(own), status, self.fmt, self.task)
        version = self.source.version(key)
        if version is None:
            return None
        return (self.source.where(key), version, self.fmt, self.task)

    @staticmethod
    def _trust(status: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """``status`` if a later write would change it, None if the file is racy: modified so
        recently that a write within the same timestamp tick could go unseen."""
        if status is None or time.time() - status[3] / 1e9 < RACY_SECONDS:
            return None
        return status

    @property
    def names(self) -> tuple[str, ...]:
        return ("tokens",) if self.task == "language_model" else ("x", "y")

    def __len__(self) -> int:
        return int(self.starts[-1])

    def root(self) -> bytes:
        from veritrain.prover import sharded_root

        return sharded_root(list(zip(self.counts, self.roots, strict=True)))

    def entries(self) -> list[dict[str, Any]]:
        """What the manifest records of each shard, in order."""
        return [
            {"key": k, "samples": n, "root": r.hex(), "sha256": h}
            for k, n, r, h in zip(self.keys, self.counts, self.roots, self.sha256, strict=True)
        ]

    def arrays(self, s: int) -> dict[str, Any]:
        """Shard ``s``'s arrays as stored, memory-mapped from its local file where they can be,
        held open with a few others; a shard whose file status is not the one it was checked
        with is read whole and checked by sha256 first."""
        key, sha256 = self.keys[s], self.sha256[s]
        path = self.source.local_file(key, sha256)
        status = _status(path) if path is not None else None
        if status is not None and status == self._trusted[s] and s in self._held:
            self._held.move_to_end(s)
            return self._held[s]
        self._held.pop(s, None)
        if status is None or status != self._trusted[s]:
            data = self.source.fetch(key, sha256)  # checked: DatasetChangedError names it
            after = _status(path) if path is not None else None
            if self.source.owns_files:  # its cache: the status after the checked read
                self._trusted[s] = after
            else:  # the status seen before the check, unless a write since
                self._trusted[s] = self._trust(status) if status == after else None
            arrays = self._mapped(s, path) if self._trusted[s] is not None else None
            if arrays is None:
                arrays = _arrays(data, self.fmt, self.names, self.source.where(key))
        else:
            arrays = self._mapped(s, path)
            if arrays is None:  # not mappable (a compressed npz member): read whole, checked
                data = self.source.fetch(key, sha256)
                arrays = _arrays(data, self.fmt, self.names, self.source.where(key))
        self._held[s] = arrays
        if len(self._held) > HELD_SHARDS:
            self._held.popitem(last=False)
        return arrays

    def _mapped(self, s: int, path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        try:
            mapped = _mapped_safetensors if self.fmt == "safetensors" else _mapped_npz
            return mapped(path, self.names)
        except (OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile):
            return None

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` (global indices) as ``x`` and ``y`` rows, in that order: only those
        rows are copied out of their shards, and converted as a shard's samples are."""
        from veritrain.pipeline.data.datasets import shard_dataset

        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        s_of = np.searchsorted(self.starts, idx, side="right") - 1
        rows: dict[str, np.ndarray] = {}
        for s in np.unique(s_of):
            at = np.nonzero(s_of == s)[0]
            arrays = self.arrays(int(s))
            local = idx[at] - self.starts[s]
            for n in self.names:
                a = arrays[n]
                if n not in rows:
                    rows[n] = np.empty((len(idx), *a.shape[1:]), dtype=a.dtype)
                rows[n][at] = a[local]
        d = shard_dataset(rows, self.task, self.source.uri)
        return d.x, d.y

    def require(self, recorded: list[ShardEntry], source: str) -> None:
        """DatasetChangedError naming the first shard that is not the one ``source`` (a run's
        manifest) records: another listing, or another file under the same key."""
        require_listing(self.source, self.keys, recorded, source)
        for i, entry in enumerate(recorded):
            if self.sha256[i] != entry.sha256 or self.roots[i] != entry.root:
                raise not_recorded(self.source.where(entry.key), self.sha256[i], entry, source)
