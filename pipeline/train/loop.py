"""The training loop: every step through a stepper, with a committed record for every step.

Each step: learning rate from the schedule, the sampler's batch, forward, backward, then the
optimizer step. The digest of step t's parameters is hashed in Rust on other cores while step t+1
runs forward and backward (they only read the parameters) and is awaited before step t+1's
optimizer step writes them. Full state digests are taken every ``state_every`` steps, at every
checkpoint and at every epoch end. The run being trained, its state and checkpoints, is
``trainer.py``'s ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
import torch

from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.run.entries import CheckpointBody, EpochBody
from veritrain.pipeline.run.manifest import epoch_entries, sha256_hex
from veritrain.pipeline.run.spec import RunSpec
from veritrain.pipeline.store.keys import records_key
from veritrain.pipeline.train import canonical as cn
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.losses import Batches, build_loss
from veritrain.pipeline.train.step import StepEvent, StepResult, Tamper
from veritrain.pipeline.train.trainer import Trainer
from veritrain.prover import (
    EpochClaim,
    StepRecord,
    batch_digest,
    check_records,
    genesis_hash,
    hparams_digest,
    merkle_root,
)
from veritrain.prover.results import GUARANTEES, TORCH_MODE


def _epoch_link(t: Trainer, epoch: int) -> tuple[bytes, bytes]:
    """(previous record hash, start state digest) of an epoch."""
    if epoch == 0:
        m = t.manifest
        start = m.genesis_state_digest
        link = genesis_hash(t.run_id, start, m.dataset_root, t.spec.seed)
        return link, start
    prev = epoch_entries(t.entries)[epoch - 1].body.claim
    return prev.last_record_hash, prev.end_state_digest


def _grad_norm(params: Sequence[torch.Tensor]) -> float:
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def commitments(spec: RunSpec, spe: int, step: int) -> tuple[bool, bool]:
    """(state digest taken, checkpoint written) after global step ``step``: a checkpoint every
    ``checkpoint_every`` steps and at every epoch end, a state digest with each checkpoint and
    every ``state_every`` steps. A replay must take digests exactly where the trainer did."""
    done = step + 1
    checkpoint = done % spe == 0 or done % spec.checkpoint_every == 0
    return checkpoint or done % spec.state_every == 0, checkpoint


class Stepper:
    """One training step from the live model and optimizer. The trainer and a challenger's replay
    (pipeline/challenge/replay.py) both step through this, so a replayed step runs the very code
    that produced its record."""

    def __init__(
        self,
        run_id: str,
        spec: RunSpec,
        spe: int,
        opt_digest: bytes,
        dataset: Dataset,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        tamper: Tamper | None = None,
    ):
        self.run_id, self.spec, self.spe, self.opt_digest = run_id, spec, spe, opt_digest
        self.model, self.optimizer, self.tamper = model, optimizer, tamper
        self.n = len(dataset)
        self.samples = Batches(dataset)
        self.loss = build_loss(spec)
        self.params = list(model.parameters())
        self.schedule = spec.schedule_for(self.n)

    def batch(self, step: int) -> np.ndarray:
        """The sampler's indices for global step ``step``."""
        return batch_indices(self.spec, self.n, step)

    def _forward_backward(self, used: np.ndarray) -> torch.Tensor:
        """The batch's mean loss, its gradient accumulated over ``micro_batches`` parts, each
        part's mean loss weighted by its share of the batch (one part: the batch's mean loss as
        it is, the very operations of a run without micro-batches)."""
        parts = self.spec.micro_batches
        if parts == 1:
            x, y = self.samples[used]
            loss = self.loss(self.model(x), y)
            loss.backward()
            return loss
        total = torch.zeros(())
        for chunk in np.array_split(used, parts):
            if not len(chunk):  # an epoch's short last batch may have fewer samples than parts
                continue
            x, y = self.samples[chunk]
            part = self.loss(self.model(x), y)
            part = part * (len(chunk) / len(used))
            part.backward()
            total += part.detach()
        return total

    def step(self, step: int, before_update: Callable[[], None] | None = None) -> StepResult:
        """Trains global step ``step``. ``before_update`` runs between backward and the optimizer
        step, the last moment the pre-step parameters exist."""
        lr = self.schedule.lr_at(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        idx = self.batch(step)
        used = idx if self.tamper is None else self.tamper.batch(step, idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._forward_backward(used)
        grad_norm = _grad_norm(self.params)
        if self.spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.spec.max_grad_norm)
        if before_update is not None:
            before_update()
        self.optimizer.step()
        if self.tamper is not None:
            self.tamper.after_update(step, self.model, self.optimizer)
        return StepResult(
            run_id=self.run_id,
            epoch=step // self.spe,
            step=step,
            batch_digest=batch_digest(idx.tolist()),
            hparams_digest=hparams_digest(lr, self.opt_digest),
            loss=float(loss.item()),
            grad_norm=grad_norm,
        )


def train(t: Trainer, until_epoch: int | None = None) -> int:
    """Trains up to (not including) ``until_epoch`` (default: all epochs); returns the epochs
    done."""
    spec, spe = t.spec, t.spe
    end_epoch = spec.epochs if until_epoch is None else min(until_epoch, spec.epochs)
    step, pending = t.resume()
    opt_digest = t.manifest.optimizer_digest
    stepper: Stepper | cn.CanonicalStepper
    if t.canonical is not None:
        stepper = cn.CanonicalStepper(
            t.run_id, spec, spe, opt_digest, t.dataset, t.canonical, t.tamper
        )
    else:
        model, optimizer = st.torch_objects(t.model, t.optimizer)
        stepper = Stepper(t.run_id, spec, spe, opt_digest, t.dataset, model, optimizer, t.tamper)
    total = spec.epochs * spe
    # A record waiting for its parameter digest: (step, previous record hash, digest).
    waiting: tuple[StepResult, bytes, Future[bytes]] | None = None
    prev_hash = b""

    def finish(w: tuple[StepResult, bytes, Future[bytes]]) -> StepRecord:
        result, prev, digest = w
        return result.record(prev, digest.result())

    def before_update() -> None:
        # The previous step's parameters are about to change: its digest must be done.
        nonlocal waiting, prev_hash
        if waiting is not None:
            rec = finish(waiting)
            pending.append(rec.to_bytes())
            prev_hash = rec.hash()
            waiting = None

    while step < end_epoch * spe:
        epoch = step // spe
        link, start_state = _epoch_link(t, epoch)
        prev_hash = StepRecord.from_bytes(pending[-1]).hash() if pending else link
        waiting = None
        for k in range(step - epoch * spe, spe):
            result = stepper.step(step, before_update)
            done = step + 1
            last_of_epoch = k == spe - 1
            take_state, at_checkpoint = commitments(spec, spe, step)
            if take_state:
                tensors = t.state(done)
                state_digest = t.state_digest(tensors)
                rec = result.record(prev_hash, t.param_digest(), state_digest)
                pending.append(rec.to_bytes())
                prev_hash = rec.hash()
                if at_checkpoint:
                    body = t.write_checkpoint(
                        done, tensors, [] if last_of_epoch else pending, state_digest
                    )
                    if last_of_epoch:
                        _close_epoch(t, epoch, link, start_state, pending, body)
                        pending = []
                    else:
                        t.append(body)
            else:
                waiting = (
                    result,
                    prev_hash,
                    t.digester.submit(st.digest_tensors, t.torch_params(), st.spare_cores()),
                )
            step = done
            if t.on_step:
                t.on_step(StepEvent(step=done, total_steps=total, epoch=epoch, loss=result.loss))
    return end_epoch


def _close_epoch(
    t: Trainer,
    epoch: int,
    link: bytes,
    start_state: bytes,
    records: list[bytes],
    checkpoint: CheckpointBody,
) -> EpochClaim:
    """Writes the epoch's records and its claim; the ledger entry is the commit point."""
    m = t.manifest
    hashes = [StepRecord.from_bytes(r).hash() for r in records]
    claim = EpochClaim(
        run_id=t.run_id,
        epoch=epoch,
        first_step=epoch * t.spe,
        step_count=t.spe,
        prev_record_hash=link,
        last_record_hash=hashes[-1],
        records_root=merkle_root(hashes),
        start_state_digest=start_state,
        end_state_digest=bytes.fromhex(checkpoint.state_digest),
        dataset_root=m.dataset_root,
        dataset_len=m.dataset_len,
        sampler_seed=t.spec.seed,
        batch_size=t.spec.batch_size,
        optimizer_digest=m.optimizer_digest,
        schedule=t.spec.schedule_for(m.dataset_len),
        image_id=m.image_id,
        guarantees=TORCH_MODE | GUARANTEES["arithmetic"] if t.canonical is not None else TORCH_MODE,
    )
    prev = None if epoch == 0 else epoch_entries(t.entries)[epoch - 1].body.claim
    check_records(claim, prev, records)  # our own records must pass the guest's rules
    blob = b"".join(records)
    rk = records_key(t.run_id, epoch)
    t.store.create(rk, blob)
    t.append(
        EpochBody(
            epoch=epoch,
            claim=claim,
            records=rk,
            records_sha256=sha256_hex(blob),
            checkpoint=checkpoint,
        )
    )
    return claim
