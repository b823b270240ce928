"""A team's own code and files, named by a spec (docs/OPERATIONS.md "Your own model"): model
factories get the dataset's description by keyword (or the old two positional arguments), modules
beside the spec file or in the current folder import without PYTHONPATH, and relative paths are
the spec file's folder's, stored absolute in the manifest so a replay anywhere names the same
files. No proving here (finalize_every: 0)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tampering import FlipParamBit

from veritrain.flows.cli import main
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import CodeError, SpecError, UsageError
from veritrain.pipeline.run import code as code_module
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import LocalCopy, load_spec, parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import trainer as trainer_module
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer, prepare
from veritrain.pipeline.verify.verifier import verify_run

BASE = {
    "epochs": 1,
    "batch_size": 8,
    "state_every": 2,
    "checkpoint_every": 4,
    "finalize_every": 0,
    "challenge_window": 0,
}

# Records what it was called with, so the test sees the description it got.
KEYWORD_FACTORY = """
import torch
SEEN = {}

def make(*, task, input_shape, in_features, classes, width=4):
    SEEN.update(task=task, input_shape=input_shape, in_features=in_features, classes=classes)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(in_features, width), torch.nn.GELU(),
        torch.nn.Linear(width, classes),
    )

def legacy(in_features, classes):
    return torch.nn.Linear(in_features, classes)

def positional(n, k, /, bias=True):
    return torch.nn.Linear(n, k, bias=bias)

def anything(**description):
    SEEN.update(description)
    return torch.nn.Linear(description["in_features"], description["classes"])

def two_names(in_features, num_classes):
    return torch.nn.Linear(in_features, num_classes)
"""


@pytest.fixture
def module_name():
    """A fresh module name per test (imports are cached per process), forgotten afterwards."""
    name = f"vt_user_{uuid.uuid4().hex[:12]}"
    yield name
    sys.modules.pop(name, None)


def _dataset_file(path: Path, n: int = 32, features: int = 6, classes: int = 3) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, classes, size=n)
    np.savez(path, x=rng.normal(size=(n, features, 1)).astype(np.float32), y=y)


def _project(tmp_path: Path, module_name: str, factory: str, **spec) -> Path:
    """project/: a spec naming ``module_name:factory`` and data.npz by relative paths, both
    beside it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / f"{module_name}.py").write_text(KEYWORD_FACTORY)
    _dataset_file(project / "data.npz")
    doc = {
        **BASE,
        "model": {"kind": "import", "factory": f"{module_name}:{factory}"},
        "dataset": {"kind": "file", "path": "data.npz"},
        **spec,
    }
    (project / "spec.yaml").write_text(yaml.safe_dump(doc))
    return project / "spec.yaml"


def test_factory_gets_the_description_by_keyword(tmp_path, module_name, monkeypatch):
    spec_path = _project(tmp_path, module_name, "make")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the module nor data.npz is here
    spec = load_spec(spec_path)
    _, dataset, model, _ = prepare(spec)
    assert model is not None and len(dataset) == 32
    assert sys.modules[module_name].SEEN == {
        "task": "classification",
        "input_shape": (6, 1),
        "in_features": 6,
        "classes": 3,
    }


@pytest.mark.parametrize("factory", ["legacy", "positional", "two_names", "anything"])
def test_older_and_other_factory_signatures(tmp_path, module_name, monkeypatch, factory):
    spec_path = _project(tmp_path, module_name, factory)
    monkeypatch.chdir(tmp_path)
    _, _, model, _ = prepare(load_spec(spec_path))
    assert model is not None and sum(p.numel() for p in model.parameters()) == 6 * 3 + 3
    if factory == "anything":  # **kwargs takes the whole description
        assert sys.modules[module_name].SEEN["input_shape"] == (6, 1)


def test_kwargs_may_not_restate_the_description(tmp_path, module_name):
    spec_path = _project(tmp_path, module_name, "make")
    spec = load_spec(spec_path)
    spec = spec.model_copy(
        update={"model": spec.model.model_copy(update={"kwargs": {"classes": 5}})}
    )
    with pytest.raises(SpecError, match="model.kwargs: 'classes' is the dataset's description"):
        prepare(spec)


