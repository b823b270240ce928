"""Deterministic training with a committed record for every step.

Each step: learning rate from the schedule, the sampler's batch, forward, backward, then the
optimizer step. The digest of step t's parameters is hashed in Rust on other cores while step t+1
runs forward and backward (they only read the parameters) and is awaited before step t+1's
optimizer step writes them. Full state digests are taken every ``state_every`` steps, at every
checkpoint and at every epoch end.

Crash safety: every object is write-once and the ledger entry that names it is written last, so
the newest ``checkpoint`` or ``epoch`` entry is always a consistent point to resume from. Training
is deterministic, so the steps replayed after a crash produce the very same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veritrain.pipeline.data.datasets import Dataset, load_dataset
from veritrain.pipeline.errors import IntegrityError, SpecError
from veritrain.pipeline.run.determinism import DeterminismProfile, Profile, current_profile
from veritrain.pipeline.run.entries import (
    Body,
    CheckpointBody,
    CheckpointEntry,
    Entry,
    EpochBody,
    EpochEntry,
    RunBody,
)
from veritrain.pipeline.run.ledger import Ledger, load_or_create_key, public_key_hex
from veritrain.pipeline.run.manifest import (
    Manifest,
    epoch_entries,
    load_pending_records,
    manifest_digest,
    open_ledger,
    optimizer_digest,
    read_committed,
    sha256_hex,
)
from veritrain.pipeline.run.spec import RunSpec, check_sizes
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import (
    checkpoint_key,
    manifest_key,
    pending_records_key,
    records_key,
)
from veritrain.pipeline.train import canonical as cn
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.networks import build_model, build_optimizer
from veritrain.pipeline.train.step import StepResult, Tamper
from veritrain.prover import (
    PROTOCOL_VERSION,
    EpochClaim,
    StepRecord,
    batch_digest,
    check_records,
    epoch_permutation,
    genesis_hash,
    hparams_digest,
    image_id,
    merkle_root,
    steps_per_epoch,
)
from veritrain.prover.results import GUARANTEES, TORCH_MODE


@dataclass
class StepEvent:
    """What the progress callback receives after each step."""

    step: int
    total_steps: int
    epoch: int
    loss: float


@dataclass
class Trainer:
    spec: RunSpec
    store: Store
    manifest: Manifest
    ledger: Ledger
    entries: list[Entry]
    dataset: Dataset
    model: torch.nn.Module | None  # torch mode
    optimizer: torch.optim.Optimizer | None
    key: Ed25519PrivateKey
    canonical: cn.CanonicalState | None = None  # arithmetic: canonical
    on_step: Callable[[StepEvent], None] | None = None
    tamper: Tamper | None = None
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def spe(self) -> int:
        return self.manifest.steps_per_epoch

    def append(self, body: Body) -> Entry:
        # The prover may append receipts concurrently; anything else is a second trainer.
        return self.ledger.append(self.key, body, self.entries, tolerate=frozenset({"receipt"}))


def prepare(
    spec: RunSpec, dataset: Dataset | None = None
) -> tuple[Profile, Dataset, torch.nn.Module | None, torch.optim.Optimizer | None]:
    """Everything training builds from the spec; ``dataset`` if the caller loaded it already.
    A canonical run builds no torch objects and leaves torch's settings alone: its state is
    pipeline/train/canonical.py's, made once the manifest digest exists."""
    profile = current_profile(spec.arithmetic, spec.threads)
    dataset = dataset if dataset is not None else load_dataset(spec.dataset)
    check_sizes(spec, len(dataset))
    if not isinstance(profile, DeterminismProfile):
        return profile, dataset, None, None
    profile.apply()
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, dataset.in_features, dataset.classes)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    return profile, dataset, model, optimizer


def check_resumable(manifest: Manifest, spec: RunSpec) -> None:
    """Raises unless this environment may continue the run: same spec, same determinism profile,
    same guest."""
    mkey = manifest_key(manifest.run_id)
    if manifest.spec != spec:
        raise SpecError(f"{mkey}: run {manifest.run_id} exists with another spec; use a new run id")
    current_profile(spec.arithmetic, spec.threads).require_same(manifest.determinism)
    if manifest.image_id != image_id():
        raise IntegrityError(
            f"{mkey}: run pins guest image id {manifest.image_id.hex()}, "
            f"this build has {image_id().hex()}"
        )


