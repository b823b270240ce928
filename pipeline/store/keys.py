"""Every object key of a run's layout in the store, in one place.

A store (pipeline/store/base.py) is a flat space of write-once objects; this module says which key
holds what. Keys are the same in a local folder and under an S3 prefix, and relative to the
store's root::

    runs/<run_id>/run.json                                   the manifest
    runs/<run_id>/ledger/<seq:012d>.json                     signed ledger entries
    runs/<run_id>/records/epoch-<e:06d>.bin                  an epoch's step records
    runs/<run_id>/checkpoints/step-<s:012d>.safetensors      training states
    runs/<run_id>/checkpoints/step-<s:012d>.records.bin      records kept for a mid-epoch resume
    runs/<run_id>/receipts/epoch-<e:06d>.receipt             and .journal.json, .prover.json
    runs/<run_id>/proving/epoch-<e:06d>/po2-<N>/...          a prove pool's scratch objects
    runs/<run_id>/challenges/<id>.json                       fraud proofs, and .verdict.json
    runs/<run_id>/attestations/epoch-<e:06d>.<state>.intoto.json, .model-signing.sig

Counters are zero-padded so that listing order is numeric order. The layout is its own module,
not part of pipeline/store/base.py: the store knows objects and URIs, not what a run keeps in them
(the store's conformance tests use keys of any shape), and this module imports nothing, so every
layer can name an object without pulling in a store. The rules for the run id that every key
embeds are the store's (``store.check_run_id``).
"""

from __future__ import annotations

RUNS = "runs"


def run_prefix(run_id: str) -> str:
    """The run's folder (no trailing slash): everything the run stores is under it."""
    return f"{RUNS}/{run_id}"


def manifest_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/run.json"


def ledger_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/ledger/"


def ledger_name(seq: int) -> str:
    """The file name of ledger entry ``seq``: the ledger's order is its listing order."""
    return f"{seq:012d}.json"


def ledger_key(run_id: str, seq: int) -> str:
    return f"{ledger_prefix(run_id)}{ledger_name(seq)}"


def checkpoint_key(run_id: str, step: int) -> str:
    return f"{run_prefix(run_id)}/checkpoints/step-{step:012d}.safetensors"


def pending_records_key(run_id: str, step: int) -> str:
    """Records of the current epoch up to a mid-epoch checkpoint, so a resume loses none."""
    return f"{run_prefix(run_id)}/checkpoints/step-{step:012d}.records.bin"


def records_key(run_id: str, epoch: int) -> str:
    return f"{run_prefix(run_id)}/records/epoch-{epoch:06d}.bin"


def receipt_key(run_id: str, epoch: int) -> str:
    return f"{run_prefix(run_id)}/receipts/epoch-{epoch:06d}.receipt"


def journal_key(run_id: str, epoch: int) -> str:
    return f"{run_prefix(run_id)}/receipts/epoch-{epoch:06d}.journal.json"


def prover_note_key(receipt_key: str) -> str:
    """Who made a receipt and how long it took (informational; nothing trusts it)."""
    return receipt_key.removesuffix(".receipt") + ".prover.json"


def proving_prefix(run_id: str, epoch: int, po2: int | None) -> str:
    """Scratch objects of one epoch's proof at one segment size (None: risc0's default).

    The segment size is part of the key because the same epoch executes into other segments at
    another size: provers using different sizes never meet, and whichever finishes first stores
    the epoch's receipt. Nothing reads this prefix once the receipt is stored.
    """
    return f"{run_prefix(run_id)}/proving/epoch-{epoch:06d}/po2-{'default' if po2 is None else po2}"


def execution_key(run_id: str, epoch: int, po2: int | None) -> str:
    """Names the one execution whose segments are proven: the first executor to create it wins."""
    return f"{proving_prefix(run_id, epoch, po2)}/execution.json"


def execution_prefix(run_id: str, epoch: int, po2: int | None, execution: str) -> str:
    """One execution's segments and receipts. Executions differ byte for byte (the executor is
    not deterministic), so each has its own prefix, named by its content."""
    return f"{proving_prefix(run_id, epoch, po2)}/execution-{execution}"


def segment_key(prefix: str, segment: int) -> str:
    return f"{prefix}/segment-{segment:04d}.bin"


def part_receipt_key(prefix: str, first: int, end: int) -> str:
    """The succinct receipt of segments ``first``..``end - 1``: a lifted segment or a join."""
    if end - first == 1:
        return f"{prefix}/segment-{first:04d}.receipt"
    return f"{prefix}/join-{first:04d}-{end:04d}.receipt"


def challenges_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/challenges/"


def proof_key(run_id: str, proof_id: str) -> str:
    return f"{challenges_prefix(run_id)}{proof_id}.json"


def verdict_key(run_id: str, proof_id: str) -> str:
    return f"{challenges_prefix(run_id)}{proof_id}.verdict.json"


def attestation_key(run_id: str, epoch: int, finality: str) -> str:
    """An epoch's in-toto attestation (pipeline/publish/attest.py), one per finality state it was
    made in: the store is write-once and an epoch's state moves on (proven, then final)."""
    return f"{run_prefix(run_id)}/attestations/epoch-{epoch:06d}.{finality}.intoto.json"


def model_signature_key(run_id: str, epoch: int) -> str:
    """The model_signing bundle of an epoch's end checkpoint (pipeline/publish/modelsign.py)."""
    return f"{run_prefix(run_id)}/attestations/epoch-{epoch:06d}.model-signing.sig"