def test_paths_resolve_against_the_spec_folder(tmp_path, module_name, monkeypatch):
    spec_path = _project(tmp_path, module_name, "make")
    project = spec_path.parent
    monkeypatch.chdir(tmp_path)
    spec = load_spec(spec_path)
    assert spec.dataset.path == str(project / "data.npz")  # not ./data.npz of the current folder
    assert spec.import_path == [str(project), str(tmp_path)]
    # A spec given as a mapping (no file) resolves against the current folder.
    from_dict = parse_spec(yaml.safe_load(spec_path.read_text()))
    assert from_dict.dataset.path == str(tmp_path / "data.npz")
    assert from_dict.import_path == [str(tmp_path)]
    # Explicit import_path entries are the spec folder's too; a spec without imports has none.
    doc = yaml.safe_load(spec_path.read_text()) | {"import_path": ["src", "/opt/models"]}
    assert parse_spec(doc, base=project).import_path == [str(project / "src"), "/opt/models"]
    assert parse_spec(dict(BASE)).import_path == []


def test_a_module_in_the_current_folder_imports(tmp_path, module_name, monkeypatch):
    spec_path = _project(tmp_path, module_name, "make")
    here = tmp_path / "here"
    here.mkdir()
    (spec_path.parent / f"{module_name}.py").rename(here / f"{module_name}.py")
    monkeypatch.chdir(here)
    _, _, model, _ = prepare(load_spec(spec_path))
    assert model is not None
    assert str(here) not in sys.path  # the search path was the import's only


def test_a_missing_module_names_the_key(tmp_path, module_name, monkeypatch):
    spec_path = _project(tmp_path, module_name, "make")
    (spec_path.parent / f"{module_name}.py").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=f"model.factory: cannot import '{module_name}:make'"):
        prepare(load_spec(spec_path))


def test_the_manifest_names_the_files_a_replay_uses(tmp_path, module_name, monkeypatch):
    """Trained from one folder, challenged from another: the stored spec's absolute paths name
    the same data and modules, so the honest run replays clean."""
    spec_path = _project(tmp_path, module_name, "make")
    monkeypatch.chdir(spec_path.parent)
    store = LocalStore(tmp_path / "store")
    train(open_trainer(load_spec(spec_path), store, "own-code"))
    stored = Manifest.load(store, "own-code").content["spec"]
    assert stored["dataset"]["path"] == str(spec_path.parent / "data.npz")
    assert stored["import_path"][0] == str(spec_path.parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sys.modules.pop(module_name)  # a fresh process: the module is found again from the manifest
    result = challenge(store, "own-code")
    assert result.finding is None and result.replayed_steps == 4


# -- code identity --------------------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path, module_name, monkeypatch):
    """An honest and a dishonest run of an imported GELU model, a fraud proof filed against the
    dishonest one; returns (store, module file, the spec)."""
    spec_path = _project(tmp_path, module_name, "make")
    monkeypatch.chdir(tmp_path)
    spec = load_spec(spec_path)
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "honest"))
    t = open_trainer(spec, store, "dishonest")
    t.tamper = FlipParamBit(2)
    train(t)
    assert challenge(store, "dishonest").finding is not None  # the proof is filed
    return store, spec_path.parent / f"{module_name}.py", spec


def test_the_manifest_records_the_code(trained, module_name):
    store, module_file, _ = trained
    code = Manifest.load(store, "honest").content["code"]
    assert code == {
        "modules": [
            {
                "key": "model.factory",
                "module": module_name,
                "source": f"{module_name}.py",
                "sha256": hashlib.sha256(module_file.read_bytes()).hexdigest(),
            }
        ],
        "torch": torch.__version__,
        "veritrain": importlib.metadata.version("veritrain"),
    }
    report = verify_run(store, "honest")
    assert report.ok and report.to_json()["code"] == code


