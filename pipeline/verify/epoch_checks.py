"""The checks of one committed epoch: its claim against the manifest, its records, its receipt
and journal, and its checkpoints, each a named pass or fail (``verify_epoch``). ``verifier.py``
runs them for every epoch asked about."""

from __future__ import annotations

from veritrain.pipeline.checkpoint.digest import checkpoint_digest
from veritrain.pipeline.checkpoint.tensors import (
    TensorInfo,
    check_tensors,
    read_header,
    same_layout,
)
from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.entries import (
    CheckpointBody,
    CheckpointEntry,
    Entry,
    EpochEntry,
    ReceiptBody,
    ReceiptEntry,
)
from veritrain.pipeline.run.manifest import (
    Manifest,
    check_committed,
    claim_digest,
    load_epoch_records,
    load_pending_records,
    optimizer_digest,
    read_committed,
)
from veritrain.pipeline.run.spec import RunSpec
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import manifest_key
from veritrain.pipeline.verify.checks import (
    COMMITTED,
    PROVEN,
    Check,
    EpochReport,
    checked,
    run_check,
)
from veritrain.prover import (
    EpochClaim,
    StepRecord,
    VeritrainError,
    check_records,
    image_id,
    receipt_kind,
    verify_receipt,
)
from veritrain.prover.errors import message


def verify_epoch(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    epochs: dict[int, EpochEntry],
    receipts: dict[int, ReceiptEntry],
    e: int,
    *,
    audit: bool = False,
) -> EpochReport:
    entry = epochs[e]
    claim = entry.body.claim
    rep = EpochReport(
        e, COMMITTED, claim.first_step, claim.step_count, claim.end_state_digest.hex()
    )
    checks = rep.checks
    prev = epochs[e - 1].body.claim if e > 0 else None
    run_check(checks, "claim", lambda: _check_claim(manifest, claim))
    run_check(checks, "records", lambda: _check_records(store, manifest, entry, claim, prev))
    proven: EpochClaim | None = None  # the receipt's journal, once the receipt checks out
    if e in receipts:
        rbody = receipts[e].body
        proven = checked(checks, "receipt", lambda: _check_receipt(store, manifest, rbody, claim))
        journal = proven if proven is not None else claim
        run_check(checks, "journal", lambda: _check_journal_file(store, rbody, journal))
        if proven is not None:
            rep.status = PROVEN
    elif audit:
        checks.append(Check("receipt", False, f"epoch {e} has no receipt: committed, not proven"))
    # The end state is compared with the receipt's journal where there is one: an auditor trusts
    # the proof, not the trainer's ledger.
    end = (proven if proven is not None else claim).end_state_digest
    run_check(
        checks,
        "checkpoint",
        lambda: _check_checkpoints(
            store, manifest, entries, entry, claim, end, all_of_epoch=not audit
        ),
    )
    return rep


def _check_claim(manifest: Manifest, claim: EpochClaim) -> str:
    """The ledger's claim is about this run as its manifest describes it (the guest checks each
    claim against its predecessor, never against the manifest)."""
    spec = manifest.spec
    expected = {
        "run_id": manifest.run_id,
        "image_id": manifest.image_id,
        "first_step": claim.epoch * manifest.steps_per_epoch,
        "step_count": manifest.steps_per_epoch,
        "dataset_root": manifest.dataset_root,
        "dataset_len": manifest.dataset_len,
        "sampler_seed": spec.seed,
        "batch_size": spec.batch_size,
        "optimizer_digest": optimizer_digest(spec),
        "schedule": spec.schedule_for(manifest.dataset_len),
    }
    if claim.epoch == 0:
        expected["start_state_digest"] = manifest.genesis_state_digest
    wrong = [k for k, v in expected.items() if getattr(claim, k) != v]
    if wrong:
        raise IntegrityError(
            f"{manifest_key(manifest.run_id)}: the ledger's claim of epoch {claim.epoch} "
            f"differs in {', '.join(wrong)}"
        )
    return ""


def _check_records(
    store: Store,
    manifest: Manifest,
    entry: EpochEntry,
    claim: EpochClaim,
    prev: EpochClaim | None,
) -> str:
    records = load_epoch_records(store, entry)
    try:
        # The records alone: a canonical epoch's re-executed steps are the receipt's to prove.
        check_records(claim, prev, records)
    except VeritrainError as e:
        msg = message(e)
        if manifest.image_id != image_id():
            # Records are checked with this build's rules; a run made by another guest may
            # follow another protocol version's rules.
            msg += f" (checked with this build's guest {image_id().hex()[:16]}…, not the run's)"
        raise IntegrityError(f"{entry.body.records}: {msg}") from None
    return f"{len(records)} records"


