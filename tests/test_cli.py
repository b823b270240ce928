"""The command line contract, through real processes: run (a Prefect flow on the ephemeral API),
verify, status, schema, and their exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import jsonschema
import pytest
from conftest import ROOT, in_env, veritrain

from veritrain.pipeline.prove.receipt_cache import ReceiptCache
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, receipt_entries
from veritrain.pipeline.store.keys import receipt_key
from veritrain.pipeline.store.local import LocalStore
from veritrain.prover import EpochReceipt

pytestmark = pytest.mark.proving


def test_run_leaves_a_run_that_verifies(tiny_run):
    store, run_id, uri = tiny_run
    assert uri == f"{store}/runs/{run_id}"
    r = veritrain("verify", uri, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["run_id"] == run_id and len(doc["image_id"]) == 64
    assert [e["epoch"] for e in doc["epochs"]] == [0, 1]
    # challenge_window is 0 in the tiny spec: proven epochs are final at once.
    assert {e["status"] for e in doc["epochs"]} == {"final"}
    names = {c["name"] for c in doc["epochs"][1]["checks"]}
    assert {"records", "checkpoint", "receipt", "journal"} <= names


def test_a_run_whose_claims_were_proven_before_takes_its_receipts_from_the_cache(
    tiny_run, tmp_path
):
    """The tiny spec run again into a new store makes the same claims (same spec, data and key),
    so with the tiny run's receipts in a receipt cache both epochs take them from there, verified,
    instead of proving; the log says so, and the run verifies. The cache is this test's own."""
    store, run_id, _ = tiny_run
    src = LocalStore(store)
    _, entries = open_ledger(src, Manifest.load(src, run_id))
    cache = ReceiptCache(tmp_path / "receipts")
    receipts = {}
    for epoch, entry in receipt_entries(entries).items():
        receipts[epoch] = src.read(entry.body.receipt)
        claim = epoch_entries(entries)[epoch].body.claim
        assert cache.put(EpochReceipt(receipt=receipts[epoch], claim=claim)) == cache.path(claim)
    env = {**os.environ, "VERITRAIN_RECEIPT_CACHE": str(cache.folder)}
    new = tmp_path / "store"
    spec = str(ROOT / "examples" / "tiny.yaml")
    r = in_env(env, sys.executable, "-m", "veritrain.flows.cli", "run", spec, "--store", str(new))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "to prove" not in r.stderr and "proven and lifted" not in r.stderr, r.stderr[-3000:]
    for epoch in (0, 1):
        assert re.search(
            rf"epoch {epoch} proven: its receipt \(\d+ bytes\), proven before on this machine "
            r"for the same claim, from the receipt cache \(.*\.receipt\), verified",
            r.stderr,
        ), r.stderr[-3000:]
    uri = r.stdout.strip().splitlines()[-1]
    assert uri == f"{new}/runs/{run_id}"
    for epoch, data in receipts.items():
        assert (new / receipt_key(run_id, epoch)).read_bytes() == data
    r = veritrain("verify", uri)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rerunning_a_finished_run_changes_nothing(tiny_run, tmp_path):
    store, _run_id, uri = tiny_run
    before = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())
    r = veritrain("run", str(ROOT / "examples" / "tiny.yaml"), "--store", str(store))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == uri
    after = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())
    assert after == before


def test_status_shows_each_epoch(tiny_run):
    r = veritrain("status", tiny_run[2])
    assert r.returncode == 0
    assert "final" in r.stdout and "0..2" in r.stdout and "3..5" in r.stdout


def test_tampered_receipt_fails_verify_and_names_the_check(tiny_run, tmp_path):
    store, run_id, _ = tiny_run
    copy = tmp_path / "s"
    shutil.copytree(store, copy)
    p = copy / "runs" / run_id / "receipts" / "epoch-000001.receipt"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))
    r = veritrain("verify", f"{copy}/runs/{run_id}", "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    failed = [(e["epoch"], c["name"]) for e in doc["epochs"] for c in e["checks"] if not c["ok"]]
    assert failed == [(1, "receipt")]


def test_exit_codes_for_bad_input(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: -1\n")
    r = veritrain("run", str(bad))
    assert r.returncode == 2 and f"{bad}: epochs" in r.stderr
    r = veritrain("verify", str(tmp_path / "nowhere" / "runs" / "x"))
    assert r.returncode == 3 and "no such object" in r.stderr
    r = veritrain("verify", "not-a-run-uri")
    assert r.returncode == 2 and "runs/<run_id>" in r.stderr
    assert veritrain("verify").returncode == 2


def test_schemas_are_published_and_current():
    for which in ("spec", "verify"):
        r = veritrain("schema", which)
        assert r.returncode == 0
        published = json.loads((ROOT / "docs" / "schemas" / f"{which}.schema.json").read_text())
        assert json.loads(r.stdout) == published


def test_verify_json_follows_its_published_schema(tiny_run):
    """A real document, checked against docs/schemas/verify.schema.json (test_tamper.py checks
    the failing documents of every tamper case the same way)."""
    r = veritrain("verify", tiny_run[2], "--json")
    assert r.returncode == 0, r.stderr
    schema = json.loads((ROOT / "docs" / "schemas" / "verify.schema.json").read_text())
    jsonschema.validate(json.loads(r.stdout), schema)
