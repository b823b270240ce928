"""`veritrain audit`: pull one epoch into a folder and verify it from that folder alone; and the
Prefect verify and audit flows. Uses the session's proven tiny run; no proofs are made here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, veritrain

from veritrain.flows.cli import main

pytestmark = pytest.mark.proving

SCHEMA = json.loads((ROOT / "docs" / "schemas" / "verify.schema.json").read_text())


def _audit(capsys, uri: str, epoch: int, out: Path) -> tuple[int, dict | None, str]:
    code = main(["audit", uri, "--epoch", str(epoch), "--out", str(out), "--json"])
    stdout, err = capsys.readouterr()
    doc = json.loads(stdout) if stdout else None
    if doc is not None:
        jsonschema.validate(doc, SCHEMA)
    return code, doc, err


def _failed(doc: dict) -> set[tuple]:
    out = {("run", c["name"]) for c in doc["checks"] if not c["ok"]}
    for e in doc["epochs"]:
        out |= {(e["epoch"], c["name"]) for c in e["checks"] if not c["ok"]}
    return out


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_audit_pulls_one_epoch_and_verifies_it_from_the_folder_alone(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    out = tmp_path / "audit"
    code, doc, _ = _audit(capsys, f"{store}/runs/{run_id}", 1, out)
    assert code == 0, doc
    assert [e["epoch"] for e in doc["epochs"]] == [1] and doc["epochs"][0]["status"] == "final"
    names = {c["name"] for c in doc["epochs"][0]["checks"]}
    assert {"claim", "records", "receipt", "journal", "checkpoint"} <= names
    run = f"runs/{run_id}"
    ledger = {f"{run}/ledger/{p.name}" for p in (store / run / "ledger").iterdir()}
    assert _files(out) == ledger | {
        "audit.json",
        f"{run}/run.json",
        f"{run}/records/epoch-000001.bin",
        f"{run}/checkpoints/step-000000000006.safetensors",  # epoch 1 ends after step 5
        f"{run}/receipts/epoch-000001.receipt",
        f"{run}/receipts/epoch-000001.journal.json",
    }
    # The store is gone: a rerun verifies the folder again, from the folder alone.
    shutil.rmtree(store)
    code, again, err = _audit(capsys, f"{store}/runs/{run_id}", 1, out)
    assert code == 0 and again == doc and "re-verifying" in err


def test_audit_finds_tampering_in_its_folder(tiny_run, tmp_path, capsys):
    _, run_id, uri = tiny_run
    out = tmp_path / "audit"
    assert _audit(capsys, uri, 0, out)[0] == 0
    ck = out / "runs" / run_id / "checkpoints" / "step-000000000003.safetensors"
    data = bytearray(ck.read_bytes())
    data[-1] ^= 1
    ck.write_bytes(bytes(data))
    code, doc, err = _audit(capsys, uri, 0, out)
    assert code == 1 and _failed(doc) == {(0, "checkpoint")}
    assert err.splitlines()[-1].startswith(f"veritrain: audit of {out} failed: epoch 0: checkpoint")


def test_audit_refuses_a_folder_holding_anything_else(tiny_run, tmp_path, capsys):
    _, _, uri = tiny_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, doc, err = _audit(capsys, uri, 1, other)
    assert code == 2 and doc is None and "not empty" in err and (other / "notes.txt").exists()
    out = tmp_path / "audit"
    assert _audit(capsys, uri, 1, out)[0] == 0
    code, _, err = _audit(capsys, uri, 0, out)  # another epoch into the same folder
    assert code == 2 and "not exactly an audit of run" in err


def test_audit_of_an_epoch_without_a_receipt_fails(unproven_run, tmp_path, capsys):
    store, run_id = unproven_run
    code, doc, err = _audit(capsys, f"{store}/runs/{run_id}", 0, tmp_path / "audit")
    assert code == 1 and _failed(doc) == {(0, "receipt")}
    assert "epoch 0 has no receipt: committed, not proven" in err


def test_audit_reports_what_the_store_lacks(tiny_run, tmp_path, capsys):
    src, run_id, _ = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    (store / "runs" / run_id / "receipts" / "epoch-000001.receipt").unlink()
    code, doc, err = _audit(capsys, f"{store}/runs/{run_id}", 1, tmp_path / "audit")
    assert code == 1 and _failed(doc) == {(1, "receipt")}
    assert "epoch-000001.receipt: not in the store" in err


def test_audit_exit_codes_for_missing_runs_and_epochs(tiny_run, tmp_path, capsys):
    _, _, uri = tiny_run
    code, doc, err = _audit(capsys, uri, 7, tmp_path / "a")
    assert code == 1 and _failed(doc) == {("run", "epoch_exists")}
    code, doc, err = _audit(capsys, f"{tmp_path}/nowhere/runs/x", 0, tmp_path / "b")
    assert code == 3 and doc is None and "no such run" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_audit_through_the_command_line(tiny_run, tmp_path):
    out = tmp_path / "audit"
    r = veritrain("audit", tiny_run[2], "--epoch", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "verified"
    assert veritrain("audit", tiny_run[2], "--out", str(out)).returncode == 2  # --epoch required


def test_verify_and_audit_flows(tiny_run, tmp_path):
    """Through Prefect (ephemeral API), in a separate process as a deployment would run them."""
    src, run_id, uri = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    records = store / "runs" / run_id / "records" / "epoch-000001.bin"
    records.write_bytes(records.read_bytes()[:-1])
    script = f"""
import json
from veritrain.flows.verification import VerificationFailed, audit_flow, verify_flow
ok = verify_flow({uri!r})
audit = audit_flow({uri!r}, 1, {str(tmp_path / "audit")!r})
try:
    verify_flow({f"{store}/runs/{run_id}"!r})
    failed = None
except VerificationFailed as e:
    failed = [str(e), e.report["ok"]]
key = json.load(open({str(src / "runs" / run_id / "run.json")!r}))["public_key"]
pinned = verify_flow({uri!r}, trainer_keys=[key], require_pinned=True)
pinned_audit = audit_flow({uri!r}, 1, {str(tmp_path / "audit2")!r}, trainer_keys=[key])
try:
    verify_flow({uri!r}, trainer_keys=["ab" * 32])
    other = None
except VerificationFailed as e:
    other = str(e)
try:
    verify_flow({uri!r}, image_ids=["zz"])
    bad = None
except Exception as e:
    bad = f"{{type(e).__name__}}: {{e}}"
print(json.dumps([ok["ok"], audit["ok"], failed, pinned["ok"], pinned_audit["ok"], other, bad]))
"""
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ok, audit, failed, pinned, pinned_audit, other, bad = json.loads(
        r.stdout.strip().splitlines()[-1]
    )
    assert ok and audit
    assert failed[1] is False and failed[0].startswith("verification failed: epoch 1")
    assert "records" in failed[0]
    # The trust roots are the flow's parameters, not the store's word.
    assert pinned and pinned_audit
    assert other is not None and "trainer_key" in other, other
    assert bad is not None and bad.startswith("UsageError: image_ids zz: not an image id"), bad
