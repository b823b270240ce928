"""Whole runs against real S3 servers on loopback: the CLI on an Object Lock bucket (moto), and a
run whose S3 server (s3s-fs) is killed mid-run and brought back."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml
from conftest import ROOT
from s3servers import moto_s3, s3s_fs_own, set_s3_env  # noqa: F401 - fixtures

SPEC = {
    "model": {"kind": "mlp", "hidden": [32]},
    "dataset": {"kind": "synthetic", "samples": 4000, "features": 16, "classes": 4, "seed": 5},
    "optimizer": {"kind": "sgd", "momentum": 0.9},
    "seed": 1,
    "epochs": 2,
    "batch_size": 8,
    "state_every": 50,
    "checkpoint_every": 100,
    "finalize_every": 0,
}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "veritrain.flows.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_run_and_verify_on_an_object_lock_bucket(moto_s3, monkeypatch, tmp_path):  # noqa: F811
    set_s3_env(monkeypatch, moto_s3.endpoint)
    bucket = moto_s3.new_bucket(object_lock=True)
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text()) | {"finalize_every": 0}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    r = _cli("run", str(tmp_path / "spec.yaml"), "--store", f"s3://{bucket}/team", "--run-id", "s3")
    assert r.returncode == 0, r.stderr[-3000:]
    uri = r.stdout.strip().splitlines()[-1]
    assert uri == f"s3://{bucket}/team/runs/s3"
    r = _cli("verify", uri, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads(r.stdout)["epochs"]) == 2
    head = moto_s3.client().head_object(Bucket=bucket, Key="team/runs/s3/records/epoch-000000.bin")
    assert head["ObjectLockMode"] == "COMPLIANCE"


def _runner(spec_path, store_uri):
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "crash_runner.py"),
            str(spec_path),
            store_uri,
            "kill",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_server_killed_mid_run_then_resume(s3s_fs_own, monkeypatch, tmp_path):  # noqa: F811
    server = s3s_fs_own
    set_s3_env(monkeypatch, server.endpoint)
    bucket = server.new_bucket()
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    # Reference: the same spec, uninterrupted, on a local folder.
    ref = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "crash_runner.py"),
            str(spec_path),
            str(tmp_path / "local"),
            "kill",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    proc = _runner(spec_path, f"s3://{bucket}")
    ckpts = server.root / bucket / "runs" / "kill" / "checkpoints"
    deadline = time.monotonic() + 300
    while len(list(ckpts.glob("step-*.safetensors"))) < 3:  # genesis + two mid-epoch checkpoints
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.kill()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0 and "StorageError" in err and f"s3://{bucket}" in err, err
    server.start()
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "crash_runner.py"),
            str(spec_path),
            f"s3://{bucket}",
            "kill",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    client = server.client()
    for e in range(2):
        key = f"runs/kill/records/epoch-{e:06d}.bin"
        remote = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert remote == (tmp_path / "local" / key).read_bytes()
    r = _cli("verify", f"s3://{bucket}/runs/kill", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
