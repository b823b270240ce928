"""Tasks (pipeline/run/tasks.py): regression and language-model runs, and a loss by import, with
the guarantees a classification run has: a record per step, verify, an honest challenge that finds
nothing, a dishonest trainer caught by a fraud proof, other code reported as other code. The spec's
rules across task, dataset, model, loss and arithmetic. No proving here (finalize_every: 0)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from tampering import FlipParamBit

from veritrain.flows.cli import main
from veritrain.pipeline.challenge.fraudproof import check_filed_proof
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import CodeError, SpecError
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import load_spec, parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.preflight import preflight
from veritrain.pipeline.train.trainer import open_trainer, prepare
from veritrain.pipeline.verify.verifier import verify_run

BASE = {
    "epochs": 1,
    "batch_size": 32,
    "state_every": 2,
    "checkpoint_every": 4,
    "finalize_every": 0,
    "challenge_window": 0,
}

# A user's module: a language model told vocab_size and context, a regressor written the old way,
# and losses.
USER_CODE = """
import torch
from torch import nn
SEEN = {}

class Tiny(nn.Module):
    def __init__(self, vocab_size, context, width):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.zeros(context, width))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, x):
        return self.out(torch.nn.functional.gelu(self.norm(self.emb(x) + self.pos)))

def lm(*, task, input_shape, in_features, vocab_size, context, width=8):
    SEEN.update(task=task, input_shape=input_shape, in_features=in_features,
                vocab_size=vocab_size, context=context)
    return Tiny(vocab_size, context, width)

def regressor(in_features, targets):
    SEEN.update(in_features=in_features, targets=targets)
    return nn.Sequential(nn.Linear(in_features, 8), nn.Tanh(), nn.Linear(8, targets))

def per_sample(outputs, targets):
    return (outputs - targets).abs()
"""

# A loss in a module of its own.
LOSS_CODE = """
def l1(outputs, targets):
    return (outputs - targets).abs().mean()
