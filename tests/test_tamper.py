"""The tamper matrix: for each artifact kind of a proven run (checkpoint, record file, ledger
entry, receipt, journal, manifest), flipping one byte, truncating, deleting or swapping it with
another epoch's makes `veritrain verify --json` exit 1 naming the failing check, and verify
modifies nothing in the store. Then bad input: each a one-line error with its exit code.

Every case tampers a copy of the session's proven tiny run (two epochs of three steps) and runs
verify in-process (one case through a real process); no proofs are made here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, veritrain
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veritrain.flows.cli import main
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.determinism import DeterminismProfile
from veritrain.pipeline.run.entries import ReceiptBody
from veritrain.pipeline.run.ledger import Ledger, load_or_create_key, public_key_hex
from veritrain.pipeline.run.manifest import (
    Manifest,
    claim_digest,
    epoch_entries,
    open_ledger,
    sha256_hex,
)
from veritrain.pipeline.store.keys import journal_key, ledger_key, receipt_key
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.verify import verifier as verify_module
from veritrain.prover import _native

pytestmark = pytest.mark.proving

SCHEMA = json.loads((ROOT / "docs" / "schemas" / "verify.schema.json").read_text())
KINDS = ("checkpoint", "records", "ledger", "receipt", "journal", "manifest")
MUTATIONS = ("flip", "truncate", "delete", "swap")


def _copy(store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(store, dst)
    return dst


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _verify(capsys, store: Path, run_id: str, *flags: str) -> tuple[int, dict, list[str]]:
    """`veritrain verify RUN --json [flags]` in-process: (exit code, document, stderr lines).
    Asserts that nothing in the store changed and that the document follows the published
    schema."""
    before = _snapshot(store)
    code = main(["verify", f"{store}/runs/{run_id}", "--json", *flags])
    out, err = capsys.readouterr()
    assert _snapshot(store) == before, "verify modified the store"
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    return code, doc, err.splitlines()


def _failed(doc: dict) -> dict[tuple, str]:
    """{(scope, check name): detail} of every failed check; scope is "run" or an epoch."""
    out = {("run", c["name"]): c["detail"] for c in doc["checks"] if not c["ok"]}
    for e in doc["epochs"]:
        out |= {(e["epoch"], c["name"]): c["detail"] for c in e["checks"] if not c["ok"]}
    return out


def _entries(store: Path, run_id: str) -> list[tuple[Path, dict]]:
    ledger = store / "runs" / run_id / "ledger"
    return [(p, json.loads(p.read_text())) for p in sorted(ledger.iterdir())]


def _artifact(store: Path, run_id: str, kind: str, epoch: int) -> Path:
    """The file of ``kind`` for ``epoch``, found through the ledger as verify finds it."""
    if kind == "manifest":
        return store / "runs" / run_id / "run.json"
    for path, doc in _entries(store, run_id):
        body = doc["body"]
        if body.get("epoch") != epoch:
            continue
        if doc["kind"] == "epoch":
            key = {
                "ledger": None,
                "records": body["records"],
                "checkpoint": body["checkpoint"]["checkpoint"],
            }.get(kind, "")
            if key is None:
                return path
        elif doc["kind"] == "receipt":
            key = {"receipt": body["receipt"], "journal": body["journal"]}.get(kind, "")
        else:
            continue
        if key:
            return store / key
    raise AssertionError(f"no {kind} for epoch {epoch}")


def _flip(path: Path) -> None:
    """Changes one byte. In a JSON artifact it turns one hex digit of a digest into another, so
    the file still parses and a deeper check (hash, signature, binding, equality) must see it."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".json":
        i = data.index(b'"dataset_root": "') + len(b'"dataset_root": "')
        data[i] = ord("1") if data[i] != ord("1") else ord("2")
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


# The check that must fail, per artifact kind; a swap between epochs fails it in both epochs.
EPOCH_CHECK = {
    "checkpoint": "checkpoint",
    "records": "records",
    "receipt": "receipt",
    "journal": "journal",
}


