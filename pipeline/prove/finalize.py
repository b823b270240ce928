"""Finalization: prove an epoch's claim in the zkVM and store its receipt and journal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.prove.receipt_cache import ReceiptCache
from veritrain.pipeline.run.entries import Entry, ReceiptBody
from veritrain.pipeline.run.ledger import Ledger
from veritrain.pipeline.run.manifest import (
    Manifest,
    claim_digest,
    epoch_entries,
    read_committed,
    receipt_entries,
    sha256_hex,
)
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import journal_key, receipt_key
from veritrain.prover import (
    EpochClaim,
    EpochReceipt,
    ProofPart,
    check_epoch,
    prove_epoch,
    verify_receipt,
)


@dataclass(frozen=True)
class Finalized:
    """An epoch's receipt, recorded in the ledger, and where it came from: ``proven`` here;
    ``stored``, the store's receipt object (a prove pool's, or one a crash left), verified and
    adopted; ``cached``, the receipt cache's entry at ``cache_path`` (``receipt_cache.py``),
    verified. ``cache_path`` is also where a proof made here was cached, if it was."""

    receipt: EpochReceipt
    source: Literal["proven", "stored", "cached"]
    cache_path: Path | None = None


def finalize_epoch(
    store: Store,
    manifest: Manifest,
    ledger: Ledger,
    entries: list[Entry],
    key: Ed25519PrivateKey,
    epoch: int,
    po2: int | None = None,
    on_part: Callable[[ProofPart], None] | None = None,
) -> Finalized | None:
    """Proves ``epoch`` (its predecessor must already have a receipt) in segments of 2^``po2``
    cycles (None: risc0's default) and records the receipt; ``on_part`` hears of the proof's
    parts (``prover.prove_epoch``).

    Returns None if the epoch already has a receipt entry. A receipt object without its ledger
    entry (left by a crash, or written by a prover of a prove pool, which holds no trainer key) is
    verified and adopted rather than re-proven (proofs are randomized, so a new one would not
    equal the stored bytes). With a receipt cache (``$VERITRAIN_RECEIPT_CACHE``), a receipt of
    the same claim proven before on this machine is verified and used instead of a new proof.
    """
    run_id = manifest.run_id
    entries[:] = ledger.entries()
    if epoch in receipt_entries(entries):
        return None
    epochs = epoch_entries(entries)
    entry = epochs[epoch]
    claim = entry.body.claim
    rk, jk = receipt_key(run_id, epoch), journal_key(run_id, epoch)
    if store.exists(rk):
        data = store.read(rk)
        journal = verify_receipt(data, manifest.image_id)
        if journal != claim:
            raise IntegrityError(f"{rk}: receipt is not for the epoch's committed claim")
        done = Finalized(EpochReceipt(receipt=data, claim=journal), "stored")
    else:
        prev_receipt = None
        if epoch > 0:
            receipts = receipt_entries(entries)
            if epoch - 1 not in receipts:
                raise IntegrityError(f"epoch {epoch - 1} has no receipt yet; prove epochs in order")
            prev = receipts[epoch - 1].body
            prev_receipt = read_committed(store, prev.receipt, prev.receipt_sha256)
        # Proving only: the guest input of a canonical epoch replays steps with numpy, which a
        # verifier's installation lacks (verify imports this module for load_epoch_records).
        from veritrain.pipeline.prove.guest_input import guest_input

        inp = guest_input(store, manifest, epochs, epoch, entries)
        done = _prove(inp, claim, prev_receipt, po2, on_part)
        store.create(rk, done.receipt.receipt)
    result = done.receipt
    store.create(jk, json.dumps(result.claim.journal_json(), indent=1, sort_keys=True).encode())
    ledger.append(
        key,
        ReceiptBody(
            epoch=epoch,
            receipt=rk,
            receipt_sha256=sha256_hex(result.receipt),
            journal=jk,
            claim_digest=claim_digest(claim),
            # Starts the challenge window (final = proven + window passed, docs/OPERATIONS.md).
            proven_at=int(time.time()),
        ),
        entries,
        # The trainer may be appending the next epochs meanwhile; another receipt is a second
        # prover.
        tolerate=frozenset({"checkpoint", "epoch"}),
    )
    return done


def _prove(
    inp: bytes,
    claim: EpochClaim,
    prev_receipt: bytes | None,
    po2: int | None,
    on_part: Callable[[ProofPart], None] | None,
) -> Finalized:
    """The epoch's receipt from the receipt cache if it has one, else proven (and cached)."""
    cache = ReceiptCache.from_env()
    cached = cache.get(claim) if cache is not None else None
    if cache is not None and cached is not None:
        # The store's records must be the claim's, as they must be for a proof: checked natively.
        check_epoch(inp)
        return Finalized(cached, "cached", cache.path(claim))
    result = prove_epoch(inp, prev_receipt, po2=po2, on_part=on_part)
    if result.claim != claim:
        raise IntegrityError(
            f"epoch {claim.epoch}: the receipt's journal is not the committed claim"
        )
    return Finalized(result, "proven", cache.put(result) if cache is not None else None)
