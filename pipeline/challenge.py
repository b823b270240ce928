"""Optimistic challenges (DESIGN.md "Challenges"): replay, bisection, fraud proofs, disputes.

A challenger re-executes committed steps with the trainer's own step function
(``pipeline.train.Stepper``), starting from a checkpoint named in the run's signed ledger, under
the determinism profile recorded in ``run.json``, and compares every committed field of every
replayed record: the previous record hash, the batch digest, the hparams digest, the loss and
grad-norm bits, the param digest and, where the trainer took one, the state digest.

- ``replay_range`` is the complete check: it replays every step of a range, so "no fraud found"
  covers every record in it. A replay from checkpoint c agrees with the run exactly as long as
  the run's records do, so its first mismatch is the first wrong step.
- ``bisect_range`` finds a wrong step in ``ceil(log2(n + 1))`` probes, each replaying at most
  ``checkpoint_every`` steps from the nearest checkpoint. Every step it reports is a real fraud,
  but it is the *first* one only while the deviation persists to the end of the range: a probe
  starts from the trainer's own checkpoint, so a single deviation that the trainer folded into its
  later checkpoints is invisible to probes past the next checkpoint. No method that replays fewer
  steps than the range can be complete; see docs/OPERATIONS.md, "Challenges".
- A fraud proof (``challenges/<id>.json``, write-once, id = its content's hash) names the agreed
  pre-state (the nearest checkpoint at or before the step, with its state digest), the records
  from there to the step, the batch reference, the claimed and the recomputed record, and the
  determinism profile. ``check_fraud_proof`` upholds or rejects it from the proof and the store
  alone; its verdict is kept beside it (``challenges/<id>.verdict.json``).
- ``disputes`` re-checks every filed proof for verify and status: the ledger is signed with the
  trainer's key, so a challenger cannot append to it, and a verdict file proves nothing by itself.

Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline import layout
from pipeline import state as st
from pipeline.determinism import DeterminismProfile
from pipeline.errors import (
    ConflictError,
    DeterminismError,
    IntegrityError,
    StorageError,
    UsageError,
)
from pipeline.finalize import load_epoch_records
from pipeline.ledger import canonical_json
from pipeline.run import Manifest, epoch_entries, keys, open_ledger, sha256_hex
from pipeline.store import NotFoundError, Store
from pipeline.train import RECORD_LEN, Stepper, _setup, commitments
from prover import VeritrainError, _native

PROOF_VERSION = 1

# A record's fields: name -> (offset, size) in its 224 bytes (PROTOCOL.md §3). Compared as raw
# bytes, so a NaN loss or a -0.0 grad norm compares by its bits like everything else.
RECORD_FIELDS = {
    "version": (0, 4),
    "flags": (4, 4),
    "run_id": (8, 32),
    "epoch": (40, 8),
    "step": (48, 8),
    "prev_record_hash": (56, 32),
    "batch_digest": (88, 32),
    "hparams_digest": (120, 32),
    "loss": (152, 4),
    "grad_norm": (156, 4),
    "param_digest": (160, 32),
    "state_digest": (192, 32),
}


def record_view(record: bytes) -> dict[str, str]:
    """The record, its hash and each field's bytes, in hex: how a fraud proof shows a record."""
    view = {name: record[o : o + n].hex() for name, (o, n) in RECORD_FIELDS.items()}
    return {"record": record.hex(), "record_hash": _native.record_hash(record).hex(), **view}


def differing(claimed: bytes, recomputed: bytes) -> list[str]:
    return [n for n, (o, k) in RECORD_FIELDS.items() if claimed[o : o + k] != recomputed[o : o + k]]


def challenges_prefix(run_id: str) -> str:
    return f"{keys(run_id)['base']}/challenges/"


def proof_key(run_id: str, proof_id: str) -> str:
    return f"{challenges_prefix(run_id)}{proof_id}.json"


def verdict_key(run_id: str, proof_id: str) -> str:
    return f"{challenges_prefix(run_id)}{proof_id}.verdict.json"


