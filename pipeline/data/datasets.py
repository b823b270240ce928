"""Datasets and their commitment.

A dataset is ``x`` (the model's inputs, one row per sample) and ``y`` (what the loss compares the
outputs with), of its task's form: classification's float32 features and int64 labels,
regression's float32 features and float32 target columns, a language model's token windows (``x``
the first ``context`` tokens of each window, ``y`` the next ``context``). Each sample's canonical
bytes are its task's (PROTOCOL.md §4, rust/core's ``sample``); the dataset root is the Merkle root
of the sample leaves, computed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veritrain.pipeline.data.shards import Shards
from veritrain.pipeline.data.text import VOCAB_SIZE, load_text
from veritrain.pipeline.errors import DatasetChangedError, SpecError
from veritrain.pipeline.run.manifest import ShardEntry
from veritrain.pipeline.run.tasks import (
    DatasetSpec,
    DiabetesDataset,
    DigitsDataset,
    ShardsDataset,
    SyntheticDataset,
    Task,
    TextDataset,
)
from veritrain.prover import (
    classification_rows,
    dataset_root,
    language_model_rows,
    regression_rows,
)


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32 (n, *feature_shape); language model: tokens (n, context)
    y: np.ndarray  # int64 (n,); regression: float32 (n, targets); language model: (n, context)
    classes: int = 0  # classification: labels are 0 .. classes - 1
    task: Task = "classification"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    @property
    def outputs(self) -> int:
        """The width of the model's output per input: classes, target columns or vocabulary."""
        if self.task == "regression":
            return int(self.y.shape[1])
        if self.task == "language_model":
            return VOCAB_SIZE
        return self.classes

    def description(self) -> dict[str, Any]:
        """What a model factory is told about the dataset, by keyword (``model: import``)."""
        out: dict[str, Any] = {
            "task": self.task,
            "input_shape": tuple(int(d) for d in self.x.shape[1:]),
            "in_features": self.in_features,
        }
        if self.task == "classification":
            out["classes"] = self.classes
        elif self.task == "regression":
            out["targets"] = self.outputs
        else:
            out |= {"vocab_size": VOCAB_SIZE, "context": int(self.x.shape[1])}
        return out

    def canonical_rows(self) -> np.ndarray:
        """One row of canonical bytes per sample (PROTOCOL.md §4), as the core writes them."""
        n = len(self)
        if self.task == "classification":
            data = classification_rows(_flat(self.x, np.float32), _flat(self.y, np.int64))
        elif self.task == "regression":
            data = regression_rows(_flat(self.x, np.float32), _flat(self.y, np.float32), n)
        else:
            windows = np.concatenate([self.x[:, :1], self.y], axis=1)
            data = language_model_rows(_flat(windows, np.uint32), int(self.x.shape[1]))
        return np.frombuffer(data, dtype=np.uint8).reshape(n, -1)

    def root(self) -> bytes:
        rows = self.canonical_rows()
        return dataset_root(rows, rows.shape[1])

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` as ``x`` and ``y`` rows, in that order."""
        return self.x[idx], self.y[idx]

    def shard_entries(self) -> list[dict[str, Any]] | None:
        """What the manifest records of each shard; None for a dataset that is not sharded."""
        return None


@dataclass(frozen=True)
class ShardedDataset(Dataset):
    """A sharded dataset (pipeline/data/shards.py), read lazily: ``x`` and ``y`` hold no rows,
    only the samples' shape and dtype; ``take`` reads samples by global index."""

    shards: Shards | None = None

    def _source(self) -> Shards:
        assert self.shards is not None
        return self.shards

    def __len__(self) -> int:
        return len(self._source())

    def canonical_rows(self) -> np.ndarray:
        raise TypeError("a sharded dataset's rows are read a shard at a time, never all at once")

    def root(self) -> bytes:
        return self._source().root()

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._source().take(idx)

    def shard_entries(self) -> list[dict[str, Any]] | None:
        return self._source().entries()


def require_shards(dataset: Dataset, recorded: list[ShardEntry] | None, source: str) -> None:
    """DatasetChangedError naming the shard if ``dataset`` is not the sharded dataset ``source``
    (a run's manifest) records; nothing for a run whose dataset is not sharded."""
    if recorded is None:
        return
    if not isinstance(dataset, ShardedDataset):
        raise DatasetChangedError(f"{source}: the run's dataset is sharded, the spec's here is not")
    dataset._source().require(recorded, source)


def shard_dataset(arrays: dict[str, Any], task: Task, source: str) -> Dataset:
    """One shard's arrays as a dataset of ``task`` (``tokens`` for a language model: one window
    of ``context + 1`` tokens per row); SpecError naming ``source``."""
    if task != "language_model":
        return _checked(np.asarray(arrays["x"]), np.asarray(arrays["y"]), task, source)
    tokens = np.asarray(arrays["tokens"])
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise SpecError(
            f"{source}: tokens has shape {tokens.shape}; windows of context + 1 tokens have "
            "shape (n, context + 1), n > 0, context > 0"
        )
    if (
        not np.issubdtype(tokens.dtype, np.integer)
        or tokens.min() < 0
        or tokens.max() >= VOCAB_SIZE
    ):
        raise SpecError(f"{source}: tokens are integers 0 .. {VOCAB_SIZE - 1} (byte-level)")
    t = np.ascontiguousarray(tokens, dtype=np.uint8)
    return Dataset(
        x=np.ascontiguousarray(t[:, :-1]), y=np.ascontiguousarray(t[:, 1:]), task="language_model"
    )


def _sharded(d: ShardsDataset, task: Task) -> ShardedDataset:
    shards = Shards(d.uri, d.format, task)
    head = shards.head
    return ShardedDataset(
        x=head.x[:0], y=head.y[:0], classes=shards.classes, task=task, shards=shards
    )


def _flat(a: np.ndarray, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _features(x: np.ndarray, n: int, source: str) -> np.ndarray:
    if x.ndim < 2 or x.shape[0] != n or n == 0:
        raise SpecError(f"{source}: need x of shape (n, features...) and y's n rows, n > 0")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise SpecError(f"{source}: x has non-finite or non-numeric values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _classification(x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    if y.ndim != 1:
        raise SpecError(f"{source}: y has shape {y.shape}; class labels have shape (n,)")
    x = _features(x, y.shape[0], source)
    if not np.issubdtype(y.dtype, np.number):
        raise SpecError(f"{source}: y holds {y.dtype}, not class labels")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise SpecError(
            f"{source}: y has non-integer values; class labels are integers "
            "(float targets are task: regression)"
        )
    if y.min() < 0:
        raise SpecError(f"{source}: labels must be non-negative integers")
    return Dataset(x=x, y=np.ascontiguousarray(y, dtype=np.int64), classes=int(y.max()) + 1)


def _regression(x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise SpecError(
            f"{source}: y has shape {y.shape}; regression targets have shape (n,) or (n, targets)"
        )
    x = _features(x, y.shape[0], source)
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        raise SpecError(f"{source}: y has non-finite or non-numeric targets")
    targets = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float32)
    return Dataset(x=x, y=targets, task="regression")


def _checked(x: np.ndarray, y: np.ndarray, task: Task, source: str) -> Dataset:
    return _regression(x, y, source) if task == "regression" else _classification(x, y, source)


def load_dataset(d: DatasetSpec, task: Task = "classification") -> Dataset:
    """A spec's dataset as its ``task`` reads it; SpecError naming the key or file if the data
    does not fit the task."""
    if isinstance(d, DigitsDataset):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.data / 16.0).astype(np.float32)
        return _checked(x, digits.target.astype(np.int64), task, "digits")
    if isinstance(d, DiabetesDataset):
        from sklearn.datasets import load_diabetes

        diabetes = load_diabetes()
        return _checked(diabetes.data, diabetes.target, task, "diabetes")
    if isinstance(d, SyntheticDataset):
        rng = np.random.default_rng(d.seed)
        centers = rng.normal(0, 3, size=(d.classes, d.features))
        y = rng.integers(0, d.classes, size=d.samples)
        x = centers[y] + rng.normal(0, 1, size=(d.samples, d.features))
        return _checked(x.astype(np.float32), y.astype(np.int64), task, "synthetic")
    if isinstance(d, ShardsDataset):
        return _sharded(d, task)
    if isinstance(d, TextDataset):
        x, y = load_text(Path(d.path), d.context)
        return Dataset(x=x, y=y, task="language_model")
    return _load_file(Path(d.path), task)


def _load_file(path: Path, task: Task) -> Dataset:
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
    return _checked(np.asarray(arrays["x"]), np.asarray(arrays["y"]), task, str(path))
