"""The scale-out path on Prefect's own engine (docs/OPERATIONS.md): a real `prefect server`, a
process work pool and worker, and a deployment of the training flow run through them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, veritrain

PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    env = prefect_server
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    spec["finalize_every"] = 0  # no proving here: this test is about orchestration
    store = tmp_path / "store"

    def run(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )

    r = run(PREFECT, "work-pool", "create", "train", "--type", "process")
    assert r.returncode == 0, r.stdout + r.stderr
    deploy = (
        "from prefect import flow\n"
        f"flow.from_source(source={str(ROOT)!r}, entrypoint='flows/training.py:train_flow')"
        ".deploy(name='tiny', work_pool_name='train')\n"
    )
    r = run(sys.executable, "-c", deploy)
    assert r.returncode == 0, r.stdout + r.stderr
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "train", "--type", "process"],
        env=env, cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT,
    )
    try:
        trigger = (
            "import json, sys\n"
            "from prefect.deployments import run_deployment\n"
            "fr = run_deployment('veritrain-train/tiny', timeout=600, parameters=json.loads(sys.argv[1]))\n"
            "print(fr.state.type.value)\n"
        )
        params = json.dumps({"spec": spec, "store": str(store), "run_id": "deployed"})
        r = run(sys.executable, "-c", trigger, params, timeout=700)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip().splitlines()[-1] == "COMPLETED", (
            r.stdout + (tmp_path / "worker.log").read_text()[-3000:]
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()
    # The worker's flow run left a run that verifies (committed epochs; nothing proven here).
    r = veritrain("verify", f"{store}/runs/deployed", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in json.loads(r.stdout)["epochs"]] == ["committed", "committed"]
