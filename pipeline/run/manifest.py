"""A run: its manifest, key, ledger and the objects it stores, under ``runs/<run_id>/``."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from veritrain.pipeline.documents import DocumentError, load_json
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.code import CodeIdentity
from veritrain.pipeline.run.determinism import PROFILE_TAGS, Profile
from veritrain.pipeline.run.entries import (
    CheckpointBody,
    CheckpointEntry,
    Entry,
    EpochEntry,
    ReceiptEntry,
    RunEntry,
    describe,
)
from veritrain.pipeline.run.ledger import Ledger, canonical_json
from veritrain.pipeline.run.spec import AdamOptimizer, RunSpec, SgdOptimizer
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import manifest_key
from veritrain.prover import RECORD_LEN, CanonicalSettings, EpochClaim
from veritrain.prover.results import Digest

OPTIMIZER_TAG = b"veritrain/optimizer/v1\x00"
MANIFEST_TAG = b"veritrain/manifest/v1\x00"


def default_run_id(spec: RunSpec) -> str:
    """Derived from the spec, so rerunning the same command resumes the same run after a crash
    (training is deterministic: a finished run is simply reported again)."""
    return "run-" + hashlib.sha256(spec.canonical_json().encode()).hexdigest()[:16]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_committed(
    store: Store, key: str, sha256: str, named_by: str = "its ledger entry"
) -> bytes:
    """The object at ``key``, whose bytes must be the ones ``sha256`` (hex) names: the ledger's
    word for every object it points to. Raises IntegrityError naming the object otherwise."""
    return check_committed(key, store.read(key), sha256, named_by)


def check_committed(
    key: str, data: bytes, sha256: str, named_by: str = "its ledger entry"
) -> bytes:
    """``data``, read from ``key``, if ``sha256`` (hex) names it: read_committed's check, for a
    reader that must look at the bytes first (verify says what a substituted receipt is)."""
    if sha256_hex(data) != sha256:
        raise IntegrityError(f"{key}: does not match {named_by}")
    return data


def split_records(blob: bytes) -> list[bytes]:
    """A records object (records/epoch-*.bin, pending records): the step records end to end."""
    n = RECORD_LEN
    return [blob[i : i + n] for i in range(0, len(blob), n)]


def load_epoch_records(store: Store, entry: EpochEntry) -> list[bytes]:
    """An epoch's committed records (the file its ledger entry names by sha256)."""
    return split_records(read_committed(store, entry.body.records, entry.body.records_sha256))


def load_pending_records(store: Store, body: CheckpointBody) -> list[bytes]:
    """A mid-epoch checkpoint's pending records (its epoch's records before it, the file its
    ledger entry names by sha256); none where it has none."""
    if body.pending_records is None or body.pending_sha256 is None:
        return []
    return split_records(read_committed(store, body.pending_records, body.pending_sha256))


def claim_digest(claim: EpochClaim) -> str:
    """``H("veritrain/claim/v1", claim bytes)`` in hex: a receipt entry's ``claim_digest``."""
    return claim.digest().hex()


def manifest_digest(doc: dict[str, Any]) -> bytes:
    """Digest of run.json's content, which every training state holds (pipeline/train/state.py), so
    the claims' state digests, and the receipts over them, bind the manifest. It leaves out
    ``genesis_state_digest``, which is the digest of a state that holds this digest."""
    content = {k: v for k, v in doc.items() if k != "genesis_state_digest"}
    return hashlib.sha256(MANIFEST_TAG + canonical_json(content)).digest()


def canonical_settings(spec: RunSpec) -> CanonicalSettings:
    """A canonical run's settings (PROTOCOL.md §15): its optimizer as fixed-point coefficients
    and its zk_steps_per_epoch."""
    o, k = spec.optimizer, spec.zk_steps_per_epoch
    if isinstance(o, AdamOptimizer):
        b1, b2 = o.betas
        return CanonicalSettings.adam(
            zk_steps_per_epoch=k, beta1=b1, beta2=b2, eps=o.eps, weight_decay=o.weight_decay
        )
    if not isinstance(o, SgdOptimizer):  # RunSpec refuses it; said here to the type checker
        raise ValueError("arithmetic: canonical has sgd and adam only")
    return CanonicalSettings.sgd(
        zk_steps_per_epoch=k, momentum=o.momentum, weight_decay=o.weight_decay
    )


