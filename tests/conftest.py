from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.spec import RunSpec, load_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _keys(tmp_path_factory):
    """Run keys go to a per-session folder, never the user's (subprocesses inherit it)."""
    os.environ["VERITRAIN_KEYS"] = str(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session", autouse=True)
def _verifier_state(tmp_path_factory):
    """The verifier's receipt sightings go to a per-session folder, never the user's."""
    os.environ["VERITRAIN_STATE"] = str(tmp_path_factory.mktemp("verifier-state"))


@pytest.fixture(scope="session")
def tiny_spec() -> RunSpec:
    return load_spec(ROOT / "examples" / "tiny.yaml")


def veritrain(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Runs the installed command line as a user would, in a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, str, str]:
    """`veritrain run examples/tiny.yaml` through Prefect (ephemeral API): two epochs, each proven
    for real. Returns (store folder, run id, run URI). Shared: proving is slow on 2 cores."""
    store = tmp_path_factory.mktemp("tiny-store")
    r = veritrain("run", str(ROOT / "examples" / "tiny.yaml"), "--store", str(store))
    assert r.returncode == 0, r.stderr[-3000:]
    uri = r.stdout.strip().splitlines()[-1]
    return store, uri.rsplit("/", 1)[-1], uri


@pytest.fixture(scope="session")
def unproven_run(tmp_path_factory, tiny_spec) -> tuple[Path, str]:
    """Another run of the tiny spec (run id "other-run"), trained in-process and never proven
    (finalize_every 0): seconds, where a proven run takes minutes. Returns (store folder, run id).
    Its key is in the session's key folder, so tests can sign ledger entries for it."""
    from pipeline.store import LocalStore
    from pipeline.train import open_trainer, train

    store = tmp_path_factory.mktemp("unproven-store")
    spec = tiny_spec.model_copy(update={"finalize_every": 0})
    train(open_trainer(spec, LocalStore(store), "other-run"))
    return store, "other-run"
