"""Verification of a stored run: named checks per epoch, each pass or fail, never trusting the
trainer. Nothing here writes to the store."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from pipeline import state as st
from pipeline.errors import IntegrityError, StorageError
from pipeline.finalize import load_epoch_records
from pipeline.ledger import Entry
from pipeline.run import (
    Manifest,
    claim_of,
    epoch_entries,
    open_ledger,
    receipt_entries,
    sha256_hex,
)
from pipeline.store import NotFoundError, Store
from prover import EpochClaim, VeritrainError, check_epoch, epoch_input, verify_receipt

COMMITTED, PROVEN, FINAL, DISPUTED = "committed", "proven", "final", "disputed"

_CHECK = {
    "type": "object",
    "required": ["name", "ok", "detail"],
    "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}, "detail": {"type": "string"}},
}
# The document `veritrain verify --json` prints (docs/schemas/verify.schema.json).
VERIFY_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "veritrain verify --json",
    "type": "object",
    "required": ["ok", "run_id", "image_id", "checks", "epochs"],
    "properties": {
        "ok": {"type": "boolean"},
        "run_id": {"type": "string"},
        "image_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "checks": {"type": "array", "items": _CHECK},
        "epochs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["epoch", "status", "ok", "checks"],
                "properties": {
                    "epoch": {"type": "integer", "minimum": 0},
                    "status": {"enum": [COMMITTED, PROVEN, FINAL, DISPUTED]},
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
            "checks": [asdict(c) for c in self.checks],
            "epochs": [e.to_json() for e in self.epochs],
        }


def _run_check(checks: list[Check], name: str, fn) -> object:
    """Runs one named check; integrity and prover errors fail it, storage errors propagate
    (they mean "could not look", not "looked and it is wrong") except a missing object."""
    try:
        result = fn()
    except NotFoundError as e:
        checks.append(Check(name, False, str(e)))
        return None
    except StorageError:
        raise
    except (IntegrityError, VeritrainError, ValueError, KeyError) as e:
        checks.append(Check(name, False, str(e.args[0]) if e.args else type(e).__name__))
        return None
    checks.append(Check(name, True, result if isinstance(result, str) else ""))
    return result if result is not None else True


def verify_run(store: Store, run_id: str, epoch: int | None = None, now: float | None = None) -> RunReport:
    now = time.time() if now is None else now
    manifest = Manifest.load(store, run_id)  # a missing manifest is a storage error: no such run
    report = RunReport(run_id=run_id, image_id=manifest.doc["image_id"])
    opened = _run_check(report.checks, "ledger", lambda: open_ledger(store, manifest))
    if not opened:
        return report
    _, entries = opened
    epochs = epoch_entries(entries)
    receipts = receipt_entries(entries)
    window = manifest.spec.challenge_window
    wanted = sorted(epochs) if epoch is None else [epoch]
    if epoch is not None and epoch not in epochs:
        report.checks.append(Check("epoch_exists", False, f"run {run_id} has no epoch {epoch}"))
        return report
    for e in wanted:
        report.epochs.append(_verify_epoch(store, manifest, entries, epochs, receipts, e, window, now))
    return report


def _verify_epoch(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    epochs: dict[int, Entry],
    receipts: dict[int, Entry],
    e: int,
    window: float,
    now: float,
) -> EpochReport:
    entry = epochs[e]
    claim = claim_of(entry)
    rep = EpochReport(e, COMMITTED, claim.first_step, claim.step_count, claim.end_state_digest.hex())
    checks = rep.checks
    prev = claim_of(epochs[e - 1]) if e > 0 and e - 1 in epochs else None

    def rules() -> str:
        if claim.image_id != manifest.image_id:
            raise IntegrityError("claim names another image id than the manifest")
        records = load_epoch_records(store, entry)
        check_epoch(epoch_input(claim, prev, records))
        return f"{len(records)} records"

    _run_check(checks, "records", rules)

    def checkpoint() -> str:
        ck = entry.body["checkpoint"]
        data = store.read(ck["checkpoint"])
        if sha256_hex(data) != ck["checkpoint_sha256"]:
            raise IntegrityError(f"{ck['checkpoint']}: does not match its ledger entry")
        digest = st.digest_tensors(st.load_checkpoint(data, ck["checkpoint"]))
        if digest != claim.end_state_digest:
            raise IntegrityError(f"{ck['checkpoint']}: state digest is not the epoch's end state")
        return ck["checkpoint"]

    _run_check(checks, "checkpoint", checkpoint)

    if e in receipts:
        rbody = receipts[e].body

        def receipt() -> EpochClaim:
            data = store.read(rbody["receipt"])
            if sha256_hex(data) != rbody["receipt_sha256"]:
                raise IntegrityError(f"{rbody['receipt']}: does not match its ledger entry")
            journal = verify_receipt(data, manifest.image_id)
            if journal != claim:
                raise IntegrityError(f"{rbody['receipt']}: journal is not the epoch's committed claim")
            return journal

        proven = _run_check(checks, "receipt", receipt)

        def journal_file() -> None:
            doc = json.loads(store.read(rbody["journal"]))
            if doc != claim.journal_json():
                raise IntegrityError(f"{rbody['journal']}: does not match the receipt's journal")

        _run_check(checks, "journal", journal_file)
        if proven:
            final = now >= rbody["proven_at"] + window
            rep.status = FINAL if final else PROVEN
    return rep
