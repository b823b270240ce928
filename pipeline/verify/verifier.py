"""Verification of a stored run: named checks per epoch, each pass or fail, never trusting the
trainer. Nothing here writes to the store."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from veritrain.pipeline.checkpoint.digest import checkpoint_digest
from veritrain.pipeline.checkpoint.tensors import (
    TensorInfo,
    check_tensors,
    read_header,
    same_layout,
)
from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import DeterminismError, IntegrityError, StorageError
from veritrain.pipeline.run.determinism import CanonicalProfile, DeterminismProfile, machine_profile
from veritrain.pipeline.run.entries import (
    CheckpointBody,
    CheckpointEntry,
    Entry,
    EpochEntry,
    ReceiptBody,
    ReceiptEntry,
)
from veritrain.pipeline.run.manifest import (
    Manifest,
    check_committed,
    claim_digest,
    epoch_entries,
    load_epoch_records,
    open_ledger,
    optimizer_digest,
    read_committed,
    receipt_entries,
)
from veritrain.pipeline.run.spec import RunSpec
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import ledger_key, manifest_key, run_prefix
from veritrain.pipeline.store.uris import run_uri
from veritrain.pipeline.verify.disputes import disputes
from veritrain.pipeline.verify.finality import Sighting, first_sightings, window_start
from veritrain.pipeline.verify.policy import Policy
from veritrain.prover import (
    EpochClaim,
    StepRecord,
    VeritrainError,
    check_records,
    image_id,
    receipt_kind,
    verify_receipt,
)
from veritrain.prover.errors import message

COMMITTED, PROVEN, FINAL, DISPUTED = "committed", "proven", "final", "disputed"
# Proven and past its window, but no one the verifier trusts to replay the run's determinism
# profile could have challenged it: the optimistic guarantee did not hold (docs/OPERATIONS.md).
UNREPLAYABLE = "unreplayable"

_HEX = "^[0-9a-f]{64}$"
_CHECK = {
    "type": "object",
    "required": ["name", "ok", "detail"],
    "properties": {
        "name": {"type": "string"},
        "ok": {"type": "boolean"},
        "detail": {"type": "string"},
    },
}
# The document `veritrain verify --json` prints (docs/schemas/verify.schema.json).
VERIFY_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "veritrain verify --json",
    "type": "object",
    "required": ["ok", "run_id", "image_id", "trust", "checks", "epochs"],
    "properties": {
        "ok": {"type": "boolean"},
        "run_id": {"type": "string"},
        # Empty when the run's manifest cannot be read (its "manifest" check says why).
        "image_id": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
        # What the verifier trusted and required (pipeline/verify/policy.py); the checks image_id,
        # trainer_key, required_status and required_guarantees apply it.
        "trust": {
            "type": "object",
            "required": [
                "image_ids",
                "trainer",
                "trainer_keys",
                "require_pinned",
                "required_status",
                "required_guarantees",
            ],
            "properties": {
                "image_ids": {"type": "array", "items": {"type": "string", "pattern": _HEX}},
                "trainer": {"enum": ["pinned", "unpinned"]},
                "trainer_keys": {"type": "array", "items": {"type": "string", "pattern": _HEX}},
                "require_pinned": {"type": "boolean"},
                "required_status": {"enum": ["proven", "final", None]},
                "required_guarantees": {"type": "array", "items": {"type": "string"}},
            },
        },
        "checks": {"type": "array", "items": _CHECK},
        "epochs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["epoch", "status", "ok", "checks"],
                "properties": {
                    "epoch": {"type": "integer", "minimum": 0},
                    "status": {"enum": [COMMITTED, PROVEN, FINAL, UNREPLAYABLE, DISPUTED]},
                    "ok": {"type": "boolean"},
                    "first_step": {"type": "integer"},
                    "step_count": {"type": "integer"},
                    "end_state_digest": {"type": "string"},
                    "checks": {"type": "array", "items": _CHECK},
                },
            },
        },
    },
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class EpochReport:
    epoch: int
    status: str
    first_step: int
    step_count: int
    end_state_digest: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class RunReport:
    run_id: str
    image_id: str
    trust: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    epochs: list[EpochReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and all(e.ok for e in self.epochs)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "image_id": self.image_id,
            "trust": self.trust,
            "checks": [asdict(c) for c in self.checks],
            "epochs": [e.to_json() for e in self.epochs],
        }


def _run_check(checks: list[Check], name: str, fn) -> object:
    """Runs one named check; integrity and prover errors fail it, storage errors propagate
    (they mean "could not look", not "looked and it is wrong") except a missing object. Only
    VeritrainError fails a check: anything else is a bug here, which must not read as tampering
    (malformed stored data is an IntegrityError where it is parsed, pipeline/run/entries.py)."""
    try:
        result = fn()
    except NotFoundError as e:
        checks.append(Check(name, False, str(e)))
        return None
    except StorageError:
        raise
    except VeritrainError as e:
        checks.append(Check(name, False, message(e)))
        return None
    checks.append(Check(name, True, result if isinstance(result, str) else ""))
    return result if result is not None else True


def verify_run(
    store: Store,
    run_id: str,
    epoch: int | None = None,
    now: float | None = None,
    *,
    audit: bool = False,
    replayable: list[DeterminismProfile] | None = None,
    state: Path | None = None,
    policy: Policy | None = None,
) -> RunReport:
    """Verifies a run, or one epoch of it. With ``audit`` the store is an audit folder
    (pipeline/verify/audit.py): only the epoch-end checkpoint is expected, and an epoch without a
    receipt fails, since an auditor asks about a finalized epoch.

    ``replayable`` are the determinism profiles the verifier can replay (or trusts someone to):
    by default this machine's. A proven epoch past its window is ``final`` only if one of them
    replays the run's profile, else ``unreplayable``. ``state`` is the verifier's state folder
    (pipeline/verify/finality.py) where it keeps when it first saw each receipt.

    ``policy`` names the guests and trainers the verifier trusts and what it requires of each
    epoch (pipeline/verify/policy.py); by default this installation's guest and any trainer. A run
    whose guest or trainer it does not trust is not verified further: nothing its receipts or
    signatures say would count."""
    now = time.time() if now is None else now
    policy = Policy() if policy is None else policy
    report = RunReport(run_id=run_id, image_id="", trust=policy.trust_json())
    manifest = _run_check(report.checks, "manifest", lambda: _load_manifest(store, run_id))
    if not manifest:
        return report
    report.image_id = manifest.image_id.hex()
    where = manifest_key(run_id)
    trainer = manifest.public_key.hex()
    trusted = [
        _run_check(
            report.checks, "image_id", lambda: policy.check_image_id(manifest.image_id, where)
        ),
        _run_check(report.checks, "trainer_key", lambda: policy.check_trainer_key(trainer, where)),
    ]
    if not all(trusted):
        return report
    entries = _run_check(report.checks, "ledger", lambda: _open_checked_ledger(store, manifest))
    if not entries:
        return report
    can_replay = _run_check(
        report.checks, "replayable", lambda: _check_replayable(manifest, replayable)
    )
    epochs = epoch_entries(entries)
    receipts = receipt_entries(entries)
    wanted = sorted(epochs) if epoch is None else [epoch]
    if epoch is not None and epoch not in epochs:
        report.checks.append(Check("epoch_exists", False, f"run {run_id} has no epoch {epoch}"))
        return report
    # Every filed fraud proof is re-executed here: a verdict file is not evidence, since anyone
    # who can write the store can write one (docs/OPERATIONS.md, "Challenges").
    challenged = disputes(store, run_id)
    reports = [
        _verify_epoch(store, manifest, entries, epochs, receipts, e, audit=audit) for e in wanted
    ]
    _settle_windows(store, manifest, receipts, reports, now, state, bool(can_replay))
    for rep in reports:
        ok, detail, disputed = challenged.for_epoch(rep.epoch)
        rep.checks.append(Check("challenges", ok, detail))
        if disputed:
            rep.status = DISPUTED
        _check_requirements(rep, policy, epochs[rep.epoch].body.claim)
        report.epochs.append(rep)
    if policy.required_status and not reports:
        report.checks.append(
            Check(
                "required_status",
                False,
                f"the run has no committed epoch, so none is {policy.required_status}",
            )
        )
    return report


def _check_requirements(rep: EpochReport, policy: Policy, claim: EpochClaim) -> None:
    """What the policy requires of every verified epoch, once its status is settled. The claim
    is the ledger's, which the receipt's journal equals where the epoch is proven."""
    if policy.required_status:
        _run_check(rep.checks, "required_status", lambda: policy.check_status(rep.status))
    if policy.required_guarantees:
        _run_check(
            rep.checks, "required_guarantees", lambda: policy.check_guarantees(claim.guarantees)
        )


def _check_replayable(manifest: Manifest, profiles: list[DeterminismProfile] | None) -> str:
    """The run's determinism profile is one the verifier can replay (MACHINE_FIELDS compared):
    otherwise no challenge could re-execute its steps."""
    where = manifest_key(manifest.run_id)
    if isinstance(manifest.determinism, CanonicalProfile):
        return (
            f"canonical arithmetic, protocol {manifest.determinism.protocol_version}: "
            "replayable on any machine"
        )
    if profiles is None:
        mine, source = machine_profile()
        profiles = [mine] if mine else []
    else:
        source = "the profiles declared with --replayable-profile"
    recorded = manifest.determinism
    if any(p.machine_difference(recorded) is None for p in profiles):
        return f"torch {recorded.torch_version}, {recorded.cpu_capability}: replayable by {source}"
    if not profiles:
        why = f"no profile is replayable here ({source})"
    else:
        field = profiles[0].machine_difference(recorded)
        why = (
            f"it differs in {field} ({getattr(recorded, field)!r}) from {source} "
            f"({', '.join(repr(getattr(p, field)) for p in profiles)})"
        )
    raise DeterminismError(
        f"{where}: the run's determinism profile cannot be replayed: {why}; no challenge could "
        "re-execute its steps, so its epochs are not final (declare the profiles you can "
        "replay with --replayable-profile FILE)"
    )


def _settle_windows(
    store: Store,
    manifest: Manifest,
    receipts: dict[int, ReceiptEntry],
    reports: list[EpochReport],
    now: float,
    state: Path | None,
    can_replay: bool,
) -> None:
    """Proven epochs whose challenge window has passed become final (or unreplayable). The
    window starts when the verifier first saw the receipt, or later where the store's server
    wrote it later (pipeline/verify/finality.py); never at the trainer's ``proven_at``."""
    proven = [r for r in reports if r.status == PROVEN]
    seen = {
        r.epoch: Sighting(manifest.run_id, r.epoch, receipts[r.epoch].body.receipt_sha256)
        for r in proven
    }
    first = first_sightings(list(seen.values()), now, state)
    window = manifest.spec.challenge_window
    for r in proven:
        server = store.server_time(receipts[r.epoch].body.receipt)
        start = window_start(first[seen[r.epoch].key], server)
        if now >= start + window:
            r.status = FINAL if can_replay else UNREPLAYABLE


