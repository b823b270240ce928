"""Proving an epoch in parts through the store: execute it once into segments, prove and lift
each segment, join the parts in a tree, and resolve the previous epoch's receipt last.

Every step reads its inputs from the store and writes its one output there with a conditional
create, so any process that can read and write the store may run any step, several provers may run
the same step at once, and a step that crashed is simply run again. Provers hold no key and append
nothing to the ledger: the epoch's receipt is self-certifying, and the trainer adopts it with
``veritrain.pipeline.prove.finalize.finalize_epoch`` after checking it against the epoch's claim.

Only ``finish`` waits for the previous epoch: its receipt (``receipts/epoch-<e-1>.receipt``) is
the assumption the epoch's joined receipt is conditional on. Segments and joins of any number of
epochs can be proven before that, in any order.

Objects (keys in pipeline/store/keys.py), under ``proving/epoch-<e>/po2-<N>/``: ``execution.json``
naming the one execution that is proven, and under ``execution-<id>/`` its ``segment-<k>.bin``
(written before ``execution.json``), ``segment-<k>.receipt`` (a segment's lifted receipt),
``join-<a>-<b>.receipt`` (segments a..b-1 joined) and a ``.prover.json`` note beside each
receipt saying who made it. They are scratch: only the stored epoch receipt is evidence.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from veritrain import prover
from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import ConflictError, IntegrityError, UsageError
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.entries import EpochEntry
from veritrain.pipeline.run.manifest import (
    Manifest,
    epoch_entries,
    open_ledger,
    read_committed,
    read_or_none,
    sha256_hex,
)
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import (
    execution_key,
    execution_prefix,
    part_receipt_key,
    prover_note_key,
    receipt_key,
    segment_key,
)
from veritrain.prover import EpochClaim

# risc0 lifts segments of 2^14 to 2^22 cycles into succinct receipts: those are the lift programs
# its recursion circuit ships and allows (risc0-circuit-recursion's MIN_LIFT_PO2 and
# ALLOWED_CONTROL_IDS); the executor alone would go down to 2^13.
SEGMENT_PO2_MIN, SEGMENT_PO2_MAX = 14, 22

# Names the prover in the notes beside the receipts it makes (default: the host name).
PROVER_ENV = "VERITRAIN_PROVER"


def check_segment_po2(po2: int | None, source: str = "--segment-po2") -> int | None:
    """None (risc0's default size) or a size risc0 can lift; else UsageError naming ``source``."""
    if po2 is not None and not SEGMENT_PO2_MIN <= po2 <= SEGMENT_PO2_MAX:
        raise UsageError(
            f"{source}: {po2} is not a segment size risc0 can lift "
            f"(log2 of cycles, {SEGMENT_PO2_MIN}..{SEGMENT_PO2_MAX})"
        )
    return po2


@dataclass(frozen=True)
class ExecutionRecord:
    """``execution.json``: the execution whose segments are proven, and those segments, in order,
    by their sha256.

    Two executions of an epoch differ byte for byte (risc0's executor is not deterministic), and
    parts of different executions cannot be joined, so each execution stores its segments under
    its own prefix (``id`` is a digest of its segments) and the first to create this record is
    the one every prover uses; the others' segments are left unused."""

    run_id: str
    epoch: int
    po2: int | None
    id: str
    claim_sha256: str
    segments: list[str]
    user_cycles: int
    total_cycles: int

    @property
    def prefix(self) -> str:
        return execution_prefix(self.run_id, self.epoch, self.po2, self.id)

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, indent=1, sort_keys=True).encode()

    @classmethod
    def parse(
        cls, key: str, data: bytes, run_id: str, epoch: int, po2: int | None
    ) -> ExecutionRecord:
        try:
            ex = cls(**load_json(data))
            if (ex.run_id, ex.epoch, ex.po2) != (run_id, epoch, po2):
                raise ValueError(f"it is of run {ex.run_id}, epoch {ex.epoch}, po2 {ex.po2}")
            if not re.fullmatch(r"[0-9a-f]{16}", str(ex.id)):
                raise ValueError("id is not 16 hex digits")
            if not ex.segments or not all(
                re.fullmatch(r"[0-9a-f]{64}", str(d)) for d in ex.segments
            ):
                raise ValueError("segments is not a non-empty list of sha256 digests")
        except (ValueError, TypeError) as e:
            raise IntegrityError(f"{key}: not an execution record ({e})") from None
        return ex