def open_trainer(spec: RunSpec, store: Store, run_id: str) -> Trainer:
    """Creates the run (manifest, genesis checkpoint, first ledger entries) or reopens it to resume.
    Reopening checks that the spec, the determinism profile and the guest are the run's own."""
    profile, dataset, model, optimizer = prepare(spec)
    key = load_or_create_key(run_id)
    mkey = manifest_key(run_id)
    if not store.exists(mkey):
        doc = {
            "protocol_version": PROTOCOL_VERSION,
            "run_id": run_id,
            "spec": spec.model_dump(mode="json"),
            "determinism": profile.model_dump(),
            "dataset_root": dataset.root().hex(),
            "dataset_len": len(dataset),
            "steps_per_epoch": steps_per_epoch(len(dataset), spec.batch_size),
            "optimizer_digest": optimizer_digest(spec).hex(),
            "image_id": image_id().hex(),
            "public_key": public_key_hex(key),
        }
        if spec.arithmetic == "canonical":
            genesis_digest = cn.digest_arrays(
                cn.CanonicalState(spec, dataset, manifest_digest(doc)).tensors()
            )
        else:
            live = st.torch_objects(model, optimizer)
            genesis = st.state_tensors(*live, 0, manifest_digest(doc))
            genesis_digest = st.digest_tensors(genesis)
        doc["genesis_state_digest"] = genesis_digest.hex()
        # Deterministic bytes: a crash between here and the ledger entry re-creates them equal.
        store.create(mkey, json.dumps(doc, indent=1, sort_keys=True).encode())
    manifest = Manifest.load(store, run_id)
    if manifest.public_key.hex() != public_key_hex(key):
        raise IntegrityError(f"{mkey}: signed by another key than this machine's key for {run_id}")
    ledger = Ledger(store, run_id, manifest.public_key.hex())
    entries = ledger.entries()
    if not entries:
        ledger.append(key, RunBody(manifest_sha256=sha256_hex(manifest.raw)), entries)
    ledger, entries = open_ledger(store, manifest)
    check_resumable(manifest, spec)
    t = Trainer(spec, store, manifest, ledger, entries, dataset, model, optimizer, key)
    if spec.arithmetic == "canonical":
        t.canonical = cn.CanonicalState(spec, dataset, manifest.digest)
    if not any(isinstance(e, CheckpointEntry) for e in entries):
        t.append(_write_checkpoint(t, 0, _state(t, 0), [], None))
    return t


def _state(t: Trainer, step: int) -> dict:
    """The live state after ``step`` steps as named tensors (torch's, or canonical arrays)."""
    if t.canonical is not None:
        return t.canonical.tensors()
    return st.state_tensors(*st.torch_objects(t.model, t.optimizer), step, t.manifest.digest)


def _digest(t: Trainer, tensors: dict) -> bytes:
    return cn.digest_arrays(tensors) if t.canonical is not None else st.digest_tensors(tensors)


def _param_digest(t: Trainer) -> bytes:
    if t.canonical is not None:
        return cn.digest_arrays(t.canonical.param_tensors())
    return st.digest_tensors(_torch_params(t))


def _torch_params(t: Trainer) -> dict[str, torch.Tensor]:
    model, _ = st.torch_objects(t.model, t.optimizer)
    return st.param_tensors(model)


def _write_checkpoint(
    t: Trainer, step: int, tensors: dict, pending: list[bytes], state_digest: bytes | None
) -> CheckpointBody:
    data = cn.checkpoint_bytes(tensors) if t.canonical is not None else st.checkpoint_bytes(tensors)
    digest = state_digest or _digest(t, tensors)
    ck = checkpoint_key(t.run_id, step)
    t.store.create(ck, data)
    pk = blob_sha256 = None
    if pending:
        blob = b"".join(pending)
        pk, blob_sha256 = pending_records_key(t.run_id, step), sha256_hex(blob)
        t.store.create(pk, blob)
    return CheckpointBody(
        step=step,
        state_digest=digest.hex(),
        checkpoint=ck,
        checkpoint_sha256=sha256_hex(data),
        pending_records=pk,
        pending_sha256=blob_sha256,
    )


def _resume_point(t: Trainer) -> tuple[int, list[bytes]]:
    """Restores the newest consistent state; returns (next step, this epoch's records so far)."""
    last = next(e for e in reversed(t.entries) if isinstance(e, (CheckpointEntry, EpochEntry)))
    body = last.body.checkpoint if isinstance(last, EpochEntry) else last.body
    data = read_committed(t.store, body.checkpoint, body.checkpoint_sha256)
    if t.canonical is not None:
        step = t.canonical.restore(data, body.checkpoint)
    else:
        live = st.torch_objects(t.model, t.optimizer)
        step = st.restore(*live, st.load_checkpoint(data, body.checkpoint))
    return step, load_pending_records(t.store, body)


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
        self.x, self.y = torch.from_numpy(dataset.x), torch.from_numpy(dataset.y)
        self.params = list(model.parameters())
        self._perm: tuple[int, np.ndarray] | None = None

    def batch(self, step: int) -> np.ndarray:
        """The sampler's indices for global step ``step``."""
        epoch, k = divmod(step, self.spe)
        if self._perm is None or self._perm[0] != epoch:
            perm = epoch_permutation(self.spec.seed, epoch, self.n)
            self._perm = (epoch, np.asarray(perm, dtype=np.int64))
        b = self.spec.batch_size
        return self._perm[1][k * b : (k + 1) * b]

    def step(self, step: int, before_update: Callable[[], None] | None = None) -> StepResult:
        """Trains global step ``step``. ``before_update`` runs between backward and the optimizer
        step, the last moment the pre-step parameters exist."""
        lr = self.spec.schedule.lr_at(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        idx = self.batch(step)
        used = idx if self.tamper is None else self.tamper.batch(step, idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x[used]), self.y[used])
        loss.backward()
        grad_norm = _grad_norm(self.params)
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
    step, pending = _resume_point(t)
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
                tensors = _state(t, done)
                state_digest = _digest(t, tensors)
                rec = result.record(prev_hash, _param_digest(t), state_digest)
                pending.append(rec.to_bytes())
                prev_hash = rec.hash()
                if at_checkpoint:
                    body = _write_checkpoint(
                        t, done, tensors, [] if last_of_epoch else pending, state_digest
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
                    t._pool.submit(st.digest_tensors, _torch_params(t), st.spare_cores()),
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
        schedule=t.spec.schedule,
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