def _load_manifest(store: Store, run_id: str) -> Manifest:
    """The manifest; missing while the run has other objects is a failed check (someone removed
    it), but a run with no objects at all does not exist: a storage error (exit 3)."""
    try:
        return Manifest.load(store, run_id)
    except NotFoundError as e:
        if store.list(run_prefix(run_id) + "/"):
            raise
        raise StorageError(f"{run_uri(store, run_id)}: no such run ({e})") from None


def _open_checked_ledger(store: Store, manifest: Manifest) -> list[Entry]:
    """The ledger's entries, chained, signed, bound to the manifest and each well formed
    (open_ledger), in an order verify can follow: epochs committed one after the other, and at
    most one receipt per committed epoch."""
    _, entries = open_ledger(store, manifest)
    next_epoch, proven = 0, set()
    for entry in entries:
        where = ledger_key(manifest.run_id, entry.seq)
        if isinstance(entry, EpochEntry):
            if entry.body.epoch != next_epoch:
                raise IntegrityError(f"{where}: epochs out of order (expected epoch {next_epoch})")
            next_epoch += 1
        elif isinstance(entry, ReceiptEntry):
            e = entry.body.epoch
            if e in proven or e >= next_epoch:
                raise IntegrityError(f"{where}: a second receipt, or one for an uncommitted epoch")
            proven.add(e)
    return entries


