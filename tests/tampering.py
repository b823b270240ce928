"""Dishonest trainers shared by the test files of the tasks, optimizers and user code: a Tamper
(pipeline/train/loop.py) that lies once."""

from __future__ import annotations

import numpy as np
import torch


class FlipParamBit:
    """A dishonest trainer: flips one parameter's last mantissa bit after step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return idx

    def after_update(self, step, model, optimizer) -> None:
        if step == self.at:
            next(model.parameters()).detach().view(-1)[:1].view(torch.int32).bitwise_xor_(1)
