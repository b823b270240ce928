"""Challenges against a dishonest trainer (docs/OPERATIONS.md "Challenges"): replay finds exactly
the step it lied at, the fraud proof is upheld from the store alone and disputes that epoch and
every later one, and tampered or baseless proofs are rejected. No proving here (finalize_every:
0)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import veritrain

from veritrain.flows.cli import main
from veritrain.pipeline.challenge.fraudproof import (
    build_fraud_proof,
    check_filed_proof,
    check_fraud_proof,
    file_fraud_proof,
    record_view,
)
from veritrain.pipeline.challenge.replay import Replay, ReplayEnvironmentError
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.errors import DeterminismError
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.keys import proof_key, verdict_key
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.audit import audit_epoch
from veritrain.pipeline.verify.checks import COMMITTED, DISPUTED
from veritrain.pipeline.verify.verifier import verify_run

# 4 epochs of 6 steps (24 in all). Checkpoints after 4, 6, 8, 12, 16, 18, 20 and 24 steps; a
# state digest after every even number of steps, so the records of steps 1, 3, 5, ... carry one.
SPEC = {
    "model": {"kind": "mlp", "hidden": [16]},
    "dataset": {"kind": "synthetic", "samples": 48, "features": 8, "classes": 3, "seed": 5},
    "optimizer": {"kind": "sgd", "momentum": 0.9},
    "schedule": {"kind": "constant", "base_lr": 0.05},
    "seed": 11,
    "epochs": 4,
    "batch_size": 8,
    "state_every": 2,
    "checkpoint_every": 4,
    "finalize_every": 0,
}
STEPS = 24


class Honest:
    """A Tamper that changes nothing; the dishonest trainers below each lie once (or persist)."""

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return idx

    def after_update(self, step, model, optimizer) -> None:
        pass


def _flip_last_bit(t: torch.Tensor) -> None:
    t.view(-1)[:1].view(torch.int32).bitwise_xor_(1)


class FlipParamBit(Honest):
    """Flips the last mantissa bit of one parameter after the optimizer step of ``at``."""

    def __init__(self, at: int):
        self.at = at

    def after_update(self, step, model, optimizer) -> None:
        if step == self.at:
            _flip_last_bit(next(model.parameters()).detach())


class FlipMomentumBit(Honest):
    """Flips the last bit of one momentum buffer: the optimizer state only, parameters intact."""

    def __init__(self, at: int, by: float | None = None):
        self.at, self.by = at, by

    def after_update(self, step, model, optimizer) -> None:
        if step == self.at:
            buf = optimizer.state[next(model.parameters())]["momentum_buffer"]
            if self.by is None:
                _flip_last_bit(buf)
            else:
                buf.view(-1)[0] += self.by


class OtherBatch(Honest):
    """Trains steps [at, until) on other samples than the sampler's, recording the sampler's."""

    def __init__(self, at: int, until: int | None = None):
        self.at, self.until = at, until

    def batch(self, step, idx):
        if step >= self.at and (self.until is None or step < self.until):
            return (idx + 1) % SPEC["dataset"]["samples"]
        return idx


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trains a run per (name, tamper) once per module; returns (store, run id, uri)."""
    root = tmp_path_factory.mktemp("challenge-store")
    made: dict[str, tuple[LocalStore, str, str]] = {}

    def get(name: str, tamper: Honest | None = None):
        if name not in made:
            store = LocalStore(root)
            t = open_trainer(parse_spec(SPEC), store, name)
            t.tamper = tamper
            train(t)
            made[name] = (store, name, f"{root}/runs/{name}")
        return made[name]

    return get


def _statuses(store, run_id) -> list[str]:
    return [e.status for e in verify_run(store, run_id).epochs]


def test_honest_run_yields_no_fraud(runs):
    store, rid, _ = runs("honest")
    res = challenge(store, rid)
    assert res.finding is None and res.replayed_steps == STEPS and res.proof_id is None
    res = challenge(store, rid, bisect=True)
    assert res.finding is None and res.probes <= math.ceil(math.log2(STEPS))
    assert store.list(f"runs/{rid}/challenges/") == []
    report = verify_run(store, rid)
    assert report.ok and {e.status for e in report.epochs} == {COMMITTED}
    assert {c.detail for e in report.epochs for c in e.checks if c.name == "challenges"} == {
        "no fraud proof filed"
    }


