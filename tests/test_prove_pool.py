"""Proving in parts on a Prefect prove pool (docs/OPERATIONS.md "The prove pool"): a real
`prefect server`, a `prove` process pool with two workers, the tiny run's epochs executed once,
their segments proven and joined by both workers, the receipts adopted by the trainer and the run
verified."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import PREFECT, ROOT, in_env, process_worker, veritrain

from veritrain.pipeline.prove import parts
from veritrain.pipeline.store.keys import (
    execution_key,
    execution_prefix,
    part_receipt_key,
    prover_note_key,
    proving_prefix,
    receipt_key,
)
from veritrain.pipeline.store.local import LocalStore

# A tiny epoch spans 2 or 3 segments of 2^16 cycles (at 2^14 it spans 23 or 38, and at 2^15
# hundreds: from 2^15 on risc0 reserves 25,000 cycles of each segment for a single instruction).
PO2 = 16


def test_join_tree_covers_every_segment_once():
    for n in range(1, 12):
        levels = parts.join_tree(n)
        covered = {(k, k + 1) for k in range(n)}
        for level in levels:
            for first, mid, end in level:
                assert (first, mid) in covered and (mid, end) in covered
                covered -= {(first, mid), (mid, end)}
                covered.add((first, end))
        assert covered == {(0, n)}
        assert len(levels) == (n - 1).bit_length()


def test_part_keys_sort_by_epoch_and_name_their_segments():
    prefix = execution_prefix("r", 3, 16, "0123456789abcdef")
    assert prefix == "runs/r/proving/epoch-000003/po2-16/execution-0123456789abcdef"
    assert part_receipt_key(prefix, 2, 3) == f"{prefix}/segment-0002.receipt"
    assert part_receipt_key(prefix, 0, 4) == f"{prefix}/join-0000-0004.receipt"
    assert execution_prefix("r", 3, None, "0123456789abcdef").startswith(
        "runs/r/proving/epoch-000003/po2-default/"
    )
    assert proving_prefix("r", 9, 16) < proving_prefix("r", 10, 16)


def test_a_segment_size_risc0_cannot_lift_is_a_usage_error(tmp_path):
    r = veritrain(
        "run", str(ROOT / "examples" / "tiny.yaml"), "--store", str(tmp_path), "--segment-po2", "13"
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "veritrain: --segment-po2: 13 is not a segment size risc0 can lift (log2 of cycles, 14..22)"
    ]
    assert not any(tmp_path.iterdir())


def test_a_prove_pool_needs_a_prefect_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "veritrain.flows.cli",
            "run",
            str(ROOT / "examples" / "tiny.yaml"),
            "--store",
            str(tmp_path / "store"),
            "--prove-pool",
            "prove",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        (
            "veritrain: --prove-pool prove: PREFECT_API_URL is not set; point it at the Prefect "
            "server the pool's workers poll"
        )
    ]
    assert not (tmp_path / "store").exists()


def test_a_pool_without_the_deployments_fails_naming_them(prefect_server, tmp_path):
    store = tmp_path / "store"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "veritrain.flows.cli",
            "run",
            str(ROOT / "examples" / "tiny.yaml"),
            "--store",
            str(store),
            "--run-id",
            "no-pool",
            "--prove-pool",
            "nowhere",
            "--segment-po2",
            str(PO2),
        ],
        env=prefect_server,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 3, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "veritrain: --prove-pool nowhere: the Prefect server has no deployment "
        "veritrain-prove-segment/nowhere; create it with `veritrain deploy-prove --pool nowhere`"
    )
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    # The epoch was executed and its plan said before the pool was asked for its first part.
    assert re.search(
        r"epoch 0: to prove [\d,]+ cycles .* in [2-9] segments .* by prove pool nowhere's workers",
        r.stderr,
    ), r.stderr[-3000:]
    # Nothing written is lost: both epochs are committed, the first executed (its segments wait
    # in the store for a pool), and nothing was proven.
    s = LocalStore(store)
    assert len(parts.load_execution(s, "no-pool", 0, PO2).segments) >= 2
    assert not any(k.endswith(".receipt") for k in s.list("runs/no-pool"))
    r = veritrain("verify", f"{store}/runs/no-pool", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in json.loads(r.stdout)["epochs"]] == ["committed", "committed"]


@pytest.mark.proving
def test_two_workers_prove_the_segments_of_an_epoch(prefect_server, tmp_path):
    env = prefect_server
    store = tmp_path / "store"

    run = functools.partial(in_env, env)

    r = run(PREFECT, "work-pool", "create", "prove", "--type", "process")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(sys.executable, "-m", "veritrain.flows.cli", "deploy-prove", "--pool", "prove")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-3:] == [
        "veritrain-prove-segment/prove",
        "veritrain-prove-join/prove",
        "veritrain-prove/prove",
    ]
    logs = {name: tmp_path / f"{name}.log" for name in ("worker-a", "worker-b")}
    with (
        process_worker(
            {**env, parts.PROVER_ENV: "worker-a"},
            "prove",
            logs["worker-a"],
            "--name",
            "worker-a",
            "--limit",
            "1",
        ),
        process_worker(
            {**env, parts.PROVER_ENV: "worker-b"},
            "prove",
            logs["worker-b"],
            "--name",
            "worker-b",
            "--limit",
            "1",
        ),
    ):
        r = run(
            sys.executable,
            "-m",
            "veritrain.flows.cli",
            "run",
            str(ROOT / "examples" / "tiny.yaml"),
            "--store",
            str(store),
            "--run-id",
            "pooled",
            "--prove-pool",
            "prove",
            "--segment-po2",
            str(PO2),
            timeout=3600,
        )
    assert r.returncode == 0, r.stderr[-3000:] + "".join(
        p.read_text()[-2000:] for p in logs.values()
    )

    # The trainer's log says each epoch's plan, then each part as its worker stores it.
    for epoch in (0, 1):
        plan = r.stderr.find(f"epoch {epoch}: to prove ")
        assert plan >= 0 and "by prove pool prove's workers" in r.stderr[plan:], r.stderr[-3000:]
        part = re.search(
            rf"epoch {epoch}: segment 1/\d+ proven and lifted by worker-[ab] in ", r.stderr
        )
        assert part and part.start() > plan, r.stderr[-3000:]
        assert f"epoch {epoch}: join 1/" in r.stderr[plan:]
    assert "epoch 1: the previous epoch's receipt resolved in " in r.stderr

    s = LocalStore(store)
    provers = {}
    for epoch in (0, 1):
        ex = parts.load_execution(s, "pooled", epoch, PO2)
        assert len(ex.segments) >= 2
        notes = [
            json.loads(s.read(prover_note_key(part_receipt_key(ex.prefix, k, k + 1))))
            for k in range(len(ex.segments))
        ]
        assert [n["segment"] for n in notes] == list(range(len(ex.segments)))
        provers[epoch] = {n["prover"] for n in notes}
        assert s.exists(part_receipt_key(ex.prefix, 0, len(ex.segments)))
    # Both workers took segments of the same epoch.
    assert {"worker-a", "worker-b"} in provers.values(), provers

    # The trainer adopted the receipts the provers stored; the run verifies from the store.
    r = veritrain("verify", f"{store}/runs/pooled", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in json.loads(r.stdout)["epochs"]] == ["final", "final"]

    # Every step is done: running it again proves nothing and changes nothing.
    before = {k: s.read(k) for k in s.list("runs/pooled")}
    assert parts.execute(s, "pooled", 1, PO2) == parts.load_execution(s, "pooled", 1, PO2)
    assert parts.prove_segment(s, "pooled", 1, PO2, 0) is False
    assert parts.finish(s, "pooled", 1, PO2) is None
    assert {k: s.read(k) for k in s.list("runs/pooled")} == before
    assert s.exists(receipt_key("pooled", 1)) and s.exists(execution_key("pooled", 1, PO2))