def optimizer_digest(spec: RunSpec) -> bytes:
    """Digest of the constant optimizer settings (PROTOCOL.md §7); each step's hparams digest
    binds it. The spec's optimizer section, with ``max_grad_norm`` and ``micro_batches`` added
    where the spec sets them other than their defaults, so a run without them has the digest
    runs always had. A canonical run's is its canonical settings' digest (PROTOCOL.md §15),
    which the guest reads."""
    if spec.arithmetic == "canonical":
        return canonical_settings(spec).digest()
    settings = spec.optimizer.model_dump(mode="json")
    if spec.max_grad_norm is not None:
        settings["max_grad_norm"] = spec.max_grad_norm
    if spec.micro_batches != 1:
        settings["micro_batches"] = spec.micro_batches
    return hashlib.sha256(OPTIMIZER_TAG + canonical_json(settings)).digest()


class ShardEntry(BaseModel):
    """One shard of a sharded dataset as the run committed to it (PROTOCOL.md §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    samples: Annotated[int, Field(strict=True, gt=0)]
    root: Digest
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Manifest(BaseModel):
    """``run.json``: spec, determinism profile, dataset root, image id, public key, genesis,
    code identity.

    Parsed once, by ``load``; ``raw`` keeps the stored bytes (entry 0 of the ledger commits to
    them) and ``content`` the JSON as stored, which the manifest digest and attestations quote
    as it is, whatever this version's models would make of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol_version: int
    run_id: str
    spec: RunSpec
    determinism: Profile
    dataset_root: Digest
    dataset_len: Annotated[int, Field(strict=True, ge=0)]
    # A sharded dataset's shards, in order; None for any other dataset.
    dataset_shards: list[ShardEntry] | None = None
    steps_per_epoch: Annotated[int, Field(strict=True, gt=0)]
    optimizer_digest: Digest
    image_id: Digest
    public_key: Digest
    genesis_state_digest: Digest
    # What code trained the run (pipeline/run/code.py); None in a run made before it was recorded.
    code: CodeIdentity | None = None
    _raw: bytes = PrivateAttr(b"")
    _content: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def content(self) -> dict[str, Any]:
        return self._content

    @cached_property
    def digest(self) -> bytes:
        return manifest_digest(self._content)

    @classmethod
    def parse(cls, raw: bytes, run_id: str) -> Manifest:
        """The manifest of run ``run_id`` from run.json's bytes; IntegrityError naming the key."""
        key = manifest_key(run_id)
        try:
            content = load_json(raw)
        except DocumentError as e:
            raise IntegrityError(f"{key}: not a valid run manifest ({e})") from None
        except ValueError as e:
            raise IntegrityError(f"{key}: not a valid run manifest (not JSON: {e})") from None
        if not isinstance(content, dict):
            raise IntegrityError(f"{key}: not a valid run manifest (not a JSON object)")
        try:
            manifest = cls.model_validate(content)
        except ValidationError as e:
            why = describe(e, tags=PROFILE_TAGS)
            raise IntegrityError(f"{key}: not a valid run manifest ({why})") from None
        if manifest.run_id != run_id:
            raise IntegrityError(f"{key}: not a valid run manifest (names run {manifest.run_id!r})")
        try:  # a warmup longer than the run, which a spec alone cannot tell
            manifest.spec.schedule_for(manifest.dataset_len)
        except ValueError as e:
            raise IntegrityError(f"{key}: not a valid run manifest (spec.{e})") from None
        manifest._raw, manifest._content = raw, content
        return manifest

    @classmethod
    def load(cls, store: Store, run_id: str) -> Manifest:
        return cls.parse(store.read(manifest_key(run_id)), run_id)


def epoch_entries(entries: list[Entry]) -> dict[int, EpochEntry]:
    return {e.body.epoch: e for e in entries if isinstance(e, EpochEntry)}


def receipt_entries(entries: list[Entry]) -> dict[int, ReceiptEntry]:
    return {e.body.epoch: e for e in entries if isinstance(e, ReceiptEntry)}


def checkpoint_bodies(entries: list[Entry]) -> dict[int, CheckpointBody]:
    """Every checkpoint the ledger names by step: ``checkpoint`` entries and epoch ends (the
    first entry of a step, should the ledger name one twice)."""
    out: dict[int, CheckpointBody] = {}
    for e in entries:
        if isinstance(e, (CheckpointEntry, EpochEntry)):
            body = e.body if isinstance(e, CheckpointEntry) else e.body.checkpoint
            out.setdefault(body.step, body)
    return out


def open_ledger(store: Store, manifest: Manifest) -> tuple[Ledger, list[Entry]]:
    ledger = Ledger(store, manifest.run_id, manifest.public_key.hex())
    entries = ledger.entries()
    key, named_by = manifest_key(manifest.run_id), "ledger entry 0"
    if not entries or not isinstance(entries[0], RunEntry):
        raise IntegrityError(f"{key}: does not match {named_by}")
    check_committed(key, manifest.raw, entries[0].body.manifest_sha256, named_by)
    return ledger, entries


def read_or_none(store: Store, key: str) -> bytes | None:
    try:
        return store.read(key)
    except NotFoundError:
        return None
