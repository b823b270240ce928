"""A run's loss and its batches as torch tensors: the task's own loss (cross-entropy, mean squared
error, next-token cross-entropy) or the spec's ``loss: {kind: import}``, called as
``fn(outputs, targets)``. The trainer, preflight and a challenger's replay all take it from here,
so a replayed step computes the very loss its record's step did."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.code import import_object
from veritrain.pipeline.run.spec import RunSpec
from veritrain.pipeline.run.tasks import Task

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _next_token(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position of every window: (batch, context, vocab) logits
    against (batch, context) next tokens."""
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


TASK_LOSSES: dict[Task, Loss] = {
    "classification": F.cross_entropy,
    "regression": F.mse_loss,
    "language_model": _next_token,
}


def build_loss(spec: RunSpec) -> Loss:
    """The spec's loss; SpecError naming ``loss.fn`` where an imported one cannot be had."""
    if spec.loss is None:
        return TASK_LOSSES[spec.task]
    fn = import_object(spec.loss.fn, "loss.fn", spec.import_path)
    if not callable(fn):
        raise SpecError(f"loss.fn: {spec.loss.fn!r} is a {type(fn).__name__}, not callable")
    loss: Loss = fn
    return loss


def expected_outputs(dataset: Dataset, batch: int) -> tuple[int, ...]:
    """The outputs' shape the task's own loss needs for a batch of ``batch`` samples."""
    if dataset.task == "language_model":
        return (batch, int(dataset.x.shape[1]), dataset.outputs)
    return (batch, dataset.outputs)


class Batches:
    """A dataset's samples as torch tensors (sharing its memory), by index: tokens are given to
    the model and the loss as int64."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.tokens = dataset.task == "language_model"

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = self.dataset.take(idx)
        x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        if self.tokens:
            return x.long(), y.long()
        return x, y