"""

CORPUS = b"def f(x):\n    return x * 2\n\n" * 40  # 1,120 bytes: 69 windows of 16 + 1


@pytest.fixture
def project(tmp_path):
    """project/: the user's module (a fresh name: imports are cached per process) and a corpus;
    returns (folder, module name)."""
    name = f"vt_tasks_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "project"
    (folder / "corpus").mkdir(parents=True)
    (folder / f"{name}.py").write_text(USER_CODE)
    (folder / f"{name}_loss.py").write_text(LOSS_CODE)
    (folder / "corpus" / "a.py").write_bytes(CORPUS[:600])
    (folder / "corpus" / "b.py").write_bytes(CORPUS[600:])
    yield folder, name
    sys.modules.pop(name, None)
    sys.modules.pop(f"{name}_loss", None)


def _spec(folder: Path, **doc):
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**BASE, **doc}))
    return load_spec(path)


def _lm(folder: Path, name: str, **doc):
    return _spec(
        folder,
        model={"kind": "import", "factory": f"{name}:lm"},
        dataset={"kind": "text", "path": "corpus", "context": 16},
        optimizer={"kind": "import", "class": "torch.optim.AdamW"},
        schedule={"kind": "constant", "base_lr": 0.01},
        **doc,
    )


def _honest(store: LocalStore, run_id: str, steps: int) -> None:
    report = verify_run(store, run_id)
    assert report.ok, [c for e in report.epochs for c in e.checks if not c.ok]
    res = challenge(store, run_id)
    assert res.finding is None and res.replayed_steps == steps
    assert store.list(f"runs/{run_id}/challenges/") == []


# -- the language model ---------------------------------------------------------------------------


def test_a_language_model_trains_verifies_and_replays(project, tmp_path, monkeypatch):
    folder, name = project
    monkeypatch.chdir(tmp_path)  # the corpus and the module are the spec folder's
    spec = _lm(folder, name)
    assert spec.task == "language_model" and spec.dataset.path == str(folder / "corpus")
    _, dataset, model, _ = prepare(spec)
    assert sys.modules[name].SEEN == {
        "task": "language_model",
        "input_shape": (16,),
        "in_features": 16,
        "vocab_size": 256,
        "context": 16,
    }
    assert len(dataset) == (len(CORPUS) - 1) // 16 == 69
    # The windows are the corpus's, a.py then b.py, overlapping by one token.
    assert bytes(dataset.x[1].tolist()) == CORPUS[16:32] and dataset.y[1, -1] == CORPUS[32]
    store = LocalStore(tmp_path / "store")
    t = open_trainer(spec, store, "lm")
    train(t)
    _honest(store, "lm", 3)
    assert Manifest.load(store, "lm").spec.task == "language_model"


def test_a_dishonest_language_model_trainer_is_caught(project, tmp_path):
    folder, name = project
    spec = _lm(folder, name, batch_size=8)
    store = LocalStore(tmp_path / "store")
    t = open_trainer(spec, store, "lm-bad")
    t.tamper = FlipParamBit(5)
    train(t)
    res = challenge(store, "lm-bad")
    assert res.finding is not None and res.finding.step == 5
    assert check_filed_proof(store, "lm-bad", res.proof_id).upheld
    assert not verify_run(store, "lm-bad").ok


# -- regression and a loss by import --------------------------------------------------------------


def test_diabetes_regression_trains_verifies_and_replays(tmp_path):
    spec = parse_spec({**BASE, "dataset": {"kind": "diabetes"}, "batch_size": 64})
    assert spec.task == "regression" and spec.loss is None
    _, dataset, model, _ = prepare(spec)
    assert (len(dataset), dataset.in_features, dataset.y.shape) == (442, 10, (442, 1))
    assert dataset.description()["targets"] == 1 and model is not None
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "reg"))
    _honest(store, "reg", 7)


def test_regression_from_a_file_with_an_imported_loss(project, tmp_path):
    folder, name = project
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=np.stack([x.sum(1), x[:, 0] - x[:, 1]], axis=1))
    spec = _spec(
        folder,
        task="regression",
        model={"kind": "import", "factory": f"{name}:regressor"},
        dataset={"kind": "file", "path": "data.npz"},
        loss={"kind": "import", "fn": f"{name}_loss:l1"},
        micro_batches=2,
    )
    assert [k for k, _ in spec.imports()] == ["model.factory", "loss.fn"]
    preflight(spec, store=str(tmp_path / "store"), run_id="l1")
    assert sys.modules[name].SEEN == {"in_features": 3, "targets": 2}  # the old call form
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "l1"))
    keys = [m["key"] for m in Manifest.load(store, "l1").content["code"]["modules"]]
    assert keys == ["model.factory", "loss.fn"]
    _honest(store, "l1", 2)
    # The loss edited on the challenger's machine: other code, never fraud.
    module = folder / f"{name}_loss.py"
    module.write_text(module.read_text().replace(".abs().mean()", ".pow(2).mean()"))
    sys.modules.pop(f"{name}_loss")
    with pytest.raises(CodeError, match="code differs in loss.fn"):
        challenge(store, "l1")
    assert main(["challenge", f"{store.root}/runs/l1"]) == 3
    assert store.list("runs/l1/challenges/") == []


def test_an_imported_loss_must_give_a_scalar(project, tmp_path):
    folder, name = project
    spec = _spec(
        folder,
        dataset={"kind": "diabetes"},
        loss={"kind": "import", "fn": f"{name}:per_sample"},
    )
    with pytest.raises(SpecError, match=r"loss.fn: .*per_sample returned shape \(32, 1\), not a"):
        preflight(spec, store=str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


# -- the spec's rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"task": "regression"}, "task: dataset kind digits gives classification samples"),
        (
            {"dataset": {"kind": "text", "path": "c.txt", "context": 8}},
            "model: kind mlp does not train a language model",
        ),
        (
            {"dataset": {"kind": "diabetes"}, "arithmetic": "canonical"},
            "task: arithmetic: canonical trains classification only",
        ),
        (
            {"arithmetic": "canonical", "loss": {"kind": "import", "fn": "m:f"}},
            "loss: arithmetic: canonical has the MLP's cross-entropy only",
        ),
        ({"loss": {"kind": "import", "fn": "no colon"}}, "loss.fn: String should match"),
        ({"task": "images"}, "task: Input should be 'classification'"),
        ({"dataset": {"kind": "text", "path": "c.txt", "context": 0}}, "dataset.text.context"),
    ],
)
def test_spec_rules_name_the_key(doc, words):
    with pytest.raises(SpecError, match="^spec: ") as e:
        parse_spec(doc)
    assert words in str(e.value)


def test_a_classification_spec_is_as_before():
    spec = parse_spec({"dataset": {"kind": "synthetic"}})
    assert (spec.task, spec.loss, spec.imports()) == ("classification", None, [])
    assert parse_spec({"dataset": {"kind": "file", "path": "d.npz"}}).task == "classification"


@pytest.mark.parametrize(
    "content, context, words",
    [
        (b"", 4, "is empty"),
        (b"abcd", 4, r"dataset.context: a window of 4 \+ 1 tokens is longer than the corpus "),
    ],
)
def test_a_corpus_too_small(tmp_path, content, context, words):
    (tmp_path / "c.txt").write_bytes(content)
    spec = parse_spec(
        {
            "model": {"kind": "import", "factory": "m:f"},
            "dataset": {"kind": "text", "path": "c.txt", "context": context},
        },
        base=tmp_path,
    )
    with pytest.raises(SpecError, match=words):
        prepare(spec)