def proof_id(proof: dict[str, Any]) -> str:
    """Content address: the same fraud found twice is the same object."""
    return hashlib.sha256(b"veritrain/fraud-proof/v1\x00" + canonical_json(proof)).hexdigest()[:32]


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

    Raises DeterminismError (naming the field) unless this environment has the run's recorded
    determinism profile: a replay anywhere else would differ in the last bits and prove nothing.
    Likewise ReplayEnvironmentError unless the spec's dataset here has the run's dataset root.
    """

    def __init__(self, store: Store, run_id: str):
        self.store = store
        self.manifest = Manifest.load(store, run_id)
        _, self.entries = open_ledger(store, self.manifest)  # chain and signatures checked
        self.run_id = run_id
        self.spec = self.manifest.spec
        self.spe = self.manifest.steps_per_epoch
        self.profile = DeterminismProfile.model_validate(self.manifest.doc["determinism"])
        DeterminismProfile.current(self.spec.threads).require_same(self.profile)
        _, dataset, self.model, self.optimizer = _setup(self.spec)
        if dataset.root().hex() != self.manifest.doc["dataset_root"]:
            raise ReplayEnvironmentError(
                f"{keys(run_id)['manifest']}: the spec's dataset here does not have the run's "
                "dataset root; a replay needs the very samples the run trained on"
            )
        opt_digest = bytes.fromhex(self.manifest.doc["optimizer_digest"])
        self.stepper = Stepper(
            run_id, self.spec, self.spe, opt_digest, dataset, self.model, self.optimizer
        )
        # Checkpoint step -> its ledger body ("checkpoint" entries, and epoch ends in "epoch").
        self.checkpoints: dict[int, dict] = {}
        for e in self.entries:
            body = e.body if e.kind == "checkpoint" else e.body.get("checkpoint")
            if e.kind in ("checkpoint", "epoch") and isinstance(body, dict):
                self.checkpoints.setdefault(int(body["step"]), body)
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
                    b for s, b in self.checkpoints.items()
                    if epoch * self.spe < s < (epoch + 1) * self.spe and "pending_records" in b
                ]
                if inside:
                    recs = self._pending(max(inside, key=lambda b: b["step"]))
            self._records[epoch] = recs
        return self._records[epoch]

    def _pending(self, body: dict) -> list[bytes]:
        key = body["pending_records"]
        blob = self.store.read(key)
        if sha256_hex(blob) != body["pending_sha256"]:
            raise IntegrityError(f"{key}: does not match its ledger entry")
        return [blob[i : i + RECORD_LEN] for i in range(0, len(blob), RECORD_LEN)]

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
        key = body["checkpoint"]
        data = self.store.read(key)
        if sha256_hex(data) != body["checkpoint_sha256"]:
            raise IntegrityError(f"{key}: does not match its ledger entry")
        layout.check_tensors(self.spec, c, layout.read_header(data, key), data, key,
                             self.manifest.digest)
        tensors = st.load_checkpoint(data, key)
        digest = st.digest_tensors(tensors)
        if digest.hex() != body["state_digest"]:
            raise IntegrityError(f"{key}: recomputed state digest is not its ledger entry's")
        if c == 0:
            stated = bytes.fromhex(self.manifest.doc["genesis_state_digest"])
        else:
            stated = _native.decode_record(self.claimed(c - 1))["state_digest"]
        if digest != stated:
            raise IntegrityError(f"{key}: not the state the record of step {c - 1} commits to")
        if "pending_records" in body:
            epoch = c // self.spe
            if self._pending(body) != self._epoch_records(epoch)[: c - epoch * self.spe]:
                raise IntegrityError(
                    f"{body['pending_records']}: not the epoch's committed records up to step {c}"
                )
        if st.restore(self.model, self.optimizer, tensors, key) != c:
            raise IntegrityError(f"{key}: its step counter is not {c}")

    def link(self, step: int) -> bytes:
        """The previous record hash the record of ``step`` must carry."""
        if step > 0:
            return _native.record_hash(self.claimed(step - 1))
        m = self.manifest.doc
        return _native.genesis_hash(
            self.run_id,
            bytes.fromhex(m["genesis_state_digest"]),
            bytes.fromhex(m["dataset_root"]),
            self.spec.seed,
        )

    def step(self, step: int) -> bytes:
        """Re-executes ``step`` from the live state; returns the record it should have."""
        fields = self.stepper.step(step)
        take_state, _ = commitments(self.spec, self.spe, step)
        if take_state:
            tensors = st.state_tensors(self.model, self.optimizer, step + 1, self.manifest.digest)
            fields["state_digest"] = st.digest_tensors(tensors)
        fields["param_digest"] = st.digest_tensors(st.param_tensors(self.model))
        fields["prev_record_hash"] = self.link(step)
        self.replayed += 1
        return _native.encode_record(fields)

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


@dataclass
class ChallengeResult:
    run_id: str
    first: int
    end: int
    method: str  # "replay" or "bisect"
    probes: int
    replayed_steps: int
    finding: Finding | None = None
    proof_id: str | None = None
    proof_key: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def probe_bound(self) -> int:
        """Bisection's worst case: one of n steps, or none, is ceil(log2(n + 1)) probes."""
        return math.ceil(math.log2(self.end - self.first + 1))

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "run_id": self.run_id,
            "steps": [self.first, self.end],
            "method": self.method,
            "probes": self.probes,
            "probe_bound": self.probe_bound if self.method == "bisect" else None,
            "replayed_steps": self.replayed_steps,
            "fraud": f is not None,
            "step": f.step if f else None,
            "epoch": f.epoch if f else None,
            "fields": f.fields if f else [],
            "proof_id": self.proof_id,
            "proof": self.proof_key,
            "notes": self.notes,
        }


