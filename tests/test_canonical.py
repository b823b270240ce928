"""The canonical training mode (``arithmetic: canonical``, PROTOCOL.md §15): spec rules, a run's
records, claims, checkpoints and manifest, resume, and challenges that replay it under other
torch settings. No proving here (finalize_every: 0): the receipts' re-execution is the guest's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load as st_load

from veritrain.pipeline.challenge.fraudproof import check_filed_proof
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import DeterminismError, IntegrityError, SpecError
from veritrain.pipeline.run.determinism import DeterminismProfile
from veritrain.pipeline.run.manifest import (
    Manifest,
    canonical_settings,
    epoch_entries,
    read_committed,
    split_records,
)
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import canonical as cn
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import check_resumable, open_trainer
from veritrain.pipeline.verify.checks import COMMITTED, DISPUTED
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import (
    PROTOCOL_VERSION,
    CanonicalSettings,
    StepRecord,
    canonical_init,
    canonical_step,
    check_records,
)
from veritrain.prover.results import GUARANTEES, TORCH_MODE

# 3 epochs of 6 steps; a checkpoint every 4 steps and at every epoch end.
SPEC = {
    "arithmetic": "canonical",
    "zk_steps_per_epoch": 2,
    "model": {"kind": "mlp", "hidden": [16]},
    "dataset": {"kind": "synthetic", "samples": 48, "features": 8, "classes": 3, "seed": 5},
    "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 1e-4},
    "schedule": {"kind": "step_decay", "base_lr": 0.1, "step_size": 6, "gamma": 0.5},
    "seed": 11,
    "epochs": 3,
    "batch_size": 8,
    "checkpoint_every": 4,
    "finalize_every": 0,
}
STEPS = 18
SHAPES = [(16, 8), (16,), (3, 16), (3,)]


class OtherBatch:
    """Trains step ``at`` on other samples than the sampler's; the record names the sampler's."""

    def __init__(self, at: int):
        self.at = at

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return (idx + 1) % 48 if step == self.at else idx

    def after_update(self, step, state, optimizer) -> None:
        pass


class FlipParamBit:
    """Flips the lowest bit of one weight after step ``at``'s update."""

    def __init__(self, at: int):
        self.at = at

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return idx

    def after_update(self, step, state, optimizer) -> None:
        if step == self.at:
            state.arrays["param/1.weight"].reshape(-1)[0] ^= 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("canonical-store")
    made: dict[str, tuple[LocalStore, str]] = {}

    def get(name: str, spec: dict = SPEC, tamper=None):
        if name not in made:
            store = LocalStore(root)
            t = open_trainer(parse_spec(spec), store, name)
            t.tamper = tamper
            train(t)
            made[name] = (store, name)
        return made[name]

    return get


@pytest.mark.parametrize(
    "change, message",
    [
        ({"state_every": 5}, "state_every: a canonical run commits every step's state (1), not 5"),
        ({"model": {"kind": "cnn"}}, "arithmetic: canonical trains model kind mlp only, not cnn"),
        ({"arithmetic": "torch"}, "zk_steps_per_epoch re-executes canonical steps"),
        ({"zk_steps_per_epoch": 0}, "zk_steps_per_epoch: Input should be greater than or equal"),
    ],
)
def test_spec_rules_are_one_line_errors(change, message):
    with pytest.raises(SpecError) as e:
        parse_spec(SPEC | change)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_state_every_defaults_to_one_only_for_canonical_runs():
    assert parse_spec(SPEC).state_every == 1
    torch_spec = {k: v for k, v in SPEC.items() if k not in ("arithmetic", "zk_steps_per_epoch")}
    assert parse_spec(torch_spec).state_every == 100


