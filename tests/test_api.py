"""The Python API (README "Python API"): ``veritrain.run`` trains a spec given as a file, a
RunSpec or a mapping, as ``veritrain run`` does, and ``veritrain.verify`` returns the document
``veritrain verify --json`` prints. Importing veritrain imports neither torch nor Prefect."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import ROOT

import veritrain
from veritrain.flows.cli import main
from veritrain.pipeline.errors import SpecError, UsageError
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.train.preflight import preflight
from veritrain.pipeline.verify.policy import Policy

SPEC = {
    "model": {"kind": "mlp", "hidden": [8]},
    "dataset": {"kind": "synthetic", "samples": 32, "features": 8, "classes": 3, "seed": 2},
    "epochs": 1,
    "batch_size": 8,
    "finalize_every": 0,
    "challenge_window": 0,
}


def _python(code: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_import_veritrain_is_light(tmp_path):
    r = _python(
        """
        import sys, veritrain
        assert callable(veritrain.run) and callable(veritrain.verify)
        print(sorted(m for m in ("torch", "prefect", "numpy", "sklearn") if m in sys.modules))
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_verify_returns_what_verify_json_prints(unproven_run, capsys):
    store, run_id = unproven_run
    uri = f"{store}/runs/{run_id}"
    assert main(["verify", uri, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert veritrain.verify(uri) == printed and printed["ok"]
    assert printed["code"]["veritrain"]  # the run's code identity travels with it

    # A policy the run falls short of (never proven), given each way the API takes one.
    strict = {"required_status": "proven"}
    policy_file = store.parent / "strict-policy.yaml"
    policy_file.write_text(yaml.safe_dump(strict))
    for policy in (strict, Policy(required_status="proven"), policy_file, str(policy_file)):
        doc = veritrain.verify(uri, policy=policy)
        assert not doc["ok"] and doc["trust"]["required_status"] == "proven"
    assert main(["verify", uri, "--json", "--policy", str(policy_file)]) == 1
    assert json.loads(capsys.readouterr().out) == veritrain.verify(uri, policy=policy_file)

    assert [e["epoch"] for e in veritrain.verify(uri, epoch=1)["epochs"]] == [1]
    with pytest.raises(UsageError, match="policy: required_status"):
        veritrain.verify(uri, policy={"required_status": "someday"})


def test_preflight_takes_a_mapping_or_a_runspec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = {**SPEC, "dataset": {"kind": "file", "path": "data.npz"}}
    with pytest.raises(SpecError, match=re.escape(f"spec: {tmp_path}/data.npz: cannot read")):
        preflight(doc, str(tmp_path / "store"))
    with pytest.raises(SpecError, match="spec: epochs"):
        preflight({**SPEC, "epochs": 0}, str(tmp_path / "store"))
    plan = preflight(parse_spec(SPEC), str(tmp_path / "store"), "from-runspec")
    assert plan.run_id == "from-runspec" and plan.spec == parse_spec(SPEC)


def test_run_trains_and_verify_verifies(tmp_path):
    """A script's use: run a mapping, then verify the URI it returns. Its model is a module in
    the script's folder, not on PYTHONPATH: the flow's tasks import it from the spec's
    import_path."""
    (tmp_path / "vt_api_model.py").write_text(
        "import torch\n\n"
        "def make(*, in_features, classes):\n"
        "    return torch.nn.Linear(in_features, classes)\n"
    )
    spec = {**SPEC, "model": {"kind": "import", "factory": "vt_api_model:make"}}
    r = _python(
        f"""
        import json, veritrain
        uri = veritrain.run({spec!r}, store="store", run_id="api-run")
        print(json.dumps({{"uri": uri, "report": veritrain.verify(uri)}}))
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["uri"] == f"{tmp_path}/store/runs/api-run"
    assert out["report"]["ok"] and [e["status"] for e in out["report"]["epochs"]] == ["committed"]
    (module,) = out["report"]["code"]["modules"]
    assert (module["key"], module["source"]) == ("model.factory", "vt_api_model.py")