def _expected(kind: str, mutation: str) -> set[tuple]:
    if kind in EPOCH_CHECK:
        return {(e, EPOCH_CHECK[kind]) for e in ((0, 1) if mutation == "swap" else (0,))}
    if kind == "ledger":
        return {("run", "ledger")}
    # A manifest that still parses no longer matches what ledger entry 0 committed to; one that
    # is gone, unreadable or another run's fails the manifest check itself.
    return {("run", "ledger")} if mutation == "flip" else {("run", "manifest")}


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_tampered_artifact_fails_verify_naming_the_check(
    tiny_run, unproven_run, tmp_path, capsys, kind, mutation
):
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    target = _artifact(store, run_id, kind, 0)
    if mutation == "flip":
        _flip(target)
    elif mutation == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif mutation == "delete":
        target.unlink()
    elif kind == "manifest":  # swap: the manifest has no other epoch; take another run's
        other_store, other_id = unproven_run
        shutil.copyfile(other_store / "runs" / other_id / "run.json", target)
    else:
        _swap(target, _artifact(store, run_id, kind, 1))
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1
    assert set(_failed(doc)) == _expected(kind, mutation), _failed(doc)
    assert len(err) == 1 and err[0].startswith("veritrain: verification failed: "), err


def _checkpoint_entries(store: Path, run_id: str) -> list[dict]:
    return [d["body"] for _, d in _entries(store, run_id) if d["kind"] == "checkpoint"]


@pytest.mark.parametrize(
    "case",
    ["mid-epoch flip", "genesis delete", "resume records flip", "mid-epoch swap"],
)
def test_every_stored_checkpoint_is_checked(tiny_run, tmp_path, capsys, case):
    """Not only epoch ends: the genesis checkpoint, mid-epoch checkpoints (checkpoint_every 2 in
    the tiny spec: steps 2 and 4) and the records kept beside them for resuming."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    genesis, mid0, mid1 = _checkpoint_entries(store, run_id)
    assert genesis["step"] == 0 and mid0["step"] == 2 and mid1["step"] == 4
    expected = {(0, "checkpoint")}
    if case == "mid-epoch flip":
        _flip(store / mid0["checkpoint"])
    elif case == "genesis delete":
        (store / genesis["checkpoint"]).unlink()
    elif case == "resume records flip":
        _flip(store / mid0["pending_records"])
    else:
        _swap(store / mid0["checkpoint"], store / mid1["checkpoint"])
        expected = {(0, "checkpoint"), (1, "checkpoint")}
    code, doc, _ = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == expected, _failed(doc)


def test_removing_the_ledger_tail_only_makes_the_run_look_less_final(tiny_run, tmp_path, capsys):
    """The one deletion verify cannot call tampering: without the newest entry the ledger is what
    a crash just before that append leaves (docs/OPERATIONS.md). Nothing false verifies: the
    epoch whose receipt entry is gone is reported as committed, not proven."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    path, last = _entries(store, run_id)[-1]
    assert last["kind"] == "receipt" and last["body"]["epoch"] == 1
    path.unlink()
    code, doc, _ = _verify(capsys, store, run_id)
    assert code == 0
    assert [e["status"] for e in doc["epochs"]] == ["final", "committed"]


def _resign(store: Path, run_id: str, edit=lambda kind, body: body, key=None) -> None:
    """Rewrites the run's ledger over its current manifest with the run's own key (or ``key``),
    optionally editing bodies, malformed ones included: what a dishonest trainer, who holds the
    key, can do."""
    old = [doc for _, doc in _entries(store, run_id)]
    shutil.rmtree(store / "runs" / run_id / "ledger")
    ls = LocalStore(store)
    manifest = Manifest.load(ls, run_id)
    ledger = Ledger(ls, run_id, manifest.public_key.hex())
    key, prev = key or load_or_create_key(run_id), ""
    for seq, doc in enumerate(old):
        body = doc["body"]
        if doc["kind"] == "run":
            body = {**body, "manifest_sha256": sha256_hex(manifest.raw)}
        signed, data = ledger.document(key, seq, prev, doc["kind"], edit(doc["kind"], body))
        ls.create(ledger_key(run_id, seq), data)
        prev = signed["entry_hash"]