def test_other_code_is_reported_as_other_code_never_as_fraud(trained, module_name, capsys):
    store, module_file, spec = trained
    module_file.write_text(module_file.read_text().replace("GELU", "ReLU"))
    sys.modules.pop(module_name)  # as a challenger's fresh process imports it
    with pytest.raises(
        CodeError, match=f"code differs in model.factory: the run used {module_name}"
    ):
        challenge(store, "honest")
    honest, dishonest = (f"{store.root}/runs/{r}" for r in ("honest", "dishonest"))
    assert main(["challenge", honest]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "code differs in model.factory" in err and module_name in err
    assert store.list("runs/honest/challenges/") == []  # no proof against the honest run
    (pid,) = {Path(k).name.split(".")[0] for k in store.list("runs/dishonest/challenges/")}
    assert main(["check-fraud-proof", dishonest, pid]) == 3
    assert "code differs in model.factory" in capsys.readouterr().err
    # The dispute cannot be checked with this code: unconfirmed, not upheld.
    details = [c.detail for e in verify_run(store, "dishonest").epochs for c in e.checks]
    assert any("could not be checked here" in d and "code differs" in d for d in details)
    # Nor does a trainer resume the run with it.
    with pytest.raises(CodeError, match="code differs in model.factory"):
        open_trainer(spec, store, "honest")


def test_a_missing_module_stops_a_replay_with_exit_3(trained, module_name, capsys):
    store, module_file, _ = trained
    module_file.unlink()
    sys.modules.pop(module_name)
    assert main(["challenge", f"{store.root}/runs/honest"]) == 3
    assert "the run's code cannot be imported here" in capsys.readouterr().err


def test_a_challenger_names_its_own_copies_of_the_data_and_code(trained, module_name, capsys):
    """The run's spec names the trainer's paths; a challenger keeps the project elsewhere and
    names its copies (`--import-path`, `--dataset`), which are checked against the run's code
    identity and dataset root before any step is replayed."""
    store, module_file, _ = trained
    project = module_file.parent
    copy = project.rename(project.with_name("challengers-copy"))
    sys.modules.pop(module_name)
    honest, dishonest = (f"{store.root}/runs/{r}" for r in ("honest", "dishonest"))
    assert main(["challenge", honest]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot be imported here" in err and "--import-path" in err
    assert main(["challenge", honest, "--import-path", str(copy)]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{project / 'data.npz'}: cannot read the dataset" in err, err
    assert "--dataset" in err
    here = ["--import-path", str(copy), "--dataset", str(copy / "data.npz")]
    assert main(["challenge", honest, *here]) == 0
    assert "no fraud found" in capsys.readouterr().out
    (pid,) = {Path(k).name.split(".")[0] for k in store.list("runs/dishonest/challenges/")}
    assert main(["check-fraud-proof", dishonest, pid, *here]) == 0
    assert capsys.readouterr().out.startswith("upheld")
    # Another dataset under the name: refused before a step is replayed, naming it.
    _dataset_file(copy / "other.npz", n=40)
    other = ["--import-path", str(copy), "--dataset", str(copy / "other.npz")]
    assert main(["challenge", honest, *other]) == 3
    err = capsys.readouterr().err.strip()
    assert f"the dataset here ({copy / 'other.npz'}) does not have the run's dataset root" in err
    # A bundled dataset has no path to point elsewhere.
    with pytest.raises(UsageError, match="--dataset: the run's dataset is digits"):
        LocalCopy(dataset="x.npz").apply(parse_spec({**BASE, "dataset": {"kind": "digits"}}))
    assert store.list("runs/honest/challenges/") == []


def test_versions_count_for_torch_arithmetic(trained, monkeypatch):
    store, _, _ = trained
    monkeypatch.setattr(code_module, "_veritrain_version", lambda: "9.9.9")
    with pytest.raises(CodeError, match="code differs in veritrain: the run used"):
        challenge(store, "honest")


def test_a_run_without_code_identity_still_verifies(tmp_path, module_name, monkeypatch):
    """A run made before code identity: its run.json has no "code"; it loads and verifies, and
    reports none."""
    spec_path = _project(tmp_path, module_name, "make")
    store = LocalStore(tmp_path / "store")
    monkeypatch.setattr(trainer_module, "code_fields", lambda spec: {})
    train(open_trainer(load_spec(spec_path), store, "old"))
    monkeypatch.undo()
    assert "code" not in Manifest.load(store, "old").content
    report = verify_run(store, "old")
    assert report.ok and report.code is None, [c for c in report.checks if not c.ok]
    assert report.to_json()["code"] is None
    assert challenge(store, "old").finding is None  # nothing to compare: replayed as before


def test_verify_and_the_audit_report_show_the_code(trained, module_name, capsys):
    from veritrain.pipeline.publish.report import build_report, markdown_standalone

    store, module_file, _ = trained
    digest = hashlib.sha256(module_file.read_bytes()).hexdigest()
    assert main(["verify", f"{store.root}/runs/honest"]) == 0
    line = f"model.factory: {module_name} ({module_name}.py, sha256 {digest[:16]}…)"
    assert f"code: {line}; torch {torch.__version__}" in capsys.readouterr().out
    markdown = markdown_standalone(build_report(store, "honest"))
    assert f"| code | {line}" in markdown.replace("\\", "")  # markdown's escapes removed
