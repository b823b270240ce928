"""veritrain's prover: RISC Zero epoch receipts over rust/core's rules.

The public API is this module; ``prover._native`` is the Rust extension underneath it.
"""

from __future__ import annotations

from collections.abc import Sequence

from prover import _native
from prover.errors import (
    EncodingError,
    EpochCheckError,
    FakeReceiptError,
    GuestError,
    ImageIdMismatchError,
    ReceiptFormatError,
    ReceiptVerificationError,
    VeritrainError,
)
from prover.models import EpochClaim, EpochReceipt, ExecuteResult, ProverStats, Schedule

__all__ = [
    "EncodingError",
    "EpochCheckError",
    "EpochClaim",
    "EpochReceipt",
    "ExecuteResult",
    "FakeReceiptError",
    "GuestError",
    "ImageIdMismatchError",
    "ProverStats",
    "ReceiptFormatError",
    "ReceiptVerificationError",
    "Schedule",
    "VeritrainError",
    "check_epoch",
    "epoch_input",
    "execute",
    "image_id",
    "prove_epoch",
    "verify_receipt",
]


def image_id() -> bytes:
    """The image id of the embedded guest (32 bytes; show it with ``.hex()``)."""
    return _native.image_id()


def epoch_input(claim: EpochClaim, prev: EpochClaim | None, records: Sequence[bytes]) -> bytes:
    """The guest's input for one epoch: its claim, the previous epoch's claim, its records."""
    return _native.encode_epoch_input(claim.native(), prev.native() if prev else None, list(records))


def check_epoch(input: bytes) -> None:
    """Runs the guest's checks natively (fast). Raises EpochCheckError naming the failed check."""
    _native.check_epoch(input)


def _stats(d: dict) -> ProverStats:
    return ProverStats(**{k: d[k] for k in ("user_cycles", "paging_cycles", "total_cycles", "segments", "seconds")})


def execute(input: bytes, prev_receipt: bytes | None = None) -> ExecuteResult:
    """Runs the guest in risc0's executor only (no proof): its journal and cycle counts."""
    out = _native.execute(input, [prev_receipt] if prev_receipt else [])
    return ExecuteResult(claim=EpochClaim.from_bytes(out["journal"]), stats=_stats(out))


def prove_epoch(input: bytes, prev_receipt: bytes | None = None, *, precheck: bool = True) -> EpochReceipt:
    """Proves one epoch and returns its composite receipt.

    ``prev_receipt`` (required from epoch 1 on) is verified inside the guest, so the new receipt
    speaks for the whole lineage. With ``precheck`` the epoch is checked natively first, which
    fails in milliseconds instead of after a proving attempt; the guest checks it again regardless.
    """
    if precheck:
        check_epoch(input)
    out = _native.prove(input, [prev_receipt] if prev_receipt else [])
    return EpochReceipt(receipt=out["receipt"], claim=EpochClaim.from_bytes(out["journal"]), stats=_stats(out))


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
