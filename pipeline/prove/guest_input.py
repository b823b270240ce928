"""The guest's input for an epoch, built from the store (PROTOCOL.md §10).

A torch-mode epoch's input is its claim, the previous epoch's claim and its records. A canonical
epoch (guarantees 31) adds the canonical section: the run's canonical settings and, for each step
the records root chooses (``prover.zk_steps``), the training state before that step and the
batch's samples with their audit paths in the dataset root. The prover holds no state of its
own: it restores the nearest checkpoint at or before each chosen step and replays forward with
the canonical step (``veritrain.pipeline.train.canonical``, no torch), checking every replayed state
against its record's state digest, so a store that cannot give the committed states fails here
with the step named, before any cycle is spent in the guest.
"""

from __future__ import annotations

import numpy as np

from veritrain.pipeline.data.datasets import load_dataset
from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.entries import CheckpointBody, Entry, EpochEntry
from veritrain.pipeline.run.manifest import (
    Manifest,
    canonical_settings,
    checkpoint_bodies,
    load_epoch_records,
    read_committed,
)
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import manifest_key
from veritrain.pipeline.train import canonical as cn
from veritrain.prover import (
    EpochClaim,
    StepRecord,
    dataset_paths,
    epoch_input,
    zk_steps,
)

ARITHMETIC = 16  # guarantee bit 4 (PROTOCOL.md §9)


def guest_input(
    store: Store,
    manifest: Manifest,
    epochs: dict[int, EpochEntry],
    epoch: int,
    entries: list[Entry] | None = None,
) -> bytes:
    """The guest's input for committed ``epoch`` (``epochs``: the ledger's epoch entries;
    ``entries``: the whole ledger, needed for a canonical epoch's checkpoints)."""
    claim = epochs[epoch].body.claim
    prev = epochs[epoch - 1].body.claim if epoch > 0 else None
    records = load_epoch_records(store, epochs[epoch])
    canonical = None
    if claim.guarantees & ARITHMETIC:
        if entries is None:
            raise ValueError("a canonical epoch's input needs the ledger's checkpoints")
        canonical = canonical_section(store, manifest, epochs, entries, claim, records)
    return epoch_input(claim, prev, records, canonical)


class _Records:
    """The committed records by global step, an epoch's file read once when first needed."""

    def __init__(self, store: Store, epochs: dict[int, EpochEntry], spe: int):
        self.store, self.epochs, self.spe = store, epochs, spe
        self._by_epoch: dict[int, list[StepRecord]] = {}

    def add(self, epoch: int, records: list[bytes]) -> None:
        self._by_epoch[epoch] = [StepRecord.from_bytes(r) for r in records]

    def __getitem__(self, step: int) -> StepRecord:
        e, k = divmod(step, self.spe)
        if e not in self._by_epoch:
            self.add(e, load_epoch_records(self.store, self.epochs[e]))
        return self._by_epoch[e][k]


def canonical_section(
    store: Store,
    manifest: Manifest,
    epochs: dict[int, EpochEntry],
    entries: list[Entry],
    claim: EpochClaim,
    records: list[bytes],
) -> tuple[bytes, list]:
    """(canonical settings bytes, the re-executed steps) for ``claim``'s epoch; raises
    IntegrityError naming the object or step that does not give the committed states."""
    spec = manifest.spec
    dataset = load_dataset(spec.dataset, spec.task)
    if dataset.root() != claim.dataset_root:
        raise IntegrityError(
            f"{manifest_key(manifest.run_id)}: the spec's dataset here does not have the run's "
            "dataset root; the guest needs the very samples the run trained on"
        )
    settings = canonical_settings(spec)
    if settings.digest() != claim.optimizer_digest:
        raise IntegrityError(
            f"{manifest_key(manifest.run_id)}: the spec's canonical settings are not the "
            f"optimizer digest of epoch {claim.epoch}'s claim"
        )
    spe = claim.step_count
    k = settings.zk_steps_per_epoch
    chosen = [claim.first_step + i for i in zk_steps(claim.records_root, spe, k)]
    committed = _Records(store, epochs, spe)
    committed.add(claim.epoch, records)
    rows = dataset.canonical_rows()
    checkpoints = checkpoint_bodies(entries)
    state = cn.CanonicalState(spec, dataset, manifest.digest)
    at = -1
    steps = []
    for s in chosen:
        # The latest checkpoint at or before s, unless the replay is already past it.
        start = max((c for c in checkpoints if at < c <= s), default=None)
        if start is not None:
            at = _restore(store, state, checkpoints[start])
        elif at < 0:
            raise IntegrityError(f"run {manifest.run_id}: no checkpoint at or before step {s}")
        while at < s:
            state.train(at, rows[batch_indices(spec, len(dataset), at)])
            # A re-executed step is the guest's to check (it reports `arithmetic` for it); any
            # other replayed step must give its record, or no later step's state can be given.
            if at not in chosen:
                _check_state(state, committed[at], at)
            at += 1
        idx = batch_indices(spec, len(dataset), s)
        paths = dataset_paths(rows, rows.shape[1], idx.tolist())
        samples = [(rows[i].tobytes(), p) for i, p in zip(idx, paths, strict=True)]
        steps.append((s, _tensor_items(state.tensors()), samples))
    return settings.to_bytes(), steps


def _restore(store: Store, state: cn.CanonicalState, body: CheckpointBody) -> int:
    data = read_committed(store, body.checkpoint, body.checkpoint_sha256)
    if state.restore(data, body.checkpoint) != body.step:
        raise IntegrityError(f"{body.checkpoint}: its step counter is not {body.step}")
    if cn.digest_arrays(state.tensors()).hex() != body.state_digest:
        raise IntegrityError(
            f"{body.checkpoint}: recomputed state digest is not its ledger entry's"
        )
    return body.step


def _check_state(state: cn.CanonicalState, record: StepRecord, step: int) -> None:
    if record.state_digest is None or cn.digest_arrays(state.tensors()) != record.state_digest:
        raise IntegrityError(
            f"step {step}: replaying the canonical step from the checkpoint does not give the "
            "record's state digest (the run's records are not its training)"
        )


def _tensor_items(tensors: dict[str, np.ndarray]) -> list[tuple[str, str, list[int], bytes]]:
    out = []
    for name, a in sorted(tensors.items()):
        a = np.ascontiguousarray(a)
        out.append((name, cn._DTYPES[a.dtype], list(a.shape), a.tobytes()))
    return out