def _verify_epoch(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    epochs: dict[int, EpochEntry],
    receipts: dict[int, ReceiptEntry],
    e: int,
    *,
    audit: bool = False,
) -> EpochReport:
    entry = epochs[e]
    claim = entry.body.claim
    rep = EpochReport(
        e, COMMITTED, claim.first_step, claim.step_count, claim.end_state_digest.hex()
    )
    checks = rep.checks
    prev = epochs[e - 1].body.claim if e > 0 else None
    _run_check(checks, "claim", lambda: _check_claim(manifest, claim))
    _run_check(checks, "records", lambda: _check_records(store, manifest, entry, claim, prev))
    proven = None
    if e in receipts:
        rbody = receipts[e].body
        proven = _run_check(
            checks, "receipt", lambda: _check_receipt(store, manifest, rbody, claim)
        )
        journal = proven if isinstance(proven, EpochClaim) else claim
        _run_check(checks, "journal", lambda: _check_journal_file(store, rbody, journal))
        if proven:
            rep.status = PROVEN
    elif audit:
        checks.append(Check("receipt", False, f"epoch {e} has no receipt: committed, not proven"))
    # The end state is compared with the receipt's journal where there is one: an auditor trusts
    # the proof, not the trainer's ledger.
    end = proven.end_state_digest if isinstance(proven, EpochClaim) else claim.end_state_digest
    _run_check(
        checks,
        "checkpoint",
        lambda: _check_checkpoints(
            store, manifest, entries, entry, claim, end, all_of_epoch=not audit
        ),
    )
    return rep


