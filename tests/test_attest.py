"""in-toto attestations (`attest`, `verify --attestation`) and model_signing bundles
(`sign-checkpoint`) of the tiny run's proven epochs, each checked with the third party's own
code: securesystemslib's DSSE Envelope and in-toto-attestation's protobuf bindings for the
attestation, model_signing's verifier for the bundle. Tampering happens on copies of the run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, veritrain
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from model_signing import verifying
from s3servers import moto_s3, set_s3_env  # noqa: F401 - fixture
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

pytestmark = pytest.mark.proving  # tiny_run proves its epochs for real


def _copy(tiny_run, tmp_path: Path) -> tuple[Path, str, str]:
    """A private copy of the tiny run's store: (store folder, run id, run URI)."""
    store, run_id, _ = tiny_run
    dst = tmp_path / "store"
    shutil.copytree(store, dst)
    return dst, run_id, f"{dst}/runs/{run_id}"


def _ledger(store: Path, run_id: str) -> list[dict]:
    folder = store / "runs" / run_id / "ledger"
    return [json.loads(p.read_text()) for p in sorted(folder.iterdir())]


def _epoch_body(store: Path, run_id: str, epoch: int, kind: str = "epoch") -> dict:
    return next(
        e["body"]
        for e in _ledger(store, run_id)
        if e["kind"] == kind and e["body"]["epoch"] == epoch
    )


def _one_line_error(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("veritrain: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _run_key(store: Path, run_id: str) -> SSlibKey:
    """The run's public key as securesystemslib sees it (from run.json; the test trusts the
    store here, since pinning is verify's business)."""
    doc = json.loads((store / "runs" / run_id / "run.json").read_text())
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["public_key"]))
    return SSlibKey.from_crypto(public)


