"""The scale-out path on Prefect's own engine (docs/OPERATIONS.md): a real `prefect server`, a
process work pool and worker, and a deployment of the training flow run through them."""

from __future__ import annotations

import functools
import json
import sys

import yaml
from conftest import PREFECT, ROOT, in_env, process_worker, veritrain


def test_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    env = prefect_server
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    spec["finalize_every"] = 0  # no proving here: this test is about orchestration
    store = tmp_path / "store"

    run = functools.partial(in_env, env)

    r = run(PREFECT, "work-pool", "create", "train", "--type", "process")
    assert r.returncode == 0, r.stdout + r.stderr
    deploy = (
        "from prefect import flow\n"
        f"flow.from_source(source={str(ROOT)!r},\n"
        "                 entrypoint='veritrain/flows/training.py:train_flow')"
        ".deploy(name='tiny', work_pool_name='train')\n"
    )
    r = run(sys.executable, "-c", deploy)
    assert r.returncode == 0, r.stdout + r.stderr
    with process_worker(env, "train", tmp_path / "worker.log"):
        trigger = (
            "import json, sys\n"
            "from prefect.deployments import run_deployment\n"
            "fr = run_deployment('veritrain-train/tiny', timeout=600,\n"
            "                    parameters=json.loads(sys.argv[1]))\n"
            "print(fr.state.type.value)\n"
        )
        params = json.dumps({"spec": spec, "store": str(store), "run_id": "deployed"})
        r = run(sys.executable, "-c", trigger, params, timeout=700)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip().splitlines()[-1] == "COMPLETED", (
            r.stdout + (tmp_path / "worker.log").read_text()[-3000:]
        )
    # The worker's flow run left a run that verifies (committed epochs; nothing proven here).
    r = veritrain("verify", f"{store}/runs/deployed", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in json.loads(r.stdout)["epochs"]] == ["committed", "committed"]
