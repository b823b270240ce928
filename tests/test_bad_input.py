"""Bad input to the command line, one row each: the spec, the flags, the URIs, documents past the
loader's limits (pipeline/documents.py). Every row runs the real command in its own process and
expects the documented exit code (2 usage or bad spec, 3 storage or environment), one line on
stderr with the given words, no traceback, and, for `run`, nothing written and nothing started
(the checks come before the Prefect server). Stored documents past the limits (run.json, a ledger
entry, a fraud proof, an attestation) are tampered objects: they fail verification (exit 1)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import ROOT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from s3servers import closed_port, moto_s3, set_s3_env  # noqa: F401 - fixture

from veritrain.pipeline.documents import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    DocumentError,
    load_json,
    load_yaml,
)

# Trains in well under a second; each row changes what it tests.
SPEC: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [8]},
    "dataset": {"kind": "synthetic", "samples": 64, "features": 16, "classes": 4, "seed": 1},
    "epochs": 1,
    "batch_size": 16,
    "finalize_every": 0,
    "challenge_window": 0,
}

# A module for the `import` model kind, on the subprocess's PYTHONPATH.
FACTORIES = """
import torch

def one_arg(n):
    return torch.nn.Linear(n, 4)

def wrong_width(in_features, classes):
    return torch.nn.Linear(in_features + 1, classes)

def wrong_output(in_features, classes):
    return torch.nn.Linear(in_features, classes + 3)

def not_a_module(in_features, classes):
    return 42

def raises(in_features, classes):
    raise ValueError("no such layer")

def per_sample(outputs, targets):
    return torch.nn.functional.cross_entropy(outputs, targets, reduction="none")

