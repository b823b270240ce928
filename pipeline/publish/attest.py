"""in-toto attestations of verified epochs (docs/PROTOCOL.md §14).

``attest`` writes an in-toto Statement v1 whose subject is an epoch's end checkpoint (its store
key and the sha256 of its bytes) and whose predicate says how it came about, in SLSA provenance
v1's shape (buildDefinition, runDetails) plus the epoch's claim and its finality state, wrapped
in a DSSE envelope signed with the run's Ed25519 key. The envelope is made and checked with
securesystemslib (DSSE's maintained Python implementation), so what it writes is what other
in-toto tooling reads.

An epoch is attested only when every check ``verify`` makes of it passes (``replayable`` aside:
the finality state carries its outcome), so the statement only ever repeats what a verifier
found. ``check_attestation`` recomputes the statement from the store and compares.
"""

from __future__ import annotations

import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from veritrain.pipeline.documents import MAX_JSON_BYTES, DocumentError, load_json, read_document
from veritrain.pipeline.errors import ConflictError, IntegrityError, StorageError, UsageError
from veritrain.pipeline.run.entries import CheckpointBody, Entry, EpochEntry
from veritrain.pipeline.run.ledger import canonical_json, load_key, public_key_hex
from veritrain.pipeline.run.manifest import (
    Manifest,
    checkpoint_bodies,
    epoch_entries,
    open_ledger,
    receipt_entries,
    sha256_hex,
)
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import attestation_key, manifest_key, run_prefix
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.store.uris import object_uri, run_uri
from veritrain.pipeline.verify.checks import (
    COMMITTED,
    FINAL,
    PROVEN,
    UNREPLAYABLE,
    EpochReport,
    RunReport,
    run_check,
)
from veritrain.pipeline.verify.verifier import verify_run

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# veritrain's own types, not SLSA's provenance type: PROTOCOL.md §14 says why. They are
# identifiers (in-toto TypeURIs), defined by PROTOCOL.md, not locations.
PREDICATE_TYPE = "urn:veritrain:epoch-attestation:v1"
BUILD_TYPE = "urn:veritrain:epoch:v1"
GUEST_ID_PREFIX = "urn:veritrain:guest:"
# The states an attestation may state: committed has nothing to attest, and a disputed epoch
# fails verify's ``challenges`` check.
ATTESTABLE = (PROVEN, FINAL, UNREPLAYABLE)
# Checks whose failure an attestation expresses instead of refusing: the finality state says
# proven or unreplayable where the run's determinism profile is not replayable here.
_STATED_BY_FINALITY = frozenset({"replayable"})


def require_verified(
    report: RunReport, epoch: int, allowed: tuple[str, ...], what: str
) -> EpochReport:
    """The epoch's report, if everything verify checked of it passed and its state is one of
    ``allowed``. Raises UsageError (no such epoch, not proven yet, another state) or
    IntegrityError (a check failed), each naming the epoch and why."""
    run_id = report.run_id
    for c in report.checks:
        if c.name == "epoch_exists" and not c.ok:
            raise UsageError(f"--epoch {epoch}: {c.detail}")
        if not c.ok and c.name not in _STATED_BY_FINALITY:
            raise IntegrityError(f"run {run_id} does not verify ({c.name}: {c.detail}); {what}")
    rep = report.epochs[0]
    failed = [c for c in rep.checks if not c.ok]
    if rep.status == COMMITTED and not failed and not any(c.name == "receipt" for c in rep.checks):
        raise UsageError(
            f"--epoch {epoch}: epoch {epoch} of run {run_id} is committed, not proven (its receipt "
            f"is not stored yet); {what}"
        )
    if failed:
        raise IntegrityError(
            f"epoch {epoch} of run {run_id} does not verify ({failed[0].name}: "
            f"{failed[0].detail}); {what}"
        )
    if rep.status not in allowed:
        raise UsageError(f"--epoch {epoch}: epoch {epoch} of run {run_id} is {rep.status}; {what}")
    return rep


def _parent_checkpoint(
    entries: list[Entry], epochs: dict[int, EpochEntry], epoch: int
) -> CheckpointBody:
    """The ledger's entry for the checkpoint an epoch starts from: the genesis checkpoint for
    epoch 0, else the previous epoch's end checkpoint."""
    if epoch > 0:
        return epochs[epoch - 1].body.checkpoint
    return checkpoint_bodies(entries)[0]


