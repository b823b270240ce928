"""The typed native boundary: records, claims and schedules are the core's types as frozen Python
classes, their JSON form is the ledger's, and only ``prover`` imports the extension."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

from veritrain.pipeline.run.ledger import canonical_json
from veritrain.prover import EncodingError, EpochClaim, Schedule, StepRecord, VeritrainError
from veritrain.prover.results import TORCH_MODE

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "protocol-v1.json").read_text())
CLAIM = bytes.fromhex(VECTORS["claims"][1]["bytes"])
RECORD = bytes.fromhex(VECTORS["records"][0]["bytes"])


def test_only_prover_imports_the_extension():
    importers = []
    for folder in ("pipeline", "flows", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if "veritrain.prover._native" in names:
                    importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_claim_json_is_the_ledger_form():
    """Every field by name, digests in lowercase hex, every schedule field (null where unused):
    the bytes an epoch entry signs, unchanged from protocol 1's first ledgers."""
    claim = EpochClaim.from_bytes(CLAIM)
    doc = claim.to_json()
    digests = [k for k in doc if k.endswith(("_hash", "_root", "_digest")) or k == "image_id"]
    assert len(digests) == 8
    for k in digests:
        assert doc[k] == getattr(claim, k).hex()
    assert doc["schedule"] == {
        "kind": "step_decay",
        "base_lr": 0.1,
        "step_size": 2,
        "gamma": 0.5,
        "warmup_steps": None,
    }
    assert (doc["run_id"], doc["epoch"], doc["guarantees"]) == ("vector-run", 1, TORCH_MODE)
    assert EpochClaim.from_json(json.loads(canonical_json(doc))) == claim
    journal = claim.journal_json()
    assert journal.pop("guarantee_names") == ["structure", "sampler", "schedule", "lineage"]
    assert journal == doc


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("epoch"), "claim: missing field 'epoch'"),
        (lambda d: d.update(extra=1), "claim: unknown field 'extra'"),
        (lambda d: d.update(epoch="1"), "claim: field 'epoch'"),
        (lambda d: d.update(epoch=True), "claim: field 'epoch': expected a number"),
        (lambda d: d.update(records_root="ab"), "claim: field 'records_root': a digest is 64 hex"),
        (lambda d: d.update(run_id="a/b"), "claim: field 'run_id': run id is not"),
        (lambda d: d.update(guarantees=1 << 7), "claim: unknown guarantee bits 0x80"),
        (lambda d: d["schedule"].update(gamma=None), "schedule kind 'step_decay' takes exactly"),
        (lambda d: d["schedule"].update(kind="cosine"), "unknown kind 'cosine'"),
    ],
    ids=["missing", "unknown", "str", "bool", "digest", "run_id", "guarantees", "kind", "cosine"],
)
def test_bad_claim_json_is_an_encoding_error_naming_the_field(edit, message):
    doc = EpochClaim.from_bytes(CLAIM).to_json()
    edit(doc)
    with pytest.raises(EncodingError, match=message):
        EpochClaim.from_json(doc)


@pytest.mark.parametrize(
    "cls, data, message",
    [
        (StepRecord, RECORD[:-1], "record: expected 224 bytes, got 223"),
        (StepRecord, b"\x02" + RECORD[1:], "record: unsupported protocol version 2"),
        (EpochClaim, CLAIM + b"\x00", "claim: expected 384 bytes, got 385"),
        (EpochClaim, CLAIM[:4] + b"\xff" + CLAIM[5:], "claim: unknown guarantee bits"),
        (Schedule, bytes(40), "schedule: rates must be finite and positive"),
    ],
)
def test_bad_bytes_are_an_encoding_error(cls, data, message):
    with pytest.raises(EncodingError, match=message) as e:
        cls.from_bytes(data)
    assert isinstance(e.value, VeritrainError)


def test_records_are_frozen_values():
    rec = StepRecord.from_bytes(RECORD)
    same = StepRecord.from_bytes(RECORD)
    assert rec == same and rec is not same
    assert rec != StepRecord.from_bytes(bytes.fromhex(VECTORS["records"][1]["bytes"]))
    with pytest.raises(AttributeError):
        rec.step = 5  # type: ignore[misc]
    assert repr(rec).startswith("StepRecord(run_id='vector-run', epoch=0, step=0, ")
    assert copy.deepcopy(rec) == rec and copy.copy(rec) == rec


def test_constructors_take_keywords_and_apply_the_core_rules():
    digest = bytes(range(32))
    fields = dict(
        run_id="r",
        epoch=0,
        step=3,
        prev_record_hash=digest,
        batch_digest=digest,
        hparams_digest=digest,
        loss=0.5,
        grad_norm=1.25,
        param_digest=digest,
    )
    rec = StepRecord(**fields)
    assert rec.state_digest is None and rec.loss == 0.5
    assert StepRecord.from_bytes(rec.to_bytes()) == rec
    with pytest.raises(TypeError):
        StepRecord(*fields.values())
    with pytest.raises(ValueError, match="record: prev_record_hash: a digest is 32 bytes, got 3"):
        StepRecord(**fields | {"prev_record_hash": b"abc"})
    with pytest.raises(ValueError, match="run id"):
        StepRecord(**fields | {"run_id": ".."})
    with pytest.raises(ValueError, match="periods non-zero"):
        Schedule(kind="step_decay", base_lr=0.1, step_size=0, gamma=0.5)
    with pytest.raises(ValueError, match="takes no extra fields"):
        Schedule(base_lr=0.1, gamma=0.5)
    claim = EpochClaim.from_bytes(CLAIM)
    kwargs = {k: getattr(claim, k) for k in claim.to_json()}
    assert EpochClaim(**kwargs) == claim
    with pytest.raises(ValueError, match="unknown guarantee bits"):
        EpochClaim(**kwargs | {"guarantees": 1 << 9})


def test_a_spec_schedule_is_the_core_schedule():
    from veritrain.pipeline.run.spec import parse_spec

    spec = parse_spec({"schedule": {"kind": "linear_warmup", "base_lr": 0.2, "warmup_steps": 4}})
    assert spec.schedule == Schedule(kind="linear_warmup", base_lr=0.2, warmup_steps=4)
    assert Schedule.from_bytes(spec.schedule.to_bytes()) == spec.schedule
    assert json.loads(spec.canonical_json())["schedule"] == spec.schedule.to_json()
