"""A team's own code and files, named by a spec (docs/OPERATIONS.md "Your own model"): model
factories get the dataset's description by keyword (or the old two positional arguments), modules
beside the spec file or in the current folder import without PYTHONPATH, and relative paths are
the spec file's folder's, stored absolute in the manifest so a replay anywhere names the same
files. No proving here (finalize_every: 0)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import load_spec, parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer, prepare

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
