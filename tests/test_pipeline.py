"""Spec validation, the store, the ledger, determinism and crash safety (no proving here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from veritrain.pipeline.errors import ConflictError, IntegrityError, SpecError
from veritrain.pipeline.run.ledger import Ledger
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import load_spec, parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

ROOT = Path(__file__).resolve().parent.parent

# Records of this spec are compared across runs; no proving (finalize_every: 0).
CRASH_SPEC = {
    "model": {"kind": "mlp", "hidden": [16]},
    "dataset": {"kind": "synthetic", "samples": 40, "features": 8, "classes": 3, "seed": 2},
    "optimizer": {"kind": "adam"},
    "schedule": {"kind": "linear_warmup", "base_lr": 0.01, "warmup_steps": 4},
    "seed": 3,
    "epochs": 3,
    "batch_size": 8,
    "state_every": 2,
    "checkpoint_every": 3,
    "finalize_every": 0,
}


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": {"kind": "sgd", "momentum": 2}}, "optimizer.sgd.momentum"),
        ({"bogus": 1}, "bogus"),
        ({"schedule": {"kind": "step_decay", "base_lr": 0.1}}, "schedule"),
        ({"dataset": {"kind": "synthetic", "samples": -1}}, "dataset.synthetic.samples"),
    ],
)
def test_bad_spec_names_the_key(patch, where):
    with pytest.raises(SpecError, match=rf"myspec: {where}"):
        parse_spec({**CRASH_SPEC, **patch}, "myspec")


def test_spec_file_errors_name_the_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("epochs: [unclosed")
    with pytest.raises(SpecError, match=f"{p}: not valid YAML"):
        load_spec(p)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    assert load_spec(ROOT / "examples" / "tiny.yaml").epochs == 2


def test_store_create_is_exclusive_and_idempotent(tmp_path):
    s = LocalStore(tmp_path)
    s.create("a/b", b"one")
    s.create("a/b", b"one")  # same bytes: a resumed writer re-creating what it wrote
    with pytest.raises(ConflictError):
        s.create("a/b", b"two")
    assert s.read("a/b") == b"one"
    assert s.list("a") == ["a/b"]


def _run(spec, tmp_path, run_id, **env_extra):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "crash_runner.py"),
            str(path),
            str(tmp_path / "store"),
            run_id,
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def _records(store_root: Path, run_id: str) -> dict[str, bytes]:
    d = store_root / "runs" / run_id / "records"
    # A writer killed before its link leaves a .tmp- file: never an object, safe to delete.
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".tmp-")}


def _final_state(store_root: Path, run_id: str) -> str:
    m = Manifest.load(LocalStore(store_root), run_id)
    entries = Ledger(LocalStore(store_root), run_id, m.public_key.hex()).entries()
    return [e for e in entries if e.kind == "epoch"][-1].body.claim.end_state_digest.hex()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of CRASH_SPEC."""
    tmp = tmp_path_factory.mktemp("ref")
    r = _run(CRASH_SPEC, tmp, "ref")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith("/runs/ref")
    return tmp / "store"


def test_same_spec_twice_gives_identical_records(reference, tmp_path):
    r = _run(CRASH_SPEC, tmp_path, "ref")
    assert r.returncode == 0, r.stderr
    assert _records(tmp_path / "store", "ref") == _records(reference, "ref")


@pytest.mark.parametrize(
    "failpoint",
    [
        "mid-write:checkpoints/step-000000000006.safetensors@1",  # mid-checkpoint-write
        "before-link:checkpoints/step-000000000006.records.bin@1",
        "mid-write:ledger/@4",  # mid-ledger-append
        "before-link:ledger/@6",
        "before-link:records/epoch-000001.bin@1",
    ],
)
def test_sigkill_then_rerun_resumes_bit_identically(reference, tmp_path, failpoint):
    r = _run(CRASH_SPEC, tmp_path, "ref", VERITRAIN_FAILPOINT=failpoint)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    r = _run(CRASH_SPEC, tmp_path, "ref")
    assert r.returncode == 0, r.stderr
    assert _records(tmp_path / "store", "ref") == _records(reference, "ref")
    assert _final_state(tmp_path / "store", "ref") == _final_state(reference, "ref")
    # No step recorded twice: every epoch's records file holds exactly its steps.
    m = json.loads((tmp_path / "store/runs/ref/run.json").read_text())
    for blob in _records(tmp_path / "store", "ref").values():
        assert len(blob) == 224 * m["steps_per_epoch"]


def test_rerun_with_another_spec_is_refused(reference, tmp_path):
    r = _run(CRASH_SPEC, tmp_path, "x")
    assert r.returncode == 0
    r = _run({**CRASH_SPEC, "seed": 4}, tmp_path, "x")
    assert r.returncode == 2 and "another spec" in r.stderr


def test_tampered_ledger_entry_is_detected(reference, tmp_path):
    import shutil

    store = tmp_path / "s"
    shutil.copytree(reference, store)
    p = store / "runs/ref/ledger/000000000002.json"
    doc = json.loads(p.read_text())
    doc["body"]["step"] += 1
    p.write_text(json.dumps(doc))
    m = Manifest.load(LocalStore(store), "ref")
    with pytest.raises(IntegrityError, match="000000000002.json"):
        Ledger(LocalStore(store), "ref", m.public_key.hex()).entries()


def test_in_process_training_matches_the_cli(reference, tmp_path):
    t = open_trainer(parse_spec(CRASH_SPEC), LocalStore(tmp_path), "ref")
    train(t)
    assert _records(tmp_path, "ref") == _records(reference, "ref")
