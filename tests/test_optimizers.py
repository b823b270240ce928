"""Optimizers by import with kwargs, gradient clipping and micro-batches (docs/OPERATIONS.md "Your
own model and files"): trained, verified and challenged like sgd and adam, bound by the
hyperparameter digest, which is unchanged for runs without them. No proving here (finalize_every:
0): the guest treats the optimizer digest as opaque, so what it proves is unchanged."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from tampering import FlipParamBit

from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.manifest import (
    Manifest,
    epoch_entries,
    load_epoch_records,
    open_ledger,
    optimizer_digest,
)
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.loop import Stepper, train
from veritrain.pipeline.train.preflight import preflight
from veritrain.pipeline.train.trainer import open_trainer, prepare
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import StepRecord

ADAMW = {"kind": "import", "class": "torch.optim.AdamW", "kwargs": {"weight_decay": 0.05}}
SPEC = {
    "model": {"kind": "mlp", "hidden": [16]},
    "dataset": {"kind": "synthetic", "samples": 36, "features": 8, "classes": 3, "seed": 4},
    "optimizer": ADAMW,
    "schedule": {"kind": "constant", "base_lr": 0.01},
    "max_grad_norm": 0.5,
    "micro_batches": 3,
    "epochs": 2,
    "batch_size": 8,  # 5 steps an epoch, the last of 4 samples: a part of it is empty
    "state_every": 2,
    "checkpoint_every": 3,
    "finalize_every": 0,
    "challenge_window": 0,
}


def _records(store, run_id: str) -> list[StepRecord]:
    m = Manifest.load(store, run_id)
    _, entries = open_ledger(store, m)
    epochs = epoch_entries(entries)
    return [
        StepRecord.from_bytes(r)
        for e in sorted(epochs)
        for r in load_epoch_records(store, epochs[e])
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("optimizer-store"))
    train(open_trainer(parse_spec(SPEC), store, "adamw"))
    t = open_trainer(parse_spec(SPEC), store, "adamw-dishonest")
    t.tamper = FlipParamBit(6)
    train(t)
    return store


def test_an_imported_optimizer_trains_verifies_and_replays(runs):
    store = runs
    report = verify_run(store, "adamw")
    assert report.ok, [c for e in report.epochs for c in e.checks if not c.ok]
    checkpoint = [c.detail for c in report.epochs[0].checks if c.name == "checkpoint"][0]
    assert "optimizer: import" in checkpoint  # its state's layout is code: checked for consistency
    code = Manifest.load(store, "adamw").content["code"]["modules"]
    assert [(m["key"], m["distribution"]) for m in code] == [("optimizer.class", "torch")]
    result = challenge(store, "adamw")
    assert result.finding is None and result.replayed_steps == 10
    found = challenge(store, "adamw-dishonest").finding
    assert found is not None and found.step == 6


def test_the_optimizer_state_is_adamws(runs):
    m = Manifest.load(store := runs, "adamw")
    _, entries = open_ledger(store, m)
    body = epoch_entries(entries)[0].body.checkpoint
    tensors = st.load_checkpoint(store.read(body.checkpoint), body.checkpoint)
    assert {k.split("/", 2)[2] for k in tensors if k.startswith("optim/")} == {
        "step",
        "exp_avg",
        "exp_avg_sq",
    }


def test_the_hparams_digest_binds_clipping_and_micro_batches():
    # A run without them keeps the digest of PROTOCOL.md §7's example.
    plain = {**SPEC, "optimizer": {"kind": "sgd"}, "max_grad_norm": None, "micro_batches": 1}
    expected = hashlib.sha256(
        b"veritrain/optimizer/v1\x00" + b'{"kind":"sgd","momentum":0.0,"weight_decay":0.0}'
    ).digest()
    assert optimizer_digest(parse_spec(plain)) == expected
    digests = {
        optimizer_digest(parse_spec({**plain, **change}))
        for change in (
            {},
            {"max_grad_norm": 1.0},
            {"max_grad_norm": 2.0},
            {"micro_batches": 2},
            {"optimizer": ADAMW},
            {"optimizer": {**ADAMW, "kwargs": {"weight_decay": 0.1}}},
        )
    }
    assert len(digests) == 6
    # "module.Class" and "module:Class" name the same class, but are different specs.
    colon = {**ADAMW, "class": "torch.optim:AdamW"}
    assert parse_spec({**plain, "optimizer": colon}).optimizer.ref == "torch.optim:AdamW"


ONE = {"micro_batches": 1}


def test_micro_batches_accumulate_the_batch_gradient_and_clipping_bounds_the_update():
    spec = parse_spec({**SPEC, "optimizer": {"kind": "sgd"}, "max_grad_norm": None})
    whole = parse_spec({**SPEC, "optimizer": {"kind": "sgd"}, "max_grad_norm": None} | ONE)
    updates = []
    for s in (spec, whole):
        _, dataset, model, optimizer = prepare(s)
        assert model is not None and optimizer is not None
        before = [p.detach().clone() for p in model.parameters()]
        result = Stepper("r", s, 5, bytes(32), dataset, model, optimizer).step(0)
        updates.append(
            (result, [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)])
        )
    (parts, d_parts), (one, d_one) = updates
    assert parts.loss == pytest.approx(one.loss, rel=1e-5)
    assert parts.grad_norm == pytest.approx(one.grad_norm, rel=1e-5)
    for a, b in zip(d_parts, d_one, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)

    clipped = parse_spec({**SPEC, "optimizer": {"kind": "sgd"}, "max_grad_norm": 1e-3})
    _, dataset, model, optimizer = prepare(clipped)
    assert model is not None and optimizer is not None
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    result = Stepper("r", clipped, 5, bytes(32), dataset, model, optimizer).step(0)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert result.grad_norm > 1e-3  # the record's norm is the one before clipping
    assert float(torch.linalg.vector_norm(after - before)) <= 0.01 * 1e-3 * (1 + 1e-4)


STATEFUL = """
import torch

