"""veritrain's exception types, one per failure kind (defined in Rust, re-exported here)."""

from prover._native import (
    EncodingError,
    EpochCheckError,
    FakeReceiptError,
    GuestError,
    ImageIdMismatchError,
    ReceiptFormatError,
    ReceiptVerificationError,
    VeritrainError,
)

__all__ = [
    "EncodingError",
    "EpochCheckError",
    "FakeReceiptError",
    "GuestError",
    "ImageIdMismatchError",
    "ReceiptFormatError",
    "ReceiptVerificationError",
    "VeritrainError",
]
