"""The receipt cache: epoch receipts this machine proved, found again by the claim they prove.

Off unless ``$VERITRAIN_RECEIPT_CACHE`` names a folder. When it does, finalizing an epoch looks
there before proving and puts every receipt it proves there, as
``<folder>/<image id>/<claim digest>.receipt``. A receipt's claim holds the run id, the epoch, its
records' root, the state digests before and after (which bind run.json, trainer key included),
the dataset root and the image id: a second run with the same claim is the same training, and a
receipt for it needs no second proof. Proofs are randomized, so the cached receipt is not the
bytes a new proof would give; it is as good.

Nothing in the cache is trusted: an entry is used only after it verifies against the claim's own
image id with a journal equal to the committed claim, exactly as a receipt a prove pool stored is
(``finalize.py``). An entry that does not is deleted, said in one warning line, and the epoch is
proven. Entries are written to a temporary file and renamed into place, so processes sharing the
cache never see a partial one; a cache that cannot be written is said in a warning and the proof
stands. Nothing is evicted: an entry is about 224 KB (``du -sh`` the folder; delete it at will).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from veritrain.prover import EpochClaim, EpochReceipt, VeritrainError, verify_receipt
from veritrain.prover.errors import message

ENV = "VERITRAIN_RECEIPT_CACHE"
SUFFIX = ".receipt"

log = logging.getLogger("veritrain.receipt_cache")


class ReceiptCache:
    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def from_env(cls) -> ReceiptCache | None:
        """The cache ``$VERITRAIN_RECEIPT_CACHE`` names; None when it is unset or empty."""
        folder = os.environ.get(ENV, "")
        return cls(Path(folder).expanduser()) if folder else None

    def path(self, claim: EpochClaim) -> Path:
        return self.folder / claim.image_id.hex() / f"{claim.digest().hex()}{SUFFIX}"

    def get(self, claim: EpochClaim) -> EpochReceipt | None:
        """A receipt of ``claim``, verified against its image id, or None if there is none (or the
        entry did not verify, and is now deleted)."""
        path = self.path(claim)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("receipt cache: %s cannot be read (%s); proving", path, e.strerror or e)
            return None
        try:
            journal = verify_receipt(data, claim.image_id)
        except VeritrainError as e:
            problem = message(e)
        else:
            if journal == claim:
                return EpochReceipt(receipt=data, claim=journal)
            problem = "its journal is another claim"
        log.warning("receipt cache: %s does not verify (%s); deleted, proving", path, problem)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, receipt: EpochReceipt) -> Path | None:
        """Stores ``receipt`` under its claim; the entry's path, or None if it could not be
        written (said in a warning: the cache is a shortcut, never a reason to lose a proof)."""
        path = self.path(receipt.claim)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(receipt.receipt)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            log.warning("receipt cache: %s cannot be written (%s)", path, e.strerror or e)
            return None
        return path
