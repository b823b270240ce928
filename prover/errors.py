"""veritrain's exception types, one per failure kind (defined in Rust, re-exported here)."""

from veritrain.prover._native import (
    EncodingError,
    EpochCheckError,
    FakeReceiptError,
    GuestError,
    ImageIdMismatchError,
    ReceiptFormatError,
    ReceiptVerificationError,
    VeritrainError,
)


def message(e: BaseException) -> str:
    """An error's one-line message: its text, or its type's name when it has none."""
    return str(e) or type(e).__name__


__all__ = [
    "EncodingError",
    "EpochCheckError",
    "FakeReceiptError",
    "GuestError",
    "ImageIdMismatchError",
    "ReceiptFormatError",
    "ReceiptVerificationError",
    "VeritrainError",
    "message",
]