def test_a_receipt_from_another_run_is_refused(tiny_run, unproven_run, tmp_path, capsys):
    """A trainer who signs a receipt entry naming another run's valid receipt gains nothing: the
    proof verifies, but its journal is the other run's claim."""
    tiny_store, tiny_id, _ = tiny_run
    src, run_id = unproven_run
    store = _copy(src, tmp_path)
    receipt = _artifact(tiny_store, tiny_id, "receipt", 0).read_bytes()
    rk, jk = receipt_key(run_id, 0), journal_key(run_id, 0)
    ls = LocalStore(store)
    _, entries = open_ledger(ls, Manifest.load(ls, run_id))
    claim = epoch_entries(entries)[0].body.claim
    ls.create(rk, receipt)
    ls.create(jk, json.dumps(claim.journal_json()).encode())
    ledger, entries = open_ledger(ls, Manifest.load(ls, run_id))
    body = ReceiptBody(
        epoch=0,
        receipt=rk,
        receipt_sha256=sha256_hex(receipt),
        journal=jk,
        claim_digest=claim_digest(claim),
        proven_at=0,
    )
    ledger.append(load_or_create_key(run_id), body, entries)
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1
    failed = _failed(doc)
    assert set(failed) == {(0, "receipt")}
    assert f"proves run {tiny_id} epoch 0, not run {run_id} epoch 0" in failed[(0, "receipt")]
    assert len(err) == 1 and rk in err[0]