def statement(
    manifest: Manifest, entries: list[Entry], epoch: int, finality: str
) -> dict[str, Any]:
    """The in-toto Statement about epoch ``epoch``'s end checkpoint, from a verified ledger."""
    run_id = manifest.run_id
    entry = epoch_entries(entries)[epoch]
    claim = entry.body.claim
    end = entry.body.checkpoint
    parent = _parent_checkpoint(entries, epoch_entries(entries), epoch)
    receipt = receipt_entries(entries)[epoch].body
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": end.checkpoint, "digest": {"sha256": end.checkpoint_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "run_id": run_id,
                    "epoch": epoch,
                    "spec": manifest.content["spec"],
                },
                "internalParameters": {"determinism": manifest.content["determinism"]},
                "resolvedDependencies": [
                    {
                        "name": manifest_key(run_id),
                        "digest": {"sha256": sha256_hex(manifest.raw)},
                    },
                    {
                        "name": "dataset",
                        "digest": {"veritrainDatasetRoot": claim.dataset_root.hex()},
                    },
                    {
                        "name": parent.checkpoint,
                        "digest": {
                            "sha256": parent.checkpoint_sha256,
                            "veritrainStateDigest": claim.start_state_digest.hex(),
                        },
                    },
                ],
            },
            "runDetails": {
                "builder": {"id": GUEST_ID_PREFIX + claim.image_id.hex()},
                "byproducts": [
                    {"name": receipt.receipt, "digest": {"sha256": receipt.receipt_sha256}},
                    {"name": entry.body.records, "digest": {"sha256": entry.body.records_sha256}},
                ],
            },
            "claim": claim.journal_json(),
            "finality": finality,
        },
    }


