"""veritrain's prover: RISC Zero epoch receipts over rust/core's rules.

The public API is this module; ``veritrain.prover._native`` is the Rust extension underneath it, and
only this package imports it. Records, claims, schedules and canonical settings are the core's
types (``StepRecord``, ``EpochClaim``, ``Schedule``, ``CanonicalSettings``); the core's hashing,
sampler, digest and canonical-step functions are re-exported as they are (``prover/_native.pyi``
declares them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from veritrain.prover import _native
from veritrain.prover._native import (
    CLAIM_FIELDS,
    CLAIM_LEN,
    PROTOCOL_VERSION,
    RECORD_FIELDS,
    RECORD_LEN,
    CanonicalSettings,
    batch_digest,
    canonical_init,
    canonical_step,
    check_run_id,
    classification_rows,
    dataset_paths,
    dataset_root,
    epoch_batches,
    epoch_permutation,
    genesis_hash,
    hparams_digest,
    language_model_rows,
    merkle_root,
    regression_rows,
    sharded_root,
    state_digest,
    steps_per_epoch,
    tensor_digests,
    text_windows,
    zk_steps,
)
from veritrain.prover.errors import (
    EncodingError,
    EpochCheckError,
    FakeReceiptError,
    GuestError,
    ImageIdMismatchError,
    ReceiptFormatError,
    ReceiptVerificationError,
    VeritrainError,
)
from veritrain.prover.results import (
    EpochClaim,
    EpochReceipt,
    ExecuteResult,
    Execution,
    ProofPart,
    ProverStats,
    Schedule,
    StepRecord,
)

if __name__ != "veritrain.prover":  # the checkout's root is on the path too
    raise ImportError(f"import veritrain.prover, not {__name__}")

__all__ = [
    "CLAIM_FIELDS",
    "CLAIM_LEN",
    "PROTOCOL_VERSION",
    "RECORD_FIELDS",
    "RECORD_LEN",
    "CanonicalSettings",
    "EncodingError",
    "EpochCheckError",
    "EpochClaim",
    "EpochReceipt",
    "ExecuteResult",
    "Execution",
    "FakeReceiptError",
    "GuestError",
    "ImageIdMismatchError",
    "ProofPart",
    "ProverStats",
    "ReceiptFormatError",
    "ReceiptVerificationError",
    "Schedule",
    "StepRecord",
    "VeritrainError",
    "batch_digest",
    "canonical_init",
    "canonical_step",
    "check_epoch",
    "check_records",
    "check_run_id",
    "classification_rows",
    "dataset_paths",
    "dataset_root",
    "epoch_batches",
    "epoch_input",
    "epoch_permutation",
    "execute",
    "execute_elf",
    "execute_epoch",
    "finish_epoch",
    "genesis_hash",
    "hparams_digest",
    "image_id",
    "join_all",
    "join_receipts",
    "language_model_rows",
    "merkle_root",
    "prove_epoch",
    "prove_segment",
    "prove_with_risc0",
    "receipt_kind",
    "regression_rows",
    "sharded_root",
    "state_digest",
    "steps_per_epoch",
    "tensor_digests",
    "text_windows",
    "verify_receipt",
    "zk_steps",
]


def image_id() -> bytes:
    """The image id of the embedded guest (32 bytes; show it with ``.hex()``)."""
    return _native.image_id()


def epoch_input(
    claim: EpochClaim,
    prev: EpochClaim | None,
    records: Sequence[bytes],
    canonical: tuple[bytes, Sequence[_native.ZkStepArg]] | None = None,
) -> bytes:
    """The guest's input for one epoch: its claim, the previous epoch's claim, its records and,
    for a canonical claim (guarantees 31), the canonical settings' bytes and the re-executed
    steps (PROTOCOL.md §10; ``veritrain.pipeline.prove.guest_input`` builds them from the store)."""
    return _native.encode_epoch_input(claim, prev, list(records), canonical)


def check_epoch(input: bytes) -> None:
    """Runs the guest's checks natively (fast). Raises EpochCheckError naming the failed check."""
    _native.check_epoch(input)


def check_records(claim: EpochClaim, prev: EpochClaim | None, records: Sequence[bytes]) -> None:
    """Every check of ``check_epoch`` but a canonical epoch's re-execution of steps (checks
    ``arithmetic`` and ``dataset``), from the records alone. Raises EpochCheckError."""
    _native.check_epoch(_native.encode_epoch_input(claim, prev, list(records)), True)


def _stats(d: _native.ExecuteOutput) -> ProverStats:
    return ProverStats(
        user_cycles=d["user_cycles"],
        paging_cycles=d["paging_cycles"],
        total_cycles=d["total_cycles"],
        segments=d["segments"],
        seconds=d["seconds"],
    )


def execute(input: bytes, *, po2: int | None = None) -> ExecuteResult:
    """Runs the guest in risc0's executor only (no proof): its journal and cycle counts."""
    out = _native.execute(input, po2)
    return ExecuteResult(claim=EpochClaim.from_bytes(out["journal"]), stats=_stats(out))


def execute_elf(elf: bytes, input: bytes) -> tuple[bytes, int]:
    """Runs another guest ELF in risc0's executor: its journal and user cycles. Measurements only
    (bench/zk_bench.py runs the measuring program built beside the guest); it proves nothing."""
    return _native._execute_elf(elf, input)