def _check_claim(manifest: Manifest, claim: EpochClaim) -> str:
    """The ledger's claim is about this run as its manifest describes it (the guest checks each
    claim against its predecessor, never against the manifest)."""
    spec = manifest.spec
    expected = {
        "run_id": manifest.run_id,
        "image_id": manifest.image_id,
        "first_step": claim.epoch * manifest.steps_per_epoch,
        "step_count": manifest.steps_per_epoch,
        "dataset_root": manifest.dataset_root,
        "dataset_len": manifest.dataset_len,
        "sampler_seed": spec.seed,
        "batch_size": spec.batch_size,
        "optimizer_digest": optimizer_digest(spec),
        "schedule": spec.schedule,
    }
    if claim.epoch == 0:
        expected["start_state_digest"] = manifest.genesis_state_digest
    wrong = [k for k, v in expected.items() if getattr(claim, k) != v]
    if wrong:
        raise IntegrityError(
            f"{manifest_key(manifest.run_id)}: the ledger's claim of epoch {claim.epoch} "
            f"differs in {', '.join(wrong)}"
        )
    return ""


def _check_records(
    store: Store,
    manifest: Manifest,
    entry: EpochEntry,
    claim: EpochClaim,
    prev: EpochClaim | None,
) -> str:
    records = load_epoch_records(store, entry)
    try:
        # The records alone: a canonical epoch's re-executed steps are the receipt's to prove.
        check_records(claim, prev, records)
    except VeritrainError as e:
        msg = message(e)
        if manifest.image_id != image_id():
            # Records are checked with this build's rules; a run made by another guest may
            # follow another protocol version's rules.
            msg += f" (checked with this build's guest {image_id().hex()[:16]}…, not the run's)"
        raise IntegrityError(f"{entry.body.records}: {msg}") from None
    return f"{len(records)} records"


def _check_receipt(
    store: Store, manifest: Manifest, rbody: ReceiptBody, claim: EpochClaim
) -> EpochClaim:
    """The proof first, so the detail says what is wrong with a substituted receipt (fake, not
    a receipt, another guest, another run or epoch); its bytes against the ledger last."""
    key = rbody.receipt
    data = store.read(key)
    try:
        journal = verify_receipt(data, manifest.image_id)
    except VeritrainError as e:
        raise IntegrityError(f"{key}: {message(e)}") from None
    if (journal.run_id, journal.epoch) != (claim.run_id, claim.epoch):
        raise IntegrityError(
            f"{key}: proves run {journal.run_id} epoch {journal.epoch}, "
            f"not run {claim.run_id} epoch {claim.epoch}"
        )
    if journal != claim:
        raise IntegrityError(f"{key}: proves another claim than the ledger's for this epoch")
    kind = receipt_kind(data)
    if kind != "succinct":
        # A valid proof, but not one this version makes: protocol 1 runs stored composite
        # receipts, whose size grows with the lineage (PROTOCOL.md §13).
        raise IntegrityError(
            f"{key}: a {kind} receipt (protocol 1, made by veritrain before succinct receipts); "
            "this version verifies succinct receipts: verify the run with the version that made it"
        )
    check_committed(key, data, rbody.receipt_sha256)
    if rbody.claim_digest != claim_digest(claim):
        raise IntegrityError(
            f"{key}: its ledger entry's claim_digest is not the claim's digest "
            '(H("veritrain/claim/v1", claim bytes), PROTOCOL.md §9)'
        )
    return journal


