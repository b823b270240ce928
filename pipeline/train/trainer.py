"""A run opened for training: created from its spec (manifest, genesis checkpoint, first ledger
entries) or reopened to resume, with its live state (torch's model and optimizer, or a
canonical state) and the checkpoints written from it. The loop that steps it is ``loop.py``.

Crash safety: every object is write-once and the ledger entry that names it is written last, so
the newest ``checkpoint`` or ``epoch`` entry is always a consistent point to resume from. Training
is deterministic, so the steps replayed after a crash produce the very same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veritrain.pipeline.data.datasets import Dataset, load_dataset, require_shards
from veritrain.pipeline.errors import IntegrityError, SpecError
from veritrain.pipeline.run.code import code_fields, require_same_code
from veritrain.pipeline.run.determinism import DeterminismProfile, Profile, current_profile
from veritrain.pipeline.run.entries import (
    Body,
    CheckpointBody,
    CheckpointEntry,
    Entry,
    EpochEntry,
    RunBody,
)
from veritrain.pipeline.run.ledger import Ledger, load_or_create_key, public_key_hex
from veritrain.pipeline.run.manifest import (
    Manifest,
    load_pending_records,
    manifest_digest,
    open_ledger,
    optimizer_digest,
    read_committed,
    sha256_hex,
)
from veritrain.pipeline.run.spec import RunSpec, check_sizes
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import checkpoint_key, manifest_key, pending_records_key
from veritrain.pipeline.train import canonical as cn
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.networks import build_model, build_optimizer
from veritrain.pipeline.train.step import StepEvent, Tamper
from veritrain.prover import PROTOCOL_VERSION, image_id, steps_per_epoch

# A state as named tensors: torch's tensors, or a canonical run's numpy arrays.
Tensors = dict[str, Any]


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
    # Hashes a step's parameters while the next step runs forward and backward (loop.py).
    digester: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def spe(self) -> int:
        return self.manifest.steps_per_epoch

    def append(self, body: Body) -> Entry:
        # The prover may append receipts concurrently; anything else is a second trainer.
        return self.ledger.append(self.key, body, self.entries, tolerate=frozenset({"receipt"}))

    def state(self, step: int) -> Tensors:
        """The live state after ``step`` steps as named tensors."""
        if self.canonical is not None:
            return self.canonical.tensors()
        live = st.torch_objects(self.model, self.optimizer)
        return st.state_tensors(*live, step, self.manifest.digest)

    def state_digest(self, tensors: Tensors) -> bytes:
        if self.canonical is not None:
            return cn.digest_arrays(tensors)
        return st.digest_tensors(tensors)

    def param_digest(self) -> bytes:
        if self.canonical is not None:
            return cn.digest_arrays(self.canonical.param_tensors())
        return st.digest_tensors(self.torch_params())

    def torch_params(self) -> dict[str, torch.Tensor]:
        """A torch-mode run's parameters (views: digest them before the next optimizer step)."""
        model, _ = st.torch_objects(self.model, self.optimizer)
        return st.param_tensors(model)

    def write_checkpoint(
        self, step: int, tensors: Tensors, pending: list[bytes], state_digest: bytes | None
    ) -> CheckpointBody:
        """Stores the state after ``step`` steps and this epoch's ``pending`` records so far;
        returns the ledger body that names them (the caller appends it, the commit point)."""
        if self.canonical is not None:
            data = cn.checkpoint_bytes(tensors)
        else:
            data = st.checkpoint_bytes(tensors)
        digest = state_digest or self.state_digest(tensors)
        ck = checkpoint_key(self.run_id, step)
        self.store.create(ck, data)
        pk = blob_sha256 = None
        if pending:
            blob = b"".join(pending)
            pk, blob_sha256 = pending_records_key(self.run_id, step), sha256_hex(blob)
            self.store.create(pk, blob)
        return CheckpointBody(
            step=step,
            state_digest=digest.hex(),
            checkpoint=ck,
            checkpoint_sha256=sha256_hex(data),
            pending_records=pk,
            pending_sha256=blob_sha256,
        )

    def resume(self) -> tuple[int, list[bytes]]:
        """Restores the newest consistent state; returns (next step, this epoch's records so
        far)."""
        last = next(
            e for e in reversed(self.entries) if isinstance(e, (CheckpointEntry, EpochEntry))
        )
        body = last.body.checkpoint if isinstance(last, EpochEntry) else last.body
        data = read_committed(self.store, body.checkpoint, body.checkpoint_sha256)
        if self.canonical is not None:
            step = self.canonical.restore(data, body.checkpoint)
        else:
            live = st.torch_objects(self.model, self.optimizer)
            step = st.restore(*live, st.load_checkpoint(data, body.checkpoint))
        return step, load_pending_records(self.store, body)


def prepare(
    spec: RunSpec, dataset: Dataset | None = None
) -> tuple[Profile, Dataset, torch.nn.Module | None, torch.optim.Optimizer | None]:
    """Everything training builds from the spec; ``dataset`` if the caller loaded it already.
    A canonical run builds no torch objects and leaves torch's settings alone: its state is
    pipeline/train/canonical.py's, made once the manifest digest exists."""
    profile = current_profile(spec.arithmetic, spec.threads)
    dataset = dataset if dataset is not None else load_dataset(spec.dataset, spec.task)
    check_sizes(spec, len(dataset))
    if not isinstance(profile, DeterminismProfile):
        return profile, dataset, None, None
    profile.apply()
    torch.manual_seed(spec.seed)
    model = build_model(spec, dataset)
    optimizer = build_optimizer(spec, model.parameters())
    return profile, dataset, model, optimizer


def check_resumable(manifest: Manifest, spec: RunSpec) -> None:
    """Raises unless this environment may continue the run: same spec, same code, same
    determinism profile, same guest."""
    mkey = manifest_key(manifest.run_id)
    if manifest.spec != spec:
        raise SpecError(f"{mkey}: run {manifest.run_id} exists with another spec; use a new run id")
    require_same_code(manifest.code, spec, mkey)
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
            **code_fields(spec),
        }
        if (shards := dataset.shard_entries()) is not None:
            doc["dataset_shards"] = shards
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
    require_shards(dataset, manifest.dataset_shards, mkey)
    t = Trainer(spec, store, manifest, ledger, entries, dataset, model, optimizer, key)
    if spec.arithmetic == "canonical":
        t.canonical = cn.CanonicalState(spec, dataset, manifest.digest)
    if not any(isinstance(e, CheckpointEntry) for e in entries):
        t.append(t.write_checkpoint(0, t.state(0), [], None))
    return t