answer = 42
"""
BROKEN_MODULE = "raise RuntimeError('import-time failure')\n"

# Documents past the limits: a few thousand levels deep (where an unlimited parser recursed past
# Python's stack), past the size limit, aliases of aliases (a billion "x"), an alias inside the
# node it names.
DEEP = 3000


def deep_list(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


OVERSIZE_YAML = b"# " + b"x" * MAX_YAML_BYTES + b"\n"
ALIAS_BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)
)
YAML_DEEP = f"nested deeper than {MAX_YAML_DEPTH} levels"
JSON_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...]
    # For `run`: the spec file's content (a dict patched over SPEC, or raw bytes).
    spec: dict[str, Any] | bytes = field(default_factory=dict)
    # Other files the row reads, by path under the workspace.
    files: dict[str, bytes] = field(default_factory=dict)


def run_case(*argv: str) -> tuple[str, ...]:
    return ("run", "{spec}", "--store", "{store}", *argv)


CASES = [
    # -- the spec --------------------------------------------------------------------------------
    Case(
        "spec-not-utf8",
        run_case(),
        2,
        ("{spec}", "not UTF-8", "0xe9"),
        spec=b"epochs: 1\n# caf\xe9\n",
    ),
    Case(
        "epochs-beyond-u64",
        run_case(),
        2,
        ("{spec}", "epochs", "18446744073709551615"),
        spec={"epochs": 10**30},
    ),
    Case(
        "steps-beyond-u64", run_case(), 2, ("{spec}", "epochs", "u64"), spec={"epochs": 2**64 - 1}
    ),
    Case(
        "batch-beyond-u32",
        run_case(),
        2,
        ("{spec}", "batch_size", "4294967295"),
        spec={"batch_size": 2**40},
    ),
    # The schedule: 64 samples in batches of 16 for 1 epoch make a run of 4 steps.
    Case(
        "schedule-warmup-longer-than-run",
        run_case(),
        2,
        ("{spec}", "schedule.warmup_steps", "5 warmup steps", "the run's 4 steps"),
        spec={"schedule": {"kind": "cosine", "base_lr": 0.1, "warmup_steps": 5, "min_lr": 0}},
    ),
    Case(
        "schedule-min-lr-above-base-lr",
        run_case(),
        2,
        ("{spec}", "schedule:", "min_lr", "at most base_lr"),
        spec={"schedule": {"kind": "cosine", "base_lr": 0.1, "warmup_steps": 2, "min_lr": 0.2}},
    ),
    Case(
        "schedule-non-positive",
        run_case(),
        2,
        ("{spec}", "schedule:", "warmup_steps must be positive"),
        spec={"schedule": {"kind": "inverse_sqrt", "base_lr": 0.1, "warmup_steps": 0}},
    ),
    Case(
        "schedule-unknown-key",
        run_case(),
        2,
        ("{spec}", "schedule.total_steps", "Extra inputs are not permitted"),
        spec={
            "schedule": {
                "kind": "cosine",
                "base_lr": 0.1,
                "warmup_steps": 2,
                "min_lr": 0,
                "total_steps": 4,
            }
        },
    ),
    Case(
        "batch-larger-than-dataset",
        run_case(),
        2,
        ("{spec}", "batch_size", "64 samples"),
        spec={"batch_size": 100},
    ),
    Case(
        "infinite-challenge-window",
        run_case(),
        2,
        ("{spec}", "challenge_window", "finite"),
        spec={"challenge_window": float("inf")},
    ),
    Case(
        "negative-dataset-seed",
        run_case(),
        2,
        ("{spec}", "dataset.synthetic.seed"),
        spec={"dataset": {"kind": "synthetic", "seed": -1}},
    ),
    # -- the trainer key -------------------------------------------------------------------------
    Case("key-missing", run_case("--key", "{tmp}/no-key.pem"), 2, ("--key", "cannot read it")),
    Case(
        "key-not-pem",
        run_case("--key", "{tmp}/a-file"),
        2,
        ("--key", "{tmp}/a-file", "not an unencrypted PEM private key"),
    ),
    Case("key-not-ed25519", run_case("--key", "{tmp}/ec.pem"), 2, ("--key", "not an Ed25519 key")),
    Case(
        "dataset-file-missing",
        run_case(),
        2,
        ("{spec}", "{tmp}/nowhere.npz", "No such file"),
        spec={"dataset": {"kind": "file", "path": "{tmp}/nowhere.npz"}},
    ),
    Case(
        "dataset-file-garbage",
        run_case(),
        2,
        ("{spec}", "{tmp}/garbage.npz", "not a dataset"),
        spec={"dataset": {"kind": "file", "path": "{tmp}/garbage.npz"}},
    ),
    Case(
        "dataset-file-without-y",
        run_case(),
        2,
        ("{spec}", "{tmp}/only-x.npz", "no array 'y'"),
        spec={"dataset": {"kind": "file", "path": "{tmp}/only-x.npz"}},
    ),
    Case(
        "dataset-file-labels-wrong-shape",
        run_case(),
        2,
        ("{spec}", "{tmp}/y-2d.npz", "y has shape (8, 2); class labels have shape (n,)"),
        spec={"dataset": {"kind": "file", "path": "{tmp}/y-2d.npz"}},
    ),
    Case(
        "dataset-file-targets-wrong-shape",
        run_case(),
        2,
        ("{spec}", "{tmp}/y-3d.npz", "regression targets have shape (n,) or (n, targets)"),
        spec={"task": "regression", "dataset": {"kind": "file", "path": "{tmp}/y-3d.npz"}},
    ),
    Case(
        "dataset-file-labels-not-integers",
        run_case(),
        2,
        ("{spec}", "{tmp}/y-float.npz", "non-integer values", "task: regression"),
        spec={"dataset": {"kind": "file", "path": "{tmp}/y-float.npz"}},
    ),
    Case(
        "task-not-the-datasets",
        run_case(),
        2,
        ("{spec}", "task: dataset kind synthetic gives classification samples, not regression"),
        spec={"task": "regression"},
    ),
    Case(
        "text-corpus-empty",
        run_case(),
        2,
        ("{spec}", "dataset.path", "{tmp}/corpus", "is empty"),
        spec={
            "model": {"kind": "import", "factory": "vt_factories:one_arg"},
            "dataset": {"kind": "text", "path": "{tmp}/corpus", "context": 8},
        },
    ),
    Case(
        "text-window-longer-than-corpus",
        run_case(),
        2,
        ("{spec}", "dataset.context", "longer than the corpus", "{tmp}/short.txt (10 tokens)"),
        spec={
            "model": {"kind": "import", "factory": "vt_factories:one_arg"},
            "dataset": {"kind": "text", "path": "{tmp}/short.txt", "context": 64},
        },
    ),
    Case(
        "canonical-regression",
        run_case(),
        2,
        ("{spec}", "task: arithmetic: canonical trains classification only"),
        spec={"dataset": {"kind": "diabetes"}, "arithmetic": "canonical"},
    ),
    Case(
        "loss-module-missing",
        run_case(),
        2,
        ("{spec}", "loss.fn", "cannot import", "no_such_module_vt"),
        spec={"loss": {"kind": "import", "fn": "no_such_module_vt:f"}},
    ),
    Case(
        "loss-not-a-scalar",
        run_case(),
        2,
        ("{spec}", "loss.fn", "per_sample returned shape (16,), not a scalar tensor"),
        spec={"loss": {"kind": "import", "fn": "vt_factories:per_sample"}},
    ),
    Case(
        "factory-module-missing",
        run_case(),
        2,
        ("{spec}", "model.factory", "cannot import"),
        spec={"model": {"kind": "import", "factory": "no_such_module_vt:f"}},
    ),
    Case(
        "factory-module-raises",
        run_case(),
        2,
        ("model.factory", "import-time failure"),
        spec={"model": {"kind": "import", "factory": "vt_broken:f"}},
    ),
    Case(
        "factory-not-callable",
        run_case(),
        2,
        ("model.factory", "not callable"),
        spec={"model": {"kind": "import", "factory": "vt_factories:answer"}},
    ),
    Case(
        "factory-wrong-signature",
        run_case(),
        2,
        ("model.factory", "cannot be called as"),
        spec={"model": {"kind": "import", "factory": "vt_factories:one_arg"}},
    ),
    Case(
        "factory-bad-kwargs",
        run_case(),
        2,
        ("model.factory", "cannot be called as", "depth"),
        spec={
            "model": {"kind": "import", "factory": "vt_factories:raises", "kwargs": {"depth": 3}}
        },
    ),
    Case(
        "factory-raises",
        run_case(),
        2,
        ("model.factory", "ValueError", "no such layer"),
        spec={"model": {"kind": "import", "factory": "vt_factories:raises"}},
    ),
    Case(
        "factory-returns-no-module",
        run_case(),
        2,
        ("model.factory", "not a torch Module"),
        spec={"model": {"kind": "import", "factory": "vt_factories:not_a_module"}},
    ),
    Case(
        "model-input-width",
        run_case(),
        2,
        ("{spec}", "forward pass", "shapes"),
        spec={"model": {"kind": "import", "factory": "vt_factories:wrong_width"}},
    ),
    Case(
        "model-output-shape",
        run_case(),
        2,
        ("{spec}", "logits of shape (16, 4)"),
        spec={"model": {"kind": "import", "factory": "vt_factories:wrong_output"}},
    ),
    Case(
        "optimizer-not-an-optimizer",
        run_case(),
        2,
        ("{spec}", "optimizer.class", "'vt_factories.one_arg' is not a torch.optim.Optimizer"),
        spec={"optimizer": {"kind": "import", "class": "vt_factories.one_arg"}},
    ),
    Case(
        "model-too-large",
        run_case(),
        2,
        ("{spec}", "model", "GiB", "available"),
        spec={"model": {"kind": "mlp", "hidden": [10**12]}},
    ),
    Case(
        "spec-nested-too-deep",
        run_case(),
        2,
        ("{spec}", YAML_DEEP),
        spec=f"image_ids: {deep_list()}\n".encode(),
    ),
    Case(
        "spec-too-large",
        run_case(),
        2,
        ("{spec}", f"larger than {MAX_YAML_BYTES} bytes"),
        spec=OVERSIZE_YAML,
    ),
    Case(
        "spec-aliases-expand-too-far",
        run_case(),
        2,
        ("{spec}", f"expands to more than {MAX_YAML_BYTES} bytes"),
        spec=ALIAS_BOMB.encode(),
    ),
    Case(
        "spec-alias-inside-itself",
        run_case(),
        2,
        ("{spec}", "the alias *k is inside the node it names"),
        spec=b"model: {kind: import, factory: 'vt_factories:raises', kwargs: &k {a: *k}}\n",
    ),
    Case(
        "spec-store-file-scheme",
        ("run", "{spec}"),
        2,
        ("{spec}", "store", "file://"),
        spec={"store": "file://{tmp}/s"},
    ),
    # -- the flags -------------------------------------------------------------------------------
    Case("run-id-empty", run_case("--run-id", ""), 2, ("--run-id", "1-32 characters")),
    Case("run-id-dot", run_case("--run-id", "."), 2, ("--run-id", "other than . and ..")),
    Case("run-id-dot-dot", run_case("--run-id", ".."), 2, ("--run-id", "other than . and ..")),
    Case("store-empty", ("run", "{spec}", "--store", ""), 2, ("--store", "empty")),
    Case(
        "store-s3-no-bucket",
        ("run", "{spec}", "--store", "s3://"),
        2,
        ("--store", "no bucket name"),
    ),
    Case(
        "store-s3-empty-bucket",
        ("run", "{spec}", "--store", "s3:///x"),
        2,
        ("--store", "s3:///x", "no bucket name"),
    ),
    Case(
        "store-s3-bad-bucket",
        ("run", "{spec}", "--store", "s3://a b/x"),
        2,
        ("--store", "bucket name 'a b'"),
    ),
    Case(
        "store-s3-dot-prefix",
        ("run", "{spec}", "--store", "s3://b/../x"),
        2,
        ("--store", "'..' segment"),
    ),
    Case(
        "store-file-scheme",
        ("run", "{spec}", "--store", "file://"),
        2,
        ("--store", "unsupported URI scheme file://"),
    ),
    Case(
        "store-gs-scheme",
        ("run", "{spec}", "--store", "gs://bucket/x"),
        2,
        ("--store", "unsupported URI scheme gs://"),
    ),
    Case(
        "store-http-scheme",
        ("run", "{spec}", "--store", "http://127.0.0.1:9/x"),
        2,
        ("--store", "unsupported URI scheme http://"),
    ),
    Case(
        "store-is-a-file",
        ("run", "{spec}", "--store", "{tmp}/a-file/store"),
        3,
        ("{tmp}/a-file", "not a folder"),
    ),
    # -- files a verifier names ------------------------------------------------------------------
    Case(
        "policy-nested-too-deep",
        ("verify", "{store}/runs/r", "--policy", "{tmp}/policy.yaml"),
        2,
        ("{tmp}/policy.yaml", YAML_DEEP),
        files={"policy.yaml": f"image_ids: {deep_list()}\n".encode()},
    ),
    Case(
        "policy-block-nested-too-deep",
        ("status", "{store}/runs/r", "--policy", "{tmp}/policy.yaml"),
        2,
        ("{tmp}/policy.yaml", YAML_DEEP),
        files={"policy.yaml": b"image_ids:\n" + b"- " * DEEP + b"x\n"},
    ),
    Case(
        "policy-too-large",
        ("verify", "{store}/runs/r", "--policy", "{tmp}/policy.yaml"),
        2,
        ("{tmp}/policy.yaml", f"larger than {MAX_YAML_BYTES} bytes"),
        files={"policy.yaml": OVERSIZE_YAML},
    ),
    Case(
        "policy-alias-inside-itself",
        ("audit", "{store}/runs/r", "--epoch", "0", "--out", "{tmp}/a", "--policy", "{tmp}/p.yaml"),
        2,
        ("{tmp}/p.yaml", "the alias *i is inside the node it names"),
        files={"p.yaml": b"image_ids: &i [*i]\n"},
    ),
    Case(
        "replayable-profile-nested-too-deep",
        ("verify", "{store}/runs/r", "--replayable-profile", "{tmp}/profile.json"),
        2,
        ("--replayable-profile {tmp}/profile.json", JSON_DEEP),
        files={"profile.json": deep_list().encode()},
    ),
    Case(
        "replayable-profile-too-large",
        ("report", "{store}/runs/r", "--out", "{tmp}/r", "--replayable-profile", "{tmp}/p.json"),
        2,
        ("--replayable-profile {tmp}/p.json", f"larger than {MAX_JSON_BYTES} bytes"),
        files={"p.json": b"[" + b" " * MAX_JSON_BYTES + b"]"},
    ),
    # -- run URIs of the other commands ----------------------------------------------------------
    Case(
        "verify-not-a-run-uri", ("verify", "not-a-run-uri"), 2, ("RUN_URI", "<store>/runs/<run_id>")
    ),
    Case(
        "verify-run-id-dot-dot", ("verify", "{tmp}/runs/.."), 2, ("RUN_URI", "other than . and ..")
    ),
    Case("verify-s3-empty-bucket", ("verify", "s3:///x/runs/r"), 2, ("RUN_URI", "no bucket name")),
    Case(
        "verify-file-scheme",
        ("verify", "file://{tmp}/runs/r"),
        2,
        ("RUN_URI", "unsupported URI scheme file://"),
    ),
    Case("status-gs-scheme", ("status", "gs://b/runs/r"), 2, ("RUN_URI", "gs://")),
    Case(
        "audit-s3-no-bucket",
        ("audit", "s3:///runs/r", "--epoch", "0", "--out", "{tmp}/a"),
        2,
        ("RUN_URI", "no bucket name"),
    ),
    Case(
        "report-gs-scheme", ("report", "gs://b/runs/r", "--out", "{tmp}/r"), 2, ("RUN_URI", "gs://")
    ),
    Case(
        "report-out-is-a-file",
        ("report", "{store}/runs/r", "--out", "{tmp}/a-file"),
        2,
        ("--out", "{tmp}/a-file", "not a folder"),
    ),
    Case(
        "report-out-under-a-file",
        ("report", "{store}/runs/r", "--out", "{tmp}/a-file/r"),
        2,
        ("--out", "{tmp}/a-file", "not a folder"),
    ),
    Case(
        "report-no-such-run",
        ("report", "{store}/runs/r", "--out", "{tmp}/r"),
        3,
        ("{store}/runs/r", "no such run"),
    ),
    Case(
        "challenge-run-id-empty",
        ("challenge", "{tmp}/runs/"),
        2,
        ("RUN_URI", "<store>/runs/<run_id>"),
    ),
    Case(
        "check-fraud-proof-http",
        ("check-fraud-proof", "http://h/runs/r", "0" * 32),
        2,
        ("RUN_URI", "http://"),
    ),
    Case(
        "demo-file-scheme",
        ("demo", "--store", "file://"),
        2,
        ("--store", "unsupported URI scheme file://"),
    ),
    Case("demo-s3-no-bucket", ("demo", "--store", "s3://"), 2, ("--store", "no bucket name")),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` but modules/ (where Python caches the factories'
    bytecode), with a file's digest."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
        if p.relative_to(root).parts[0] != "modules"
    }


def _fill(value: str, tmp: Path, spec_path: Path, store: Path) -> str:
    return value.format(tmp=tmp, spec=spec_path, store=store)


def _fill_spec(spec: Any, tmp: Path) -> Any:
    if isinstance(spec, dict):
        return {k: _fill_spec(v, tmp) for k, v in spec.items()}
    return spec.format(tmp=tmp) if isinstance(spec, str) else spec


def cli(argv: list[str], tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp / "modules"), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "veritrain.flows.cli", *argv],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def workspace(tmp_path) -> Path:
    """Files the rows refer to: factories, a broken module, dataset files, a file in the way."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "vt_factories.py").write_text(FACTORIES)
    (tmp_path / "modules" / "vt_broken.py").write_text(BROKEN_MODULE)
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file")
    np.savez(tmp_path / "only-x.npz", x=np.zeros((8, 4), dtype=np.float32))
    x = np.zeros((8, 4), dtype=np.float32)
    np.savez(tmp_path / "y-2d.npz", x=x, y=np.zeros((8, 2), dtype=np.int64))
    np.savez(tmp_path / "y-3d.npz", x=x, y=np.zeros((8, 2, 2), dtype=np.float32))
    np.savez(tmp_path / "y-float.npz", x=x, y=np.full(8, 0.5))
    (tmp_path / "corpus" / "empty").mkdir(parents=True)
    (tmp_path / "corpus" / "empty.txt").write_bytes(b"")
    (tmp_path / "short.txt").write_bytes(b"0123456789")
    (tmp_path / "a-file").write_text("in the way")
    (tmp_path / "ec.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp_path


def _one_line_error(r: subprocess.CompletedProcess, code: int, words: list[str]) -> None:
    err = r.stderr.strip()
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("veritrain: "), err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, workspace: Path):
    spec_path, store = workspace / "spec.yaml", workspace / "store"
    if isinstance(case.spec, bytes):
        spec_path.write_bytes(case.spec)
    else:
        spec = SPEC | _fill_spec(case.spec, workspace)
        spec_path.write_text(yaml.safe_dump(spec))
    for name, content in case.files.items():
        (workspace / name).write_bytes(content)
    before = _snapshot(workspace)
    argv = [_fill(a, workspace, spec_path, store) for a in case.argv]
    r = cli(argv, workspace)
    _one_line_error(r, case.code, [_fill(w, workspace, spec_path, store) for w in case.words])
    # Nothing written: no store, and no folder a store URI could have been misread as.
    assert _snapshot(workspace) == before