def test_a_canonical_run_commits_like_a_torch_run(runs):
    store, rid = runs("honest")
    spec = parse_spec(SPEC)
    m = Manifest.load(store, rid)
    assert m.content["determinism"] == {
        "arithmetic": "canonical",
        "protocol_version": PROTOCOL_VERSION,
    }
    assert m.optimizer_digest == canonical_settings(spec).digest()
    assert canonical_settings(spec).zk_steps_per_epoch == 2
    epochs = epoch_entries(open_trainer(spec, store, rid).entries)
    assert sorted(epochs) == [0, 1, 2]
    prev = None
    for e in range(3):
        body = epochs[e].body
        claim = body.claim
        assert claim.guarantees == TORCH_MODE | GUARANTEES["arithmetic"] == 31
        assert claim.optimizer_digest == m.optimizer_digest
        records = [
            StepRecord.from_bytes(r)
            for r in split_records(read_committed(store, body.records, body.records_sha256))
        ]
        # Every record carries its state digest; the last one is the epoch's end state.
        assert all(r.state_digest is not None for r in records)
        assert records[-1].state_digest == claim.end_state_digest
        check_records(claim, prev, [r.to_bytes() for r in records])
        prev = claim
        ck = body.checkpoint
        data = read_committed(store, ck.checkpoint, ck.checkpoint_sha256)
        tensors = st_load(data)
        assert {n: (a.dtype.str, a.shape) for n, a in tensors.items()} == {
            "param/1.weight": ("<i4", (16, 8)),
            "param/1.bias": ("<i4", (16,)),
            "param/3.weight": ("<i4", (3, 16)),
            "param/3.bias": ("<i4", (3,)),
            **{f"optim/{j}/momentum_buffer": ("<i4", s) for j, s in enumerate(SHAPES)},
            "step": ("<i8", (1,)),
            "manifest": ("|u1", (32,)),
        }
        assert int(tensors["step"][0]) == 6 * (e + 1)
        assert cn.digest_arrays(tensors).hex() == ck.state_digest
    report = verify_run(store, rid)
    assert report.ok and [e.status for e in report.epochs] == [COMMITTED] * 3
    # It learned: the last epoch's losses are below the first's.
    first, last = (
        [StepRecord.from_bytes(r).loss for r in split_records(store.read(epochs[e].body.records))]
        for e in (0, 2)
    )
    assert sum(last) < sum(first)


def test_resume_after_one_epoch_gives_the_same_records(runs, tmp_path):
    store, rid = runs("honest")
    other = LocalStore(tmp_path)
    spec = parse_spec(SPEC)
    assert train(open_trainer(spec, other, rid), until_epoch=1) == 1
    train(open_trainer(spec, other, rid))  # reopened: resumes from epoch 0's checkpoint
    mine = epoch_entries(open_trainer(spec, other, rid).entries)
    theirs = epoch_entries(open_trainer(spec, store, rid).entries)
    for e in range(3):
        assert other.read(mine[e].body.records) == store.read(theirs[e].body.records)
        assert mine[e].body.claim.end_state_digest == theirs[e].body.claim.end_state_digest


def test_a_torch_spec_cannot_continue_a_canonical_run(runs):
    store, rid = runs("honest")
    m = Manifest.load(store, rid)
    with pytest.raises(DeterminismError, match="differs in arithmetic"):
        DeterminismProfile.current(1).require_same(m.determinism)
    check_resumable(m, parse_spec(SPEC))


def test_a_checkpoint_of_another_model_is_refused_in_one_line(runs):
    store, rid = runs("honest")
    spec = parse_spec(SPEC)
    t = open_trainer(spec, store, rid)
    other = SPEC | {"model": {"kind": "mlp", "hidden": [8]}}
    store2, rid2 = runs("narrow", other)
    body = epoch_entries(open_trainer(parse_spec(other), store2, rid2).entries)[0].body.checkpoint
    data = store2.read(body.checkpoint)
    with pytest.raises(IntegrityError) as e:
        t.canonical.restore(data, body.checkpoint)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(body.checkpoint)
    assert "optim/0/momentum_buffer is I32 [8, 8], the model has I32 [16, 8]" in msg
    with pytest.raises(IntegrityError, match="not a readable safetensors checkpoint"):
        t.canonical.restore(b"not a checkpoint", "x.safetensors")


