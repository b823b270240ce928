"""The installable package: the wheel holds one top-level package, `veritrain`, with every file of
the folders it links (pipeline, prover, flows, bench, examples), and an installed veritrain runs
`demo`, `schema` and its benchmarks outside the checkout."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from veritrain.flows.commands.tools import BENCHES

ROOT = Path(__file__).resolve().parent.parent
LINKED = ("pipeline", "prover", "flows", "bench", "examples")


def test_the_wheel_holds_veritrain_only_and_every_file_of_its_folders(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "veritrain"
    }
    assert "veritrain=veritrain.flows.cli:main" in scripts.splitlines()
    tracked = subprocess.run(
        ["git", "ls-files", *LINKED], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    expected = {f"veritrain/{f}" for f in tracked} | {
        "veritrain/__init__.py",
        "veritrain/prover/_native.abi3.so",
    }
    packaged = {n for n in names if n.startswith("veritrain/")}
    assert expected - packaged == set(), "tracked files the wheel lacks (pyproject's include)"
    assert packaged - expected == set(), "files in the wheel that are not tracked"


@pytest.mark.proving
def test_the_installed_wheel_runs_demo_outside_the_checkout(installed, demo):
    """The wheel alone in a venv of its own (tests/conftest.py's `installed`), its processes
    started in an empty folder with no PYTHONPATH: the checkout is nowhere on their path. Its
    `demo` is the suite's shared proven run (conftest's `demo`)."""
    probe = (
        "import importlib.util, json, veritrain.flows.cli, veritrain.pipeline.verify.verifier\n"
        "import veritrain.prover\n"
        "print(json.dumps({'file': veritrain.__file__, 'top': [n for n in "
        "('pipeline', 'prover', 'flows', 'bench') if importlib.util.find_spec(n)]}))"
    )
    r = installed.run(installed.python, "-c", probe)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["top"] == [], "the checkout's top-level packages are importable"
    assert Path(found["file"]).is_relative_to(installed.venv), found["file"]

    r = installed.run(installed.veritrain, "schema", "spec")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((ROOT / "docs/schemas/spec.schema.json").read_text())
    # `veritrain bench` runs each as `python -m veritrain.bench.NAME`; they find the examples too.
    probe = (
        "import importlib, sys, veritrain\n"
        "for name in sys.argv[1:]: importlib.import_module(f'veritrain.bench.{name}')\n"
        "for spec in ('tiny.yaml', 'digits-mlp.yaml', 'policy.yaml', 'tiny-lm.yaml',\n"
        "             'tiny_lm.py', 'corpus/glob.py', 'regression.yaml', 'regressor.py'):\n"
        "    assert veritrain.example(spec).is_file(), spec\n"
    )
    r = installed.run(installed.python, "-c", probe, *BENCHES)
    assert r.returncode == 0, r.stderr[-3000:]

    store, r = demo
    lines = r.stdout.strip().splitlines()
    assert lines[-2].startswith("receipt for epoch 1 verified against image id "), r.stdout
    assert lines[-1].startswith(f"{store}/runs/"), r.stdout
    # Above them, the journal of epoch 1's receipt.
    journal = json.loads("\n".join(lines[:-2]))
    assert journal["epoch"] == 1 and journal["guarantee_names"], journal
