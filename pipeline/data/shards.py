"""A sharded dataset: shard files in a local folder, read lazily (PROTOCOL.md §4, "Sharded
datasets").

The shards are the folder's regular files (not its subfolders), sorted by name as bytes; each is
one ``.safetensors`` or ``.npz`` file (the spec's ``format``) holding a slice of the samples:
arrays ``x`` and ``y`` (classification, regression) or ``tokens`` (language_model: windows of
``context + 1`` tokens, one row each). Each shard is checked by its task's rules and hashed alone:
its sample count, root (the dataset root of its own samples) and sha256 are what the manifest
records. Samples are read by global index: a shard's arrays are memory-mapped (safetensors, and
npz members stored uncompressed; a compressed npz member is read whole), at most
``HELD_SHARDS`` shards at a time, and only the rows asked for are copied out and converted.
Between reads a shard is trusted by its file's status (device, inode, size, modification and
change times) as it was when its sha256 was computed, the way git and make trust files; a shard
whose status changed, or whose modification time was too close to the hashing to tell a later
write apart ("racy", as git calls it), is read whole again and must have the sha256 it had, or
DatasetChangedError names it.
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
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from veritrain.pipeline.errors import DatasetChangedError, SpecError
from veritrain.pipeline.run.manifest import ShardEntry
from veritrain.pipeline.run.tasks import Task

ShardFormat = Literal["safetensors", "npz"]

# Shards held open (memory-mapped, or read whole for a compressed npz member) at once.
HELD_SHARDS = 16
# A file modified this close to the moment its status was recorded may be written again within
# the same timestamp tick: such a shard is hashed again when it is next opened.
RACY_SECONDS = 2.0

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
    "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def shard_files(folder: Path) -> list[Path]:
    """The folder's shard files, sorted by name as bytes; SpecError if there are none."""
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except OSError as e:
        raise SpecError(f"{folder}: cannot list the shards: {e.strerror or e}") from None
    if not files:
        raise SpecError(f"{folder}: no shard files (a sharded dataset needs at least one)")
    return sorted(files, key=lambda p: p.name.encode("utf-8", "surrogateescape"))


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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatasetChangedError(f"{path}: cannot read the shard: {e.strerror or e}") from None


def _status(path: Path) -> tuple[int, ...]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise DatasetChangedError(f"{path}: cannot read the shard: {e.strerror or e}") from None
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
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape)
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
            order = "F" if fortran else "C"
            if int(np.prod(shape)) == 0:
                out[name] = np.empty(shape, dtype=dtype, order=order)
            else:
                out[name] = np.memmap(
                    path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order=order
                )
    return out


class Shards:
    """The shards of ``folder`` as one dataset of ``task``: each read, checked and hashed once
    here (one at a time), then read again by ``take`` when its samples are needed."""

    def __init__(self, folder: Path, fmt: ShardFormat, task: Task):
        from veritrain.pipeline.data.datasets import Dataset, shard_dataset

        self.folder, self.fmt, self.task = folder, fmt, task
        self.paths = shard_files(folder)
        self.counts: list[int] = []
        self.roots: list[bytes] = []
        self.sha256: list[str] = []
        self.classes = 0
        first: Dataset | None = None
        dtypes: tuple[str, ...] = ()
        # Each shard's file status when it was hashed (None: to hash again when next opened).
        self._trusted: list[tuple[int, ...] | None] = []
        for path in self.paths:
            self._trusted.append(self._trust(_status(path)))
            data = _read(path)
            arrays = _arrays(data, fmt, self.names, str(path))
            d = shard_dataset(arrays, task, str(path))
            kinds = tuple(str(np.asarray(arrays[n]).dtype) for n in self.names)
            if first is None:
                first, dtypes = d, kinds
            elif kinds != dtypes:
                raise SpecError(
                    f"{path}: arrays of dtypes {', '.join(kinds)}; the first shard "
                    f"{self.paths[0].name}'s are {', '.join(dtypes)}"
                )
            elif d.x.shape[1:] != first.x.shape[1:] or d.y.shape[1:] != first.y.shape[1:]:
                raise SpecError(
                    f"{path}: samples of shape x {d.x.shape[1:]}, y {d.y.shape[1:]}; the first "
                    f"shard {self.paths[0].name}'s are x {first.x.shape[1:]}, y {first.y.shape[1:]}"
                )
            self.counts.append(len(d))
            self.roots.append(d.root())
            self.sha256.append(hashlib.sha256(data).hexdigest())
            self.classes = max(self.classes, d.classes)
        assert first is not None
        # The first shard's first sample: the dataset's shapes and dtypes.
        self.head = replace(first, x=first.x[:1].copy(), y=first.y[:1].copy())
        self.starts = np.cumsum([0, *self.counts])
        self._held: OrderedDict[int, dict[str, Any]] = OrderedDict()

    @staticmethod
    def _trust(status: tuple[int, ...]) -> tuple[int, ...] | None:
        """``status`` if a later write would change it, None if the file is racy: modified so
        recently that a write within the same timestamp tick could go unseen."""
        return None if time.time() - status[3] / 1e9 < RACY_SECONDS else status

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
            {"key": p.name, "samples": n, "root": r.hex(), "sha256": h}
            for p, n, r, h in zip(self.paths, self.counts, self.roots, self.sha256, strict=True)
        ]

    def arrays(self, s: int) -> dict[str, Any]:
        """Shard ``s``'s arrays as stored (memory-mapped where it can be), held open with a few
        others; a shard whose file status is not the one it was hashed with is read whole and
        checked by sha256 first."""
        path = self.paths[s]
        status = _status(path)
        if status == self._trusted[s] and s in self._held:
            self._held.move_to_end(s)
            return self._held[s]
        self._held.pop(s, None)
        arrays = None
        if status == self._trusted[s]:
            try:
                mapped = _mapped_safetensors if self.fmt == "safetensors" else _mapped_npz
                arrays = mapped(path, self.names)
            except (OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile):
                arrays = None
        if arrays is None:
            data = _read(path)
            if hashlib.sha256(data).hexdigest() != self.sha256[s]:
                raise DatasetChangedError(
                    f"{path}: the shard changed after its root was computed; nothing was trained "
                    "on it"
                )
            arrays = _arrays(data, self.fmt, self.names, str(path))
            self._trusted[s] = self._trust(status)
        self._held[s] = arrays
        if len(self._held) > HELD_SHARDS:
            self._held.popitem(last=False)
        return arrays

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
        d = shard_dataset(rows, self.task, str(self.folder))
        return d.x, d.y

    def require(self, recorded: list[ShardEntry], source: str) -> None:
        """DatasetChangedError naming the first shard that is not the one ``source`` (a run's
        manifest) records: another listing, or another file under the same key."""
        here = self.entries()
        for i in range(max(len(here), len(recorded))):
            if i >= len(recorded) or i >= len(here) or here[i]["key"] != recorded[i].key:
                key = here[i]["key"] if i < len(here) else recorded[i].key
                raise DatasetChangedError(
                    f"{self.folder / key}: the folder's shards are not the ones {source} records "
                    f"({len(here)} here, {len(recorded)} recorded; they differ at this one)"
                )
            if here[i]["sha256"] != recorded[i].sha256 or here[i]["root"] != recorded[i].root.hex():
                raise DatasetChangedError(
                    f"{self.folder / recorded[i].key}: not the shard {source} records (sha256 "
                    f"{here[i]['sha256'][:16]}..., recorded {recorded[i].sha256[:16]}...)"
                )