@pytest.fixture
def other_torch_settings():
    """The replaying process runs torch with other threads and determinism than the trainer."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2 if threads == 1 else 1)
    torch.use_deterministic_algorithms(not det)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def test_replay_under_other_torch_settings_finds_no_fraud(runs, other_torch_settings):
    store, rid = runs("honest")
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    res = challenge(store, rid)
    assert res.finding is None and res.replayed_steps == STEPS
    # The replay left torch as it found it: it never relied on torch's settings.
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)


@pytest.mark.parametrize(
    "name, tamper, step, fields",
    [
        ("batch", OtherBatch(7), 7, ["loss", "grad_norm", "param_digest", "state_digest"]),
        ("param-bit", FlipParamBit(10), 10, ["param_digest", "state_digest"]),
    ],
)
def test_a_tampered_canonical_step_is_found(runs, other_torch_settings, name, tamper, step, fields):
    store, rid = runs(name, SPEC, tamper)
    res = challenge(store, rid)
    assert res.finding is not None
    assert (res.finding.step, res.finding.fields) == (step, fields)
    verdict = check_filed_proof(store, rid, res.proof_id)
    assert verdict.upheld and (verdict.epoch, verdict.step) == (step // 6, step), verdict.reason
    assert [e.status for e in verify_run(store, rid).epochs][step // 6 :] == [DISPUTED] * (
        3 - step // 6
    )


def test_the_binding_reproduces_the_kernel_vectors():
    """veritrain.prover's CanonicalSettings and canonical_step on numpy buffers give the canonical
    vectors' bits (tests/vectors/kernels-v1.json, also recomputed by test_kernel_vectors.py)."""
    c = json.loads((Path(__file__).parent / "vectors" / "kernels-v1.json").read_text())["canonical"]
    made = [
        CanonicalSettings.sgd(zk_steps_per_epoch=2, momentum=0.9, weight_decay=1e-4),
        CanonicalSettings.adam(
            zk_steps_per_epoch=3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2
        ),
    ]
    for s, want in zip(made, c["settings"], strict=True):
        assert (s.to_bytes().hex(), s.digest().hex()) == (want["bytes"], want["digest"])
        assert CanonicalSettings.from_bytes(s.to_bytes()) == s
    init = [np.frombuffer(b, dtype="<i4").tolist() for b in canonical_init(c["seed"], c["dims"])]
    assert init == c["init"]
    rows = np.stack([np.frombuffer(bytes.fromhex(r), dtype=np.uint8) for r in c["rows"]])
    for s, steps in zip(made, (c["sgd_steps"], c["adam_steps"]), strict=True):
        params = [np.array(p, dtype="<i4") for p in c["init"]]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros(p.shape, dtype="<u8") for p in params] if s.optimizer == "adam" else []
        for k, want in enumerate(steps):
            batch = rows[4 * k : 4 * k + 4]
            loss, norm = canonical_step(s, c["dims"], params, m, v, 0.05, batch, want["t"])
            assert np.float32(loss).view(np.uint32) == want["loss_f32_bits"]
            assert np.float32(norm).view(np.uint32) == want["grad_norm_f32_bits"]
            assert [p.tolist() for p in params] == want["params"]
            first = want["momentum_buffers"] if s.optimizer == "sgd" else want["exp_avg"]
            assert [a.tolist() for a in m] == first
            if v:
                assert [a.tolist() for a in v] == want["exp_avg_sq"]


def test_the_binding_refuses_bad_buffers_in_one_line():
    s = CanonicalSettings.sgd(zk_steps_per_epoch=1, momentum=0.0, weight_decay=0.0)
    params = [np.frombuffer(b, dtype="<i4").copy() for b in canonical_init(1, [2, 2])]
    m = [np.zeros_like(p) for p in params]
    row = np.frombuffer(
        np.array([0.5, 0.25], "<f4").tobytes() + (1).to_bytes(8, "little"), np.uint8
    )
    before = [p.copy() for p in params]
    cases = [
        ([params[0], params[1]], [params[0], m[1]], "must not share memory"),
        (params, m[:1], "momentum buffers of the wrong shapes"),
        ([params[0].astype("<i8"), params[1]], m, "buffer"),
        ([params[0][::2], params[1]], m, "C-contiguous"),
    ]
    for ps, ms, message in cases:
        with pytest.raises((ValueError, BufferError), match=message) as e:
            canonical_step(s, [2, 2], ps, ms, [], 0.1, row, 1)
        assert "\n" not in str(e.value)
    assert [p.tolist() for p in params] == [p.tolist() for p in before]
    ro = params[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        canonical_step(s, [2, 2], [ro, params[1]], m, [], 0.1, row, 1)
    bad_label = row.copy()
    bad_label[8] = 2
    with pytest.raises(ValueError, match="label is outside"):
        canonical_step(s, [2, 2], params, m, [], 0.1, bad_label, 1)
