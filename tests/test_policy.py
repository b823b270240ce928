"""Trust roots (pipeline/verify/policy.py): verify, audit and status accept a run only from the
guests and trainers the verifier names, never on run.json's word, and hold every epoch to the
policy's required status and guarantees. Uses copies of the session's proven tiny run; the one
forged run is trained in-process and never proven, so no proof is made here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import ROOT, veritrain
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from veritrain.flows.cli import main
from veritrain.pipeline.errors import TrustError
from veritrain.pipeline.run.ledger import load_or_create_key, public_key_hex
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.verify.policy import Policy, load_policy
from veritrain.prover import image_id

VERIFY_SCHEMA = json.loads((ROOT / "docs" / "schemas" / "verify.schema.json").read_text())
POLICY_SCHEMA = json.loads((ROOT / "docs" / "schemas" / "policy.schema.json").read_text())
OTHER_GUEST = hashlib.sha256(b"some other guest").hexdigest()
proving = pytest.mark.proving


def _run(capsys, *argv: str) -> tuple[int, dict | None, list[str]]:
    """A command in-process with --json: (exit code, document, stderr lines)."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out) if out else None
    if doc is not None:
        jsonschema.validate(doc, VERIFY_SCHEMA)
    return code, doc, err.splitlines()


def _check(doc: dict, name: str) -> dict:
    return next(c for c in doc["checks"] if c["name"] == name)