def test_a_truncated_receipt_is_refused(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    path = _artifact(store, run_id, "receipt", 0)
    path.write_bytes(path.read_bytes()[:1000])
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == {(0, "receipt")}
    assert "not a RISC Zero receipt" in _failed(doc)[(0, "receipt")]
    assert len(err) == 1 and "epoch-000000.receipt" in err[0]


def _write_fake_receipt(store: Path, run_id: str) -> None:
    ls = LocalStore(store)
    manifest = Manifest.load(ls, run_id)
    _, entries = open_ledger(ls, manifest)
    journal = epoch_entries(entries)[0].body.claim.to_bytes()
    fake = _native._fake_receipt(journal, manifest.image_id)
    _artifact(store, run_id, "receipt", 0).write_bytes(fake)


def test_a_dev_mode_receipt_is_refused(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    _write_fake_receipt(store, run_id)
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == {(0, "receipt")}
    assert "dev-mode (fake) receipt" in _failed(doc)[(0, "receipt")]
    assert len(err) == 1 and "epoch-000000.receipt" in err[0] and "fake" in err[0]


def test_a_dev_mode_receipt_through_the_command_line(tiny_run, tmp_path):
    """The same through a real process: exit 1, one line on stderr, no traceback."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    _write_fake_receipt(store, run_id)
    r = veritrain("verify", f"{store}/runs/{run_id}")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "epoch-000000.receipt" in r.stderr and "dev-mode" in r.stderr
    assert "FAIL epoch 0 (final): receipt" not in r.stdout  # an unproven epoch is not final
    assert "FAIL epoch 0 (committed): receipt" in r.stdout


def _edit_image_id(store: Path, run_id: str) -> str:
    path = store / "runs" / run_id / "run.json"
    doc = json.loads(path.read_text())
    doc["image_id"] = hashlib.sha256(b"some other guest").hexdigest()
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return doc["image_id"]


def test_an_unknown_image_id_is_refused(tiny_run, tmp_path, capsys):
    """Editing the pinned image id names a guest the verifier does not accept; and even for a
    verifier that accepts it, it breaks the manifest's binding to ledger entry 0."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    image = _edit_image_id(store, run_id)
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == {("run", "image_id")}
    assert f"proven by guest {image}, not by one this verifier accepts" in err[0]
    code, doc, err = _verify(capsys, store, run_id, "--image-id", image)
    assert code == 1 and set(_failed(doc)) == {("run", "ledger")}
    assert "run.json: does not match ledger entry 0" in err[0] and len(err) == 1


def test_an_unknown_image_id_with_a_resigned_ledger_is_refused(tiny_run, tmp_path, capsys):
    """Even with the ledger re-signed over the edited manifest, and a verifier that accepts that
    guest, no claim names that image id and no receipt verifies under it."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    image = _edit_image_id(store, run_id)
    _resign(store, run_id)
    code, doc, _ = _verify(capsys, store, run_id, "--image-id", image)
    assert code == 1 and doc["image_id"] == image
    failed = _failed(doc)
    # The checkpoints hold the digest of the manifest as it was (test below).
    assert set(failed) == {(e, c) for e in (0, 1) for c in ("claim", "receipt", "checkpoint")}
    assert "image_id" in failed[(0, "claim")] and image in failed[(0, "receipt")]


def test_a_signed_but_malformed_ledger_entry_fails_the_ledger_check(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    _resign(store, run_id, lambda kind, body: {k: v for k, v in body.items() if k != "records"})
    code, doc, _ = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == {("run", "ledger")}
    assert "epoch entry lacks records" in _failed(doc)[("run", "ledger")]


def test_a_signed_claim_the_core_cannot_read_fails_the_ledger_check(tiny_run, tmp_path, capsys):
    """A claim's JSON is read by the core's rules: one it refuses is a failed ledger check that
    names the rule, never an internal error."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)

    def edit(kind, body):
        if kind != "epoch" or body["epoch"] != 1:
            return body
        return {**body, "claim": {**body["claim"], "guarantees": 1 << 7}}

    _resign(store, run_id, edit)
    code, doc, _ = _verify(capsys, store, run_id)
    failed = _failed(doc)
    assert code == 1 and set(failed) == {("run", "ledger")}
    assert "malformed claim (claim: unknown guarantee bits 0x80)" in failed[("run", "ledger")]


def test_a_run_that_does_not_exist_is_a_storage_error(tmp_path, capsys):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    for uri in (f"{tmp_path}/nowhere/runs/x", f"{tmp_path}/runs/empty"):
        assert main(["verify", uri, "--json"]) == 3
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1 and "no such run" in err


def test_an_internal_error_is_one_line_not_a_traceback(tiny_run, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(verify_module, "verify_run", broken)
    assert main(["verify", tiny_run[2]]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (RuntimeError: boom)" in err


# What the trainer's own key can rewrite: a re-signed ledger over an edited manifest, or edited
# receipt entries. Each must change what verify says.


def _edit_manifest(store: Path, run_id: str, edit) -> None:
    path = store / "runs" / run_id / "run.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


def test_a_resigned_spec_that_builds_other_tensors_fails_the_checkpoint_check(
    tiny_run, tmp_path, capsys
):
    """The claim binds no model shape; the checkpoints do, and verify compares them with what
    the stored spec builds (pipeline/checkpoint/tensors.py), without torch."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    _edit_manifest(store, run_id, lambda d: d["spec"]["model"].update(hidden=[17]))
    _resign(store, run_id)
    code, doc, err = _verify(capsys, store, run_id)
    assert code == 1
    failed = _failed(doc)
    assert set(failed) == {(0, "checkpoint"), (1, "checkpoint")}
    detail = failed[(0, "checkpoint")]
    # The epoch's end checkpoint is checked first.
    assert "step-000000000003.safetensors: not the state the run's spec (mlp, sgd) builds" in detail
    assert "as F32[16, 8] where the spec builds F32[17, 8]" in detail
    assert len(err) == 1


def test_challenge_of_a_run_whose_spec_does_not_build_its_checkpoints_is_a_clear_error(
    tiny_run, tmp_path
):
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    _edit_manifest(store, run_id, lambda d: d["spec"]["model"].update(hidden=[17]))
    _resign(store, run_id)
    r = veritrain("challenge", f"{store}/runs/{run_id}", "--steps", "0:1")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert "000000000000.safetensors: not the state the run's spec (mlp, sgd) builds" in lines[0]


def test_a_checkpoint_whose_step_counter_is_not_its_step_fails(tiny_run, tmp_path, capsys):
    """The ledger says which step a checkpoint is; its own counter must agree."""
    from veritrain.pipeline.checkpoint.tensors import check_tensors, read_header

    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    ls = LocalStore(store)
    manifest = Manifest.load(ls, run_id)
    data = ls.read(_checkpoint_entries(store, run_id)[1]["checkpoint"])
    check_tensors(manifest.spec, 2, read_header(data, "ck"), data, "ck", manifest.digest)
    with pytest.raises(IntegrityError, match="ck: its step counter is 2, not 4"):
        check_tensors(manifest.spec, 4, read_header(data, "ck"), data, "ck", manifest.digest)


@pytest.mark.parametrize(
    "edit",
    ["epochs", "challenge_window", "checkpoint_every", "determinism", "public_key"],
)
def test_a_resigned_manifest_no_longer_matches_the_states_it_is_bound_into(
    tiny_run, tmp_path, capsys, edit
):
    """Every state holds the manifest's digest (pipeline/train/state.py), so the claims' state
    digests, and the receipts over them, bind run.json: what the trainer's key can re-sign, the
    receipts still refuse."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    new_key = Ed25519PrivateKey.generate()

    def change(doc: dict) -> None:
        if edit == "determinism":
            doc["determinism"]["threads"] += 1
        elif edit == "public_key":  # the whole ledger re-signed by another trainer
            doc["public_key"] = public_key_hex(new_key)
        else:
            doc["spec"][edit] = doc["spec"][edit] * 2 + 1

    _edit_manifest(store, run_id, change)
    _resign(store, run_id, key=new_key if edit == "public_key" else None)
    code, doc, _ = _verify(capsys, store, run_id)
    assert code == 1
    failed = _failed(doc)
    assert set(failed) == {(0, "checkpoint"), (1, "checkpoint")}
    assert "holds another manifest digest than run.json's" in failed[(0, "checkpoint")]


FAKE_TORCH = "0.0.0+nowhere"
WEEK = 7 * 24 * 3600.0


@pytest.fixture(scope="module")
def week_run(tmp_path_factory, tiny_spec) -> tuple[Path, str, dict]:
    """One epoch of the tiny spec with a 7-day challenge window, made (honestly, in-process) by a
    trainer whose recorded torch version exists nowhere, and proven for real. Returns (store
    folder, run id, its determinism profile). Its 16 samples make one step: the epoch fits a
    2^16-cycle segment, half the proving of the tiny spec's three steps (2^17)."""
    from veritrain.pipeline.prove.finalize import finalize_epoch
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    real = DeterminismProfile.current
    store = tmp_path_factory.mktemp("week-store")
    spec = tiny_spec.model_copy(
        update={
            "epochs": 1,
            "challenge_window": WEEK,
            "dataset": tiny_spec.dataset.model_copy(update={"samples": 16}),
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            DeterminismProfile,
            "current",
            classmethod(
                lambda cls, threads: real(threads).model_copy(update={"torch_version": FAKE_TORCH})
            ),
        )
        train(open_trainer(spec, LocalStore(store), "week-run"))
    ls = LocalStore(store)
    manifest = Manifest.load(ls, "week-run")
    ledger, entries = open_ledger(ls, manifest)
    assert finalize_epoch(ls, manifest, ledger, entries, load_or_create_key("week-run"), 0)
    return store, "week-run", manifest.determinism.model_dump()


def _backdate(kind: str, body: dict) -> dict:
    return {**body, "proven_at": 0} if kind == "receipt" else body


def test_a_backdated_proven_at_does_not_make_an_epoch_final(week_run, tmp_path):
    """proven_at is the trainer's word. With a 7-day window, an epoch reads final only 7 days
    after this verifier first saw its receipt (pipeline/verify/finality.py)."""
    src, run_id, profile = week_run
    store = _copy(src, tmp_path)
    _resign(store, run_id, _backdate)
    receipts = [d["body"] for _, d in _entries(store, run_id) if d["kind"] == "receipt"]
    assert [b["proven_at"] for b in receipts] == [0]
    ls, state, t0 = LocalStore(store), tmp_path / "verifier", 1_900_000_000.0
    replayable = [DeterminismProfile.model_validate(profile)]

    def statuses(now: float, state: Path = state) -> list[str]:
        report = verify_module.verify_run(ls, run_id, now=now, state=state, replayable=replayable)
        assert report.ok, report.to_json()
        return [e.status for e in report.epochs]

    assert statuses(t0) == ["proven"]
    assert statuses(t0 + WEEK - 1) == ["proven"]
    assert statuses(t0 + WEEK) == ["final"]
    assert list(json.loads((state / "sightings.json").read_text()).values()) == [t0]
    # Another verifier, seeing the run for the first time a week later, starts its own window.
    assert statuses(t0 + WEEK, tmp_path / "other-verifier") == ["proven"]


def test_a_run_no_verifier_can_replay_is_never_plainly_final(week_run, tmp_path, capsys):
    """A recorded profile nobody has (a torch that does not exist) leaves the run
    unchallengeable: verify fails the run's replayable check, and once the window has passed its
    epochs are unreplayable, not final."""
    src, run_id, profile = week_run
    uri = f"{src}/runs/{run_id}"
    ls, state, t0 = LocalStore(src), tmp_path / "verifier", 1_900_000_000.0
    report = verify_module.verify_run(ls, run_id, now=t0, state=state)
    assert [e.status for e in report.epochs] == ["proven"]
    report = verify_module.verify_run(ls, run_id, now=t0 + WEEK, state=state)
    assert [e.status for e in report.epochs] == ["unreplayable"]
    replayable = next(c for c in report.checks if c.name == "replayable")
    assert not replayable.ok and f"differs in torch_version ({FAKE_TORCH!r})" in replayable.detail
    code, doc, err = _verify(capsys, src, run_id)
    assert code == 1 and set(_failed(doc)) == {("run", "replayable")}
    assert [e["status"] for e in doc["epochs"]] == ["proven"]  # a week is not over yet
    assert len(err) == 1 and "--replayable-profile" in err[0]
    assert main(["status", uri]) == 1
    err = capsys.readouterr().err
    assert "replayable" in err and "cannot be replayed" in err
    # A verifier that declares it can replay that profile (say, a machine that has that torch).
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps([profile]))
    code = main(["verify", uri, "--json", "--replayable-profile", str(path)])
    assert code == 0 and json.loads(capsys.readouterr().out)["ok"]
    report = verify_module.verify_run(
        ls,
        run_id,
        now=t0 + WEEK,
        state=state,
        replayable=[DeterminismProfile.model_validate(profile)],
    )
    assert report.ok and [e.status for e in report.epochs] == ["final"]


def test_a_policy_requiring_final_fails_an_epoch_inside_its_window(week_run, tmp_path, capsys):
    """pipeline/verify/policy.py's required status, on a proven epoch whose 7-day window has not
    passed (the tiny run's window is 0: its epochs are final at once)."""
    src, run_id, profile = week_run
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps([profile]))
    argv = ["verify", f"{src}/runs/{run_id}", "--json", "--replayable-profile", str(profiles)]
    for required, code in (("proven", 0), ("final", 1)):
        policy = tmp_path / f"{required}.yaml"
        policy.write_text(f"required_status: {required}\n")
        assert main([*argv, "--policy", str(policy)]) == code
        out, err = capsys.readouterr()
        doc = json.loads(out)
        jsonschema.validate(doc, SCHEMA)
        assert [e["status"] for e in doc["epochs"]] == ["proven"]
    assert err.splitlines() == [
        (
            "veritrain: verification failed: epoch 0: required_status: proven, not final as the "
            "policy requires: its challenge window has not passed"
        )
    ]


def test_the_run_as_made_is_replayable_here(tiny_run, capsys):
    code, doc, _ = _verify(capsys, tiny_run[0], tiny_run[1])
    assert code == 0
    replayable = next(c for c in doc["checks"] if c["name"] == "replayable")
    assert replayable["ok"] and "replayable by this machine" in replayable["detail"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        ("{", "not JSON"),
        ('{"torch_version": 1}', "not a determinism profile"),
    ],
)
def test_a_bad_replayable_profile_file_is_a_usage_error(tiny_run, tmp_path, capsys, content, words):
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    assert main(["verify", tiny_run[2], "--replayable-profile", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert f"--replayable-profile {path}: {words}" in err


def test_a_receipt_entry_must_name_its_claim_by_the_tagged_digest(tiny_run, tmp_path, capsys):
    """PROTOCOL.md §9: the ledger refers to a claim by H("veritrain/claim/v1", claim bytes)."""
    src, run_id, _ = tiny_run
    store = _copy(src, tmp_path)
    ls = LocalStore(store)
    _, entries = open_ledger(ls, Manifest.load(ls, run_id))
    claims = {e: x.body.claim for e, x in epoch_entries(entries).items()}
    for _, doc in _entries(store, run_id):
        if doc["kind"] == "receipt":
            assert doc["body"]["claim_digest"] == claim_digest(claims[doc["body"]["epoch"]])

    def plain(kind: str, body: dict) -> dict:
        if kind != "receipt" or body["epoch"] != 1:
            return body
        return {**body, "claim_digest": sha256_hex(claims[1].to_bytes())}

    _resign(store, run_id, plain)
    code, doc, _ = _verify(capsys, store, run_id)
    assert code == 1 and set(_failed(doc)) == {(1, "receipt")}
    assert "claim_digest is not the claim's digest" in _failed(doc)[(1, "receipt")]