# -- the store's reachability, before anything starts ---------------------------------------------


def test_unreachable_s3_endpoint(workspace, monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    set_s3_env(monkeypatch, endpoint)
    (workspace / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    r = cli(["run", "spec.yaml", "--store", "s3://vt-bucket/p"], workspace)
    _one_line_error(r, 3, ["s3://vt-bucket/p/", f"cannot reach the S3 endpoint {endpoint}"])


def test_missing_bucket(workspace, monkeypatch, moto_s3):  # noqa: F811
    set_s3_env(monkeypatch, moto_s3.endpoint)
    (workspace / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    r = cli(["run", "spec.yaml", "--store", "s3://vt-no-such-bucket"], workspace)
    _one_line_error(r, 3, ["s3://vt-no-such-bucket", "no such bucket"])


def test_missing_s3_credentials(workspace, monkeypatch, moto_s3):  # noqa: F811
    set_s3_env(monkeypatch, moto_s3.endpoint)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (workspace / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    r = cli(["run", "spec.yaml", "--store", f"s3://{moto_s3.new_bucket()}"], workspace)
    _one_line_error(r, 3, ["no usable S3 credentials", "AWS_ACCESS_KEY_ID"])


def test_existing_run_with_another_spec(workspace, unproven_run, tiny_spec):
    """A run id that names a run of another spec is refused before anything starts."""
    store, run_id = unproven_run
    spec = tiny_spec.model_dump(mode="json") | {"seed": 99}
    (workspace / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = sorted(p for p in store.rglob("*"))
    r = cli(["run", "spec.yaml", "--store", str(store), "--run-id", run_id], workspace)
    _one_line_error(r, 2, [f"runs/{run_id}/run.json", "another spec"])
    assert sorted(p for p in store.rglob("*")) == before


# -- a sharded dataset in an S3 prefix, before anything starts -----------------------------------

S3_SHARDS = {
    # row: (objects under the prefix, exit code, words)
    "empty-prefix": ({}, 2, ["{uri}/: no shard objects under the prefix"]),
    "mismatched-dtypes": (
        {"b.npz": np.float64},
        2,
        ["{uri}/b.npz: arrays of dtypes float64, int64; the first shard a.npz's"],
    ),
    "mismatched-shapes": (
        {"b.npz": (3,)},
        2,
        ["{uri}/b.npz: samples of shape x (3,), y (); the first shard a.npz's are x (4,)"],
    ),
    "not-the-format": ({"b.npz": b"not a zip"}, 2, ["{uri}/b.npz: not a npz shard"]),
    "unreachable": (None, 3, ["{uri}/", "cannot reach the S3 endpoint"]),
    "no-credentials": ("no-credentials", 3, ["{uri}/", "no usable S3 credentials"]),
}


def _npz(what: Any) -> bytes:
    x = np.zeros((8, *(what if isinstance(what, tuple) else (4,))), dtype=np.float32)
    out = io.BytesIO()
    np.savez(out, x=x.astype(what) if isinstance(what, type) else x, y=np.zeros(8, np.int64))
    return out.getvalue()


@pytest.mark.parametrize("row", list(S3_SHARDS))
def test_bad_s3_shards(row, workspace, monkeypatch, moto_s3):  # noqa: F811
    objects, code, words = S3_SHARDS[row]
    set_s3_env(monkeypatch, moto_s3.endpoint)
    monkeypatch.setenv("VERITRAIN_CACHE", str(workspace.parent / f"{workspace.name}-cache"))
    bucket = moto_s3.new_bucket()
    uri = f"s3://{bucket}/data"
    client = moto_s3.client()
    client.put_object(Bucket=bucket, Key="data-not-under-the-prefix.npz", Body=_npz(None))
    if isinstance(objects, dict):
        for name, what in ({"a.npz": None, **objects} if objects else {}).items():
            body = what if isinstance(what, bytes) else _npz(what)
            client.put_object(Bucket=bucket, Key=f"data/{name}", Body=body)
    elif objects is None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    else:
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(var)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = SPEC | {"dataset": {"kind": "shards", "uri": uri, "format": "npz"}}
    (workspace / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = _snapshot(workspace)
    r = cli(["run", "spec.yaml", "--store", "store"], workspace)
    _one_line_error(r, code, [w.format(uri=uri) for w in words])
    assert _snapshot(workspace) == before


# -- the loader's limits --------------------------------------------------------------------------


def test_json_depth_is_counted_outside_strings_only():
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(DocumentError, match=JSON_DEEP):
        load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(DocumentError, match=JSON_DEEP):
        load_json('{"a": ' + deep_list() + "}")
    with pytest.raises(DocumentError, match=JSON_DEEP):  # unclosed: still refused, not recursed
        load_json("[" * DEEP)
    text = '{"s": "' + "[{" * DEEP + '\\" [", "t": [[1]]}'
    assert load_json(text)["t"] == [[1]]
    with pytest.raises(DocumentError, match=JSON_DEEP):  # as json.loads decodes it
        load_json(deep_list().encode("utf-16"))


def test_json_size_limit():
    assert load_json(b"[" + b" " * (MAX_JSON_BYTES - 2) + b"]") == []
    with pytest.raises(DocumentError, match=f"larger than {MAX_JSON_BYTES} bytes"):
        load_json(b"[" + b" " * (MAX_JSON_BYTES - 1) + b"]")
    with pytest.raises(ValueError, match="Expecting value"):  # what is not JSON stays so
        load_json(b"[1,]")


# YAML text nested ``levels`` deep, each way YAML nests.
YAML_NESTINGS = {
    "flow": lambda levels: "[" * levels + "]" * levels,
    "block-sequences": lambda levels: "- " * levels + "x\n",
    "block-mappings": lambda levels: (
        "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "x\n"
    ),
}


@pytest.mark.parametrize("nest", YAML_NESTINGS.values(), ids=YAML_NESTINGS)
def test_yaml_depth_limit(nest):
    assert load_yaml(nest(MAX_YAML_DEPTH)) is not None
    with pytest.raises(DocumentError, match=YAML_DEEP):
        load_yaml(nest(MAX_YAML_DEPTH + 1))


def test_yaml_aliases_and_size():
    assert load_yaml("a: &x [1]\nb: *x\n") == {"a": [1], "b": [1]}
    with pytest.raises(DocumentError, match=f"expands to more than {MAX_YAML_BYTES} bytes"):
        load_yaml(ALIAS_BOMB)
    with pytest.raises(DocumentError, match=r"the alias \*x is inside the node it names"):
        load_yaml("a: &x {b: [*x]}\n")
    assert load_yaml("# " + "x" * (MAX_YAML_BYTES - 3) + "\n") is None
    with pytest.raises(DocumentError, match=f"larger than {MAX_YAML_BYTES} bytes"):
        load_yaml("# " + "x" * (MAX_YAML_BYTES - 2) + "\n")


# -- stored documents past the limits: tampered objects --------------------------------------------


@dataclass(frozen=True)
class Stored:
    id: str
    path: str  # under the run's folder, or {tmp}/...
    content: bytes
    argv: tuple[str, ...]  # after the run URI
    code: int
    words: tuple[str, ...]


PROOF_ID = "0" * 32
STORED = [
    Stored(
        "run-json-nested-too-deep",
        "run.json",
        deep_list().encode(),
        ("verify",),
        1,
        ("manifest", "runs/{run_id}/run.json: not a valid run manifest", JSON_DEEP),
    ),
    Stored(
        "ledger-entry-nested-too-deep",
        "ledger/000000000001.json",
        ('{"body": ' + deep_list() + "}").encode(),
        ("status",),
        1,
        ("ledger/000000000001.json: not a valid ledger entry", JSON_DEEP),
    ),
    Stored(
        "ledger-entry-too-large",
        "ledger/000000000000.json",
        b"{" + b" " * MAX_JSON_BYTES + b"}",
        ("verify",),
        1,
        ("ledger/000000000000.json: not a valid ledger entry", f"larger than {MAX_JSON_BYTES}"),
    ),
    Stored(
        "attestation-nested-too-deep",
        "{tmp}/att.json",
        deep_list().encode(),
        ("verify", "--attestation", "{tmp}/att.json"),
        1,
        ("attestation", "{tmp}/att.json: not a DSSE envelope", JSON_DEEP),
    ),
    Stored(
        "attestation-too-large",
        "{tmp}/att.json",
        b"[" + b" " * MAX_JSON_BYTES + b"]",
        ("verify", "--attestation", "{tmp}/att.json"),
        1,
        ("--attestation {tmp}/att.json", f"larger than {MAX_JSON_BYTES} bytes"),
    ),
]


@pytest.mark.parametrize("case", STORED, ids=[c.id for c in STORED])
def test_a_stored_document_past_the_limits_fails_verification(case, unproven_run, tmp_path):
    """As a malformed one of its kind: verification fails naming the object (exit 1)."""
    store, run_id = unproven_run
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    run = copy / "runs" / run_id
    path = Path(case.path.format(tmp=tmp_path)) if "{tmp}" in case.path else run / case.path
    path.write_bytes(case.content)
    argv = [case.argv[0], str(run), *(a.format(tmp=tmp_path) for a in case.argv[1:])]
    r = cli(argv, tmp_path)
    _one_line_error(r, case.code, [w.format(tmp=tmp_path, run_id=run_id) for w in case.words])


def test_a_filed_fraud_proof_nested_too_deep_is_rejected(unproven_run, tmp_path):
    """As a proof that is not JSON: check-fraud-proof rejects it (exit 1) and verify, which
    re-checks every filed proof, still verifies the run."""
    store, run_id = unproven_run
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    run = copy / "runs" / run_id
    (run / "challenges").mkdir(exist_ok=True)
    (run / "challenges" / f"{PROOF_ID}.json").write_text(deep_list())
    r = cli(["check-fraud-proof", str(run), PROOF_ID], tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    assert r.stdout.startswith("rejected: ") and "not JSON" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr
    r = cli(["verify", str(run)], tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
