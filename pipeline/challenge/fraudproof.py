"""Fraud proofs (docs/OPERATIONS.md "Challenges"): the document, building it, filing it, and
checking it.

A fraud proof (``challenges/<id>.json``, write-once, id = its content's hash) names the agreed
pre-state (the nearest checkpoint at or before the step, with its state digest), the records from
there to the step, the batch reference, the claimed and the recomputed record, and the determinism
profile. ``check_fraud_proof`` upholds or rejects it from the proof and the store alone, by
re-executing its step (pipeline/challenge/replay.py); its verdict is kept beside it
(``challenges/<id>.verdict.json``).

Reading, filing and keying proofs imports no torch: a verifier meets this module on every run
(pipeline/verify/disputes.py), and needs the training stack only to re-execute a proof it finds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import ConflictError, IntegrityError
from veritrain.pipeline.extras import require_extra
from veritrain.pipeline.run.ledger import canonical_json
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import LocalCopy
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import proof_key, verdict_key
from veritrain.prover import RECORD_FIELDS, StepRecord, batch_digest

if TYPE_CHECKING:
    from veritrain.pipeline.challenge.replay import Replay

PROOF_VERSION = 1


def record_view(record: bytes) -> dict[str, str]:
    """The record, its hash and each field's bytes, in hex: how a fraud proof shows a record."""
    view = {name: record[o : o + n].hex() for name, o, n in RECORD_FIELDS}
    record_hash = StepRecord.from_bytes(record).hash().hex()
    return {"record": record.hex(), "record_hash": record_hash, **view}


def differing(claimed: bytes, recomputed: bytes) -> list[str]:
    """The fields whose bytes differ (PROTOCOL.md §3): compared as raw bytes, so a NaN loss or a
    -0.0 grad norm compares by its bits like everything else."""
    return [n for n, o, k in RECORD_FIELDS if claimed[o : o + k] != recomputed[o : o + k]]


def proof_id(proof: dict[str, Any]) -> str:
    """Content address: the same fraud found twice is the same object."""
    return hashlib.sha256(b"veritrain/fraud-proof/v1\x00" + canonical_json(proof)).hexdigest()[:32]


class _PreState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoint_step: int
    checkpoint: str
    checkpoint_sha256: str
    state_digest: str


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epoch: int
    step: int
    indices_digest: str


class _Proof(BaseModel):
    """The proof document's shape; checked before anything in it is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    version: int
    run_id: str
    epoch: int
    step: int
    pre_state: _PreState
    records: list[str]
    batch: _Batch
    claimed: dict[str, str]
    recomputed: dict[str, str]
    differs: list[str]
    determinism: dict[str, Any]


def build_fraud_proof(r: Replay, step: int, recomputed: bytes | None = None) -> dict[str, Any]:
    """The fraud proof for ``step``, from the nearest checkpoint at or before it. ``recomputed``
    (a replay's record of the step) saves re-executing when that replay started there."""
    c = r.nearest_checkpoint(step)
    if recomputed is None:
        r.restore(c)
        for s in range(c, step):
            r.step(s)
        recomputed = r.step(step)
    body = r.checkpoints[c]
    claimed = r.claimed(step)
    return {
        "kind": "veritrain/fraud-proof",
        "version": PROOF_VERSION,
        "run_id": r.run_id,
        "epoch": step // r.spe,
        "step": step,
        # The agreed pre-state: a checkpoint the trainer's ledger commits to, and the trainer's
        # own records from it up to the disputed step, which re-execute as committed.
        "pre_state": {
            "checkpoint_step": c,
            "checkpoint": body.checkpoint,
            "checkpoint_sha256": body.checkpoint_sha256,
            "state_digest": body.state_digest,
        },
        "records": [r.claimed(s).hex() for s in range(c, step)],
        "batch": {
            "epoch": step // r.spe,
            "step": step,
            "indices_digest": batch_digest(r.stepper.batch(step).tolist()).hex(),
        },
        "claimed": record_view(claimed),
        "recomputed": record_view(recomputed),
        "differs": differing(claimed, recomputed),
        "determinism": r.profile.model_dump(),
    }


def file_fraud_proof(store: Store, proof: dict[str, Any]) -> tuple[str, str]:
    """Writes the proof under the run's challenges/ (write-once); returns (id, key)."""
    pid = proof_id(proof)
    key = proof_key(proof["run_id"], pid)
    store.create(key, json.dumps(proof, indent=1, sort_keys=True).encode())
    return pid, key


@dataclass
class Verdict:
    proof_id: str
    run_id: str
    upheld: bool
    reason: str
    epoch: int | None = None
    step: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "proof": self.proof_id,
            "run_id": self.run_id,
            "verdict": "upheld" if self.upheld else "rejected",
            "reason": self.reason,
            "epoch": self.epoch,
            "step": self.step,
        }


