"""A verifier CI can afford: verify, audit and status work in an installation without the
``train`` extra (torch, numpy, scikit-learn, prefect: pipeline/extras.py), and the commands that
need it say so in one line.

The command runs in a process where the extra is absent as far as Python can tell: importing any
of its modules raises ModuleNotFoundError and importlib.metadata finds none of its distributions
(which is how the verifier tells what this machine could replay, pipeline/run/determinism.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

from veritrain.pipeline.challenge.fraudproof import PROOF_VERSION, file_fraud_proof
from veritrain.pipeline.extras import EXTRAS
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.verify.verifier import verify_run

ABSENT = EXTRAS["train"]
SLIM = """
import importlib.machinery, importlib.metadata, re, runpy, sys
MODULES, DISTS = set(sys.argv[1].split(",")), set(sys.argv[2].split(","))
PathFinder = importlib.machinery.PathFinder

class Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

class Installed:  # PathFinder, but its distributions lack the extra's
    find_spec = staticmethod(PathFinder.find_spec)
    invalidate_caches = staticmethod(PathFinder.invalidate_caches)

    @staticmethod
    def find_distributions(context=importlib.metadata.DistributionFinder.Context()):
        for d in PathFinder.find_distributions(context):
            if re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower() not in DISTS:
                yield d

