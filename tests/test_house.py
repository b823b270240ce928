"""The house rules: pipeline/ is grouped into wings by job, and a wing imports only the wings
below it (the order pipeline/__init__.py states); modules stay small enough to read; every module
is imported from its real file, not through veritrain/'s links."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipeline"
# Bottom up, as pipeline/__init__.py lists them; errors, extras and documents serve every wing.
WINGS = ["store", "run", "checkpoint", "data", "train", "prove", "challenge", "verify", "publish"]
SHARED = {"errors", "extras", "documents"}
MAX_LINES = 450


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, lazily inside functions too, as dotted names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _wing(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[:2] != ["veritrain", "pipeline"] or len(parts) < 3:
        return None
    return parts[2]


def test_pipeline_holds_only_wings_and_shared_modules():
    top = {p.stem for p in PIPELINE.glob("*.py")} - {"__init__"}
    assert top == SHARED
    assert {p.name for p in PIPELINE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        WINGS
    )
    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PIPELINE / wing / "__init__.py").read_text()))
        assert doc and "Imports:" in doc, f"pipeline/{wing}/__init__.py states its job and imports"


def test_no_wing_imports_a_wing_above_it():
    wrong = []
    for path in sorted(PIPELINE.rglob("*.py")):
        rel = path.relative_to(PIPELINE)
        here = rel.parts[0] if len(rel.parts) > 1 else None
        rank = WINGS.index(here) if here else -1  # shared modules sit below every wing
        for line, name in _imports(path):
            if name.split(".")[:2] == ["veritrain", "flows"] or name.split(".")[0] == "prefect":
                wrong.append(f"pipeline/{rel}:{line} imports {name} (pipeline never does)")
            there = _wing(name)
            if there in WINGS and WINGS.index(there) > rank:
                wrong.append(f"pipeline/{rel}:{line} ({here or 'shared'}) imports {name}")
    assert wrong == []


@pytest.mark.parametrize("folder", ["pipeline", "prover", "flows", "bench"])
def test_modules_stay_small(folder):
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert big == []


@pytest.mark.parametrize("name", ["pipeline", "prover", "flows", "bench"])
def test_a_folder_is_not_importable_under_its_bare_name(name):
    r = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode != 0
    assert f"import veritrain.{name}, not {name}" in r.stderr


def test_modules_are_imported_from_their_real_files():
    """Tracebacks, coverage and editors see the repository's files, never a path through a link."""
    code = (
        "import veritrain.pipeline.verify.verifier as m, veritrain.prover as p\n"
        "import veritrain.flows.cli as c, veritrain.pipeline as q\n"
        "for mod in (m, p, c, q):\n"
        "    print(mod.__file__)\n"
        "try:\n"
        "    m.verify_run(None, '')\n"
        "except Exception:\n"
        "    import traceback; traceback.print_exc()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, whichever the venv installed
    r = subprocess.run(
        [sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True
    )
    files = r.stdout.split()
    assert files == [
        str(ROOT / "pipeline/verify/verifier.py"),
        str(ROOT / "prover/__init__.py"),
        str(ROOT / "flows/cli.py"),
        str(ROOT / "pipeline/__init__.py"),
    ], r.stderr
    assert f'File "{ROOT}/pipeline/verify/verifier.py"' in r.stderr
    assert "/veritrain/pipeline/" not in r.stderr
