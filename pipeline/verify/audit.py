"""Audit: copy one epoch's evidence out of a store into a folder, then verify it from that folder
alone, as an auditor who trusts nothing else would.

The folder is a store of its own (the LocalStore layout, the same keys as the run's store), plus
``audit.json`` saying what was pulled from where:

    DIR/audit.json                                       run URI, run id, epoch, sha256 per object
    DIR/runs/<run_id>/run.json                           the manifest (pinned image id, public key)
    DIR/runs/<run_id>/ledger/<seq:012d>.json             the whole ledger (below: why whole)
    DIR/runs/<run_id>/records/epoch-<e:06d>.bin          the epoch's step records
    DIR/runs/<run_id>/checkpoints/step-<s:012d>.safetensors   the epoch's end checkpoint
    DIR/runs/<run_id>/receipts/epoch-<e:06d>.receipt     and .journal.json beside it
    DIR/runs/<run_id>/challenges/...                     fraud proofs, if the run has any, and
                                                         what re-checking them reads (checkpoints,
                                                         records), for proofs about epochs <= N

The ledger is copied whole: the epoch's entries are only trustworthy as links of the chain from
entry 0 (which binds the manifest), the previous epoch's claim (the lineage link) is in it, and
later entries (challenges) can change an epoch's state. It is small: a few hundred bytes per entry.

Because the folder is a store, ``veritrain verify DIR/runs/<run_id> --epoch N`` reads it too (and
then also asks for the epoch's mid-epoch checkpoints, which an audit does not copy).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from veritrain.pipeline.data.sources import check_recorded_shards
from veritrain.pipeline.documents import MAX_JSON_BYTES, load_json, read_document
from veritrain.pipeline.errors import IntegrityError, StorageError, UsageError
from veritrain.pipeline.run.determinism import DeterminismProfile
from veritrain.pipeline.run.entries import Entry, EpochEntry, ReceiptEntry, parse_entry
from veritrain.pipeline.run.manifest import Manifest, checkpoint_bodies, epoch_entries, sha256_hex
from veritrain.pipeline.run.tasks import ShardsDataset
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import challenges_prefix, ledger_prefix, manifest_key, run_prefix
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.store.uris import run_uri
from veritrain.pipeline.verify.checks import RunReport
from veritrain.pipeline.verify.policy import Policy
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import VeritrainError

AUDIT_FILE = "audit.json"


def audit_epoch(
    store: Store,
    run_id: str,
    epoch: int,
    out: str | Path,
    now: float | None = None,
    log: Callable[[str], None] = lambda _: None,
    replayable: list[DeterminismProfile] | None = None,
    policy: Policy | None = None,
    dataset: str | None = None,
) -> RunReport:
    """Pulls epoch ``epoch`` of the run into ``out`` and verifies it from ``out`` alone; with
    ``dataset`` ("" where the run read it, or this machine's copy), a sharded run's dataset is
    checked against run.json first (``check_dataset``).

    ``out`` must be empty or missing, or hold exactly this audit (same run and epoch, the files
    its ``audit.json`` lists): then nothing is pulled and the folder is verified again, offline.
    """
    out = Path(out)
    if holds_audit(out, run_id, epoch):
        log(f"{out}: re-verifying the audit of run {run_id} epoch {epoch} already there")
    else:
        if dataset is not None:
            check_dataset(store, run_id, dataset or None)
        pull_epoch(store, run_id, epoch, out, log)
    return verify_audit(out, run_id, epoch, now, replayable, policy)


def check_dataset(store: Store, run_id: str, here: str | None = None) -> None:
    """A sharded run's shards, where its spec keeps them (or at ``here``, this machine's copy),
    are the ones run.json records (the listing and each shard's sha256, every shard read once):
    DatasetChangedError naming the first that is not, before anything is pulled. UsageError for
    a run whose dataset is not sharded (a challenge checks any dataset's root). A manifest that
    does not load is left to the verification, which names what is wrong with it."""
    try:
        manifest = Manifest.load(store, run_id)
    except VeritrainError:
        return
    dataset = manifest.spec.dataset
    if manifest.dataset_shards is None or not isinstance(dataset, ShardsDataset):
        raise UsageError(
            f"--dataset: run {run_id}'s dataset is {dataset.kind}, not sharded; audit checks a "
            "sharded dataset's shards (a challenge checks any dataset against its root)"
        )
    uri = dataset.uri if here is None else here
    if "://" not in uri:
        uri = str(Path(uri).absolute())
    check_recorded_shards(uri, manifest.dataset_shards, manifest_key(run_id))


def verify_audit(
    out: str | Path,
    run_id: str,
    epoch: int,
    now: float | None = None,
    replayable: list[DeterminismProfile] | None = None,
    policy: Policy | None = None,
) -> RunReport:
    """Verifies an audit folder: manifest, ledger chain and signatures, the epoch's claim against
    the manifest, its records against the guest's rules (with the previous epoch's claim for the
    link), its receipt against the pinned image id, the journal file, and the end checkpoint's
    recomputed state digest against the receipt's journal (``replayable`` and ``policy``: as
    verify_run's; the folder's run.json is no more trusted than the store's)."""
    return verify_run(
        LocalStore(out), run_id, epoch, now, audit=True, replayable=replayable, policy=policy
    )


def pull_epoch(
    store: Store, run_id: str, epoch: int, out: Path, log: Callable[[str], None] = lambda _: None
) -> dict[str, str]:
    """Copies the epoch's evidence into ``out``; returns {key: sha256} of what was copied.

    Nothing is checked here (the verification of the folder is the check): keys are taken from
    the store's ledger as it is, an object the store lacks is left out and reported by ``log``,
    and only keys inside the run are followed, so a forged ledger cannot make the pull read or
    write anywhere else."""
    base = run_prefix(run_id)
    if not store.list(base + "/"):
        raise StorageError(f"{run_uri(store, run_id)}: no such run (no objects under it)")
    dest = LocalStore(out)
    copied: dict[str, str] = {}

    def copy(key: str) -> bytes | None:
        if not key.startswith(base + "/") or ".." in key.split("/"):
            log(f"{key}: outside run {run_id}; not copied")
            return None
        try:
            data = store.read(key)
        except NotFoundError:
            log(f"{key}: not in the store; the audit will report it missing")
            return None
        dest.create(key, data)
        copied[key] = sha256_hex(data)
        return data

    manifest = _lenient_manifest(copy(manifest_key(run_id)), run_id)
    ledger = []
    for key in store.list(ledger_prefix(run_id)):
        entry = _lenient_entry(copy(key), key)
        if entry is not None:
            ledger.append(entry)
            for wanted in _keys_named(entry, epoch):
                if wanted not in copied:
                    copy(wanted)
    for key in store.list(challenges_prefix(run_id)):
        proof = _lenient_json(copy(key))
        # What re-checking a fraud proof reads, so the folder can judge the disputes too.
        for wanted in _evidence_keys(manifest, ledger, proof, epoch):
            if wanted not in copied:
                copy(wanted)
    doc = {
        "run_uri": run_uri(store, run_id),
        "run_id": run_id,
        "epoch": epoch,
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "objects": dict(sorted(copied.items())),
    }
    # Written last: a folder without it is an interrupted pull, which a rerun refuses.
    dest.create(AUDIT_FILE, json.dumps(doc, indent=1).encode())
    return copied


def _lenient_json(data: bytes | None) -> dict[str, Any] | None:
    """A stored object as a JSON object, or None if it is missing or not one. The pull reads
    leniently: what is malformed names nothing, and the folder's verification reports it."""
    try:
        doc = load_json(data) if data is not None else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _lenient_entry(data: bytes | None, key: str) -> Entry | None:
    """A ledger entry as its model reads it, unchecked (no chain, no signature), or None."""
    doc = _lenient_json(data)
    try:
        return parse_entry(doc, key) if doc is not None else None
    except IntegrityError:
        return None


def _lenient_manifest(data: bytes | None, run_id: str) -> Manifest | None:
    try:
        return Manifest.parse(data, run_id) if data is not None else None
    except IntegrityError:
        return None


def _keys_named(entry: Entry, epoch: int) -> list[str]:
    """Keys of the epoch's objects that a ledger entry names."""
    if isinstance(entry, EpochEntry) and entry.body.epoch == epoch:
        return [entry.body.records, entry.body.checkpoint.checkpoint]
    if isinstance(entry, ReceiptEntry) and entry.body.epoch == epoch:
        return [entry.body.receipt, entry.body.journal]
    return []


def _evidence_keys(
    manifest: Manifest | None, ledger: list[Entry], proof: dict[str, Any] | None, epoch: int
) -> list[str]:
    """Keys a re-check of a fraud proof reads (veritrain.pipeline.challenge.replay.Replay), for a
    proof that bears on ``epoch`` (it names that epoch or an earlier one): its pre-state checkpoint
    and that checkpoint's pending records, the records of every epoch from the one before the
    pre-state to the disputed step's, and the pending records of checkpoints in the run's open
    epoch (a replay counts the committed steps)."""
    if manifest is None or proof is None:
        return []
    spe = manifest.steps_per_epoch
    try:
        step, c = int(proof["step"]), int(proof["pre_state"]["checkpoint_step"])
        if proof["epoch"] > epoch or not 0 <= c <= step:
            return []
    except (KeyError, TypeError, ValueError):
        return []
    records = {e: x.body.records for e, x in epoch_entries(ledger).items()}
    checkpoints = checkpoint_bodies(ledger)
    pre = checkpoints.get(c)
    wanted = [pre.checkpoint, pre.pending_records] if pre is not None else []
    wanted += [records[e] for e in range(max(c - 1, 0) // spe, step // spe + 1) if e in records]
    open_epoch = len(records)
    wanted += [cp.pending_records for s, cp in checkpoints.items() if s // spe == open_epoch]
    return [k for k in wanted if k is not None]


def holds_audit(out: Path, run_id: str, epoch: int) -> bool:
    """True if ``out`` holds exactly the audit of this run and epoch; False if it is empty or
    missing; UsageError otherwise (never mix an audit with other files)."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise UsageError(f"{out}: not a folder")
    if not any(out.iterdir()):
        return False
    files = {str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()}
    try:
        doc = load_json(read_document(out / AUDIT_FILE, MAX_JSON_BYTES))
        same = (
            doc["run_id"] == run_id
            and doc["epoch"] == epoch
            and files == set(doc["objects"]) | {AUDIT_FILE}
        )
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise UsageError(
            f"{out}: not empty and not exactly an audit of run {run_id} epoch {epoch}; "
            "give an empty or new folder"
        )
    return True
