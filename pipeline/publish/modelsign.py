"""Signing a proven epoch's end checkpoint with OpenSSF model_signing (docs/PROTOCOL.md §14).

model_signing's private-key method signs with EC keys (P-256, P-384, P-521), never with the
run's Ed25519 key, so the signer brings their own key: the bundle says "this key vouches for
these bytes", the in-toto attestation (pipeline/publish/attest.py) says what the bytes are.

The checkpoint is hashed with model_signing's ``files`` serialization and sha256, so its
manifest's one resource digest is the sha256 of the file: the ledger's ``checkpoint_sha256``
and the attestation's subject digest, one object in all three. The state digest cannot be that
object (PROTOCOL.md §14 says why).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import ConflictError, IntegrityError, UsageError
from veritrain.pipeline.publish.attest import require_verified, write_new_file
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, read_committed
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import model_signature_key
from veritrain.pipeline.store.uris import object_uri
from veritrain.pipeline.verify.checks import FINAL, PROVEN, RunReport

SIGNABLE = (PROVEN, FINAL)
# The curves model_signing's elliptic-key signer accepts (its _check_supported_ec_key).
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def check_ec_key(path: str) -> None:
    """Raises UsageError naming ``--key`` unless ``path`` is an unencrypted PEM private key on a
    curve model_signing signs with."""

    def bad(why: str) -> UsageError:
        return UsageError(f"--key {path}: {why}")

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise bad(f"cannot read ({e.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise bad("the key is encrypted; give an unencrypted PEM private key") from None
    except ValueError:
        raise bad("not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey")
        raise bad(
            f"not an EC key but {kind}; model_signing signs with EC keys on P-256, P-384 or "
            "P-521 (the run's Ed25519 key cannot sign a model_signing bundle)"
        )
    if key.curve.name not in CURVES:
        raise bad(
            f"an EC key on {key.curve.name}; model_signing signs on P-256, P-384 or P-521 only"
        )


def sign_checkpoint(
    store: Store, run_id: str, epoch: int, key_path: str, report: RunReport
) -> tuple[bytes, str]:
    """The model_signing bundle of epoch ``epoch``'s end checkpoint, and the checkpoint's key.
    ``report`` is verify_run's of that epoch, which must be proven or final with every check
    passed (``replayable`` aside). The checkpoint is copied from the store into a temporary
    folder under its own file name and signed there, so an S3 store signs the same way."""
    from model_signing import hashing, signing  # slow to import; only this command needs it

    require_verified(report, epoch, SIGNABLE, "only a proven or final epoch's checkpoint is signed")
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    end = epoch_entries(entries)[epoch].body.checkpoint
    # The ledger's word again: the file may have changed since verify read it.
    data = read_committed(store, end.checkpoint, end.checkpoint_sha256)
    with tempfile.TemporaryDirectory(prefix="veritrain-sign-") as tmp:
        model = Path(tmp) / Path(end.checkpoint).name
        model.write_bytes(data)
        bundle = Path(tmp) / "bundle.sig"
        files = hashing.Config().use_file_serialization(hashing_algorithm="sha256")
        try:
            signing.Config().use_elliptic_key_signer(private_key=key_path).set_hashing_config(
                files
            ).sign(model, bundle)
        except ValueError as e:
            raise UsageError(f"--key {key_path}: model_signing refused it ({e})") from None
        out = bundle.read_bytes()
    signed = signed_digest(out)
    if signed != end.checkpoint_sha256:
        raise IntegrityError(
            f"{end.checkpoint}: model_signing's manifest holds {signed}, not the ledger's "
            f"sha256 {end.checkpoint_sha256}"
        )
    return out, end.checkpoint


def write_bundle(store: Store, run_id: str, epoch: int, bundle: bytes, out: str | None) -> str:
    """Writes to ``out`` (a local file) or, by default, beside the run's attestations in the
    store; returns the path or URI written. ECDSA signatures differ each time, so a second
    bundle of the same epoch never replaces the first (ConflictError)."""
    if out is not None:
        return write_new_file(out, bundle, "--out")
    key = model_signature_key(run_id, epoch)
    path = object_uri(store, key)
    try:
        store.create(key, bundle)
    except ConflictError:
        raise ConflictError(
            f"{path}: epoch {epoch} was signed before and that bundle is kept; write another "
            "with --out FILE"
        ) from None
    return path


def signed_digest(bundle: bytes) -> str | None:
    """The one resource digest a model_signing bundle of a single file signs (unverified)."""
    try:
        payload = load_json(base64.b64decode(load_json(bundle)["dsseEnvelope"]["payload"]))
        (resource,) = payload["predicate"]["resources"]
        return resource["digest"] if resource["algorithm"] == "sha256" else None
    except (ValueError, KeyError, TypeError):
        return None
