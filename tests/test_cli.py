"""The command line contract, through real processes: run (a Prefect flow on the ephemeral API),
verify, status, schema, and their exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, veritrain

from veritrain.pipeline.prove.estimate import RATES_FILE

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


def test_run_says_what_it_will_prove_then_each_part_as_it_finishes(demo):
    """On stderr (the flow's log): before an epoch's first proof part, its cycles, segments and
    estimate; then a line per part with the time it took and what is left. The parts' times are
    kept as this machine's rates for the next estimate."""
    _, r = demo
    err = r.stderr
    for epoch in (0, 1):
        plan = re.search(
            rf"epoch {epoch}: to prove [\d,]+ cycles \([\d,]+ user\) in (\d+) segments? "
            r"\(.*2\^\d+\), (\d+) joins?, (1 resolve|no resolve): about .+ cycles/s",
            err,
        )
        assert plan, err[-3000:]
        segments, joins = int(plan[1]), int(plan[2])
        assert plan[3] == ("1 resolve" if epoch else "no resolve")
        lines = [
            *(
                f"epoch {epoch}: segment {k}/{segments} proven and lifted in "
                for k in range(1, segments + 1)
            ),
            *(f"epoch {epoch}: join {i}/{joins} done in " for i in range(1, joins + 1)),
            *([f"epoch {epoch}: the previous epoch's receipt resolved in "] * epoch),
        ]
        for line in lines:
            assert plan.start() < err.find(line), (line, err[-3000:])
        assert err.find(f"epoch {epoch} proven: ") > max(err.find(line) for line in lines)
    kept = json.loads((Path(os.environ["VERITRAIN_STATE"]) / RATES_FILE).read_text())
    assert "resolve" in kept and any(k.startswith("segment-") for k in kept), kept


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
