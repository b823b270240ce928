"""Proving in parts on a Prefect prove pool (docs/OPERATIONS.md "The prove pool"): a real
`prefect server`, a `prove` process pool with two workers, a tiny epoch executed once, its
segments proven and joined by both workers, the receipt adopted by the trainer and the run
verified; and the refusals of segments joined out of order or finished without their
predecessor."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from conftest import PREFECT, ROOT, in_env, process_worker, running_prefect_server, veritrain

from veritrain import prover
from veritrain.pipeline.prove import parts
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, receipt_entries
from veritrain.pipeline.store.keys import (
    execution_key,
    execution_prefix,
    part_receipt_key,
    prover_note_key,
    proving_prefix,
    receipt_key,
)
from veritrain.pipeline.store.local import LocalStore
from veritrain.prover import ReceiptVerificationError, _native

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


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> Iterator[tuple[LocalStore, subprocess.CompletedProcess]]:
    """One epoch of the tiny spec on 16 samples (one step) proven by a `prove` process pool of
    two workers (`--limit 1` each) on a real Prefect server, in segments of 2^PO2 cycles: two
    segments or three (the guest's count), their lifts and joins. Yields (its store, the
    finished `veritrain run`) for the tests below, which share it."""
    home = tmp_path_factory.mktemp("pooled")
    store = home / "store"
    spec = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text()) | {"epochs": 1}
    spec["dataset"]["samples"] = 16
    (home / "pooled.yaml").write_text(yaml.safe_dump(spec))
    with running_prefect_server(home) as env:
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
        logs = {name: home / f"{name}.log" for name in ("worker-a", "worker-b")}
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
                str(home / "pooled.yaml"),
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
        yield LocalStore(store), r


@pytest.mark.proving
def test_two_workers_prove_the_segments_of_an_epoch(pooled):
    s, r = pooled
    store = s.root
    # The trainer's log says the epoch's plan, then each part as its worker stores it.
    # How many segments the epoch spans is the guest's (its paging as much as its work): two or
    # three of 2^16 cycles. The log names each part against that count.
    ex = parts.load_execution(s, "pooled", 0, PO2)
    n = len(ex.segments)
    assert n >= 2
    plan = r.stderr.find("epoch 0: to prove ")
    assert plan >= 0 and "by prove pool prove's workers" in r.stderr[plan:], r.stderr[-3000:]
    assert f" in {n} segments (" in r.stderr[plan:], r.stderr[-3000:]
    part = re.search(rf"epoch 0: segment 1/{n} proven and lifted by worker-[ab] in ", r.stderr)
    assert part and part.start() > plan, r.stderr[-3000:]
    assert f"epoch 0: join {n - 1}/{n - 1}" in r.stderr[plan:], r.stderr[-3000:]
    assert "resolved" not in r.stderr[plan:], r.stderr[-3000:]  # epoch 0 has no predecessor

    notes = [
        json.loads(s.read(prover_note_key(part_receipt_key(ex.prefix, k, k + 1))))
        for k in range(len(ex.segments))
    ]
    assert [n["segment"] for n in notes] == list(range(len(ex.segments)))
    assert s.exists(part_receipt_key(ex.prefix, 0, len(ex.segments)))
    # Both workers took a segment of the epoch.
    assert {n["prover"] for n in notes} == {"worker-a", "worker-b"}, notes

    # The trainer adopted the receipts the provers stored; the run verifies from the store.
    assert re.search(
        r"epoch 0 proven: its receipt \(\d+ bytes\), proven elsewhere and stored, verified and "
        r"adopted",
        pooled[1].stderr,
    ), pooled[1].stderr[-3000:]
    assert "'cycles': 0" not in pooled[1].stderr
    r = veritrain("verify", f"{store}/runs/pooled", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in json.loads(r.stdout)["epochs"]] == ["final"]

    # Every step is done: running it again proves nothing and changes nothing.
    before = {k: s.read(k) for k in s.list("runs/pooled")}
    assert parts.execute(s, "pooled", 0, PO2) == parts.load_execution(s, "pooled", 0, PO2)
    assert parts.prove_segment(s, "pooled", 0, PO2, 1) is False
    assert parts.finish(s, "pooled", 0, PO2) is None
    assert {k: s.read(k) for k in s.list("runs/pooled")} == before
    assert s.exists(receipt_key("pooled", 0)) and s.exists(execution_key("pooled", 0, PO2))


@pytest.mark.proving
def test_segments_join_in_order_and_resolve_only_with_their_predecessor(pooled, tiny_run):
    """Segments join only in order: the pooled epoch's first two lifted segments (the receipts the
    pool stored) are refused the other way round. An epoch after the first proves on its own
    (the tiny run's epoch 1, one segment, proven and lifted here) as a receipt conditional on its
    predecessor's claim: finishing it without resolving that assumption, or resolving it with a
    receipt of another claim (the pooled run's epoch 0), is refused; resolved with the tiny run's
    epoch-0 receipt it is that epoch's claim, verified. This resolve is made afresh in every
    session (the tiny run's own receipts may come from the receipt cache)."""
    s, _ = pooled
    ex = parts.load_execution(s, "pooled", 0, PO2)
    assert len(ex.segments) >= 2
    lifted = [s.read(part_receipt_key(ex.prefix, k, k + 1)) for k in range(2)]
    with pytest.raises(ReceiptVerificationError, match="not consecutive"):
        prover.join_receipts(lifted[1], lifted[0])

    store = LocalStore(tiny_run[0])
    manifest = Manifest.load(store, tiny_run[1])
    _, entries = open_ledger(store, manifest)
    claim = epoch_entries(entries)[1].body.claim
    execution = prover.execute_epoch(
        guest_input(store, manifest, epoch_entries(entries), 1, entries)
    )
    assert execution.claim == claim and len(execution.segments) == 1
    joined = prover.join_all([prover.prove_segment(execution.segments[0])])
    with pytest.raises(ReceiptVerificationError, match="assumption"):
        _native.finish(joined, claim.to_bytes(), claim.image_id, None)
    # The pooled run's epoch-0 receipt proves another run's claim: not this assumption.
    other_entries = open_ledger(s, Manifest.load(s, "pooled"))[1]
    other_receipt = s.read(receipt_entries(other_entries)[0].body.receipt)
    with pytest.raises(ReceiptVerificationError, match="not the one this epoch assumes"):
        prover.finish_epoch(joined, claim, other_receipt)
    prev = store.read(receipt_entries(entries)[0].body.receipt)
    done = prover.finish_epoch(joined, claim, prev)
    assert done.claim == claim
    assert prover.verify_receipt(done.receipt, manifest.image_id) == claim
    assert prover.receipt_kind(done.receipt) == "succinct"
