"""The store as a model: every object a run writes is at a key pipeline/store/keys.py names, every
ledger entry parses into its kind's model (pipeline/run/entries.py) and dumps back to the very bytes
that were signed, a malformed manifest or entry is one IntegrityError naming its key, and
verify fails a check only for such errors: a bug in a check raises.

Runs on the session's unproven tiny run (trained in-process, no proofs), copied per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import veritrain.pipeline.verify.epoch_checks
import veritrain.pipeline.verify.verifier
from veritrain.flows.cli import main
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.ledger import Ledger, load_or_create_key
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger
from veritrain.pipeline.store import keys
from veritrain.pipeline.store.local import LocalStore


@pytest.fixture
def run(unproven_run, tmp_path) -> tuple[LocalStore, str]:
    src, run_id = unproven_run
    shutil.copytree(src, tmp_path / "store")
    return LocalStore(tmp_path / "store"), run_id


def _ledger(store: LocalStore, run_id: str) -> Ledger:
    return Ledger(store, run_id, Manifest.load(store, run_id).public_key.hex())


def test_every_object_of_a_run_is_at_a_key_the_layout_names(run):
    store, run_id = run
    _, entries = open_ledger(store, Manifest.load(store, run_id))
    named = {keys.manifest_key(run_id)} | {keys.ledger_key(run_id, e.seq) for e in entries}
    for e in entries:
        if e.kind == "checkpoint":
            named.add(keys.checkpoint_key(run_id, e.body.step))
            if e.body.pending_records is not None:
                named.add(keys.pending_records_key(run_id, e.body.step))
                assert e.body.pending_records == keys.pending_records_key(run_id, e.body.step)
            assert e.body.checkpoint == keys.checkpoint_key(run_id, e.body.step)
        elif e.kind == "epoch":
            end = e.body.checkpoint
            assert e.body.records == keys.records_key(run_id, e.body.epoch)
            assert end.checkpoint == keys.checkpoint_key(run_id, end.step)
            named |= {e.body.records, end.checkpoint}
    assert set(store.list(keys.run_prefix(run_id))) == named
    assert keys.ledger_key(run_id, 9) < keys.ledger_key(run_id, 10)  # listing order is seq order


def test_each_entry_dumps_back_to_the_bytes_its_trainer_signed(run):
    """The writer's bytes are the models' dump: re-signing each parsed entry (Ed25519 is
    deterministic) gives the stored object byte for byte."""
    store, run_id = run
    ledger = _ledger(store, run_id)
    key = load_or_create_key(run_id)
    entries = ledger.entries()
    assert {e.kind for e in entries} == {"run", "checkpoint", "epoch"}
    for e in entries:
        _, data = ledger.document(key, e.seq, e.prev, e.kind, e.body.model_dump(mode="json"))
        assert data == store.read(keys.ledger_key(run_id, e.seq)), e.kind


def _resign_last(store: LocalStore, run_id: str, edit) -> str:
    """Rewrites the ledger's last entry (an epoch entry) as ``edit(kind, body)`` says, signed by
    the run's own key: what a buggy or dishonest trainer can write. Returns the entry's key."""
    ledger = _ledger(store, run_id)
    last = ledger.entries()[-1]
    assert last.kind == "epoch"
    kind, body = edit("epoch", json.loads(last.body.model_dump_json()))
    _, data = ledger.document(load_or_create_key(run_id), last.seq, last.prev, kind, body)
    key = keys.ledger_key(run_id, last.seq)
    path = Path(store.uri) / key
    path.unlink()
    store.create(key, data)
    return key


def _without(name: str):
    return lambda kind, body: (kind, {k: v for k, v in body.items() if k != name})


def _with(**fields):
    return lambda kind, body: (kind, {**body, **fields})


def _checkpoint_with(**fields):
    return lambda kind, body: (kind, {**body, "checkpoint": {**body["checkpoint"], **fields}})


def _claim_with(**fields):
    return lambda kind, body: (kind, {**body, "claim": {**body["claim"], **fields}})


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_without("records"), "epoch entry lacks records"),
        (_with(records_sha256="AB" * 32), "epoch entry has malformed records_sha256"),
        (_with(epoch=True), "epoch entry has malformed epoch"),
        (_with(note="hi"), "epoch entry has malformed note (Extra inputs are not permitted)"),
        (_claim_with(epoch=0), "epoch entry is malformed: its claim is of epoch 0, not 1"),
        (
            _claim_with(dataset_root="00"),
            "epoch entry has malformed claim (claim: field 'dataset_root'",
        ),
        (_checkpoint_with(step="6"), "epoch entry has malformed checkpoint.step"),
        (
            _checkpoint_with(pending_records="runs/x"),
            "epoch entry has malformed checkpoint (pending_records and pending_sha256 come "
            "together)",
        ),
        (lambda kind, body: ("note", body), "kind 'note' is none of run, checkpoint, epoch"),
        (lambda kind, body: ("receipt", body), "receipt entry lacks receipt, receipt_sha256"),
    ],
)
def test_a_signed_but_malformed_entry_is_an_integrity_error_naming_it(run, capsys, edit, words):
    store, run_id = run
    key = _resign_last(store, run_id, edit)
    with pytest.raises(IntegrityError) as e:
        _ledger(store, run_id).entries()
    assert str(e.value).startswith(f"{key}: ") and words in str(e.value), str(e.value)
    assert len(str(e.value).splitlines()) == 1
    report = veritrain.pipeline.verify.verifier.verify_run(store, run_id)
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == ["ledger"] and failed[0].detail == str(e.value)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.pop("dataset_root"), "not a valid run manifest (lacks dataset_root)"),
        (
            lambda d: d.update(steps_per_epoch="3"),
            "not a valid run manifest (has malformed steps_per_epoch",
        ),
        (
            lambda d: d["spec"].update(batch_size=0),
            "not a valid run manifest (has malformed spec.batch_size",
        ),
        (
            lambda d: d["determinism"].pop("threads"),
            "not a valid run manifest (lacks determinism.threads)",
        ),
        (lambda d: d.update(run_id="other"), "not a valid run manifest (names run 'other')"),
    ],
)
def test_a_malformed_manifest_fails_the_manifest_check_naming_it(run, capsys, edit, words):
    store, run_id = run
    path = Path(store.uri) / keys.manifest_key(run_id)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    code = main(["verify", f"{store.uri}/runs/{run_id}", "--json"])
    out, err = capsys.readouterr()
    failed = [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert code == 1 and [c["name"] for c in failed] == ["manifest"]
    assert failed[0]["detail"].startswith(f"{keys.manifest_key(run_id)}: {words}")
    assert len(err.splitlines()) == 1


def test_a_bug_in_a_check_raises_while_tampered_data_fails_it(run, capsys, monkeypatch):
    """Verify fails a check only on a VeritrainError: a TypeError inside a check is a bug in
    veritrain, reported as an internal error (exit 3), never as a failed check (exit 1)."""
    store, run_id = run
    uri = f"{store.uri}/runs/{run_id}"
    assert veritrain.pipeline.verify.verifier.verify_run(store, run_id).ok

    _, entries = open_ledger(store, Manifest.load(store, run_id))
    records = Path(store.uri) / epoch_entries(entries)[1].body.records
    data = bytearray(records.read_bytes())
    data[len(data) // 2] ^= 1
    records.write_bytes(bytes(data))
    report = veritrain.pipeline.verify.verifier.verify_run(store, run_id)
    failed = [(e.epoch, c.name) for e in report.epochs for c in e.checks if not c.ok]
    assert failed == [(1, "records")]

    def buggy(*args, **kwargs):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(veritrain.pipeline.verify.epoch_checks, "_check_claim", buggy)
    with pytest.raises(TypeError, match="not subscriptable"):
        veritrain.pipeline.verify.verifier.verify_run(store, run_id)
    assert main(["verify", uri]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (TypeError:" in err
