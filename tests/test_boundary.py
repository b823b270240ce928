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
    """Every field by name, digests in lowercase hex, the schedule's step_size, gamma and
    warmup_steps (null where unused; min_lr and total_steps only in a cosine schedule): the bytes
    an epoch entry signs, unchanged from protocol 1's first ledgers."""
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
        (lambda d: d["schedule"].update(kind="cosine"), "kind 'cosine' takes exactly"),
        (lambda d: d["schedule"].update(kind="warmup_cosine"), "unknown kind 'warmup_cosine'"),
        (lambda d: d["schedule"].update(min_lr=0.01), "kind 'step_decay' takes exactly"),
    ],
    ids=[
        "missing",
        "unknown",
        "str",
        "bool",
        "digest",
        "run_id",
        "guarantees",
        "kind",
        "cosine-fields",
        "unknown-kind",
        "min-lr-on-step-decay",
    ],
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
        (Schedule, bytes(40), "schedule: base_lr must be finite and positive"),
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
    with pytest.raises(ValueError, match="step_size must be positive"):
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
    core = spec.schedule_for(100)
    assert core == Schedule(kind="linear_warmup", base_lr=0.2, warmup_steps=4)
    assert Schedule.from_bytes(core.to_bytes()) == core
    assert json.loads(spec.canonical_json())["schedule"] == core.to_json()


def test_a_cosine_spec_decays_over_the_runs_steps():
    """The spec gives warmup_steps and min_lr; total_steps is the run's (epochs x steps per
    epoch), which the core's schedule carries into every claim."""
    from veritrain.pipeline.run.spec import parse_spec

    cosine = {"kind": "cosine", "base_lr": 0.3, "warmup_steps": 4, "min_lr": 0.01}
    spec = parse_spec({"schedule": cosine, "epochs": 4, "batch_size": 10})
    core = spec.schedule_for(95)  # 10 steps an epoch, the last one short: 40 steps
    assert core == Schedule(**cosine, total_steps=40)
    assert (core.min_lr, core.total_steps, core.step_size, core.gamma) == (0.01, 40, None, None)
    assert core.to_json() == {**cosine, "total_steps": 40, "step_size": None, "gamma": None}
    assert json.loads(spec.canonical_json())["schedule"] == {
        **cosine,
        "step_size": None,
        "gamma": None,
    }
    assert Schedule.from_json(core.to_json()) == core == Schedule.from_bytes(core.to_bytes())
    # The rate is the core's, through the extension: warmup, base_lr, half-way, min_lr.
    assert [core.lr_at(s) for s in (0, 3, 4)] == [0.3 / 4, 0.3, 0.3]
    assert core.lr_at(22) == pytest.approx((0.3 + 0.01) / 2, abs=1e-16)
    assert core.lr_at(39) > 0.01 == core.lr_at(40)
    assert "total_steps=40" in repr(core)
    inverse = parse_spec({"schedule": {"kind": "inverse_sqrt", "base_lr": 0.2, "warmup_steps": 4}})
    core = inverse.schedule_for(100)
    assert core.lr_at(15) == 0.1 and "min_lr" not in core.to_json()


@pytest.mark.parametrize(
    "schedule, message",
    [
        ({"kind": "cosine", "base_lr": 0.1, "warmup_steps": 5}, "kind 'cosine' takes exactly"),
        ({"kind": "cosine", "base_lr": 0.1, "min_lr": 0.2, "warmup_steps": 5}, "at most base_lr"),
        ({"kind": "cosine", "base_lr": 0.1, "min_lr": -1e-3, "warmup_steps": 5}, "min_lr must"),
        ({"kind": "cosine", "base_lr": 0.1, "min_lr": 0, "warmup_steps": 0}, "warmup_steps must"),
        ({"kind": "cosine", "base_lr": -0.1, "min_lr": 0, "warmup_steps": 5}, "base_lr must"),
        (
            {"kind": "cosine", "base_lr": 0.1, "min_lr": 0, "warmup_steps": 5, "total_steps": 9},
            "total_steps: Extra inputs",
        ),
        ({"kind": "inverse_sqrt", "base_lr": 0.1}, "kind 'inverse_sqrt' takes exactly"),
        ({"kind": "inverse_sqrt", "base_lr": 0.1, "warmup_steps": -1}, "warmup_steps: Input"),
        ({"kind": "inverse_sqrt", "base_lr": 0.1, "warmup_steps": 2**64}, "warmup_steps: Input"),
        ({"kind": "cosine_restarts", "base_lr": 0.1}, "kind: Input should be"),
    ],
)
def test_bad_schedules_name_the_key(schedule, message):
    from veritrain.pipeline.errors import SpecError
    from veritrain.pipeline.run.spec import parse_spec

    with pytest.raises(SpecError, match=f"^s.yaml: schedule[.:].*{message}") as e:
        parse_spec({"schedule": schedule}, "s.yaml")
    assert "\n" not in str(e.value) and "Value error" not in str(e.value)


def test_a_warmup_longer_than_the_run_is_refused():
    from veritrain.pipeline.errors import SpecError
    from veritrain.pipeline.run.spec import check_sizes, parse_spec

    for kind, extra in (("cosine", {"min_lr": 0.0}), ("inverse_sqrt", {}), ("linear_warmup", {})):
        schedule = {"kind": kind, "base_lr": 0.1, "warmup_steps": 41, **extra}
        spec = parse_spec({"schedule": schedule, "epochs": 4, "batch_size": 10})
        with pytest.raises(SpecError, match="schedule.warmup_steps: 41 warmup steps, more than"):
            check_sizes(spec, 100)
        check_sizes(spec.model_copy(update={"epochs": 5}), 100)  # 50 steps: fits
