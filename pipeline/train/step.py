"""One training step as the trainer and a challenger's replay both see it: what a step gives
(``StepResult``), whichever stepper ran it (torch mode's ``loop.Stepper`` or
``canonical.CanonicalStepper``). No torch here, so canonical mode needs none."""

from __future__ import annotations

from dataclasses import dataclass

from veritrain.prover import StepRecord


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
