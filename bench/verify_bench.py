"""Verify time for a 20-epoch run, receipt verify time and receipt bytes against lineage length
(issue 4's figures).

    ~/.cache/veritrain/venv/bin/python -m bench.verify_bench [--epochs 20] [--run RUN_URI]

What is measured, and what is not:

1. The tiny spec (examples/tiny.yaml: 48 samples, 3 steps per epoch, a checkpoint every 2 steps)
   trained for ``--epochs`` epochs WITHOUT proving (proving 20 epochs would take about 12 minutes
   on this machine's 2 cores). ``verify`` of that run runs every check but the receipts: manifest,
   ledger chain and signatures, claims, records under the guest's rules, every checkpoint's state
   digest. Baseline: training the same run, measured in the same process.
2. Receipts of a real proven run (``--run``; otherwise the tiny spec is trained and proven here
   for 2 epochs, about 70 seconds): bytes and verify time of each receipt. Receipts are composite,
   so epoch e's receipt carries epoch e-1's: bytes and verify time grow with the lineage. The
   figures for ``--epochs`` epochs are a LINEAR EXTRAPOLATION from the measured receipts.
3. From 1 and 2, an estimate of verifying a proven ``--epochs``-epoch run: the non-receipt checks
   plus every epoch's receipt (what ``veritrain verify`` does), and, for comparison, the newest
   receipt only (which speaks for the whole lineage).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import prover
from pipeline.finalize import finalize_epoch
from pipeline.ledger import load_or_create_key
from pipeline.run import Manifest, open_ledger, receipt_entries
from pipeline.spec import load_spec
from pipeline.store import LocalStore, open_store, split_run_uri
from pipeline.train import open_trainer, train
from pipeline.verify import verify_run

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny.yaml"


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def unproven_run(root: str, epochs: int) -> dict:
    spec = load_spec(TINY).model_copy(update={"epochs": epochs, "finalize_every": 0})
    store = LocalStore(root)
    t0 = time.perf_counter()
    train(open_trainer(spec, store, "bench-verify"))
    train_s = time.perf_counter() - t0
    report = verify_run(store, "bench-verify")
    assert report.ok and len(report.epochs) == epochs, report.to_json()
    verify_s = _median_seconds(lambda: verify_run(store, "bench-verify"), 3)
    return {
        "what": f"verify without receipts, {epochs} epochs of the tiny spec",
        "epochs": epochs,
        "steps": epochs * Manifest.load(store, "bench-verify").steps_per_epoch,
        "train_s": round(train_s, 3),
        "verify_s": round(verify_s, 3),
        "verify_per_epoch_ms": round(1000 * verify_s / epochs, 2),
        "verify_over_train": round(verify_s / train_s, 3),
    }


def proven_run(root: str) -> tuple:
    """(store, run id) of the tiny spec trained and proven for its 2 epochs, in-process."""
    store = LocalStore(root)
    t = open_trainer(load_spec(TINY), store, "bench-receipts")
    train(t)
    manifest = Manifest.load(store, "bench-receipts")
    key = load_or_create_key("bench-receipts")
    for epoch in range(t.spec.epochs):
        ledger, entries = open_ledger(store, manifest)
        finalize_epoch(store, manifest, ledger, entries, key, epoch)
    return store, "bench-receipts"


def receipts(store, run_id: str) -> list[dict]:
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    rows = []
    for epoch, entry in sorted(receipt_entries(entries).items()):
        data = store.read(entry.body["receipt"])
        seconds = _median_seconds(lambda d=data: prover.verify_receipt(d, manifest.image_id), 9)
        rows.append({"what": "receipt (measured)", "epoch": epoch, "lineage": epoch + 1,
                     "receipt_bytes": len(data), "verify_s": round(seconds, 4)})
    return rows


def extrapolate(rows: list[dict], epochs: int, checks_s: float) -> dict:
    """Linear in lineage length through the first and last measured receipts."""
    first, last = rows[0], rows[-1]
    span = last["lineage"] - first["lineage"]
    if span == 0:
        raise SystemExit("need receipts of at least two epochs to see growth with lineage")
    per_bytes = (last["receipt_bytes"] - first["receipt_bytes"]) / span
    per_s = (last["verify_s"] - first["verify_s"]) / span

    def at(n: int) -> tuple[float, float]:
        return (first["receipt_bytes"] + per_bytes * (n - first["lineage"]),
                first["verify_s"] + per_s * (n - first["lineage"]))

    every = [at(n) for n in range(1, epochs + 1)]
    return {
        "what": f"EXTRAPOLATED to {epochs} proven epochs (linear in lineage length)",
        "receipt_bytes_growth_per_epoch_of_lineage": round(per_bytes),
        "receipt_verify_s_growth_per_epoch_of_lineage": round(per_s, 4),
        "newest_receipt_bytes": round(every[-1][0]),
        "all_receipts_bytes": round(sum(b for b, _ in every)),
        "verify_all_receipts_s": round(sum(s for _, s in every), 3),
        "verify_newest_receipt_s": round(every[-1][1], 4),
        "verify_run_s": round(checks_s + sum(s for _, s in every), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--run", help="a proven run's URI to take receipts from (default: prove one)")
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as root:
        checks = unproven_run(os.path.join(root, "unproven"), args.epochs)
        print(json.dumps(checks), flush=True)
        if args.run:
            store_uri, run_id = split_run_uri(args.run)
            store = open_store(store_uri)
        else:
            store, run_id = proven_run(os.path.join(root, "proven"))
        rows = receipts(store, run_id)
        for row in rows:
            print(json.dumps(row), flush=True)
        est = extrapolate(rows, args.epochs, checks["verify_s"])
        print(json.dumps(est), flush=True)
    print(f"verify without receipts, {args.epochs} epochs: {checks['verify_s']:.3f} s "
          f"({checks['verify_per_epoch_ms']} ms per epoch, {checks['verify_over_train']}x the "
          "training time of the same run)")
    print(f"receipt bytes grow by {est['receipt_bytes_growth_per_epoch_of_lineage']} per epoch of "
          f"lineage (measured {rows[0]['receipt_bytes']} -> {rows[-1]['receipt_bytes']}); "
          f"extrapolated newest receipt at {args.epochs} epochs: {est['newest_receipt_bytes']} "
          f"bytes, all {args.epochs}: {est['all_receipts_bytes']} bytes")
    print(f"extrapolated verify of a proven {args.epochs}-epoch run: {est['verify_run_s']} s "
          f"(every receipt: {est['verify_all_receipts_s']} s; the newest alone would take "
          f"{est['verify_newest_receipt_s']} s)")


if __name__ == "__main__":
    main()
