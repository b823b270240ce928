"""What a run trains for and on: its task, the dataset sources a spec names, and a user's loss.

A task fixes the samples' form, their bytes (PROTOCOL.md §4, rust/core's ``sample``) and the
loss: classification (features and a class label, cross-entropy), regression (features and float
target columns, mean squared error) and language_model (windows of ``context + 1`` tokens,
next-token cross-entropy). A spec's ``loss: {kind: import}`` replaces the task's loss. Which
dataset sources give which task is ``DATASET_TASKS``; ``check_task`` states the rules across keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TASKS = ("classification", "regression", "language_model")
Task = Literal["classification", "regression", "language_model"]

# ``module:function``, like the other imports of a spec.
IMPORT_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DigitsDataset(_Strict):
    """scikit-learn's bundled digits (1,797 8x8 images); nothing is downloaded."""

    kind: Literal["digits"] = "digits"


class DiabetesDataset(_Strict):
    """scikit-learn's bundled diabetes data (442 patients, 10 scaled features; the target is the
    disease's progression a year later, 25 to 346, as scikit-learn gives it); nothing is
    downloaded."""

    kind: Literal["diabetes"] = "diabetes"


class SyntheticDataset(_Strict):
    """Gaussian blobs, generated from a seed: small and instant, for tests."""

    kind: Literal["synthetic"] = "synthetic"
    samples: Annotated[int, Field(gt=0, le=1_000_000)] = 64
    features: Annotated[int, Field(gt=0)] = 16
    classes: Annotated[int, Field(ge=2)] = 4
    seed: Annotated[int, Field(ge=0)] = 0


class FileDataset(_Strict):
    """A local ``.npz`` or ``.safetensors`` file with arrays ``x`` (features, one row per sample)
    and ``y``: integer labels of shape (n,) for classification, float targets of shape (n,) or
    (n, targets) for regression. A relative path is the spec file's folder's (see
    ``spec.resolve_paths``)."""

    kind: Literal["file"] = "file"
    path: str


class TextDataset(_Strict):
    """A text corpus as byte-level tokens (vocabulary 256, no tokenizer): a file's bytes, or a
    folder's files' bytes in the order PROTOCOL.md §4 fixes, cut into windows of ``context + 1``
    tokens. A relative path is the spec file's folder's."""

    kind: Literal["text"] = "text"
    path: str
    context: Annotated[int, Field(gt=0, le=1 << 20)]


class ShardsDataset(_Strict):
    """Shard files in a local folder (its regular files) or an S3 prefix ``s3://bucket/prefix``
    (the objects directly under it), sorted by name, each one ``format`` file holding a slice of
    the samples: ``x`` and ``y`` as a file dataset's, or ``tokens`` for a language model (one
    window of ``context + 1`` byte-level tokens per row). Read lazily (S3 shards through a local
    cache); the dataset root is over the shards' roots (PROTOCOL.md §4). A relative folder is the
    spec file's folder's."""

    kind: Literal["shards"] = "shards"
    uri: Annotated[str, Field(min_length=1)]
    format: Literal["safetensors", "npz"]


DatasetSpec = Annotated[
    DigitsDataset | DiabetesDataset | SyntheticDataset | FileDataset | TextDataset | ShardsDataset,
    Field(discriminator="kind"),
]

# The tasks each dataset kind gives; the first is a spec's task when it names none.
DATASET_TASKS: dict[str, tuple[Task, ...]] = {
    "digits": ("classification",),
    "diabetes": ("regression",),
    "synthetic": ("classification",),
    "file": ("classification", "regression"),
    "text": ("language_model",),
    "shards": ("classification", "regression", "language_model"),
}


class ImportedLoss(_Strict):
    """``package.module:function``, called as ``fn(outputs, targets)`` with the model's outputs
    for a batch (or a micro-batch) and its targets as the task gives them (class labels, target
    columns, next tokens), returning a scalar tensor: the mean over the batch's samples, as the
    tasks' own losses are, so that micro-batches weight it by their share. Its module is
    searched for in the spec's ``import_path`` first, and the run's code identity records it."""

    kind: Literal["import"] = "import"
    fn: Annotated[str, Field(pattern=IMPORT_REF)]


def default_task(data: dict[str, Any]) -> dict[str, Any]:
    """A spec mapping with its ``task`` filled in where it names none: the dataset's own (text:
    language_model, diabetes: regression), else classification."""
    if "task" in data:
        return data
    dataset = data.get("dataset")
    kind = dataset.get("kind") if isinstance(dataset, dict) else getattr(dataset, "kind", None)
    tasks = DATASET_TASKS.get(kind) if isinstance(kind, str) else None
    return {"task": tasks[0] if tasks else "classification", **data}


def check_task(task: Task, dataset_kind: str, model_kind: str) -> None:
    """Raises ValueError naming the key unless the dataset gives ``task`` and the model can
    train it."""
    tasks = DATASET_TASKS[dataset_kind]
    if task not in tasks:
        raise ValueError(
            f"task: dataset kind {dataset_kind} gives {' or '.join(tasks)} samples, not {task}"
        )
    if task == "language_model" and model_kind != "import":
        raise ValueError(
            f"model: kind {model_kind} does not train a language model; task language_model "
            "needs kind: import (a factory given vocab_size and context)"
        )