@pytest.mark.parametrize(
    "name, tamper, step, fields",
    [
        # The record of step 9 carries a state digest: both digests see the flipped bit.
        ("param-bit", FlipParamBit(9), 9, ["param_digest", "state_digest"]),
        # Parameters untouched, so only the state digest (step 13 has one) sees it.
        ("optimizer-only", FlipMomentumBit(13), 13, ["state_digest"]),
        # The record names the sampler's batch; what the other samples changed is everything else.
        ("batch", OtherBatch(16, 17), 16, ["loss", "grad_norm", "param_digest"]),
    ],
)
def test_challenge_finds_exactly_the_dishonest_step(runs, name, tamper, step, fields):
    store, rid, _ = runs(name, tamper)
    res = challenge(store, rid)
    assert res.finding is not None
    assert (res.finding.step, res.finding.fields) == (step, fields)
    proof = json.loads(store.read(res.proof_key))
    assert res.proof_key == proof_key(rid, res.proof_id)
    r = Replay(store, rid)
    c = r.nearest_checkpoint(step)
    assert proof["pre_state"]["checkpoint_step"] == c and len(proof["records"]) == step - c
    assert proof["pre_state"]["state_digest"] == r.checkpoints[c].state_digest
    assert proof["differs"] == fields and proof["step"] == step
    assert proof["claimed"]["record"] == r.claimed(step).hex()
    assert proof["batch"]["indices_digest"] == proof["claimed"]["batch_digest"]
    assert proof["determinism"] == r.manifest.determinism.model_dump()

    verdict = check_filed_proof(store, rid, res.proof_id)
    assert verdict.upheld, verdict.reason
    assert (verdict.epoch, verdict.step) == (step // 6, step)

    report = verify_run(store, rid)
    assert not report.ok
    epoch = step // 6
    assert [e.status for e in report.epochs][epoch:] == [DISPUTED] * (4 - epoch)
    assert DISPUTED not in [e.status for e in report.epochs][:epoch]
    failed = [(e.epoch, c.name) for e in report.epochs for c in e.checks if not c.ok]
    assert failed == [(e, "challenges") for e in range(epoch, 4)]


def test_optimizer_change_without_a_state_digest_shows_at_the_next_step(runs):
    # Step 14's record has no state digest, so nothing committed at step 14 covers the momentum
    # buffer; the change first shows in step 15's parameters. That is the granularity of what a
    # trainer commits to: raise state_every to pin optimizer-only changes to their own step.
    store, rid, _ = runs("momentum-14", FlipMomentumBit(14, by=1.0))
    res = challenge(store, rid)
    assert (res.finding.step, res.finding.fields) == (15, ["param_digest", "state_digest"])
    assert check_filed_proof(store, rid, res.proof_id).upheld


def test_bisection(runs):
    # A deviation that persists (other samples from step 10 on): O(log n) probes find its start.
    store, rid, _ = runs("lazy", OtherBatch(10))
    res = challenge(store, rid, bisect=True)
    assert res.finding.step == 10 and res.probes <= math.ceil(math.log2(STEPS))
    assert res.replayed_steps <= res.probes * SPEC["checkpoint_every"]
    assert check_filed_proof(store, rid, res.proof_id).upheld
    linear = challenge(store, rid)
    assert linear.finding.step == 10 and linear.replayed_steps == 11

    # A single deviation is found by bisecting the checkpoint segment it lies in ...
    store, rid, _ = runs("param-bit", FlipParamBit(9))
    res = challenge(store, rid, "8:12", bisect=True)
    assert res.finding.step == 9 and res.probes <= 2
    # ... but bisecting a wider range misses it: every probe lands past checkpoint 12, which
    # holds the trainer's deviated state, and starts from there. Only the complete replay of the
    # same range checks every step.
    res = challenge(store, rid, "4:24", bisect=True)
    assert res.finding is None and "complete only" in res.notes[0]
    assert challenge(store, rid, "4:24").finding.step == 9
    # A range after the deviation is honest relative to the trainer's checkpoint at its start.
    assert challenge(store, rid, "12:24").finding is None


def test_tampered_fraud_proof_is_rejected(runs):
    store, rid, _ = runs("param-bit", FlipParamBit(9))
    pid = challenge(store, rid).proof_id
    good = json.loads(store.read(proof_key(rid, pid)))
    assert check_fraud_proof(store, good).upheld

    def tampered(edit) -> str:
        doc = json.loads(json.dumps(good))
        edit(doc)
        v = check_fraud_proof(store, doc)
        assert not v.upheld
        return v.reason

    def recomputed_digest(d):
        d["recomputed"]["param_digest"] = "00" * 32

    def claimed_loss(d):
        rec = bytearray.fromhex(d["claimed"]["record"])
        rec[152] ^= 1
        d["claimed"] = record_view(bytes(rec))

    def later_step(d):
        d["step"] = 10
        d["batch"]["step"] = 10

    assert "recomputed record is not" in tampered(recomputed_digest)
    assert "claimed record is not the run's" in tampered(claimed_loss)
    assert "must carry the 2 records" in tampered(later_step)
    assert "record of step 8 is not" in tampered(lambda d: d["records"].__setitem__(0, "00" * 224))
    assert "nearest checkpoint" in tampered(lambda d: d["pre_state"].update(checkpoint_step=4))
    assert "batch reference" in tampered(lambda d: d["batch"].update(indices_digest="11" * 32))
    assert "determinism profile" in tampered(lambda d: d["determinism"].update(threads=2))
    assert "not a fraud proof" in tampered(lambda d: d.update(verdict="upheld"))

    # A filed proof edited in place no longer matches its id (its content's hash).
    path = Path(store.uri) / proof_key(rid, pid)
    original = path.read_bytes()
    path.write_text(json.dumps({**good, "step": 8}))
    try:
        v = check_filed_proof(store, rid, pid)
        assert not v.upheld and "not the proof its id names" in v.reason
    finally:
        path.write_bytes(original)


def test_fraud_proof_against_an_honest_step_is_rejected(runs):
    store, rid, _ = runs("honest-filed")  # not "honest": this one gets a proof filed against it
    r = Replay(store, rid)
    proof = build_fraud_proof(r, 9)
    assert proof["differs"] == []
    v = check_fraud_proof(store, proof)
    assert not v.upheld and "re-executes to exactly its committed record" in v.reason
    # Claiming another post-state than re-execution gives changes nothing.
    rec = bytearray.fromhex(proof["recomputed"]["record"])
    rec[160] ^= 1
    proof["recomputed"], proof["differs"] = record_view(bytes(rec)), ["param_digest"]
    v = check_fraud_proof(store, proof)
    assert not v.upheld and "re-executes to exactly its committed record" in v.reason
    # Filed anyway, it disputes nothing: verify re-checks it.
    file_fraud_proof(store, proof)
    report = verify_run(store, rid)
    assert report.ok and {e.status for e in report.epochs} == {COMMITTED}
    details = {c.detail for e in report.epochs for c in e.checks if c.name == "challenges"}
    assert details == {"1 fraud proof(s) filed, none upheld up to this epoch"}


def test_replay_refuses_another_environment(runs, monkeypatch, capsys):
    store, rid, uri = runs("honest")
    with monkeypatch.context() as m:
        m.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "SOME_OTHER_CPU")
        with pytest.raises(DeterminismError, match="differs in cpu_capability"):
            challenge(store, rid)
        assert main(["challenge", uri]) == 3  # "could not check", never "no fraud"
        assert "cpu_capability" in capsys.readouterr().err
    monkeypatch.setattr(Dataset, "root", lambda self: bytes(32))
    with pytest.raises(ReplayEnvironmentError, match="dataset root"):
        challenge(store, rid)


