"""A sharded dataset: shard files in a local folder, read lazily (PROTOCOL.md §4, "Sharded
datasets").

The shards are the folder's regular files (not its subfolders), sorted by name as bytes; each is
one ``.safetensors`` or ``.npz`` file (the spec's ``format``) holding a slice of the samples:
arrays ``x`` and ``y`` (classification, regression) or ``tokens`` (language_model: windows of
``context + 1`` tokens, one row each). Each shard is checked by its task's rules and hashed alone:
its sample count, root (the dataset root of its own samples) and sha256 are what the manifest
records. Samples are read by global index, a shard at a time, with at most ``HELD_SHARDS`` shards
in memory; a shard read again is read whole and must have the sha256 it had when its root was
computed, or DatasetChangedError names it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from veritrain.pipeline.errors import DatasetChangedError, SpecError
from veritrain.pipeline.run.manifest import ShardEntry
from veritrain.pipeline.run.tasks import Task

ShardFormat = Literal["safetensors", "npz"]

# Shards held in memory at once (each read whole when first needed).
HELD_SHARDS = 4


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
        for path in self.paths:
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
        self.head = first
        self.starts = np.cumsum([0, *self.counts])
        self._held: OrderedDict[int, Dataset] = OrderedDict()

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

    def shard(self, s: int) -> Any:
        """Shard ``s``'s samples (a Dataset), read again if not held, checked by sha256."""
        from veritrain.pipeline.data.datasets import shard_dataset

        if s in self._held:
            self._held.move_to_end(s)
            return self._held[s]
        path = self.paths[s]
        data = _read(path)
        if hashlib.sha256(data).hexdigest() != self.sha256[s]:
            raise DatasetChangedError(
                f"{path}: the shard changed after its root was computed; nothing was trained on it"
            )
        d = shard_dataset(_arrays(data, self.fmt, self.names, str(path)), self.task, str(path))
        self._held[s] = d
        if len(self._held) > HELD_SHARDS:
            self._held.popitem(last=False)
        return d

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` (global indices) as ``x`` and ``y`` rows, in that order."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        s_of = np.searchsorted(self.starts, idx, side="right") - 1
        x = np.empty((len(idx), *self.head.x.shape[1:]), dtype=self.head.x.dtype)
        y = np.empty((len(idx), *self.head.y.shape[1:]), dtype=self.head.y.dtype)
        for s in np.unique(s_of):
            at = np.nonzero(s_of == s)[0]
            d = self.shard(int(s))
            local = idx[at] - self.starts[s]
            x[at], y[at] = d.x[local], d.y[local]
        return x, y

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