def _check_receipt(
    store: Store, manifest: Manifest, rbody: ReceiptBody, claim: EpochClaim
) -> EpochClaim:
    """The proof first, so the detail says what is wrong with a substituted receipt (fake, not
    a receipt, another guest, another run or epoch); its bytes against the ledger last."""
    key = rbody.receipt
    data = store.read(key)
    try:
        journal = verify_receipt(data, manifest.image_id)
    except VeritrainError as e:
        raise IntegrityError(f"{key}: {message(e)}") from None
    if (journal.run_id, journal.epoch) != (claim.run_id, claim.epoch):
        raise IntegrityError(
            f"{key}: proves run {journal.run_id} epoch {journal.epoch}, "
            f"not run {claim.run_id} epoch {claim.epoch}"
        )
    if journal != claim:
        raise IntegrityError(f"{key}: proves another claim than the ledger's for this epoch")
    kind = receipt_kind(data)
    if kind != "succinct":
        # A valid proof, but not one this version makes: protocol 1 runs stored composite
        # receipts, whose size grows with the lineage (PROTOCOL.md §13).
        raise IntegrityError(
            f"{key}: a {kind} receipt (protocol 1, made by veritrain before succinct receipts); "
            "this version verifies succinct receipts: verify the run with the version that made it"
        )
    check_committed(key, data, rbody.receipt_sha256)
    if rbody.claim_digest != claim_digest(claim):
        raise IntegrityError(
            f"{key}: its ledger entry's claim_digest is not the claim's digest "
            '(H("veritrain/claim/v1", claim bytes), PROTOCOL.md §9)'
        )
    return journal


def _check_journal_file(store: Store, rbody: ReceiptBody, journal: EpochClaim) -> str:
    key = rbody.journal
    try:
        doc = load_json(store.read(key))
    except ValueError as e:
        raise IntegrityError(f"{key}: not JSON ({e})") from None
    if doc != journal.journal_json():
        raise IntegrityError(f"{key}: does not match the receipt's journal")
    return f"{key.rsplit('/', 1)[-1]} is the receipt's journal"


def _check_checkpoints(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    entry: EpochEntry,
    claim: EpochClaim,
    end_digest: bytes,
    *,
    all_of_epoch: bool,
) -> str:
    """Every checkpoint of the epoch (or only its end, ``all_of_epoch=False``): the file's bytes
    are the ledger's, and the state digest recomputed from its tensors is the one the ledger, the
    records and the claim give for that step. Mid-epoch resume records must be a prefix of the
    epoch's records."""
    first, end = claim.first_step, claim.first_step + claim.step_count
    points: list[tuple[CheckpointBody, bytes]] = [(entry.body.checkpoint, end_digest)]
    if all_of_epoch:
        try:
            records = load_epoch_records(store, entry)
        except (IntegrityError, NotFoundError):
            records = None  # the "records" check reports it; judge checkpoints by the ledger alone
        if records is not None and len(records) != claim.step_count:
            records = None
        for body in (x.body for x in entries if isinstance(x, CheckpointEntry)):
            if body.step == 0 and first == 0:
                points.append((body, claim.start_state_digest))
            elif first < body.step < end:
                points.append((body, _mid_epoch_digest(body, records, first)))
                _check_pending_records(store, body, records, first)
    spec = manifest.spec
    found = [
        (body.checkpoint, _check_checkpoint(store, spec, manifest.digest, body, expected))
        for body, expected in points
    ]
    steps = "steps " + ", ".join(str(s) for s in sorted(b.step for b, _ in points))
    imported = [key.split(".")[0] for key, _ in spec.imports()]
    if not imported:
        built = f"{spec.model.kind} and {spec.optimizer.kind}"
        return f"{steps}; tensors as the spec's {built} build them"
    for key, header in found[1:]:
        if not same_layout(found[0][1], header):
            raise IntegrityError(
                f"{key}: its parameters differ in names, dtypes or shapes from {found[0][0]}'s"
            )
    return (
        f"{steps}; {' and '.join(f'{k}: import' for k in imported)}, so tensor names, dtypes "
        "and shapes were only checked for consistency across these checkpoints"
    )


def _mid_epoch_digest(body: CheckpointBody, records: list[bytes] | None, first: int) -> bytes:
    stated = bytes.fromhex(body.state_digest)
    if records is not None:
        rec = StepRecord.from_bytes(records[body.step - 1 - first])
        if rec.state_digest != stated:
            raise IntegrityError(
                f"{body.checkpoint}: its ledger entry's state digest is not the one the "
                f"record of step {rec.step} states"
            )
    return stated


def _check_pending_records(
    store: Store, body: CheckpointBody, records: list[bytes] | None, first: int
) -> None:
    if body.pending_records is None:
        return
    pending = load_pending_records(store, body)
    if records is not None and pending != records[: body.step - first]:
        raise IntegrityError(
            f"{body.pending_records}: not the epoch's records up to step {body.step}"
        )


def _check_checkpoint(
    store: Store, spec: RunSpec, digest_of_manifest: bytes, body: CheckpointBody, expected: bytes
) -> dict[str, TensorInfo]:
    """The file is the ledger's, holds the tensors the spec builds at its step (a trainer could
    re-sign a manifest whose spec builds another model), and has the stated state digest."""
    key = body.checkpoint
    data = read_committed(store, key, body.checkpoint_sha256)
    found = read_header(data, key)
    check_tensors(spec, body.step, found, data, key, digest_of_manifest)
    digest = checkpoint_digest(data, key)
    if digest.hex() != body.state_digest or digest != expected:
        raise IntegrityError(
            f"{key}: recomputed state digest is not the one stated for step {body.step}"
        )
    return found
