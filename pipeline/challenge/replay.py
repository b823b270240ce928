"""Replay (docs/OPERATIONS.md "Challenges"): re-executing a run's committed steps.

A challenger re-executes committed steps with the trainer's own step function
(``veritrain.pipeline.train.loop.Stepper``, or
``veritrain.pipeline.train.canonical.CanonicalStepper`` for a canonical run), starting from a
checkpoint named in the run's signed ledger, under the determinism profile recorded in ``run.json``
(a canonical run's is the protocol version alone), and compares every committed field of every
replayed record: the previous record hash, the batch digest, the hparams digest, the loss and
grad-norm bits, the param digest and, where the trainer took one, the state digest. A replay from
checkpoint c agrees with the run exactly as long as the run's records do, so its first mismatch is
the first wrong step. This module needs the training stack (torch)."""

from __future__ import annotations

from dataclasses import dataclass

from veritrain.pipeline.challenge.fraudproof import differing
from veritrain.pipeline.checkpoint.digest import checkpoint_digest
from veritrain.pipeline.checkpoint.tensors import check_tensors, read_header
from veritrain.pipeline.data.datasets import require_shards
from veritrain.pipeline.errors import DeterminismError, IntegrityError, SpecError
from veritrain.pipeline.run.code import require_same_code
from veritrain.pipeline.run.determinism import current_profile
from veritrain.pipeline.run.manifest import (
    Manifest,
    checkpoint_bodies,
    epoch_entries,
    load_epoch_records,
    load_pending_records,
    open_ledger,
    read_committed,
)
from veritrain.pipeline.run.spec import LocalCopy
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import manifest_key
from veritrain.pipeline.train import canonical as cn
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.loop import Stepper, commitments
from veritrain.pipeline.train.trainer import prepare
from veritrain.prover import StepRecord, genesis_hash


class ReplayEnvironmentError(DeterminismError):
    """This environment cannot replay the run: its dataset here is not the run's (a CLI exit 3,
    like another determinism profile, never a verdict on the run)."""


@dataclass
class Finding:
    """A step whose committed record is not what re-executing it gives."""

    step: int
    epoch: int
    checkpoint: int  # the replay that found it started here
    fields: list[str]
    claimed: bytes
    recomputed: bytes


