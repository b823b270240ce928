"""The examples a team starts from (README, "Your own model"): examples/tiny-lm.yaml (a causal
transformer of its own module, AdamW by import, a byte-level corpus of Python's own sources) and
examples/regression.yaml (scikit-learn's diabetes data, its own MLP module). Each is run once by
`veritrain run` as a user runs it, its one epoch proven for real (one session fixture per
example), then verified and challenged honestly. A dishonest trainer and the model factory
edited on a challenger's machine are checked on unproven runs (finalize_every: 0) of a copy of
the example, so the edit never touches examples/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CACHE, ROOT, veritrain
from tampering import FlipParamBit

from veritrain import prover
from veritrain.flows.cli import main
from veritrain.pipeline.challenge.fraudproof import check_filed_proof
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import CodeError
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run

EXAMPLES = ROOT / "examples"
# example: (its module beside the spec, the files it needs, its steps per epoch)
CASES = {
    "tiny-lm": ("tiny_lm", ["tiny_lm.py", "corpus"], 8),
    "regression": ("regressor", ["regressor.py"], 14),
}


def _place(name: str) -> Path:
    """The example's spec, module and data copied, as they are, to a folder of the suite's in the
    cache (a file rewritten only when it differs, by rename). run.json records the absolute paths
    of the corpus and of the import path, and every state digest binds run.json: run from one
    fixed folder, the example is the same run whichever clone runs the suite, so its receipt can
    come from the receipt cache (tests/conftest.py). Returns the spec's path."""
    module, files, _ = CASES[name]
    folder = CACHE / "test-examples" / name
    wanted = {}
    for src in [EXAMPLES / f"{name}.yaml", *(EXAMPLES / f for f in files)]:
        for path in sorted(src.rglob("*")) if src.is_dir() else [src]:
            if path.is_file() and "__pycache__" not in path.parts:
                wanted[path.relative_to(EXAMPLES)] = path.read_bytes()
    for rel, data in wanted.items():
        dst = folder / rel
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    for path in folder.rglob("[!.]*"):  # a file the example no longer has
        if path.is_file() and "__pycache__" not in path.parts:
            if path.relative_to(folder) not in wanted:
                path.unlink()
    return folder / f"{name}.yaml"


def _proven(factory, name: str) -> tuple[LocalStore, str, str]:
    """`veritrain run NAME.yaml` in the example's folder (``_place``): one epoch trained and
    proven. Returns (store, run id, the command's stderr)."""
    store = factory.mktemp(f"{name}-store")
    spec = _place(name)
    r = subprocess.run(
        [sys.executable, "-m", "veritrain.flows.cli", "run", spec.name, "--store", str(store)]
        + ["--run-id", name],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    (factory.mktemp(f"{name}-log") / "run.log").write_text(r.stderr)  # to read after a failure
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == f"{store}/runs/{name}"
    return LocalStore(store), name, r.stderr


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    return _proven(tmp_path_factory, "tiny-lm")


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory):
    return _proven(tmp_path_factory, "regression")


@pytest.fixture(params=list(CASES))
def proven(request):
    fixture = {"tiny-lm": "lm_run", "regression": "regression_run"}[request.param]
    yield request.param, request.getfixturevalue(fixture)
    sys.modules.pop(CASES[request.param][0], None)


@pytest.fixture(params=list(CASES))
def copied(request, tmp_path):
    """A copy of the example (spec, module, corpus) in a folder of its own; the example's module
    forgotten before and after (imports are cached per process). Returns (name, spec path)."""
    name = request.param
    module, files, _ = CASES[name]
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLES / f"{name}.yaml", project)
    for f in files:
        (shutil.copytree if (EXAMPLES / f).is_dir() else shutil.copy)(EXAMPLES / f, project / f)
    sys.modules.pop(module, None)
    yield name, project / f"{name}.yaml"
    sys.modules.pop(module, None)


def test_the_examples_are_what_they_say():
    lm = load_spec(EXAMPLES / "tiny-lm.yaml")
    assert (lm.task, lm.dataset.path) == ("language_model", str(EXAMPLES / "corpus"))
    assert lm.optimizer.kind == "import" and lm.optimizer.ref == "torch.optim:AdamW"
    assert lm.schedule.kind == "cosine" and lm.schedule.warmup_steps == 2
    sys.path.insert(0, str(EXAMPLES))
    try:
        import tiny_lm
    finally:
        sys.path.remove(str(EXAMPLES))
        sys.modules.pop("tiny_lm", None)
    model = tiny_lm.make(vocab_size=256, context=64, **lm.model.kwargs)
    assert sum(p.numel() for p in model.parameters()) >= 1_000_000
    assert load_spec(EXAMPLES / "regression.yaml").task == "regression"


# -- proven: one epoch of each, by `veritrain run` ---------------------------------------------


@pytest.mark.proving
def test_an_example_trains_proves_and_verifies(proven):
    name, (store, run_id, log) = proven
    module, _, steps = CASES[name]
    # The epoch is one small segment, so it proves in the suite's budget (its receipt may be the
    # receipt cache's, so this is the guest's execution, not the proof's plan in the log).
    assert "epoch 0 proven: " in log, log[-2000:]
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    epochs = epoch_entries(entries)
    ex = prover.execute_epoch(guest_input(store, manifest, epochs, 0, entries))
    assert len(ex.segments) == 1 and ex.stats.total_cycles <= 2**17, ex.stats
    r = veritrain("verify", f"{store.root}/runs/{run_id}", "--json")
    assert r.returncode == 0, r.stdout[-3000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] and [e["epoch"] for e in doc["epochs"]] == [0]
    factory = [m for m in doc["code"]["modules"] if m["key"] == "model.factory"]
    assert [m["module"] for m in factory] == [module]
    assert Manifest.load(store, run_id).steps_per_epoch == steps


@pytest.mark.proving
def test_an_honest_challenge_of_an_example_finds_nothing(proven):
    name, (store, run_id, _) = proven
    res = challenge(store, run_id)
    assert res.finding is None and res.replayed_steps == CASES[name][2]
    assert store.list(f"runs/{run_id}/challenges/") == []


# -- unproven copies: a dishonest trainer, other code --------------------------------------------


def test_a_dishonest_trainer_of_an_example_is_caught(copied, tmp_path):
    name, spec_path = copied
    spec = load_spec(spec_path).model_copy(update={"finalize_every": 0})
    store = LocalStore(tmp_path / "store")
    t = open_trainer(spec, store, "bad")
    t.tamper = FlipParamBit(3)
    train(t)
    res = challenge(store, "bad")
    assert res.finding is not None and res.finding.step == 3
    assert check_filed_proof(store, "bad", res.proof_id).upheld
    assert not verify_run(store, "bad").ok


def test_an_example_factory_edited_is_other_code_not_fraud(copied, tmp_path, capsys):
    name, spec_path = copied
    module = CASES[name][0]
    spec = load_spec(spec_path).model_copy(update={"finalize_every": 0})
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "honest"))
    source = spec_path.parent / f"{module}.py"
    text = source.read_text()
    assert "nn.GELU()" in text
    source.write_text(text.replace("nn.GELU()", "nn.ReLU()"))
    sys.modules.pop(module)  # as a challenger's fresh process imports it
    with pytest.raises(CodeError, match=f"code differs in model.factory: the run used {module}"):
        challenge(store, "honest")
    assert main(["challenge", f"{store.root}/runs/honest"]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "code differs in model.factory" in err
    assert store.list("runs/honest/challenges/") == []  # no fraud proof against an honest run
    assert Path(spec_path.parent / "corpus").is_dir() == (name == "tiny-lm")
