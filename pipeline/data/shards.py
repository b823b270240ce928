"""A sharded dataset: shard files in a local folder or an S3 prefix, read lazily (PROTOCOL.md §4,
"Sharded datasets").

The shards are what ``sources.py`` lists (a folder's regular files, or the objects directly under
an S3 prefix), sorted by name as bytes; each is one ``.safetensors`` or ``.npz`` file (the spec's
``format``) holding a slice of the samples: arrays ``x`` and ``y`` (classification, regression)
or ``tokens`` (language_model: windows of ``context + 1`` tokens, one row each). Each shard is
read from where it is kept, checked by its task's rules and hashed alone: its sample count, root
(the dataset root of its own samples) and sha256 are what the manifest records. Samples are read
by global index, a shard at a time, with at most ``HELD_SHARDS`` shards in memory; a shard read
again (from its folder, or from the local cache of S3 shards) must have the sha256 it had when its
root was computed, or DatasetChangedError names it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import OrderedDict
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

# Shards held in memory at once (each read whole when first needed).
HELD_SHARDS = 4


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


class Shards:
    """The shards at ``uri`` (a folder or ``s3://bucket/prefix``) as one dataset of ``task``:
    each read, checked and hashed once here (one at a time; an S3 shard also fills the cache),
    then read again by ``take`` when its samples are needed."""

    def __init__(self, uri: str, fmt: ShardFormat, task: Task):
        from veritrain.pipeline.data.datasets import Dataset, shard_dataset

        self.source: ShardSource = open_source(uri)
        self.fmt, self.task = fmt, task
        self.keys = self.source.keys()
        self.counts: list[int] = []
        self.roots: list[bytes] = []
        self.sha256: list[str] = []
        self.classes = 0
        first: Dataset | None = None
        dtypes: tuple[str, ...] = ()
        for key in self.keys:
            where = self.source.where(key)
            data = self.source.read(key)
            arrays = _arrays(data, fmt, self.names, where)
            d = shard_dataset(arrays, task, where)
            kinds = tuple(str(np.asarray(arrays[n]).dtype) for n in self.names)
            if first is None:
                first, dtypes = d, kinds
            elif kinds != dtypes:
                raise SpecError(
                    f"{where}: arrays of dtypes {', '.join(kinds)}; the first shard "
                    f"{self.keys[0]}'s are {', '.join(dtypes)}"
                )
            elif d.x.shape[1:] != first.x.shape[1:] or d.y.shape[1:] != first.y.shape[1:]:
                raise SpecError(
                    f"{where}: samples of shape x {d.x.shape[1:]}, y {d.y.shape[1:]}; the first "
                    f"shard {self.keys[0]}'s are x {first.x.shape[1:]}, y {first.y.shape[1:]}"
                )
            self.counts.append(len(d))
            self.roots.append(d.root())
            self.sha256.append(hashlib.sha256(data).hexdigest())
            self.classes = max(self.classes, d.classes)
            self.source.keep(self.sha256[-1], data)  # S3: into the cache, for training
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
            {"key": k, "samples": n, "root": r.hex(), "sha256": h}
            for k, n, r, h in zip(self.keys, self.counts, self.roots, self.sha256, strict=True)
        ]

    def shard(self, s: int) -> Any:
        """Shard ``s``'s samples (a Dataset), read again if not held, checked by sha256."""
        from veritrain.pipeline.data.datasets import shard_dataset

        if s in self._held:
            self._held.move_to_end(s)
            return self._held[s]
        key, where = self.keys[s], self.source.where(self.keys[s])
        data = self.source.fetch(key, self.sha256[s])
        d = shard_dataset(_arrays(data, self.fmt, self.names, where), self.task, where)
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
        require_listing(self.source, self.keys, recorded, source)
        for i, entry in enumerate(recorded):
            if self.sha256[i] != entry.sha256 or self.roots[i] != entry.root:
                raise not_recorded(self.source.where(entry.key), self.sha256[i], entry, source)