def check_fraud_proof(
    store: Store, proof: Any, run_id: str | None = None, local: LocalCopy | None = None
) -> Verdict:
    """Upholds or rejects a fraud proof by re-executing its step from its pre-state, reading
    nothing but the proof and the run's store (whose ledger is checked, so the committed records
    and checkpoints are the trainer's own), and the run's dataset and code (from ``local`` where
    given).

    A malformed, tampered or wrong proof is rejected with a reason. DeterminismError (this
    environment cannot replay the run) and StorageError (cannot read) are raised instead: they
    mean "could not check", not "checked and wrong".
    """
    pid = proof_id(proof) if isinstance(proof, dict) else "?"
    rid = run_id or (proof.get("run_id") if isinstance(proof, dict) else None) or "?"

    def reject(reason: str, epoch: int | None = None, step: int | None = None) -> Verdict:
        return Verdict(pid, rid, False, reason, epoch, step)

    try:
        p = _Proof.model_validate(proof)
    except ValidationError as invalid:
        err = invalid.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        return reject(f"not a fraud proof: {where}: {err['msg']}")
    s, e = p.step, p.epoch
    if p.kind != "veritrain/fraud-proof" or p.version != PROOF_VERSION:
        return reject(f"not a version {PROOF_VERSION} veritrain fraud proof", e, s)
    if run_id is not None and p.run_id != run_id:
        return reject(f"the proof is about run {p.run_id}, not {run_id}", e, s)
    manifest = Manifest.load(store, p.run_id)
    if p.determinism != manifest.determinism.model_dump():
        return reject("the proof names another determinism profile than the run's run.json", e, s)
    r = _replay(store, p.run_id, local)  # DeterminismError here: this environment cannot check it
    if not 0 <= s < r.committed_steps() or e != s // r.spe:
        return reject(f"step {s} of epoch {e} is not a committed step of the run", e, s)
    c = r.nearest_checkpoint(s)
    body = r.checkpoints[c]
    pre = p.pre_state
    if (pre.checkpoint_step, pre.checkpoint, pre.checkpoint_sha256, pre.state_digest) != (
        c,
        body.checkpoint,
        body.checkpoint_sha256,
        body.state_digest,
    ):
        # The nearest checkpoint bounds a checker's work by checkpoint_every steps.
        return reject(
            f"the pre-state is not the run's nearest checkpoint at or before step {s} "
            f"(step {c}, {body.checkpoint})",
            e,
            s,
        )
    if len(p.records) != s - c:
        return reject(f"the proof must carry the {s - c} records of steps {c}..{s - 1}", e, s)
    for i, rec in enumerate(p.records):
        if rec != r.claimed(c + i).hex():
            return reject(f"its record of step {c + i} is not the run's committed record", e, s)
    claimed = r.claimed(s)
    if p.claimed != record_view(claimed):
        return reject(f"its claimed record is not the run's committed record of step {s}", e, s)
    indices = batch_digest(r.stepper.batch(s).tolist()).hex()
    if p.batch != _Batch(epoch=e, step=s, indices_digest=indices):
        return reject(f"its batch reference is not the sampler's batch of step {s}", e, s)
    try:
        r.restore(c)
    except IntegrityError as err:
        return reject(f"its pre-state cannot be restored: {err}", e, s)
    for t in range(c, s):
        replayed = r.step(t)
        if replayed != r.claimed(t):
            return reject(
                f"step {t}, before step {s}, already re-executes differently "
                f"({', '.join(differing(r.claimed(t), replayed))}): a proof names the first step "
                "that differs",
                e,
                s,
            )
    recomputed = r.step(s)
    if recomputed == claimed:
        return reject(f"step {s} re-executes to exactly its committed record", e, s)
    if p.recomputed != record_view(recomputed) or p.differs != differing(claimed, recomputed):
        return reject(f"its recomputed record is not what step {s} re-executes to", e, s)
    return Verdict(
        pid,
        p.run_id,
        True,
        f"step {s} (epoch {e}) re-executes from checkpoint step {c} to another "
        f"{', '.join(p.differs)} than the run committed",
        e,
        s,
    )


def record_verdict(store: Store, verdict: Verdict) -> str | None:
    """Keeps the verdict beside its proof (write-once); returns its key, or None if another
    verdict is already there (the first one stays; verify re-checks the proof regardless)."""
    key = verdict_key(verdict.run_id, verdict.proof_id)
    try:
        store.create(key, json.dumps(verdict.to_json(), indent=1, sort_keys=True).encode())
    except ConflictError:
        return None
    return key


def read_proof(store: Store, run_id: str, pid: str) -> Any:
    """A filed proof's document; a key that is not its content's id is a substituted proof."""
    key = proof_key(run_id, pid)
    data = store.read(key)
    try:
        doc = load_json(data)
    except ValueError:  # a DocumentError too: too large or too deep is not a proof
        return None
    return doc if isinstance(doc, dict) and proof_id(doc) == pid else None


def check_filed_proof(
    store: Store, run_id: str, pid: str, local: LocalCopy | None = None
) -> Verdict:
    doc = read_proof(store, run_id, pid)
    if doc is None:
        return Verdict(
            pid,
            run_id,
            False,
            f"{proof_key(run_id, pid)}: not JSON, or not the "
            "proof its id names (a proof's id is its content's hash)",
        )
    v = check_fraud_proof(store, doc, run_id, local)
    v.proof_id = pid
    return v


def _replay(store: Store, run_id: str, local: LocalCopy | None) -> Replay:
    """The run's replay, for checking a proof. MissingExtraError without the training stack: like
    another determinism profile, this environment cannot check it."""
    require_extra("train", "re-executing a fraud proof's step")
    from veritrain.pipeline.challenge.replay import Replay

    return Replay(store, run_id, local)