def _status(uri: str, epoch: int) -> str:
    r = veritrain("verify", uri, "--epoch", str(epoch), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["epochs"][0]["status"]


def test_an_attestation_verifies_with_securesystemslib_and_parses_with_in_toto(tiny_run, tmp_path):
    store, run_id, uri = _copy(tiny_run, tmp_path)
    base = store / "runs" / run_id
    r = veritrain("attest", uri, "--epoch", "1")
    assert r.returncode == 0, r.stderr
    status = _status(uri, 1)
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path == base / "attestations" / f"epoch-000001.{status}.intoto.json"
    doc = json.loads(path.read_bytes())

    # The DSSE signature, checked by securesystemslib against the run's public key.
    envelope = Envelope.from_dict(json.loads(path.read_bytes()))
    assert envelope.payload_type == "application/vnd.in-toto+json"
    key = _run_key(store, run_id)
    assert list(envelope.verify([key], 1)) == [key.keyid]

    # The statement, parsed and validated by in-toto-attestation's bindings.
    pb = json_format.Parse(envelope.payload, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    assert pb.type == "https://in-toto.io/Statement/v1"
    epoch1 = _epoch_body(store, run_id, 1)
    end_key = epoch1["checkpoint"]["checkpoint"]
    (subject,) = pb.subject
    assert subject.name == end_key
    assert subject.digest["sha256"] == hashlib.sha256((store / end_key).read_bytes()).hexdigest()

    # The SLSA-shaped parts are SLSA provenance v1's messages, unknown fields refused.
    predicate = json.loads(envelope.payload)["predicate"]
    build = json_format.ParseDict(predicate["buildDefinition"], provenance_pb2.BuildDefinition())
    run = json_format.ParseDict(predicate["runDetails"], provenance_pb2.RunDetails())
    manifest = json.loads((base / "run.json").read_text())
    assert run.builder.id.endswith(manifest["image_id"])
    deps = {d.name: dict(d.digest) for d in build.resolved_dependencies}
    parent_key = _epoch_body(store, run_id, 0)["checkpoint"]["checkpoint"]
    parent_sha = hashlib.sha256((store / parent_key).read_bytes()).hexdigest()
    assert deps[parent_key]["sha256"] == parent_sha
    assert deps["dataset"] == {"veritrainDatasetRoot": manifest["dataset_root"]}
    receipt = _epoch_body(store, run_id, 1, "receipt")
    by = {d.name: dict(d.digest) for d in run.byproducts}
    assert (
        by[receipt["receipt"]]["sha256"]
        == hashlib.sha256((store / receipt["receipt"]).read_bytes()).hexdigest()
    )
    assert predicate["claim"] == json.loads((store / receipt["journal"]).read_text())
    assert predicate["finality"] == status

    r = veritrain("verify", uri, "--attestation", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   epoch 1 (" in r.stdout and ": attestation " in r.stdout
    # Attesting again makes the same bytes (Ed25519 is deterministic), which the write-once
    # store takes as the same object rather than a conflict.
    before = path.read_bytes()
    again = veritrain("attest", uri, "--epoch", "1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(path) and path.read_bytes() == before

    # A changed payload under the original signature: securesystemslib and verify refuse it.
    stmt = json.loads(envelope.payload)
    stmt["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"another model").hexdigest()
    forged = dict(doc, payload=base64.b64encode(json.dumps(stmt).encode()).decode())
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(json.dumps(forged))).verify([key], 1)
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "forged.json")),
        1,
        "attestation",
        "not signed by",
    )

    # The same statement signed by another Ed25519 key: a foreign attestation.
    foreign = Envelope(envelope.payload, envelope.payload_type, {})
    other = CryptoSigner(Ed25519PrivateKey.generate())
    foreign.sign(other)
    with pytest.raises(VerificationError):
        foreign.verify([key], 1)
    (tmp_path / "foreign.json").write_text(json.dumps(foreign.to_dict()))
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "foreign.json")),
        1,
        "not signed by",
        other.public_key.keyid[:16],
    )

    # A lie signed with the run's own key (the trainer's): the statement is compared with
    # what the store says, field by field.
    lie = Envelope(json.dumps(stmt).encode(), envelope.payload_type, {})
    lie.sign(CryptoSigner(_private_run_key(run_id)))
    assert list(lie.verify([key], 1)) == [key.keyid]
    (tmp_path / "lie.json").write_text(json.dumps(lie.to_dict()))
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "lie.json")),
        1,
        "statement.subject[0].digest.sha256 differs",
    )

    # An attestation made while the epoch was proven stays true once it is final.
    if status == "final":
        proven = json.loads(envelope.payload)
        proven["predicate"]["finality"] = "proven"
        early = Envelope(json.dumps(proven).encode(), envelope.payload_type, {})
        early.sign(CryptoSigner(_private_run_key(run_id)))
        (tmp_path / "early.json").write_text(json.dumps(early.to_dict()))
        r = veritrain("verify", uri, "--attestation", str(tmp_path / "early.json"))
        assert r.returncode == 0, r.stderr

    # The attested checkpoint changed in the store: the attestation no longer holds.
    ck = store / end_key
    ck.write_bytes(ck.read_bytes()[:-1] + bytes([ck.read_bytes()[-1] ^ 1]))
    _one_line_error(veritrain("verify", uri, "--attestation", str(path)), 1, "checkpoint")


