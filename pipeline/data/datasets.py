"""Datasets and their commitment.

A dataset is ``x`` (float32, one row per sample) and ``y`` (int64 labels). Each sample's canonical
bytes are its features as little-endian float32 followed by its label as little-endian int64; the
dataset root is the Merkle root of the sample leaves (PROTOCOL.md), computed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.spec import DigitsDataset, FileDataset, SyntheticDataset
from veritrain.prover import dataset_root


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32, shape (n, *feature_shape)
    y: np.ndarray  # int64, shape (n,)
    classes: int

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    def description(self) -> dict[str, Any]:
        """What a model factory is told about the dataset, by keyword (``model: import``)."""
        return {
            "task": "classification",
            "input_shape": tuple(int(d) for d in self.x.shape[1:]),
            "in_features": self.in_features,
            "classes": self.classes,
        }

    def canonical_rows(self) -> np.ndarray:
        """One row of canonical bytes per sample: features f32 LE, then label i64 LE."""
        feats = self.x.reshape(len(self), -1).astype("<f4", copy=False).view(np.uint8)
        labels = self.y.astype("<i8", copy=False).reshape(-1, 1).view(np.uint8)
        return np.ascontiguousarray(np.concatenate([feats, labels], axis=1))

    def root(self) -> bytes:
        rows = self.canonical_rows()
        return dataset_root(rows, rows.shape[1])


def _checked(x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise SpecError(f"{source}: need x of shape (n, features...) and y of shape (n,), n > 0")
    if not np.all(np.isfinite(x)):
        raise SpecError(f"{source}: x has non-finite values")
    if y.min() < 0:
        raise SpecError(f"{source}: labels must be non-negative integers")
    return Dataset(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=np.ascontiguousarray(y, dtype=np.int64),
        classes=int(y.max()) + 1,
    )


def load_dataset(spec: DigitsDataset | SyntheticDataset | FileDataset) -> Dataset:
    if isinstance(spec, DigitsDataset):
        from sklearn.datasets import load_digits

        d = load_digits()
        return _checked((d.data / 16.0).astype(np.float32), d.target.astype(np.int64), "digits")
    if isinstance(spec, SyntheticDataset):
        rng = np.random.default_rng(spec.seed)
        centers = rng.normal(0, 3, size=(spec.classes, spec.features))
        y = rng.integers(0, spec.classes, size=spec.samples)
        x = centers[y] + rng.normal(0, 1, size=(spec.samples, spec.features))
        return _checked(x.astype(np.float32), y.astype(np.int64), "synthetic")
    return _load_file(Path(spec.path))


def _load_file(path: Path) -> Dataset:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in ("x", "y") if name in f.files}
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            arrays = load_file(str(path))
        else:
            raise SpecError(f"{path}: dataset files are .npz or .safetensors")
    except SpecError:
        raise
    except OSError as e:
        raise SpecError(f"{path}: cannot read the dataset: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed file can fail its parser in any way
        detail = " ".join(str(e).split())
        raise SpecError(f"{path}: not a dataset file: {type(e).__name__}: {detail}") from None
    for name in ("x", "y"):
        if name not in arrays:
            raise SpecError(f"{path}: no array {name!r}; a dataset file holds arrays x and y")
    return _checked(np.asarray(arrays["x"]), np.asarray(arrays["y"]), str(path))
