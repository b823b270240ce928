"""veritrain's exception types, one per failure kind (defined in Rust, re-exported here), and the
command line's exit codes, which every kind carries as ``exit_code``."""

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

# 0 ok, 1 verification failed, 2 usage or bad spec, 3 storage or environment (README.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

# The core's kinds (a record, claim or receipt that breaks a rule) are verification failures.
# Their types are the extension's; the base takes its code here, where the package names it, so
# that every kind carries one (pipeline/errors.py's kinds set their own).
VeritrainError.exit_code = EXIT_FAILED


def message(e: BaseException) -> str:
    """An error's one-line message: its text, or its type's name when it has none."""
    return str(e) or type(e).__name__


__all__ = [
    "EXIT_ENV",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
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