sys.meta_path = [Absent] + [Installed if f is PathFinder else f for f in sys.meta_path]
"""
RUN_CLI = """
sys.argv = ["veritrain", *sys.argv[3:]]
runpy.run_module("veritrain.flows.cli", run_name="__main__", alter_sys=True)
"""


def _in_slim(code: str, *args: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in the slim installation; ``sys.argv[3:]`` are ``args``."""
    absent = [",".join(ABSENT.values()), ",".join(ABSENT)]
    return subprocess.run(
        [sys.executable, "-c", SLIM + code, *absent, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def slim(*args: str) -> subprocess.CompletedProcess:
    """`veritrain ARGS` as an installation without the train extra runs it."""
    return _in_slim(RUN_CLI, *args)


def _profile_of(store: Path, run_id: str, tmp_path: Path) -> str:
    """The run's own determinism profile as a --replayable-profile file: a slim verifier replays
    nothing itself, so it names the profiles someone it trusts can replay."""
    path = tmp_path / "replayable.json"
    manifest = json.loads((store / "runs" / run_id / "run.json").read_text())
    path.write_text(json.dumps(manifest["determinism"]))
    return str(path)


def test_the_extras_are_the_ones_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.match(r"[A-Za-z0-9_.-]+", r)[0] for r in requirements}

    for extra, dists in EXTRAS.items():
        assert names(declared["optional-dependencies"][extra]) == set(dists), extra
    assert not names(declared["dependencies"]) & set(ABSENT)


def test_the_slim_installation_lacks_the_extra_and_has_the_rest():
    r = slim("schema", "spec")
    assert r.returncode == 0 and json.loads(r.stdout)["title"], r.stderr
    for module in ABSENT.values():
        r = _in_slim(f"import {module}")
        assert f"No module named '{module}'" in r.stderr
    # importlib.metadata tells what this machine could replay (pipeline/run/determinism.py).
    found = "print([d for d in sys.argv[3:] if any(importlib.metadata.distributions(name=d))])"
    r = _in_slim(found, *ABSENT, "rich")
    assert r.stdout.strip() == "['rich']", r.stderr


@pytest.mark.proving
def test_verify_audit_and_status_of_a_proven_run_without_the_train_extra(tiny_run, tmp_path):
    store, run_id, uri = tiny_run
    replayable = _profile_of(store, run_id, tmp_path)

    r = slim("verify", uri, "--json", "--replayable-profile", replayable)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    # challenge_window is 0 in the tiny spec, and the declared profile is the run's: final.
    assert doc["ok"] and [e["status"] for e in doc["epochs"]] == ["final", "final"]
    checks = {c["name"] for e in doc["epochs"] for c in e["checks"]}
    assert {"receipt", "records", "checkpoint", "challenges"} <= checks

    audit = str(tmp_path / "audit")
    r = slim("audit", uri, "--epoch", "1", "--out", audit, "--replayable-profile", replayable)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "verified"

    r = slim("status", uri, "--replayable-profile", replayable)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("final") == 2

    # Without a declared profile the slim verifier can replay nothing, and says what to do.
    r = slim("verify", uri)
    assert r.returncode == 1 and "unreplayable" in r.stdout
    assert "no readable torch installation" in r.stderr and "--replayable-profile" in r.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("run", "examples/tiny.yaml", "--store", "{tmp}"), "train"),
        (("challenge", "{tmp}/runs/x"), "train"),
        (("check-fraud-proof", "{tmp}/runs/x", "0" * 32), "train"),
        (("demo", "--store", "{tmp}"), "train"),
    ],
)
def test_a_command_needing_the_train_extra_says_how_to_install_it(args, extra, tmp_path):
    r = slim(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"veritrain: veritrain {args[0]} needs torch"), r.stderr
    assert r.stderr.strip().endswith(f"pip install 'veritrain[{extra}]'")
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_a_fraud_proof_that_cannot_be_re_executed_here_leaves_its_epochs_unconfirmed(
    unproven_run, tmp_path
):
    """Every verifier re-executes a filed proof rather than trust it; one without the train extra
    cannot, so it neither takes the proof's word nor passes the epochs it names. (This proof is
    baseless: a verifier with the extra rejects it.)"""
    root, run_id = unproven_run
    store = tmp_path / "store"
    shutil.copytree(root, store)
    manifest = json.loads((store / "runs" / run_id / "run.json").read_text())
    zeros = "0" * 64
    proof = {
        "kind": "veritrain/fraud-proof",
        "version": PROOF_VERSION,
        "run_id": run_id,
        "epoch": 0,
        "step": 1,
        "records": [],
        "claimed": {},
        "recomputed": {},
        "differs": [],
        "pre_state": {
            "checkpoint_step": 0,
            "checkpoint": "x",
            "checkpoint_sha256": zeros,
            "state_digest": zeros,
        },
        "batch": {"epoch": 0, "step": 1, "indices_digest": zeros},
        "determinism": manifest["determinism"],
    }
    pid, _ = file_fraud_proof(LocalStore(store), proof)
    uri = f"{store}/runs/{run_id}"
    r = slim("verify", uri, "--json", "--replayable-profile", _profile_of(store, run_id, tmp_path))
    assert r.returncode == 1, r.stderr
    epochs = json.loads(r.stdout)["epochs"]
    assert epochs and all(e["status"] == "committed" for e in epochs)
    for e in epochs:
        (check,) = [c for c in e["checks"] if c["name"] == "challenges"]
        assert not check["ok"]
        assert check["detail"].startswith(f"fraud proof {pid} could not be checked here: ")
        assert check["detail"].endswith("pip install 'veritrain[train]'")

    report = verify_run(LocalStore(store), run_id)
    assert report.ok, report.to_json()
    assert all(
        "none upheld" in c.detail for e in report.epochs for c in e.checks if c.name == "challenges"
    )


@pytest.mark.proving
def test_the_wheel_without_extras_verifies_in_a_fresh_venv(wheel, tiny_run, tmp_path):
    """The real slim install: `pip install veritrain` (the wheel, no extra) into a new venv."""
    store, run_id, uri = tiny_run
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    python = str(venv / "bin" / "python")
    for module in ABSENT.values():
        r = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
        assert r.returncode != 0, f"{module} is installed without the extra"

    def veritrain(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / "veritrain"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    r = veritrain("verify", uri, "--replayable-profile", _profile_of(store, run_id, tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "verified"
    r = veritrain("run", str(ROOT / "examples" / "tiny.yaml"), "--store", str(tmp_path / "s"))
    assert r.returncode == 3
    assert r.stderr.strip() == (
        "veritrain: veritrain run needs torch, numpy, scikit-learn, prefect, matplotlib, jinja2, "
        "which this "
        "installation lacks: pip install 'veritrain[train]'"
    )
    r = veritrain("report", uri, "--out", str(tmp_path / "report"))
    assert r.returncode == 3
    assert r.stderr.strip().endswith("pip install 'veritrain[report]'"), r.stderr
    assert not (tmp_path / "report").exists()
