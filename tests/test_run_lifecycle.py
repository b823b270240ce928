"""`veritrain run` as a process: stopped by SIGTERM or SIGINT in training and in proving (exit 143
or 130, the Prefect server it started gone, a rerun resumes and the run verifies), on a machine
whose cores are all busy, when the Prefect server cannot start, and when its S3 store goes away."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import NO_RECEIPT_CACHE, ROOT, veritrain
from s3servers import s3s_fs_own, set_s3_env  # noqa: F401 - fixture

from veritrain.pipeline.prove.estimate import RATES_FILE

# Long enough to be caught mid-training (3 epochs of 500 steps, a checkpoint every 100; caught
# after the third of 15, seconds before the end), quick enough to finish when resumed; nothing
# proven.
TRAIN_SPEC = {
    "model": {"kind": "mlp", "hidden": [32]},
    "dataset": {"kind": "synthetic", "samples": 4000, "features": 16, "classes": 4, "seed": 5},
    "optimizer": {"kind": "sgd", "momentum": 0.9},
    "seed": 1,
    "epochs": 3,
    "batch_size": 8,
    "state_every": 50,
    "checkpoint_every": 100,
    "finalize_every": 0,
    "challenge_window": 0,
}
# Generous bounds for a process to stop or a run to get somewhere; never compared to a speed.
STOP_TIMEOUT = 120
PROGRESS_TIMEOUT = 600


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "veritrain.flows.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _children(pid: int) -> set[int]:
    """Every live process whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; the parent pid follows its ")".
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent (init, once the run has exited).
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return False