def _policy_file(tmp_path: Path, doc: dict, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _public_key(store: Path, run_id: str) -> str:
    return json.loads((store / "runs" / run_id / "run.json").read_text())["public_key"]


@pytest.fixture(scope="module")
def replaced(tiny_run, tiny_spec, tmp_path_factory) -> tuple[Path, str, str]:
    """The tiny run replaced wholesale by someone who can write its store: the run's folder
    deleted and a new run of the same spec under the same run id trained in its place with the
    forger's own key, so its manifest, ledger, records and checkpoints are all consistent and
    signed. (Re-signing the original's objects with another key is not enough: every state holds
    the manifest's digest, which binds the key; test_tamper.py shows verify refuses that.) Its
    epochs are committed, not proven. Returns (store folder, run id, forger's public key)."""
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    src, run_id, _ = tiny_run
    store = tmp_path_factory.mktemp("replaced") / "store"
    shutil.copytree(src, store)
    shutil.rmtree(store / "runs" / run_id)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VERITRAIN_KEYS", str(tmp_path_factory.mktemp("forger-keys")))
        train(open_trainer(tiny_spec, LocalStore(store), run_id))
        forger = public_key_hex(load_or_create_key(run_id))
    return store, run_id, forger


@proving
def test_a_wholesale_replaced_run_is_accepted_only_under_the_key_that_signed_it(
    tiny_run, replaced, tmp_path, capsys
):
    src, run_id, uri = tiny_run
    store, _, forger = replaced
    forged = f"{store}/runs/{run_id}"
    original = _public_key(src, run_id)
    assert forger != original

    # Unpinned, the forgery verifies, and the report says what that is worth.
    code, doc, err = _run(capsys, "verify", forged)
    assert code == 0, err
    assert doc["trust"]["trainer"] == "unpinned"
    assert _check(doc, "trainer_key")["detail"].startswith(
        f"trainer: unpinned (the run is signed by {forger}"
    )
    assert main(["verify", forged]) == 0
    assert "trainer: unpinned" in capsys.readouterr().out

    # Pinned to the original trainer, by hex, by a PEM file or by a policy: refused.
    pem = tmp_path / "trainer.pub"
    pem.write_bytes(
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(original)).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for pin in (
        ["--trainer-key", original],
        ["--trainer-key", str(pem)],
        ["--policy", _policy_file(tmp_path, {"trainer_keys": [original]})],
    ):
        code, doc, err = _run(capsys, "verify", forged, *pin)
        assert code == 1, pin
        assert doc["trust"]["trainer"] == "pinned" and doc["epochs"] == []
        assert [c["name"] for c in doc["checks"] if not c["ok"]] == ["trainer_key"]
        assert len(err) == 1 and forger in err[0] and original in err[0]
    # The original run is accepted under its own key, the forgery only under the forger's.
    assert _run(capsys, "verify", uri, "--trainer-key", str(pem))[0] == 0
    forgers = _policy_file(tmp_path, {"trainer_keys": [forger]}, "forger.yaml")
    code, doc, _ = _run(capsys, "verify", forged, "--policy", forgers)
    assert code == 0 and doc["trust"]["trainer_keys"] == [forger]
    assert _run(capsys, "verify", uri, "--policy", forgers)[0] == 1


@proving
def test_a_run_of_a_guest_the_verifier_does_not_accept_fails_naming_both_ids(
    tiny_run, tmp_path, capsys
):
    _, _, uri = tiny_run
    run_guest = image_id().hex()
    code, doc, err = _run(capsys, "verify", uri, "--image-id", OTHER_GUEST)
    assert code == 1 and doc["trust"]["image_ids"] == [OTHER_GUEST]
    assert [c["name"] for c in doc["checks"] if not c["ok"]] == ["image_id"]
    assert len(err) == 1 and OTHER_GUEST in err[0] and run_guest in err[0]
    # Accepted once named: by its id, as "installed", or beside another; flags add to a file.
    for accept in (
        ["--image-id", run_guest],
        ["--image-id", OTHER_GUEST, "--image-id", "installed"],
    ):
        code, doc, _ = _run(capsys, "verify", uri, *accept)
        assert code == 0 and run_guest in doc["trust"]["image_ids"]
    others = _policy_file(tmp_path, {"image_ids": [OTHER_GUEST]})
    assert _run(capsys, "verify", uri, "--policy", others)[0] == 1
    assert _run(capsys, "verify", uri, "--policy", others, "--image-id", run_guest.upper())[0] == 0
    # By default this installation's guest, which made the run.
    code, doc, _ = _run(capsys, "verify", uri)
    assert code == 0 and doc["trust"]["image_ids"] == [run_guest]
    assert main(["status", uri, "--image-id", OTHER_GUEST]) == 1
    assert f"image_id: runs/{uri.rsplit('/', 1)[-1]}/run.json" in capsys.readouterr().err


@proving
def test_require_pinned_fails_an_unpinned_trainer(tiny_run, tmp_path, capsys):
    src, run_id, uri = tiny_run
    code, doc, err = _run(capsys, "verify", uri, "--require-pinned")
    assert code == 1 and not _check(doc, "trainer_key")["ok"]
    assert len(err) == 1 and "trainer: unpinned" in err[0] and "--trainer-key" in err[0]
    ci = _policy_file(tmp_path, {"require_pinned": True})
    assert _run(capsys, "verify", uri, "--policy", ci)[0] == 1
    key = _public_key(src, run_id)
    assert _run(capsys, "verify", uri, "--policy", ci, "--trainer-key", key)[0] == 0


@proving
def test_the_policy_holds_every_epoch_to_its_status_and_guarantees(
    tiny_run, replaced, tmp_path, capsys
):
    _, _, uri = tiny_run
    store, run_id, _ = replaced
    final = _policy_file(
        tmp_path, {"required_status": "final", "required_guarantees": ["structure", "lineage"]}
    )
    # The tiny spec's challenge window is 0: its proven epochs are final at once.
    code, doc, _ = _run(capsys, "verify", uri, "--policy", final)
    assert code == 0 and [e["status"] for e in doc["epochs"]] == ["final", "final"]
    assert all(_check(e, "required_status")["ok"] for e in doc["epochs"])
    # The replaced run verifies (its epochs are committed), but not under a required status.
    forged = f"{store}/runs/{run_id}"
    proven = _policy_file(tmp_path, {"required_status": "proven"}, "proven.yaml")
    code, doc, err = _run(capsys, "verify", forged, "--policy", proven, "--epoch", "1")
    assert code == 1 and [e["epoch"] for e in doc["epochs"]] == [1]
    assert "epoch 1: required_status: committed, not proven" in err[0]
    arithmetic = _policy_file(tmp_path, {"required_guarantees": ["arithmetic"]}, "a.yaml")
    code, doc, err = _run(capsys, "verify", uri, "--policy", arithmetic)
    assert code == 1 and {
        e["epoch"] for e in doc["epochs"] if not _check(e, "required_guarantees")["ok"]
    } == {0, 1}
    assert "carries structure, sampler, schedule, lineage (15), not arithmetic" in err[0]


@pytest.mark.parametrize("status", ["committed", "proven", "unreplayable", "disputed", "final"])
def test_which_statuses_reach_a_required_one(status):
    """An unreplayable epoch is proven, but nobody could have challenged it: not final."""
    for required, reaching in (
        ("proven", {"proven", "unreplayable", "final"}),
        ("final", {"final"}),
    ):
        policy = Policy(required_status=required)
        if status in reaching:
            assert policy.check_status(status).startswith(status)
        else:
            with pytest.raises(TrustError, match=f"{status}, not {required}"):
                policy.check_status(status)


@proving
def test_audit_verifies_its_folder_under_the_policy_offline_too(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    uri, out, key = f"{store}/runs/{run_id}", tmp_path / "audit", _public_key(src, run_id)
    stranger = public_key_hex(Ed25519PrivateKey.generate())
    code, doc, err = _run(
        capsys, "audit", uri, "--epoch", "1", "--out", str(out), "--trainer-key", stranger
    )
    assert code == 1 and [c["name"] for c in doc["checks"] if not c["ok"]] == ["trainer_key"]
    assert (out / "audit.json").exists()
    # The store is gone; the folder is re-verified from itself, under each policy given.
    shutil.rmtree(store)
    code, doc, err = _run(
        capsys,
        "audit",
        uri,
        "--epoch",
        "1",
        "--out",
        str(out),
        "--trainer-key",
        key,
        "--require-pinned",
    )
    assert code == 0 and "re-verifying" in err[0] and doc["trust"]["trainer"] == "pinned"
    code, doc, _ = _run(
        capsys, "audit", uri, "--epoch", "1", "--out", str(out), "--image-id", OTHER_GUEST
    )
    assert code == 1 and not _check(doc, "image_id")["ok"]


MALFORMED = {
    "not-yaml": ("image_ids: [\n", "not valid YAML"),
    "not-a-mapping": ("- installed\n", "a policy is a mapping of keys, got list"),
    "empty": ("", "a policy is a mapping of keys, got NoneType"),
    "unknown-key": ("trainer_key: []\n", "trainer_key: Extra inputs are not permitted"),
    "short-image-id": ("image_ids: ['abc']\n", "image_ids.0: not an image id"),
    "unquoted-number": ("image_ids: [1234]\n", "image_ids.0: not a string but int"),
    "no-image-ids": ("image_ids: []\n", "image_ids: List should have at least 1 item"),
    "bad-trainer-key": ("trainer_keys: ['zz']\n", "trainer_keys.0: not a trainer key"),
    "private-key": (
        'trainer_keys: ["-----BEGIN PRIVATE KEY-----\\nMC4=\\n-----END PRIVATE KEY-----"]\n',
        "trainer_keys.0: holds a private key",
    ),
    "bad-status": ("required_status: done\n", "required_status: Input should be 'proven' or"),
    "bad-guarantee": ("required_guarantees: [speed]\n", "required_guarantees.0: Input should be"),
    "bad-flag": ("require_pinned: perhaps\n", "require_pinned: Input should be a valid boolean"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_policy_is_exit_2_with_one_line_naming_the_file(case, tmp_path, capsys):
    text, problem = MALFORMED[case]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    # A run URI with nothing under it: a policy that loaded would get as far as exit 3.
    code = main(["verify", f"{tmp_path}/store/runs/r", "--policy", str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"veritrain: {path}: {problem}"), err[0]


@pytest.mark.parametrize(
    "flags, problem",
    [
        (["--image-id", "f71a"], "--image-id f71a: not an image id"),
        (["--trainer-key", "nowhere.pub"], "--trainer-key nowhere.pub: neither 64 hex digits nor"),
        (["--trainer-key", "README.md"], "--trainer-key README.md: not a trainer key"),
        (["--policy", "nowhere.yaml"], "nowhere.yaml: cannot read the policy"),
    ],
)
def test_a_bad_trust_flag_is_exit_2_with_one_line(flags, problem, tmp_path):
    r = veritrain("verify", f"{tmp_path}/store/runs/r", *flags)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"veritrain: {problem}")


def test_a_pem_trainer_key_is_read_as_run_json_spells_it(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    doc = {"trainer_keys": [pem]}
    jsonschema.validate(doc, POLICY_SCHEMA)
    assert load_policy(_policy_file(tmp_path, doc)).trainer_keys == [public_key_hex(key)]


def test_the_example_policy_and_the_published_schema_agree():
    """examples/policy.yaml validates against docs/schemas/policy.schema.json and loads; the
    published schema is `veritrain schema policy`'s."""
    r = veritrain("schema", "policy")
    assert r.returncode == 0 and json.loads(r.stdout) == POLICY_SCHEMA
    example = ROOT / "examples" / "policy.yaml"
    jsonschema.validate(yaml.safe_load(example.read_text()), POLICY_SCHEMA)
    policy = load_policy(example)
    assert policy.require_pinned and policy.required_status == "final" and policy.trainer_keys
    assert policy.accepted_image_ids() == [image_id().hex()]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image_ids": ["abc"]}, POLICY_SCHEMA)
    # docs/OPERATIONS.md shows the example as it is.
    ops = (ROOT / "docs" / "OPERATIONS.md").read_text()
    shown = ops.split("### Trust roots", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(shown) == yaml.safe_load(example.read_text())


def test_the_guest_check_answers_for_the_installed_guest_and_a_runs_pinned_id(
    unproven_run, tmp_path
):
    """scripts/check-reproducible-guest.sh with --elf (the build it would make, compared the
    same way): bit 8 of the exit code is the installed guest, bit 16 the run's pinned id."""
    from veritrain.prover import _native

    src, run_id = unproven_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    guest, other = tmp_path / "guest.elf", tmp_path / "other.elf"
    guest.write_bytes(_native.guest_elf())
    changed = bytearray(_native.guest_elf())
    changed[len(changed) // 2] ^= 1  # another program: the image id covers every byte loaded
    other.write_bytes(bytes(changed))
    manifest = store / "runs" / run_id / "run.json"
    pinned_elsewhere = store / "runs" / "elsewhere" / "run.json"
    pinned_elsewhere.parent.mkdir()
    pinned_elsewhere.write_text(
        manifest.read_text().replace(image_id().hex(), OTHER_GUEST).replace(run_id, "elsewhere")
    )

    def check(*args: str) -> tuple[int, str]:
        r = subprocess.run(
            ["bash", str(ROOT / "scripts" / "check-reproducible-guest.sh"), *args],
            env={**os.environ, "VERITRAIN_PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return r.returncode, r.stdout + r.stderr

    uri = f"{store}/runs/{run_id}"
    code, out = check("--elf", str(guest), uri)
    assert code == 0 and out.count(": match (") == 2, out
    assert check("--elf", str(other), uri)[0] == 8 | 16
    assert check("--elf", str(other))[0] == 8
    code, out = check("--elf", str(guest), f"{store}/runs/elsewhere")
    assert code == 16 and f"pinned image id: NO MATCH ({OTHER_GUEST})" in out
    assert check("--elf", str(tmp_path / "none.elf"))[0] == 2
    assert check("--elf", str(guest), f"{tmp_path}/nowhere/runs/x")[0] == 3


def test_runs_signed_with_one_trainer_key_verify_pinned_to_it(tmp_path, capsys, monkeypatch):
    """`run --key FILE`: the trainer's own key signs every run it is given to, so one pinned key
    speaks for all of them; a run signed by another key is refused before anything starts."""
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.preflight import preflight
    from veritrain.pipeline.train.trainer import open_trainer

    monkeypatch.setenv("VERITRAIN_KEYS", str(tmp_path / "keys"))

    def key_file(name: str) -> tuple[Ed25519PrivateKey, Path]:
        key = Ed25519PrivateKey.generate()
        path = tmp_path / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return key, path

    trainer, trainer_file = key_file("trainer.pem")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "model": {"kind": "mlp", "hidden": [8]},
                "dataset": {"kind": "synthetic", "samples": 32, "features": 8, "classes": 2},
                "epochs": 1,
                "batch_size": 16,
                "finalize_every": 0,
                "challenge_window": 0,
            }
        )
    )
    store = tmp_path / "store"
    for run_id in ("first", "second"):
        plan = preflight(spec, str(store), run_id, str(trainer_file))
        train(open_trainer(plan.spec, LocalStore(store), plan.run_id))
        assert _public_key(store, run_id) == public_key_hex(trainer)
        code, doc, err = _run(
            capsys, "verify", f"{store}/runs/{run_id}", "--trainer-key", public_key_hex(trainer)
        )
        assert code == 0, err
        assert doc["trust"]["trainer"] == "pinned"

    _, other = key_file("other.pem")
    before = sorted(store.rglob("*"))
    r = veritrain("run", str(spec), "--store", str(store), "--run-id", "first", "--key", str(other))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith(f"veritrain: --key {other}: run first is signed by another")
    assert sorted(store.rglob("*")) == before
