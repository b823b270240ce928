from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.spec import RunSpec, load_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _keys(tmp_path_factory):
    """Run keys go to a per-session folder, never the user's (subprocesses inherit it)."""
    os.environ["VERITRAIN_KEYS"] = str(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def tiny_spec() -> RunSpec:
    return load_spec(ROOT / "examples" / "tiny.yaml")
