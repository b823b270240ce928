"""One training step as the trainer and a challenger's replay both see it: what a step gives
(``StepResult``), whichever stepper ran it (torch mode's ``loop.Stepper`` or
``canonical.CanonicalStepper``), what the progress callback hears of it (``StepEvent``), and the
test-only ``Tamper`` hook both steppers take. No torch here, so canonical mode needs none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from veritrain.prover import StepRecord

if TYPE_CHECKING:
    import torch

    from veritrain.pipeline.train.canonical import CanonicalState


@dataclass
class StepEvent:
    """What the progress callback receives after each step."""

    step: int
    total_steps: int
    epoch: int
    loss: float


@dataclass(frozen=True)
class StepResult:
    """What training one step gives: its record's fields but three its caller adds, the previous
    record hash, the param digest and the state digest (only where one is taken), because the
    trainer hashes the parameters while the next step runs and a replay at once."""

    run_id: str
    epoch: int
    step: int
    batch_digest: bytes
    hparams_digest: bytes
    loss: float
    grad_norm: float

    def record(
        self, prev_record_hash: bytes, param_digest: bytes, state_digest: bytes | None = None
    ) -> StepRecord:
        """The step's record, with the fields the step itself does not know."""
        return StepRecord(
            run_id=self.run_id,
            epoch=self.epoch,
            step=self.step,
            prev_record_hash=prev_record_hash,
            batch_digest=self.batch_digest,
            hparams_digest=self.hparams_digest,
            loss=self.loss,
            grad_norm=self.grad_norm,
            param_digest=param_digest,
            state_digest=state_digest,
        )


class Tamper(Protocol):
    """Test-only: how a dishonest trainer lies (tests/test_challenge.py). Honest runs have none."""

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        """The indices actually trained on; the record still names the sampler's batch."""
        ...

    def after_update(
        self,
        step: int,
        model: torch.nn.Module | CanonicalState,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        """Changes the live state after the optimizer step, before anything digests it (a
        canonical run passes its CanonicalState as ``model`` and None as ``optimizer``)."""
        ...