class CountingSgd(torch.optim.SGD):
    \"\"\"Keeps a plain int in its state, which a checkpoint (tensors only) cannot hold.\"\"\"

    def step(self, closure=None):
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["calls"] = self.state[p].get("calls", 0) + 1
        return out
"""


def _import(ref: str, **kwargs) -> dict:
    return {"optimizer": {"kind": "import", "class": ref, "kwargs": kwargs}}


@pytest.mark.parametrize(
    "change, words",
    [
        (_import("collections.OrderedDict"), "'collections.OrderedDict' is not a torch.optim"),
        (_import("no_such_module_vt.Opt"), "optimizer.class: cannot import"),
        (_import("torch.optim.AdamW", lr=0.1), "optimizer.kwargs: 'lr' is the schedule's"),
        (
            _import("torch.optim.AdamW", betas="high"),
            "optimizer.class: torch.optim.AdamW(parameters, lr=0.0, betas=...) raised",
        ),
        (_import("torch.optim.LBFGS"), "the first step of torch.optim.LBFGS fails"),
        (_import("vt_stateful_opt.CountingSgd"), "keeps its state 'calls' as int"),
    ],
)
def test_bad_optimizers_are_named_before_anything_is_written(tmp_path, change, words):
    (tmp_path / "vt_stateful_opt.py").write_text(STATEFUL)
    spec = {**SPEC, **change, "import_path": [str(tmp_path)]}
    with pytest.raises(SpecError, match=re.escape(words)) as e:
        preflight(spec, str(tmp_path / "store"))
    assert str(e.value).startswith("spec: optimizer.")  # the spec and its key
    assert not (tmp_path / "store" / "runs").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"micro_batches": 9}, "micro_batches: 9 micro-batches of a batch of 8"),
        ({"micro_batches": 0}, "micro_batches"),
        ({"max_grad_norm": 0}, "max_grad_norm"),
        ({"arithmetic": "canonical"}, "optimizer: arithmetic: canonical has sgd and adam"),
        (
            {"arithmetic": "canonical", "optimizer": {"kind": "sgd"}},
            "max_grad_norm: arithmetic: canonical",
        ),
    ],
)
def test_bad_settings_are_spec_errors(change, words):
    with pytest.raises(SpecError, match=words):
        parse_spec({**SPEC, **change})