def _wait_for(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"the run exited ({proc.returncode}) before {what}: {err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {PROGRESS_TIMEOUT} s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, signum: int) -> tuple[str, str, set[int]]:
    """Sends ``signum``; returns (stdout, stderr, the children the run had when signalled)."""
    children = _children(proc.pid)
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(
            f"still running {STOP_TIMEOUT} s after {signal.Signals(signum).name}: {err[-2000:]}"
        )
    return out, err, children


def _assert_stopped(
    err: str, code: int, expected: int, name: str, children: set[int], store: Path
) -> None:
    assert code == expected, (code, err[-3000:])
    assert err.strip().splitlines()[-1] == (
        f"veritrain: stopped by {name}; rerun the same command to resume"
    ), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert children, "the run had started no Prefect server"
    assert not [pid for pid in children if _alive(pid)], "a child outlived the run"
    assert not list(store.rglob(".tmp-*")), "a create was cut short"


def _ledger(store: Path, run_id: str) -> list[Path]:
    return sorted((store / "runs" / run_id / "ledger").glob("*.json"))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_mid_training_then_resume(tmp_path, signum, code):
    spec, store = tmp_path / "spec.yaml", tmp_path / "store"
    spec.write_text(yaml.safe_dump(TRAIN_SPEC))
    proc = _start("run", str(spec), "--store", str(store), "--run-id", "stop")
    ckpts = store / "runs" / "stop" / "checkpoints"
    # Genesis and two mid-epoch checkpoints: training is under way and has far to go.
    _wait_for(proc, lambda: len(list(ckpts.glob("step-*.safetensors"))) >= 3, "checkpoints")
    _out, err, children = _stop(proc, signum)
    _assert_stopped(err, proc.returncode, code, signal.Signals(signum).name, children, store)
    kept = {p.name: p.read_bytes() for p in _ledger(store, "stop")}
    assert kept and len(list(ckpts.glob("step-*.safetensors"))) < 3 * 500 // 100

    r = veritrain("run", str(spec), "--store", str(store), "--run-id", "stop")
    assert r.returncode == 0, r.stderr[-3000:]
    # Resumed: the entries written before the stop are still the first ones of the ledger.
    after = _ledger(store, "stop")
    assert {p.name: p.read_bytes() for p in after[: len(kept)]} == kept
    assert len(after) > len(kept)
    r = veritrain("verify", f"{store}/runs/stop")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.proving
def test_sigint_mid_proving_then_resume(tmp_path):
    """The proof runs inside the native extension for a minute or more; the run stops all the
    same. One epoch of the tiny spec on 16 samples (one step, a 2^16-cycle segment): its records
    are stored the moment before its proof starts."""
    spec, store = tmp_path / "tiny-1.yaml", tmp_path / "store"
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    tiny["dataset"]["samples"] = 16
    spec.write_text(yaml.safe_dump(tiny | {"epochs": 1}))
    # Proven here, not taken from the receipt cache: the proof is what the signal stops.
    proc = _start(
        "run", str(spec), "--store", str(store), "--run-id", "prove-stop", env=NO_RECEIPT_CACHE
    )
    run = store / "runs" / "prove-stop"
    # Epoch 0's records are stored; its epoch entry follows and its proof starts at once.
    _wait_for(proc, (run / "records" / "epoch-000000.bin").exists, "epoch 0's records")
    time.sleep(3)
    assert not list((run / "receipts").glob("*.receipt"))
    _out, err, children = _stop(proc, signal.SIGINT)
    _assert_stopped(err, proc.returncode, 130, "SIGINT", children, store)
    assert not list((run / "receipts").glob("*.receipt"))

    # Resumed, the epoch is proven here too (not from the receipt cache): its log says what it
    # will prove, then each part as it finishes.
    resumed = _start(
        "run",
        str(spec),
        "--store",
        str(store),
        "--run-id",
        "prove-stop",
        "--verify",
        env=NO_RECEIPT_CACHE,
    )
    out, err = resumed.communicate(timeout=1200)
    assert resumed.returncode == 0, err[-3000:]
    assert "run prove-stop: verified" in out
    assert len(list((run / "receipts").glob("*.receipt"))) == 1
    _assert_says_each_part(err, 0)


def _assert_says_each_part(err: str, epoch: int) -> None:
    """On stderr (the flow's log): before an epoch's first proof part, its cycles, segments and
    estimate; then a line per part with the time it took and what is left, then "proven". The
    parts' times are kept as this machine's rates for the next estimate."""
    plan = re.search(
        rf"epoch {epoch}: to prove [\d,]+ cycles \([\d,]+ user\) in (\d+) segments? "
        r"\(.*2\^\d+\), (\d+) joins?, (1 resolve|no resolve): about .+ cycles/s",
        err,
    )
    assert plan, err[-3000:]
    segments, joins = int(plan[1]), int(plan[2])
    assert plan[3] == ("1 resolve" if epoch else "no resolve")
    lines = [
        *(
            f"epoch {epoch}: segment {k}/{segments} proven and lifted in "
            for k in range(1, segments + 1)
        ),
        *(f"epoch {epoch}: join {i}/{joins} done in " for i in range(1, joins + 1)),
        *([f"epoch {epoch}: the previous epoch's receipt resolved in "] * min(epoch, 1)),
    ]
    for line in lines:
        assert plan.start() < err.find(line), (line, err[-3000:])
    assert err.find(f"epoch {epoch} proven: ") > max(err.find(line) for line in lines)
    kept = json.loads((Path(os.environ["VERITRAIN_STATE"]) / RATES_FILE).read_text())
    assert any(k.startswith("segment-") for k in kept), kept


@contextlib.contextmanager
def _busy_cores() -> Iterator[None]:
    """Every core of the machine spinning in a process of its own."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_run_with_every_core_busy(tmp_path):
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text()) | {"finalize_every": 0}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with _busy_cores():
        r = veritrain(
            "run", str(tmp_path / "spec.yaml"), "--store", str(tmp_path / "store"), timeout=1800
        )
    assert r.returncode == 0, r.stderr[-3000:]
    uri = r.stdout.strip().splitlines()[-1]
    r = veritrain("verify", uri)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prefect_server_that_does_not_start_in_time(tmp_path):
    """A wait that runs out (here: no wait at all) is one line naming the setting, exit 3."""
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text()) | {"finalize_every": 0}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = _start(
        "run",
        str(tmp_path / "spec.yaml"),
        "--store",
        str(tmp_path / "store"),
        env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"},
    )
    _out, err = proc.communicate(timeout=STOP_TIMEOUT * 5)
    assert proc.returncode == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("veritrain: the ephemeral Prefect API server did not start"), err
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in last
    assert "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_s3_outage_mid_run_is_one_line_without_traceback(s3s_fs_own, monkeypatch, tmp_path):  # noqa: F811
    server = s3s_fs_own
    set_s3_env(monkeypatch, server.endpoint)
    bucket = server.new_bucket()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TRAIN_SPEC))
    proc = _start("run", str(spec), "--store", f"s3://{bucket}", "--run-id", "outage")
    ckpts = server.root / bucket / "runs" / "outage" / "checkpoints"
    _wait_for(proc, lambda: len(list(ckpts.glob("step-*.safetensors"))) >= 3, "checkpoints")
    server.kill()
    _out, err = proc.communicate(timeout=PROGRESS_TIMEOUT)
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"veritrain: s3://{bucket}/runs/outage/"), err[-3000:]
    assert "cannot reach the S3 endpoint" in last