def _check_journal_file(store: Store, rbody: ReceiptBody, journal: EpochClaim) -> str:
    key = rbody.journal
    try:
        doc = load_json(store.read(key))
    except ValueError as e:
        raise IntegrityError(f"{key}: not JSON ({e})") from None
    if doc != journal.journal_json():
        raise IntegrityError(f"{key}: does not match the receipt's journal")
    return f"{key.rsplit('/', 1)[-1]} is the receipt's journal"


def _check_checkpoints(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    entry: EpochEntry,
    claim: EpochClaim,
    end_digest: bytes,
    *,
    all_of_epoch: bool,
) -> str:
    """Every checkpoint of the epoch (or only its end, ``all_of_epoch=False``): the file's bytes
    are the ledger's, and the state digest recomputed from its tensors is the one the ledger, the
    records and the claim give for that step. Mid-epoch resume records must be a prefix of the
    epoch's records."""
    first, end = claim.first_step, claim.first_step + claim.step_count
    points: list[tuple[CheckpointBody, bytes]] = [(entry.body.checkpoint, end_digest)]
    if all_of_epoch:
        try:
            records = load_epoch_records(store, entry)
        except (IntegrityError, NotFoundError):
            records = None  # the "records" check reports it; judge checkpoints by the ledger alone
        if records is not None and len(records) != claim.step_count:
            records = None
        for body in (x.body for x in entries if isinstance(x, CheckpointEntry)):
            if body.step == 0 and first == 0:
                points.append((body, claim.start_state_digest))
            elif first < body.step < end:
                points.append((body, _mid_epoch_digest(body, records, first)))
                _check_pending_records(store, body, records, first)
    spec = manifest.spec
    found = [
        (body.checkpoint, _check_checkpoint(store, spec, manifest.digest, body, expected))
        for body, expected in points
    ]
    steps = "steps " + ", ".join(str(s) for s in sorted(b.step for b, _ in points))
    if spec.model.kind != "import":
        built = f"{spec.model.kind} and {spec.optimizer.kind}"
        return f"{steps}; tensors as the spec's {built} build them"
    for key, header in found[1:]:
        if not same_layout(found[0][1], header):
            raise IntegrityError(
                f"{key}: its parameters differ in names, dtypes or shapes from {found[0][0]}'s"
            )
    return (
        f"{steps}; model: import, so tensor names, dtypes and shapes were only checked "
        "for consistency across these checkpoints"
    )


def _mid_epoch_digest(body: CheckpointBody, records: list[bytes] | None, first: int) -> bytes:
    stated = bytes.fromhex(body.state_digest)
    if records is not None:
        rec = StepRecord.from_bytes(records[body.step - 1 - first])
        if rec.state_digest != stated:
            raise IntegrityError(
                f"{body.checkpoint}: its ledger entry's state digest is not the one the "
                f"record of step {rec.step} states"
            )
    return stated


def _check_pending_records(
    store: Store, body: CheckpointBody, records: list[bytes] | None, first: int
) -> None:
    if body.pending_records is None:
        return
    key = body.pending_records
    blob = read_committed(store, key, body.pending_sha256)
    if records is not None and blob != b"".join(records[: body.step - first]):
        raise IntegrityError(f"{key}: not the epoch's records up to step {body.step}")


def _check_checkpoint(
    store: Store, spec: RunSpec, digest_of_manifest: bytes, body: CheckpointBody, expected: bytes
) -> dict[str, TensorInfo]:
    """The file is the ledger's, holds the tensors the spec builds at its step (a trainer could
    re-sign a manifest whose spec builds another model), and has the stated state digest."""
    key = body.checkpoint
    data = read_committed(store, key, body.checkpoint_sha256)
    found = read_header(data, key)
    check_tensors(spec, body.step, found, data, key, digest_of_manifest)
    digest = checkpoint_digest(data, key)
    if digest.hex() != body.state_digest or digest != expected:
        raise IntegrityError(
            f"{key}: recomputed state digest is not the one stated for step {body.step}"
        )
    return found