def _private_run_key(run_id: str) -> Ed25519PrivateKey:
    path = Path(os.environ["VERITRAIN_KEYS"]) / f"{run_id}.ed25519.pem"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_attest_refuses_what_does_not_verify_and_bad_input(tiny_run, unproven_run, tmp_path):
    store, run_id, uri = _copy(tiny_run, tmp_path)
    attestations = store / "runs" / run_id / "attestations"
    _one_line_error(veritrain("attest", uri, "--epoch", "7"), 2, "--epoch 7", "no epoch 7")
    other_store, other_id = unproven_run
    _one_line_error(
        veritrain("attest", f"{other_store}/runs/{other_id}", "--epoch", "0"),
        2,
        "--epoch 0",
        "committed, not proven",
    )
    # No run key on this machine (a verifier's, say): attest signs with the trainer's key.
    env = {**os.environ, "VERITRAIN_KEYS": str(tmp_path / "no-keys")}
    r = subprocess.run(
        [sys.executable, "-m", "veritrain.flows.cli", "attest", uri, "--epoch", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    _one_line_error(r, 3, f"{run_id}.ed25519.pem", "no key of run")
    # The receipt of epoch 0 replaced by a copy of epoch 1's: it proves another claim.
    r0 = _epoch_body(store, run_id, 0, "receipt")["receipt"]
    r1 = _epoch_body(store, run_id, 1, "receipt")["receipt"]
    shutil.copyfile(store / r1, store / r0)
    _one_line_error(veritrain("attest", uri, "--epoch", "0"), 1, "epoch 0", "receipt")
    assert not attestations.exists()
    # An --out file that holds something else is kept.
    out = tmp_path / "mine.json"
    out.write_text("keep me")
    _one_line_error(veritrain("attest", uri, "--epoch", "1", "--out", str(out)), 3, str(out))
    assert out.read_text() == "keep me"
    r = veritrain("attest", uri, "--epoch", "1", "--out", str(tmp_path / "new.json"))
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == str(tmp_path / "new.json")
    assert not attestations.exists()
    # The epoch's receipt entry, the newest, cut from the ledger: epoch 1 reads committed (as
    # after a crash before that append), and its attestation does not hold.
    ledger = sorted((store / "runs" / run_id / "ledger").iterdir())
    last = json.loads(ledger[-1].read_text())
    assert (last["kind"], last["body"]["epoch"]) == ("receipt", 1)
    ledger[-1].unlink()
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "new.json")),
        1,
        "attests epoch 1, which is committed here",
    )
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "missing.json")),
        2,
        "--attestation",
        "cannot read",
    )
    (tmp_path / "junk.json").write_text("not json")
    _one_line_error(
        veritrain("verify", uri, "--attestation", str(tmp_path / "junk.json")),
        1,
        "not a DSSE envelope",
    )


