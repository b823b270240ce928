"""Verification of a stored run: named checks per epoch, each pass or fail, never trusting the
trainer. Nothing here writes to the store."""

from __future__ import annotations

import time
from pathlib import Path

from veritrain.pipeline.errors import DeterminismError, IntegrityError, StorageError
from veritrain.pipeline.run.determinism import CanonicalProfile, DeterminismProfile, machine_profile
from veritrain.pipeline.run.entries import Entry, EpochEntry, ReceiptEntry
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, receipt_entries
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import ledger_key, manifest_key, run_prefix
from veritrain.pipeline.store.uris import run_uri
from veritrain.pipeline.verify.checks import (
    COMMITTED,
    DISPUTED,
    FINAL,
    PROVEN,
    UNREPLAYABLE,
    Check,
    EpochReport,
    RunReport,
    checked,
    run_check,
)
from veritrain.pipeline.verify.disputes import disputes
from veritrain.pipeline.verify.epoch_checks import verify_epoch
from veritrain.pipeline.verify.finality import Sighting, first_sightings, window_start
from veritrain.pipeline.verify.policy import Policy
from veritrain.prover import EpochClaim

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
    "required": ["ok", "run_id", "image_id", "trust", "code", "checks", "epochs"],
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
        # What code trained the run (run.json's "code"); null where the run recorded none.
        "code": {
            "type": ["object", "null"],
            "required": ["modules", "veritrain"],
            "properties": {
                "modules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["key", "module"],
                        "properties": {
                            "key": {"type": "string"},
                            "module": {"type": "string"},
                            "source": {"type": "string"},
                            "sha256": {"type": "string", "pattern": _HEX},
                            "distribution": {"type": "string"},
                            "version": {"type": "string"},
                            "record_sha256": {"type": "string", "pattern": _HEX},
                        },
                    },
                },
                "torch": {"type": "string"},
                "veritrain": {"type": "string"},
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
    manifest = checked(report.checks, "manifest", lambda: _load_manifest(store, run_id))
    if manifest is None:
        return report
    report.image_id = manifest.image_id.hex()
    report.code = manifest.code.to_json() if manifest.code is not None else None
    where = manifest_key(run_id)
    trainer = manifest.public_key.hex()
    trusted = [
        run_check(
            report.checks, "image_id", lambda: policy.check_image_id(manifest.image_id, where)
        ),
        run_check(report.checks, "trainer_key", lambda: policy.check_trainer_key(trainer, where)),
    ]
    if not all(trusted):
        return report
    entries = checked(report.checks, "ledger", lambda: _open_checked_ledger(store, manifest))
    if entries is None:
        return report
    can_replay = run_check(
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
        verify_epoch(store, manifest, entries, epochs, receipts, e, audit=audit) for e in wanted
    ]
    _settle_windows(store, manifest, receipts, reports, now, state, can_replay)
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
        run_check(rep.checks, "required_status", lambda: policy.check_status(rep.status))
    if policy.required_guarantees:
        run_check(
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
    differences = [p.machine_difference(recorded) for p in profiles]
    if any(d is None for d in differences):
        return f"torch {recorded.torch_version}, {recorded.cpu_capability}: replayable by {source}"
    name = differences[0] if differences else None
    if name is None:
        why = f"no profile is replayable here ({source})"
    else:
        why = (
            f"it differs in {name} ({getattr(recorded, name)!r}) from {source} "
            f"({', '.join(repr(getattr(p, name)) for p in profiles)})"
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