def test_cli(runs, capsys):
    _, _, honest = runs("honest")
    store, rid, uri = runs("batch", OtherBatch(16, 17))
    assert main(["challenge", honest]) == 0
    assert capsys.readouterr().out.strip() == f"no fraud found in steps 0..{STEPS - 1}"
    assert main(["challenge", honest, "--steps", "5:3"]) == 2
    assert "--steps" in capsys.readouterr().err

    assert main(["challenge", uri, "--steps", "12:"]) == 1
    out, err = capsys.readouterr()
    path = out.strip().splitlines()[-1]
    pid = Path(path).stem
    assert path == f"{uri}/challenges/{pid}.json" and Path(path).is_file()
    assert "step 16 (epoch 2)" in err and "probes" in err

    assert main(["check-fraud-proof", uri, pid]) == 0
    assert capsys.readouterr().out.startswith("upheld: step 16 (epoch 2)")
    assert main(["check-fraud-proof", uri, path]) == 0  # the printed path works as well
    capsys.readouterr()
    assert main(["check-fraud-proof", uri, "not-an-id"]) == 2
    assert "not a fraud proof id" in capsys.readouterr().err
    assert json.loads(store.read(verdict_key(rid, pid)))["verdict"] == "upheld"
    assert main(["status", uri]) == 1
    assert "disputed" in capsys.readouterr().out
    assert main(["verify", uri, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [e["status"] for e in doc["epochs"]] == [COMMITTED] * 2 + [DISPUTED] * 2

    bad = "0" * 32
    Path(f"{uri}/challenges/{bad}.json").write_text("{}")
    assert main(["check-fraud-proof", uri, bad]) == 1
    assert capsys.readouterr().out.startswith("rejected:")


def test_cli_contract_in_a_process(runs):
    """The installed command as scripts call it: exit 1 and the proof's path as the last line."""
    _, _, uri = runs("param-bit", FlipParamBit(9))
    r = veritrain("challenge", uri, "--bisect", "--steps", "8:12")
    assert r.returncode == 1, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]).is_file()


def test_an_audit_folder_judges_the_disputes_itself(runs, tmp_path):
    # The audit copies what re-checking a filed proof reads, so the folder alone upholds it.
    store, rid, _ = runs("param-bit", FlipParamBit(9))
    pid = challenge(store, rid).proof_id
    report = audit_epoch(store, rid, 2, tmp_path / "audit")
    (epoch,) = [e for e in report.epochs if e.epoch == 2]
    (check,) = [c for c in epoch.checks if c.name == "challenges"]
    assert epoch.status == DISPUTED and not check.ok
    assert f"fraud proof {pid} upheld" in check.detail, check.detail
    copied = json.loads((tmp_path / "audit" / "audit.json").read_text())["objects"]
    assert any(k.endswith("step-000000000008.safetensors") for k in copied)
