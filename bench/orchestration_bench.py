"""S3 round trips per step and Prefect's overhead per task, in one process.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.orchestration_bench

1. Trains a spec on an S3 store (a moto server started here on loopback) and counts every HTTP
   request boto3 sends: requests per training step (records are batched per epoch, so it should be
   far below one).
2. Runs the same spec through the Prefect flow (ephemeral API) and directly through the library;
   Prefect's overhead per task = (flow time - direct time) / tasks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

SPEC: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [32]},
    "dataset": {"kind": "synthetic", "samples": 2048, "features": 16, "classes": 4},
    "batch_size": 16,
    "epochs": 3,
    "state_every": 32,
    "checkpoint_every": 64,
    "finalize_every": 0,
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_round_trips() -> dict:
    import boto3

    from veritrain.pipeline.run.spec import parse_spec
    from veritrain.pipeline.store.s3 import S3Store
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3").create_bucket(Bucket="bench")
        store = S3Store("s3://bench/runs-bench")
        calls = {"n": 0}
        store._s3.meta.events.register(
            "before-send.s3", lambda **_: calls.__setitem__("n", calls["n"] + 1)
        )
        spec = parse_spec(SPEC)
        t = open_trainer(spec, store, "s3bench")
        before = calls["n"]
        train(t)
        steps = spec.epochs * t.spe
        return {
            "steps": steps,
            "requests_open": before,
            "requests_training": calls["n"] - before,
            "requests_per_step": round((calls["n"] - before) / steps, 3),
        }
    finally:
        server.terminate()
        server.wait()


def prefect_overhead() -> dict:
    from veritrain.flows.training import train_flow
    from veritrain.pipeline.run.spec import parse_spec
    from veritrain.pipeline.store.local import LocalStore
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(open_trainer(parse_spec(SPEC), LocalStore(d), "direct"))
        direct = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_flow(SPEC, d, "flow")  # first call includes starting the ephemeral API
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_flow(SPEC, d, "flow2")
        flow = time.perf_counter() - t0
    tasks = 1 + SPEC["epochs"]  # commit-dataset + one train-epoch per epoch
    return {
        "direct_s": round(direct, 2),
        "flow_s": round(flow, 2),
        "first_flow_with_ephemeral_api_s": round(first, 2),
        "tasks": tasks,
        "overhead_per_task_s": round((flow - direct) / tasks, 3),
        "ratio": round(flow / direct, 3),
    }


def main() -> None:
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(json.dumps({"s3": s3_round_trips()}), flush=True)
    print(json.dumps({"prefect": prefect_overhead()}), flush=True)


if __name__ == "__main__":
    main()