def execute_epoch(input: bytes, *, po2: int | None = None) -> Execution:
    """Runs the guest once and returns its segments, each provable anywhere by ``prove_segment``.

    The previous epoch's claim (inside ``input``) becomes an unresolved assumption, so an epoch
    executes and proves before its predecessor is proven; only ``finish_epoch`` waits for it.
    ``po2`` is the segment size, log2 of cycles (risc0's default, 20, when None).
    """
    out = _native.execute(input, po2, True)
    return Execution(
        claim=EpochClaim.from_bytes(out["journal"]),
        segments=out["segment_blobs"],
        stats=_stats(out),
    )


def prove_segment(segment: bytes) -> bytes:
    """Proves one segment and lifts it: a succinct receipt for that part of the execution."""
    return _native.prove_segment(segment)


def join_receipts(left: bytes, right: bytes) -> bytes:
    """Joins the succinct receipts of two consecutive parts of one execution (left first)."""
    return _native.join(left, right)


def _since(started: float) -> float:
    return time.perf_counter() - started


def join_all(
    receipts: Sequence[bytes], on_part: Callable[[ProofPart], None] | None = None
) -> bytes:
    """Joins a whole execution's segment receipts, pairwise, as a balanced tree (in order);
    ``on_part`` hears of each join as it finishes."""
    level = list(receipts)
    if not level:
        raise ValueError("an execution has at least one segment")
    count, done = len(level) - 1, 0
    while len(level) > 1:
        pairs = []
        for i in range(0, len(level) - 1, 2):
            started = time.perf_counter()
            pairs.append(join_receipts(level[i], level[i + 1]))
            done += 1
            if on_part is not None:
                on_part(ProofPart(kind="join", index=done, count=count, seconds=_since(started)))
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def finish_epoch(joined: bytes, claim: EpochClaim, prev_receipt: bytes | None) -> EpochReceipt:
    """The epoch's final receipt: ``joined`` with the lineage assumption resolved by the
    previous epoch's receipt (required from epoch 1 on), verified against the claim's image id.
    The result is one succinct receipt that speaks for the whole lineage at constant size."""
    if (prev_receipt is None) != (claim.epoch == 0):
        raise ValueError("the previous epoch's receipt is required from epoch 1 on, and only then")
    receipt = _native.finish(joined, claim.to_bytes(), claim.image_id, prev_receipt)
    return EpochReceipt(receipt=receipt, claim=claim)


def prove_epoch(
    input: bytes,
    prev_receipt: bytes | None = None,
    *,
    po2: int | None = None,
    precheck: bool = True,
    on_part: Callable[[ProofPart], None] | None = None,
) -> EpochReceipt:
    """Proves one epoch locally: execute, prove every segment, join, resolve the lineage.

    With ``precheck`` the epoch is checked natively first, which fails in milliseconds instead of
    after a proving attempt; the guest checks it again regardless. ``on_part`` hears of each part
    as it finishes, the execution first (before any proving: what is to be proven).
    """
    report = on_part or (lambda part: None)
    if precheck:
        check_epoch(input)
    started = time.perf_counter()
    ex = execute_epoch(input, po2=po2)
    report(ProofPart(kind="execute", index=1, count=1, seconds=ex.stats.seconds, stats=ex.stats))
    lifted = []
    for k, segment in enumerate(ex.segments):
        t0 = time.perf_counter()
        lifted.append(prove_segment(segment))
        report(ProofPart(kind="segment", index=k + 1, count=len(ex.segments), seconds=_since(t0)))
    joined = join_all(lifted, report)
    t0 = time.perf_counter()
    done = finish_epoch(joined, ex.claim, prev_receipt)
    if prev_receipt is not None:
        report(ProofPart(kind="resolve", index=1, count=1, seconds=_since(t0)))
    stats = ex.stats.model_copy(update={"seconds": _since(started)})
    return done.model_copy(update={"stats": stats})


def prove_with_risc0(
    input: bytes, prev_receipt: bytes | None = None, *, po2: int | None = None
) -> EpochReceipt:
    """risc0's own prove of the same guest and input in one call (its default prover, succinct,
    resolving the lineage with ``prev_receipt``): no parts, no store. Measurements only
    (bench/prove_path_bench.py sets it against ``prove_epoch`` and the store's parts)."""
    receipt = _native._prove_risc0(input, po2, prev_receipt)
    return EpochReceipt(receipt=receipt, claim=verify_receipt(receipt, image_id()))


def receipt_kind(receipt: bytes) -> str:
    """``succinct`` (protocol 2: one recursion proof, lineage resolved) or ``composite``
    (protocol 1: segment proofs with the previous epoch's receipt embedded)."""
    return _native.receipt_kind(receipt)


def verify_receipt(receipt: bytes, image_id: bytes) -> EpochClaim:
    """Verifies a receipt against an image id and returns its journal as an EpochClaim.

    Raises ReceiptFormatError, FakeReceiptError, ReceiptVerificationError or ImageIdMismatchError,
    and EncodingError if a valid proof carries a journal that is not a veritrain claim. The
    journal's own image id must equal the one the receipt was checked against.
    """
    journal = _native.verify_receipt(receipt, image_id)
    claim = EpochClaim.from_bytes(journal)
    if claim.image_id != image_id:
        raise ImageIdMismatchError(
            f"journal names image id {claim.image_id.hex()}, receipt verified for {image_id.hex()}"
        )
    return claim