def parse_steps(text: str | None, committed: int) -> tuple[int, int]:
    """``A:B`` (either side may be empty) -> a half-open range inside the committed steps."""
    if text is None:
        first, end = 0, committed
    else:
        a, sep, b = text.partition(":")
        try:
            if not sep:
                raise ValueError
            first, end = int(a) if a else 0, int(b) if b else committed
        except ValueError:
            raise UsageError(f"--steps: {text!r} is not A:B (global steps, B excluded)") from None
    if not 0 <= first < end <= committed:
        raise UsageError(
            f"--steps: [{first}, {end}) is not a non-empty range of the run's "
            f"{committed} committed steps"
        )
    return first, end


def replay_range(r: Replay, first: int, end: int) -> ChallengeResult:
    """The naive linear replay: from the nearest checkpoint at or before ``first`` through
    ``end - 1``, every record compared. Complete for the range; stops at the first wrong step
    (which may lie before ``first``, on the way from the checkpoint)."""
    before = r.replayed
    finding = r.scan(r.nearest_checkpoint(first), end - 1)
    n = r.replayed - before
    # Each replayed step is compared, so a linear replay's probes are its steps.
    return ChallengeResult(r.run_id, first, end, "replay", n, n, finding)


def bisect_range(r: Replay, first: int, end: int) -> ChallengeResult:
    """Binary search for a wrong step in [first, end): a probe at m replays from the nearest
    checkpoint at or before m through m, comparing every record on the way.

    Invariant: the probes so far agree through ``lo`` and disagree at ``hi`` (``end``: none seen).
    A probe that first disagrees at s > its checkpoint settles the search at s, since the steps
    from its checkpoint up to s agree; one that disagrees at its checkpoint's own step moves
    ``hi`` there. Whatever it reports is a real fraud (the steps from its checkpoint up to it
    agree and it does not); it is the first wrong step when the deviation persists to ``end``.
    """
    before, probes = r.replayed, 0
    lo, hi, finding = first - 1, end, None
    while hi - lo > 1:
        m = (lo + hi) // 2
        c = r.nearest_checkpoint(m)
        probes += 1
        f = r.scan(c, m)
        if f is None:
            lo = m
            continue
        hi, finding = f.step, f
        if f.step > c:
            break
    result = ChallengeResult(r.run_id, first, end, "bisect", probes, r.replayed - before, finding)
    if finding is None:
        result.notes.append(
            "bisection saw no disagreement at the probes; it is complete only for deviations that "
            "persist to the end of the range (replay without --bisect checks every step)"
        )
    return result