def sign_statement(stmt: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The DSSE envelope (JSON, one signature) over the statement's canonical JSON. Ed25519 is
    deterministic, so the same statement and key always give the same bytes."""
    envelope = Envelope(canonical_json(stmt), PAYLOAD_TYPE, {})
    envelope.sign(CryptoSigner(key))
    return json.dumps(envelope.to_dict(), indent=1, sort_keys=True).encode() + b"\n"


def attest(store: Store, run_id: str, epoch: int, report: RunReport) -> tuple[bytes, dict]:
    """The signed envelope and the statement for a verified epoch (``report``: verify_run's of
    that epoch). Raises UsageError, IntegrityError (see require_verified) or StorageError (no
    run key here, or another run's)."""
    rep = require_verified(report, epoch, ATTESTABLE, "only a verified epoch is attested")
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    key = load_key(run_id)
    if public_key_hex(key) != manifest.public_key.hex():
        raise StorageError(
            f"the key of run {run_id} here (public {public_key_hex(key)[:16]}…) is not the one "
            f"{manifest_key(run_id)} names ({manifest.public_key.hex()[:16]}…)"
        )
    stmt = statement(manifest, entries, epoch, rep.status)
    return sign_statement(stmt, key), stmt


def write_attestation(
    store: Store, run_id: str, epoch: int, finality: str, data: bytes, out: str | None
) -> str:
    """Writes to ``out`` (a local file) or, by default, to the run's attestations/ in the store;
    returns the path or URI written. Never replaces other bytes (ConflictError)."""
    if out is not None:
        return write_new_file(out, data, "--out")
    key = attestation_key(run_id, epoch, finality)
    store.create(key, data)
    return object_uri(store, key)


def write_new_file(path: str, data: bytes, flag: str) -> str:
    """Creates a local file atomically; one with the same bytes is left as it is, one with
    other bytes is kept and ConflictError raised (nothing already written is lost)."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    try:
        LocalStore(p.parent).create(p.name, data)
    except ConflictError:
        raise ConflictError(
            f"{flag} {path}: already exists with other content; it was kept (choose another path)"
        ) from None
    return str(p)


def read_attestation(arg: str, store: Store, run_id: str) -> bytes:
    """``--attestation``: a local file, or an object under the run URI (say on S3)."""
    under = run_uri(store, run_id) + "/"
    if arg.startswith("s3://"):
        if not arg.startswith(under):
            raise UsageError(
                f"--attestation {arg}: neither a local file nor an object under {under}"
            )
        key = f"{run_prefix(run_id)}/{arg.removeprefix(under)}"
        try:
            return store.read(key)
        except NotFoundError:
            raise UsageError(f"--attestation {arg}: no such object") from None
    try:
        return read_document(arg, MAX_JSON_BYTES)
    except OSError as e:
        raise UsageError(f"--attestation {arg}: cannot read ({e.strerror})") from None
    except DocumentError as e:  # as a malformed attestation: it fails verification
        raise IntegrityError(f"--attestation {arg}: {e}") from None


def _envelope(data: bytes, source: str) -> Envelope:
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{source}: not a DSSE envelope of an in-toto statement ({why})")

    try:
        doc = load_json(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("signatures"), list):
            raise bad("no signatures list")
        envelope = Envelope.from_dict(doc)
    except DocumentError as e:
        raise bad(str(e)) from None
    except (ValueError, KeyError, TypeError, FormatError, binascii.Error) as e:
        raise bad(f"{type(e).__name__}: {e}") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise bad(f"payloadType {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
    return envelope


def attested_epoch(data: bytes) -> int | None:
    """The epoch an attestation names, read without checking anything (to know which epoch to
    verify); None if it names none."""
    try:
        epoch = load_json(_envelope(data, "").payload)["predicate"]["claim"]["epoch"]
    except (IntegrityError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


def check_attestation(
    store: Store,
    report: RunReport,
    data: bytes,
    source: str,
    trainer_keys: list[bytes] | None = None,
) -> str:
    """Checks an attestation against a verified run: signed by the run's key (or one of
    ``trainer_keys``, when the verifier pins them), about this run and one of the verified
    epochs, and equal to the statement recomputed from the store for that epoch with the
    finality state verify found. One relaxation: an epoch attested ``proven`` that has since
    become final (or unreplayable) still matches, since that statement was true and stays so.
    Raises IntegrityError naming ``source`` and the first difference."""
    run_id = report.run_id
    envelope = _envelope(data, source)
    manifest = Manifest.load(store, run_id)
    raw_keys = trainer_keys if trainer_keys is not None else [manifest.public_key]
    ssl_keys: list[Key] = [
        SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(k)) for k in raw_keys
    ]
    try:
        envelope.verify(ssl_keys, 1)
    except VerificationError:
        whose = "a pinned trainer key" if trainer_keys is not None else f"run {run_id}'s key"
        signed = ", ".join(s[:16] + "…" for s in envelope.signatures) or "nobody"
        raise IntegrityError(
            f"{source}: not signed by {whose} (keyid {ssl_keys[0].keyid[:16]}…; signed by "
            f"{signed}), or its payload was changed"
        ) from None
    try:
        stmt = load_json(envelope.payload)
        claim = stmt["predicate"]["claim"]
        named = (claim["run_id"], claim["epoch"])
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{source}: its statement names no epoch claim ({e})") from None
    if named[0] != run_id:
        raise IntegrityError(f"{source}: attests run {named[0]}, not {run_id}")
    rep = next((r for r in report.epochs if r.epoch == named[1]), None)
    if rep is None:
        verified = ", ".join(str(r.epoch) for r in report.epochs) or "none"
        raise IntegrityError(
            f"{source}: attests epoch {named[1]} of run {run_id}; epochs verified here: {verified}"
        )
    failed = [c.name for c in rep.checks if not c.ok and c.name != "attestation"]
    if failed:
        raise IntegrityError(
            f"{source}: attests epoch {rep.epoch}, which does not verify ({', '.join(failed)})"
        )
    if rep.status not in ATTESTABLE:
        raise IntegrityError(f"{source}: attests epoch {rep.epoch}, which is {rep.status} here")
    _, entries = open_ledger(store, manifest)
    expected = statement(manifest, entries, rep.epoch, rep.status)
    predicate = stmt.get("predicate") if isinstance(stmt, dict) else None
    stated = predicate.get("finality") if isinstance(predicate, dict) else None
    if stated == PROVEN and rep.status in (FINAL, UNREPLAYABLE):
        expected["predicate"]["finality"] = PROVEN
    elif stated in ATTESTABLE and stated != rep.status:
        raise IntegrityError(
            f"{source}: attests epoch {rep.epoch} {stated}, but this verifier finds it {rep.status}"
        )
    diff = _first_difference(stmt, expected)
    if diff is not None:
        where, got, want = diff
        values = f" (attested {_short(got)}, the store {_short(want)})" if want is not None else ""
        raise IntegrityError(
            f"{source}: {where} differs from what the store says of epoch {rep.epoch}{values}"
        )
    return (
        f"{Path(source).name}: epoch {rep.epoch} {stated}, subject {stmt['subject'][0]['name']} "
        f"sha256 {stmt['subject'][0]['digest']['sha256'][:16]}…, signed by keyid "
        f"{next(iter(envelope.signatures))[:16]}…"
    )


def _first_difference(got: Any, want: Any, path: str = "statement") -> tuple[str, Any, Any] | None:
    """(JSON path, attested value, expected value) of the first place ``got`` differs from
    ``want``; the values are None where a key or an item is missing or extra."""
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got or k not in want:
                return f"{path}.{k} ({'missing' if k not in got else 'unexpected'})", None, None
            found = _first_difference(got[k], want[k], f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return f"{path} (has {len(got)} items, not {len(want)})", None, None
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            found = _first_difference(g, w, f"{path}[{i}]")
            if found:
                return found
        return None
    if got != want or type(got) is not type(want):
        return path, got, want
    return None


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "…"


def verify_attestation(
    store: Store,
    run_id: str,
    data: bytes,
    source: str,
    epoch: int | None = None,
    trainer_keys: list[bytes] | None = None,
    **verify_args: Any,
) -> RunReport:
    """``verify --attestation``: verifies the epoch the attestation names (or ``epoch``) as
    verify_run does, and adds the check ``attestation`` (check_attestation) to that epoch's
    checks, or to the run's where the attestation names no epoch verified here."""
    wanted = epoch if epoch is not None else attested_epoch(data)
    report = verify_run(store, run_id, wanted, **verify_args)
    target = next((r.checks for r in report.epochs if r.epoch == wanted), report.checks)
    run_check(
        target,
        "attestation",
        lambda: check_attestation(store, report, data, source, trainer_keys),
    )
    return report