def _ec_key(tmp_path: Path, curve: ec.EllipticCurve, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(curve)
    priv, pub = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def _signed_resource(bundle: Path) -> dict:
    envelope = json.loads(bundle.read_bytes())["dsseEnvelope"]
    payload = json.loads(base64.b64decode(envelope["payload"]))
    (resource,) = payload["predicate"]["resources"]
    return resource


def test_a_signed_checkpoint_verifies_with_model_signing(tiny_run, tmp_path):
    store, run_id, uri = _copy(tiny_run, tmp_path)
    priv, pub = _ec_key(tmp_path, ec.SECP256R1(), "p256")
    r = veritrain("sign-checkpoint", uri, "--epoch", "1", "--key", str(priv))
    assert r.returncode == 0, r.stderr
    bundle = Path(r.stdout.strip().splitlines()[-1])
    assert bundle == store / "runs" / run_id / "attestations" / "epoch-000001.model-signing.sig"
    end = _epoch_body(store, run_id, 1)["checkpoint"]
    checkpoint = store / end["checkpoint"]

    # model_signing's own verifier, with the EC public key, on the stored checkpoint.
    verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(checkpoint, bundle)
    # Its manifest's digest of the file is the ledger's checkpoint_sha256, which is also the
    # attestation's subject digest: one object.
    assert _signed_resource(bundle) == {
        "name": ".",
        "algorithm": "sha256",
        "digest": end["checkpoint_sha256"],
    }
    a = veritrain("attest", uri, "--epoch", "1")
    assert a.returncode == 0, a.stderr
    envelope = Envelope.from_dict(json.loads(Path(a.stdout.strip().splitlines()[-1]).read_bytes()))
    subject = json.loads(envelope.payload)["subject"][0]
    assert subject["digest"]["sha256"] == end["checkpoint_sha256"]

    # Another key, or a changed checkpoint, fails model_signing's verification.
    _, other_pub = _ec_key(tmp_path, ec.SECP256R1(), "other")
    with pytest.raises(ValueError):
        verifying.Config().use_elliptic_key_verifier(public_key=other_pub).verify(
            checkpoint, bundle
        )
    tampered = tmp_path / "tampered" / checkpoint.name
    tampered.parent.mkdir()
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(data)
    with pytest.raises(ValueError, match="[Hh]ash mismatch"):
        verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(tampered, bundle)

    # Signing again: the store keeps the first bundle; --out writes another (P-384 here).
    before = bundle.read_bytes()
    _one_line_error(
        veritrain("sign-checkpoint", uri, "--epoch", "1", "--key", str(priv)),
        3,
        "signed before",
        "--out",
    )
    assert bundle.read_bytes() == before
    p384, p384_pub = _ec_key(tmp_path, ec.SECP384R1(), "p384")
    out = tmp_path / "p384.sig"
    r = veritrain("sign-checkpoint", uri, "--epoch", "0", "--key", str(p384), "--out", str(out))
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == str(out), r.stderr
    epoch0 = store / _epoch_body(store, run_id, 0)["checkpoint"]["checkpoint"]
    verifying.Config().use_elliptic_key_verifier(public_key=p384_pub).verify(epoch0, out)
    with pytest.raises(ValueError):
        verifying.Config().use_elliptic_key_verifier(public_key=p384_pub).verify(checkpoint, out)


def test_sign_checkpoint_bad_input(tiny_run, unproven_run, tmp_path):
    store, run_id, uri = _copy(tiny_run, tmp_path)
    priv, _ = _ec_key(tmp_path, ec.SECP256R1(), "p256")
    ed = tmp_path / "ed25519.pem"
    ed.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    k1, _ = _ec_key(tmp_path, ec.SECP256K1(), "k1")
    enc = tmp_path / "encrypted.pem"
    enc.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    for key, words in [
        (ed, ("not an EC key but Ed25519", "P-256")),
        (k1, ("secp256k1",)),
        (enc, ("encrypted",)),
        (junk, ("not a PEM private key",)),
        (tmp_path / "absent.pem", ("cannot read",)),
    ]:
        r = veritrain("sign-checkpoint", uri, "--epoch", "1", "--key", str(key))
        _one_line_error(r, 2, f"--key {key}", *words)
    _one_line_error(
        veritrain("sign-checkpoint", uri, "--epoch", "5", "--key", str(priv)), 2, "--epoch 5"
    )
    other_store, other_id = unproven_run
    r = veritrain(
        "sign-checkpoint", f"{other_store}/runs/{other_id}", "--epoch", "0", "--key", str(priv)
    )
    _one_line_error(r, 2, "committed, not proven")
    # A changed end checkpoint: verification fails, nothing is signed.
    end = store / _epoch_body(store, run_id, 1)["checkpoint"]["checkpoint"]
    data = bytearray(end.read_bytes())
    data[-1] ^= 1
    end.write_bytes(data)
    _one_line_error(
        veritrain("sign-checkpoint", uri, "--epoch", "1", "--key", str(priv)),
        1,
        "epoch 1",
        "checkpoint",
    )
    assert not (store / "runs" / run_id / "attestations").exists()


def test_attest_and_sign_on_s3(tiny_run, moto_s3, monkeypatch, tmp_path):  # noqa: F811
    """The run copied into a real S3 server: both write beside the run in the bucket, and
    verify --attestation reads the attestation from there."""
    store, run_id, _ = tiny_run
    set_s3_env(monkeypatch, moto_s3.endpoint)
    bucket = moto_s3.new_bucket()
    client = moto_s3.client()
    for path in sorted(store.rglob("*")):
        if path.is_file():
            client.put_object(
                Bucket=bucket, Key=f"team/{path.relative_to(store)}", Body=path.read_bytes()
            )
    uri = f"s3://{bucket}/team/runs/{run_id}"
    r = veritrain("attest", uri, "--epoch", "1")
    assert r.returncode == 0, r.stderr
    attestation = r.stdout.strip().splitlines()[-1]
    assert attestation.startswith(f"{uri}/attestations/epoch-000001.")
    r = veritrain("verify", uri, "--attestation", attestation)
    assert r.returncode == 0, r.stdout + r.stderr
    _one_line_error(
        veritrain("verify", uri, "--attestation", f"s3://{bucket}/elsewhere.json"),
        2,
        "--attestation",
        "neither a local file nor an object under",
    )

    priv, pub = _ec_key(tmp_path, ec.SECP521R1(), "p521")
    r = veritrain("sign-checkpoint", uri, "--epoch", "1", "--key", str(priv))
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1].removeprefix(f"s3://{bucket}/")
    bundle = tmp_path / "bundle.sig"
    bundle.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    end = _epoch_body(store, run_id, 1)["checkpoint"]["checkpoint"]
    local = tmp_path / "download" / Path(end).name
    local.parent.mkdir()
    local.write_bytes(client.get_object(Bucket=bucket, Key=f"team/{end}")["Body"].read())
    verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(local, bundle)