# Fraud proofs.


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
            "checkpoint": body["checkpoint"],
            "checkpoint_sha256": body["checkpoint_sha256"],
            "state_digest": body["state_digest"],
        },
        "records": [r.claimed(s).hex() for s in range(c, step)],
        "batch": {
            "epoch": step // r.spe,
            "step": step,
            "indices_digest": _native.batch_digest(r.stepper.batch(step).tolist()).hex(),
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


def check_fraud_proof(store: Store, proof: Any, run_id: str | None = None) -> Verdict:
    """Upholds or rejects a fraud proof by re-executing its step from its pre-state, reading
    nothing but the proof and the run's store (whose ledger is checked, so the committed records
    and checkpoints are the trainer's own).

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
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        return reject(f"not a fraud proof: {where}: {err['msg']}")
    s, e = p.step, p.epoch
    if p.kind != "veritrain/fraud-proof" or p.version != PROOF_VERSION:
        return reject(f"not a version {PROOF_VERSION} veritrain fraud proof", e, s)
    if run_id is not None and p.run_id != run_id:
        return reject(f"the proof is about run {p.run_id}, not {run_id}", e, s)
    manifest = Manifest.load(store, p.run_id)
    if p.determinism != manifest.doc["determinism"]:
        return reject("the proof names another determinism profile than the run's run.json", e, s)
    r = Replay(store, p.run_id)  # DeterminismError here: this environment cannot check it
    if not 0 <= s < r.committed_steps() or e != s // r.spe:
        return reject(f"step {s} of epoch {e} is not a committed step of the run", e, s)
    c = r.nearest_checkpoint(s)
    body = r.checkpoints[c]
    pre = p.pre_state
    if (pre.checkpoint_step, pre.checkpoint, pre.checkpoint_sha256, pre.state_digest) != (
        c, body["checkpoint"], body["checkpoint_sha256"], body["state_digest"]
    ):
        # The nearest checkpoint bounds a checker's work by checkpoint_every steps.
        return reject(
            f"the pre-state is not the run's nearest checkpoint at or before step {s} "
            f"(step {c}, {body['checkpoint']})", e, s,
        )
    if len(p.records) != s - c:
        return reject(f"the proof must carry the {s - c} records of steps {c}..{s - 1}", e, s)
    for i, rec in enumerate(p.records):
        if rec != r.claimed(c + i).hex():
            return reject(f"its record of step {c + i} is not the run's committed record", e, s)
    claimed = r.claimed(s)
    if p.claimed != record_view(claimed):
        return reject(f"its claimed record is not the run's committed record of step {s}", e, s)
    indices = _native.batch_digest(r.stepper.batch(s).tolist()).hex()
    if p.batch != _Batch(epoch=e, step=s, indices_digest=indices):
        return reject(f"its batch reference is not the sampler's batch of step {s}", e, s)
    try:
        r.restore(c)
    except IntegrityError as err:
        return reject(f"its pre-state cannot be restored: {err}", e, s)
    for t in range(c, s):
        rec = r.step(t)
        if rec != r.claimed(t):
            return reject(
                f"step {t}, before step {s}, already re-executes differently "
                f"({', '.join(differing(r.claimed(t), rec))}): a proof names the first step "
                "that differs", e, s,
            )
    recomputed = r.step(s)
    if recomputed == claimed:
        return reject(f"step {s} re-executes to exactly its committed record", e, s)
    if p.recomputed != record_view(recomputed) or p.differs != differing(claimed, recomputed):
        return reject(f"its recomputed record is not what step {s} re-executes to", e, s)
    return Verdict(
        pid, p.run_id, True,
        f"step {s} (epoch {e}) re-executes from checkpoint step {c} to another "
        f"{', '.join(p.differs)} than the run committed", e, s,
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
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and proof_id(doc) == pid else None


def check_filed_proof(store: Store, run_id: str, pid: str) -> Verdict:
    doc = read_proof(store, run_id, pid)
    if doc is None:
        return Verdict(pid, run_id, False, f"{proof_key(run_id, pid)}: not JSON, or not the "
                       "proof its id names (a proof's id is its content's hash)")
    v = check_fraud_proof(store, doc, run_id)
    v.proof_id = pid
    return v


def challenge(
    store: Store, run_id: str, steps: str | None = None, bisect: bool = False
) -> ChallengeResult:
    """Replays (or bisects) a range of a run's committed steps; on a wrong step, files a fraud
    proof under challenges/ and returns its id and key."""
    r = Replay(store, run_id)
    first, end = parse_steps(steps, r.committed_steps())
    result = (bisect_range if bisect else replay_range)(r, first, end)
    f = result.finding
    if f is not None:
        # A linear replay may have started further back; the proof starts at the nearest
        # checkpoint, which the replay passed with matching state digests, so it agrees.
        same_start = f.checkpoint == r.nearest_checkpoint(f.step)
        proof = build_fraud_proof(r, f.step, f.recomputed if same_start else None)
        if proof["recomputed"]["record"] != f.recomputed.hex():
            raise IntegrityError(
                f"step {f.step} re-executed two ways to two records: this environment does not "
                "replay deterministically"
            )
        result.proof_id, result.proof_key = file_fraud_proof(store, proof)
    return result


@dataclass
class Disputes:
    """The run's filed fraud proofs, each re-checked here."""

    upheld: list[Verdict] = field(default_factory=list)
    rejected: list[Verdict] = field(default_factory=list)
    # (proof id, epoch it names or None, why it could not be checked in this environment)
    unchecked: list[tuple[str, int | None, str]] = field(default_factory=list)

    def for_epoch(self, epoch: int) -> tuple[bool, str, bool]:
        """(check ok, detail, disputed) for an epoch: an upheld proof disputes its epoch and
        every later one; a proof that cannot be checked here leaves them unconfirmed."""
        hits = [v for v in self.upheld if v.epoch is not None and v.epoch <= epoch]
        if hits:
            v = min(hits, key=lambda v: v.step or 0)
            where = "" if v.epoch == epoch else f"follows disputed epoch {v.epoch}: "
            return False, f"{where}fraud proof {v.proof_id} upheld: {v.reason}", True
        blocked = [u for u in self.unchecked if u[1] is None or u[1] <= epoch]
        if blocked:
            pid, _, why = blocked[0]
            return False, f"fraud proof {pid} could not be checked here: {why}", False
        n = len(self.upheld) + len(self.rejected) + len(self.unchecked)
        if not n:
            return True, "no fraud proof filed", False
        return True, f"{n} fraud proof(s) filed, none upheld up to this epoch", False


def disputes(store: Store, run_id: str) -> Disputes:
    """Re-checks every proof under the run's challenges/ (never trusting a stored verdict)."""
    out = Disputes()
    prefix = challenges_prefix(run_id)
    for key in store.list(prefix):
        name = key[len(prefix) :]
        if not name.endswith(".json") or name.endswith(".verdict.json"):
            continue
        pid = name.removesuffix(".json")
        try:
            v = check_filed_proof(store, run_id, pid)
        except StorageError as err:
            if not isinstance(err, NotFoundError):
                raise  # could not look at all: the caller reports a storage error
            out.unchecked.append((pid, _named_epoch(store, run_id, pid), str(err)))
            continue
        except VeritrainError as err:  # another determinism profile here, a broken run
            out.unchecked.append((pid, _named_epoch(store, run_id, pid), str(err)))
            continue
        (out.upheld if v.upheld else out.rejected).append(v)
    return out


def _named_epoch(store: Store, run_id: str, pid: str) -> int | None:
    """The epoch an unchecked proof names: the epochs it would dispute stay unconfirmed."""
    doc = read_proof(store, run_id, pid)
    epoch = doc.get("epoch") if doc else None
    return epoch if isinstance(epoch, int) else None