class Replay:
    """A run's live model and optimizer, restored from its checkpoints and stepped with the
    trainer's step function, next to the run's committed records.

    Raises CodeError (naming the module) unless this machine has the code run.json records, and
    DeterminismError (naming the field) unless this environment has the run's recorded
    determinism profile: a replay anywhere else would differ in the last bits and prove nothing.
    Likewise ReplayEnvironmentError unless the spec's dataset here has the run's dataset root.
    """

    def __init__(self, store: Store, run_id: str, local: LocalCopy | None = None):
        self.store = store
        self.manifest = Manifest.load(store, run_id)
        _, self.entries = open_ledger(store, self.manifest)  # chain and signatures checked
        self.run_id = run_id
        # The run's spec, with this machine's copies of its dataset and code where named.
        self.spec = (local or LocalCopy()).apply(self.manifest.spec)
        # First: other code replays differently for that reason alone, which is not fraud.
        require_same_code(self.manifest.code, self.spec, manifest_key(run_id))
        self.spe = self.manifest.steps_per_epoch
        self.profile = self.manifest.determinism
        current_profile(self.spec.arithmetic, self.spec.threads).require_same(self.profile)
        try:
            _, dataset, self.model, self.optimizer = prepare(self.spec)
        except SpecError as e:  # the run's own spec: what is missing is this machine's
            raise ReplayEnvironmentError(
                f"{manifest_key(run_id)}: the run cannot be set up here: {e} (--dataset and "
                "--import-path name this machine's copies)"
            ) from None
        require_shards(dataset, self.manifest.dataset_shards, manifest_key(run_id))
        if dataset.root() != self.manifest.dataset_root:
            d = self.spec.dataset
            where = getattr(d, "path", None) or getattr(d, "uri", None) or d.kind
            raise ReplayEnvironmentError(
                f"{manifest_key(run_id)}: the dataset here ({where}) does not have the run's "
                "dataset root; a replay needs the very samples the run trained on (--dataset "
                "names this machine's copy)"
            )
        opt_digest = self.manifest.optimizer_digest
        # A canonical run replays through the core's integer step: no torch state, and torch's
        # threads and determinism settings here do not matter.
        self.canonical: cn.CanonicalState | None = None
        self.stepper: Stepper | cn.CanonicalStepper
        if self.spec.arithmetic == "canonical":
            self.canonical = cn.CanonicalState(self.spec, dataset, self.manifest.digest)
            self.stepper = cn.CanonicalStepper(
                run_id, self.spec, self.spe, opt_digest, dataset, self.canonical
            )
        else:
            model, optimizer = st.torch_objects(self.model, self.optimizer)
            self.stepper = Stepper(
                run_id, self.spec, self.spe, opt_digest, dataset, model, optimizer
            )
        # Checkpoint step -> its ledger body ("checkpoint" entries, and epoch ends in "epoch").
        self.checkpoints = checkpoint_bodies(self.entries)
        self._epochs = epoch_entries(self.entries)
        self._records: dict[int, list[bytes]] = {}
        self.replayed = 0  # steps re-executed so far

    # The run's commitments.

    def _epoch_records(self, epoch: int) -> list[bytes]:
        """The committed records of an epoch: its records file once closed, else the newest
        checkpoint's pending records (the trainer's records so far)."""
        if epoch not in self._records:
            if epoch in self._epochs:
                recs = load_epoch_records(self.store, self._epochs[epoch])
            else:
                recs = []
                inside = [
                    b
                    for s, b in self.checkpoints.items()
                    if epoch * self.spe < s < (epoch + 1) * self.spe
                    and b.pending_records is not None
                ]
                if inside:
                    recs = load_pending_records(self.store, max(inside, key=lambda b: b.step))
            self._records[epoch] = recs
        return self._records[epoch]

    def committed_steps(self) -> int:
        """Steps with a committed record (records are contiguous from step 0)."""
        epoch = len(self._epochs)
        return epoch * self.spe + len(self._epoch_records(epoch))

    def claimed(self, step: int) -> bytes:
        epoch, k = divmod(step, self.spe)
        recs = self._epoch_records(epoch)
        if not 0 <= k < len(recs):
            raise IntegrityError(f"run {self.run_id} has no committed record of step {step}")
        return recs[k]

    def nearest_checkpoint(self, step: int) -> int:
        return max(s for s in self.checkpoints if s <= step)

    # Re-execution.

    def restore(self, c: int) -> None:
        """Loads checkpoint ``c`` (the state after c steps) after checking it is the state the
        run committed to: file bytes against the ledger, tensors against the state digest the
        ledger and the record before it state, pending records against the epoch's."""
        body = self.checkpoints[c]
        key = body.checkpoint
        data = read_committed(self.store, key, body.checkpoint_sha256)
        check_tensors(self.spec, c, read_header(data, key), data, key, self.manifest.digest)
        if self.canonical is None:
            tensors = st.load_checkpoint(data, key)
            digest = st.digest_tensors(tensors)
        else:
            digest = checkpoint_digest(data, key)
        if digest.hex() != body.state_digest:
            raise IntegrityError(f"{key}: recomputed state digest is not its ledger entry's")
        stated: bytes | None  # a record states its state digest only where the trainer took one
        if c == 0:
            stated = self.manifest.genesis_state_digest
        else:
            stated = StepRecord.from_bytes(self.claimed(c - 1)).state_digest
        if digest != stated:
            raise IntegrityError(f"{key}: not the state the record of step {c - 1} commits to")
        if body.pending_records is not None:
            epoch = c // self.spe
            committed = self._epoch_records(epoch)[: c - epoch * self.spe]
            if load_pending_records(self.store, body) != committed:
                raise IntegrityError(
                    f"{body.pending_records}: not the epoch's committed records up to step {c}"
                )
        if self.canonical is not None:
            restored = self.canonical.restore(data, key)
        else:
            restored = st.restore(*st.torch_objects(self.model, self.optimizer), tensors, key)
        if restored != c:
            raise IntegrityError(f"{key}: its step counter is not {c}")

    def link(self, step: int) -> bytes:
        """The previous record hash the record of ``step`` must carry."""
        if step > 0:
            return StepRecord.from_bytes(self.claimed(step - 1)).hash()
        m = self.manifest
        return genesis_hash(self.run_id, m.genesis_state_digest, m.dataset_root, self.spec.seed)

    def step(self, step: int) -> bytes:
        """Re-executes ``step`` from the live state; returns the record it should have."""
        result = self.stepper.step(step)
        take_state, _ = commitments(self.spec, self.spe, step)
        state_digest: bytes | None = None
        if self.canonical is not None:
            if take_state:
                state_digest = cn.digest_arrays(self.canonical.tensors())
            param_digest = cn.digest_arrays(self.canonical.param_tensors())
        else:
            model, optimizer = st.torch_objects(self.model, self.optimizer)
            if take_state:
                tensors = st.state_tensors(model, optimizer, step + 1, self.manifest.digest)
                state_digest = st.digest_tensors(tensors)
            param_digest = st.digest_tensors(st.param_tensors(model))
        prev_record_hash = self.link(step)
        self.replayed += 1
        return result.record(prev_record_hash, param_digest, state_digest).to_bytes()

    def scan(self, c: int, last: int) -> Finding | None:
        """Restores checkpoint ``c`` and replays steps c..last; the first mismatch, if any."""
        self.restore(c)
        for s in range(c, last + 1):
            recomputed, claimed = self.step(s), self.claimed(s)
            if recomputed != claimed:
                return Finding(
                    s, s // self.spe, c, differing(claimed, recomputed), claimed, recomputed
                )
        return None