def join_tree(segments: int) -> list[list[tuple[int, int, int]]]:
    """The joins of a balanced tree over ``segments`` lifted receipts, level by level.

    Each join is (first, mid, end): the receipts of segments first..mid-1 and mid..end-1 joined,
    left first. Adjacent parts are paired at each level; an odd one out moves up unchanged. The
    last level's single join covers every segment (no joins for a single segment)."""
    parts = [(k, k + 1) for k in range(segments)]
    levels = []
    while len(parts) > 1:
        level = [(a[0], a[1], b[1]) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        levels.append(level)
        parts = [(f, e) for f, _, e in level] + ([parts[-1]] if len(parts) % 2 else [])
    return levels


def _create_or_keep(store: Store, key: str, data: bytes, keep: Callable[[bytes], None]) -> bool:
    """Creates ``key``; True if these bytes are now stored. If another prover stored other
    bytes first, ``keep`` checks them (raising if they are unusable) and False is returned."""
    try:
        store.create(key, data)
        return True
    except ConflictError:
        keep(store.read(key))
        return False


def _note(store: Store, receipt: str, started: float, extra: dict[str, Any] | None) -> None:
    host = socket.gethostname()
    doc = {
        "prover": os.environ.get(PROVER_ENV) or host,
        "hostname": host,
        "pid": os.getpid(),
        "seconds": round(time.perf_counter() - started, 3),
        **(extra or {}),
    }
    # The note of the prover whose receipt was stored; a racer's note would contradict it.
    try:
        store.create(prover_note_key(receipt), json.dumps(doc, indent=1, sort_keys=True).encode())
    except ConflictError:
        pass


def _committed(
    store: Store, run_id: str, epoch: int
) -> tuple[Manifest, dict[int, EpochEntry], EpochClaim]:
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    epochs = epoch_entries(entries)
    if epoch not in epochs:
        raise UsageError(
            f"run {run_id}: epoch {epoch} is not committed (its ledger has no such epoch)"
        )
    return manifest, epochs, epochs[epoch].body.claim


def load_execution(store: Store, run_id: str, epoch: int, po2: int | None) -> ExecutionRecord:
    key = execution_key(run_id, epoch, po2)
    data = read_or_none(store, key)
    if data is None:
        raise UsageError(f"{key}: epoch {epoch} has not been executed at this segment size yet")
    return ExecutionRecord.parse(key, data, run_id, epoch, po2)


def execute(store: Store, run_id: str, epoch: int, po2: int | None) -> ExecutionRecord:
    """Executes the epoch's guest once and stores its segments; returns the execution record.

    Reads the claim and the records the way finalization does (the signed ledger, the records
    file's sha256). The previous epoch's claim is an unresolved assumption here, so this needs
    no receipt of it. Done already (``execution.json`` exists): returns that record."""
    check_segment_po2(po2, "segment po2")
    xkey = execution_key(run_id, epoch, po2)
    data = read_or_none(store, xkey)
    if data is not None:
        return ExecutionRecord.parse(xkey, data, run_id, epoch, po2)
    manifest, epochs, claim = _committed(store, run_id, epoch)
    _, entries = open_ledger(store, manifest)
    ex = prover.execute_epoch(guest_input(store, manifest, epochs, epoch, entries), po2=po2)
    if ex.claim != claim:
        raise IntegrityError(f"epoch {epoch}: the guest's journal is not the committed claim")
    digests = [sha256_hex(s) for s in ex.segments]
    record = ExecutionRecord(
        run_id=run_id,
        epoch=epoch,
        po2=po2,
        id=sha256_hex("".join(digests).encode())[:16],
        claim_sha256=sha256_hex(claim.to_bytes()),
        segments=digests,
        user_cycles=ex.stats.user_cycles,
        total_cycles=ex.stats.total_cycles,
    )
    for k, segment in enumerate(ex.segments):
        store.create(segment_key(record.prefix, k), segment)
    if _create_or_keep(store, xkey, record.to_bytes(), lambda other: None):
        return record
    return load_execution(store, run_id, epoch, po2)


def _any_receipt(key: str) -> Callable[[bytes], None]:
    """A part receipt another prover stored first is used as it is: proofs are randomized, so two
    honest ones differ, and the join (or the epoch's final verification) proves it or fails."""

    def keep(data: bytes) -> None:
        if not data:
            raise IntegrityError(f"{key}: empty receipt")

    return keep


def prove_segment(
    store: Store,
    run_id: str,
    epoch: int,
    po2: int | None,
    segment: int,
    note: dict[str, Any] | None = None,
) -> bool:
    """Proves and lifts one segment of an executed epoch. True if this call stored its receipt,
    False if it was there already (nothing is proven again)."""
    ex = load_execution(store, run_id, epoch, po2)
    if not 0 <= segment < len(ex.segments):
        raise UsageError(f"epoch {epoch} has {len(ex.segments)} segments, not a segment {segment}")
    rkey = part_receipt_key(ex.prefix, segment, segment + 1)
    if store.exists(rkey):
        return False
    started = time.perf_counter()
    key = segment_key(ex.prefix, segment)
    data = read_committed(store, key, ex.segments[segment], "its execution record")
    stored = _create_or_keep(store, rkey, prover.prove_segment(data), _any_receipt(rkey))
    if stored:
        _note(store, rkey, started, {"segment": segment, **(note or {})})
    return stored


def join(
    store: Store,
    run_id: str,
    epoch: int,
    po2: int | None,
    first: int,
    mid: int,
    end: int,
    note: dict[str, Any] | None = None,
) -> bool:
    """Joins the receipts of segments first..mid-1 and mid..end-1 (both must be stored). True if
    this call stored the joined receipt, False if it was there already."""
    ex = load_execution(store, run_id, epoch, po2)
    if not 0 <= first < mid < end <= len(ex.segments):
        raise UsageError(
            f"epoch {epoch} has {len(ex.segments)} segments: cannot join "
            f"{first}..{mid - 1} with {mid}..{end - 1}"
        )
    rkey = part_receipt_key(ex.prefix, first, end)
    if store.exists(rkey):
        return False
    started = time.perf_counter()
    left, right = (part_receipt_key(ex.prefix, a, b) for a, b in ((first, mid), (mid, end)))
    missing = [k for k in (left, right) if not store.exists(k)]
    if missing:
        raise UsageError(f"{missing[0]}: not proven yet; prove the parts of a join first")
    joined = prover.join_receipts(store.read(left), store.read(right))
    stored = _create_or_keep(store, rkey, joined, _any_receipt(rkey))
    if stored:
        _note(store, rkey, started, {"segments": [first, end], **(note or {})})
    return stored


def _verified(store: Store, key: str, manifest: Manifest, claim: EpochClaim, what: str) -> bytes:
    data = store.read(key)
    if prover.verify_receipt(data, manifest.image_id) != claim:
        raise IntegrityError(f"{key}: is not a receipt of {what}")
    return data


def finish(store: Store, run_id: str, epoch: int, po2: int | None) -> prover.EpochReceipt | None:
    """Resolves the joined receipt's assumption with the previous epoch's stored receipt and
    stores the epoch's receipt (verified against its committed claim first). Returns None if a
    verified receipt was stored already, by this or another prover."""
    manifest, epochs, claim = _committed(store, run_id, epoch)
    rk = receipt_key(run_id, epoch)
    if store.exists(rk):
        _verified(store, rk, manifest, claim, f"epoch {epoch}'s committed claim")
        return None
    ex = load_execution(store, run_id, epoch, po2)
    if ex.claim_sha256 != sha256_hex(claim.to_bytes()):
        raise IntegrityError(f"{execution_key(run_id, epoch, po2)}: is not of the committed claim")
    root = part_receipt_key(ex.prefix, 0, len(ex.segments))
    if not store.exists(root):
        raise UsageError(f"{root}: not proven yet; prove and join the epoch's segments first")
    prev = None
    if epoch > 0:
        pk = receipt_key(run_id, epoch - 1)
        if not store.exists(pk):
            raise UsageError(f"{pk}: epoch {epoch - 1} has no receipt yet; finish it first")
        prev_claim = epochs[epoch - 1].body.claim
        prev = _verified(store, pk, manifest, prev_claim, f"epoch {epoch - 1}'s committed claim")
    result = prover.finish_epoch(store.read(root), claim, prev)
    if result.claim != claim:
        raise IntegrityError(f"epoch {epoch}: the receipt's journal is not the committed claim")

    def keep(_: bytes) -> None:
        _verified(store, rk, manifest, claim, f"epoch {epoch}'s committed claim")

    return result if _create_or_keep(store, rk, result.receipt, keep) else None
