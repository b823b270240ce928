"""A run: its manifest, key, ledger and the objects it stores, under ``runs/<run_id>/``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline.errors import IntegrityError, SpecError
from pipeline.ledger import Entry, Ledger, canonical_json
from pipeline.spec import RunSpec, parse_spec
from pipeline.store import NotFoundError, Store
from prover import RECORD_LEN, EpochClaim

OPTIMIZER_TAG = b"veritrain/optimizer/v1\x00"
MANIFEST_TAG = b"veritrain/manifest/v1\x00"


def default_run_id(spec: RunSpec) -> str:
    """Derived from the spec, so rerunning the same command resumes the same run after a crash
    (training is deterministic: a finished run is simply reported again)."""
    return "run-" + hashlib.sha256(spec.canonical_json().encode()).hexdigest()[:16]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_committed(
    store: Store, key: str, sha256: str, named_by: str = "its ledger entry"
) -> bytes:
    """The object at ``key``, whose bytes must be the ones ``sha256`` (hex) names: the ledger's
    word for every object it points to. Raises IntegrityError naming the object otherwise."""
    data = store.read(key)
    if sha256_hex(data) != sha256:
        raise IntegrityError(f"{key}: does not match {named_by}")
    return data


def split_records(blob: bytes) -> list[bytes]:
    """A records object (records/epoch-*.bin, pending records): the step records end to end."""
    n = RECORD_LEN
    return [blob[i : i + n] for i in range(0, len(blob), n)]


def claim_digest(claim: EpochClaim) -> str:
    """``H("veritrain/claim/v1", claim bytes)`` in hex: a receipt entry's ``claim_digest``."""
    return claim.digest().hex()


def manifest_digest(doc: dict[str, Any]) -> bytes:
    """Digest of run.json's content, which every training state holds (pipeline/state.py), so
    the claims' state digests, and the receipts over them, bind the manifest. It leaves out
    ``genesis_state_digest``, which is the digest of a state that holds this digest."""
    content = {k: v for k, v in doc.items() if k != "genesis_state_digest"}
    return hashlib.sha256(MANIFEST_TAG + canonical_json(content)).digest()


def optimizer_digest(spec: RunSpec) -> bytes:
    """Digest of the constant optimizer settings; each step's hparams digest binds it."""
    return hashlib.sha256(
        OPTIMIZER_TAG + canonical_json(spec.optimizer.model_dump(mode="json"))
    ).digest()


def keys(run_id: str) -> dict[str, str]:
    base = f"runs/{run_id}"
    return {"base": base, "manifest": f"{base}/run.json"}


def checkpoint_key(run_id: str, step: int) -> str:
    return f"runs/{run_id}/checkpoints/step-{step:012d}.safetensors"


def pending_records_key(run_id: str, step: int) -> str:
    """Records of the current epoch up to a mid-epoch checkpoint, so a resume loses none."""
    return f"runs/{run_id}/checkpoints/step-{step:012d}.records.bin"


def records_key(run_id: str, epoch: int) -> str:
    return f"runs/{run_id}/records/epoch-{epoch:06d}.bin"


def receipt_key(run_id: str, epoch: int) -> str:
    return f"runs/{run_id}/receipts/epoch-{epoch:06d}.receipt"


def journal_key(run_id: str, epoch: int) -> str:
    return f"runs/{run_id}/receipts/epoch-{epoch:06d}.journal.json"


def proving_prefix(run_id: str, epoch: int, po2: int | None) -> str:
    """Scratch objects of one epoch's proof at one segment size (None: risc0's default).

    The segment size is part of the key because the same epoch executes into other segments at
    another size: provers using different sizes never meet, and whichever finishes first stores
    the epoch's receipt. Nothing reads this prefix once the receipt is stored.
    """
    return f"runs/{run_id}/proving/epoch-{epoch:06d}/po2-{'default' if po2 is None else po2}"


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


def attestation_key(run_id: str, epoch: int, finality: str) -> str:
    """An epoch's in-toto attestation (pipeline/attest.py), one per finality state it was made
    in: the store is write-once and an epoch's state moves on (proven, then final)."""
    return f"runs/{run_id}/attestations/epoch-{epoch:06d}.{finality}.intoto.json"


def model_signature_key(run_id: str, epoch: int) -> str:
    """The model_signing bundle of an epoch's end checkpoint (pipeline/modelsign.py)."""
    return f"runs/{run_id}/attestations/epoch-{epoch:06d}.model-signing.sig"


def prover_note_key(receipt_key: str) -> str:
    """Who made a receipt and how long it took (informational; nothing trusts it)."""
    return receipt_key.removesuffix(".receipt") + ".prover.json"


@dataclass(frozen=True)
class Manifest:
    """``run.json``: spec, determinism profile, dataset root, image id, public key, genesis."""

    raw: bytes
    doc: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.doc["run_id"]

    @property
    def spec(self) -> RunSpec:
        return parse_spec(self.doc["spec"], f"runs/{self.run_id}/run.json")

    @property
    def image_id(self) -> bytes:
        return bytes.fromhex(self.doc["image_id"])

    @cached_property
    def digest(self) -> bytes:
        return manifest_digest(self.doc)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.doc["steps_per_epoch"])

    @classmethod
    def load(cls, store: Store, run_id: str) -> Manifest:
        key = keys(run_id)["manifest"]
        raw = store.read(key)
        try:
            doc = json.loads(raw)
            if doc["run_id"] != run_id:
                raise ValueError(f"names run {doc['run_id']!r}")
            parse_spec(doc["spec"], key)
            digests = (
                "image_id",
                "public_key",
                "genesis_state_digest",
                "dataset_root",
                "optimizer_digest",
            )
            for field in digests:
                if len(bytes.fromhex(doc[field])) != 32:
                    raise ValueError(f"{field} is not 32 bytes")
            for field in ("dataset_len", "steps_per_epoch"):
                if not isinstance(doc[field], int):
                    raise TypeError(f"{field} is not an integer")
        except (ValueError, KeyError, TypeError, SpecError) as e:
            raise IntegrityError(f"{key}: not a valid run manifest ({e})") from None
        return cls(raw=raw, doc=doc)


def epoch_entries(entries: list[Entry]) -> dict[int, Entry]:
    return {e.body["epoch"]: e for e in entries if e.kind == "epoch"}


def receipt_entries(entries: list[Entry]) -> dict[int, Entry]:
    return {e.body["epoch"]: e for e in entries if e.kind == "receipt"}


def claim_of(entry: Entry) -> EpochClaim:
    return EpochClaim.from_json(entry.body["claim"])


def open_ledger(store: Store, manifest: Manifest) -> tuple[Ledger, list[Entry]]:
    ledger = Ledger(store, manifest.run_id, manifest.doc["public_key"])
    entries = ledger.entries()
    if (
        not entries
        or entries[0].kind != "run"
        or entries[0].body.get("manifest_sha256") != sha256_hex(manifest.raw)
    ):
        raise IntegrityError(f"runs/{manifest.run_id}/run.json: does not match ledger entry 0")
    return ledger, entries


def read_or_none(store: Store, key: str) -> bytes | None:
    try:
        return store.read(key)
    except NotFoundError:
        return None
