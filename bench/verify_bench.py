"""Receipt bytes and verify time against lineage length, on a really proven run.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.verify_bench [--epochs 50] [--short 10] \
        [--store DIR]

The tiny spec (examples/tiny.yaml: 3 steps an epoch) is trained for ``--epochs`` epochs and every
epoch is proven here, in order, with succinct receipts (each resolves its predecessor's claim).
Printed, one JSON line each:

1. receipt bytes and the verify time of the receipt alone at epochs 0, ``--short`` and the last:
   flat, since a stored receipt is one succinct proof with its lineage resolved (protocol 1's
   composite receipts grew by about 245 KB per epoch);
2. ``verify`` of the whole run against ``verify`` of its first ``--short`` epochs (a copy of the
   store whose ledger ends after epoch ``short - 1``'s receipt, as a crash there would leave it):
   the ratio of times should be about the ratio of epochs (it was quadratic with composite
   receipts);
3. proving time per epoch, against training time of the same run (the baseline).

Proving 50 epochs takes about an hour on 2 cores. ``--store DIR`` keeps the proven run in DIR;
when DIR already holds it, the bench proves only the epochs still without a receipt and then
measures (line 3 is then left out): prove once at low priority, interrupted or not, and measure
on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from veritrain import example, prover
from veritrain.pipeline.prove.finalize import finalize_epoch
from veritrain.pipeline.run.ledger import load_or_create_key
from veritrain.pipeline.run.manifest import Manifest, open_ledger, receipt_entries
from veritrain.pipeline.run.spec import RunSpec, load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run

TINY = example("tiny.yaml")
RUN_ID = "bench-verify"


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def proven_run(
    root: Path, spec: RunSpec, run_id: str = RUN_ID
) -> tuple[LocalStore, float | None, float | None]:
    """Trains ``spec`` here unless ``root`` holds the run already, then proves in order every epoch
    that has no receipt yet: (store, train s, prove s), the times None for work found done."""
    spec = spec.model_copy(update={"finalize_every": 0})
    store = LocalStore(root)
    train_s = None
    if not (root / "runs" / run_id).is_dir():
        t0 = time.perf_counter()
        train(open_trainer(spec, store, run_id))
        train_s = time.perf_counter() - t0
    manifest = Manifest.load(store, run_id)
    key = load_or_create_key(run_id)
    t0 = time.perf_counter()
    _, entries = open_ledger(store, manifest)
    done = len(receipt_entries(entries))
    for epoch in range(done, spec.epochs):
        ledger, entries = open_ledger(store, manifest)
        finalize_epoch(store, manifest, ledger, entries, key, epoch)
        print(f"proved epoch {epoch + 1}/{spec.epochs}", file=sys.stderr, flush=True)
    prove_s = time.perf_counter() - t0 if done == 0 else None
    return store, train_s, prove_s


def truncated_copy(src: Path, dst: Path, epochs: int) -> LocalStore:
    """A copy of the run whose ledger ends with epoch ``epochs - 1``'s receipt entry."""
    shutil.copytree(src, dst)
    store = LocalStore(dst)
    manifest = Manifest.load(store, RUN_ID)
    _, entries = open_ledger(store, manifest)
    cut = receipt_entries(entries)[epochs - 1].seq
    for path in (dst / "runs" / RUN_ID / "ledger").iterdir():
        if int(path.stem) > cut:
            path.unlink()
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--store", type=Path, help="keep the proven run here; reuse it if present")
    args = ap.parse_args()
    if not 0 < args.short < args.epochs:
        raise SystemExit("need 0 < --short < --epochs")
    if args.store is not None:
        os.environ.setdefault("VERITRAIN_KEYS", str(args.store.resolve()) + ".keys")
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        long_root = args.store if args.store is not None else root / "long"
        spec = load_spec(TINY).model_copy(update={"epochs": args.epochs})
        store, train_s, prove_s = proven_run(long_root, spec)
        manifest = Manifest.load(store, RUN_ID)
        _, entries = open_ledger(store, manifest)
        receipts = receipt_entries(entries)
        for epoch in (0, args.short, args.epochs - 1):
            data = store.read(receipts[epoch].body.receipt)
            seconds = _median_seconds(lambda d=data: prover.verify_receipt(d, manifest.image_id), 5)
            print(
                json.dumps(
                    {
                        "epoch": epoch,
                        "lineage": epoch + 1,
                        "kind": prover.receipt_kind(data),
                        "receipt_bytes": len(data),
                        "verify_receipt_s": round(seconds, 4),
                    }
                )
            )
        if len(receipts) != args.epochs:
            raise SystemExit(f"{long_root}: holds {len(receipts)} proven epochs, not --epochs")
        short = truncated_copy(long_root, root / "short", args.short)
        long_s = _median_seconds(lambda: verify_run(store, RUN_ID), 3)
        short_s = _median_seconds(lambda: verify_run(short, RUN_ID), 3)
        assert verify_run(store, RUN_ID).ok and verify_run(short, RUN_ID).ok
        print(
            json.dumps(
                {
                    "verify_run_s": {args.epochs: round(long_s, 3), args.short: round(short_s, 3)},
                    "ratio": round(long_s / short_s, 2),
                    "epochs_ratio": round(args.epochs / args.short, 2),
                }
            )
        )
        if train_s is None or prove_s is None:
            return
        print(
            json.dumps(
                {
                    "train_s": round(train_s, 2),
                    "prove_s": round(prove_s, 1),
                    "prove_per_epoch_s": round(prove_s / args.epochs, 2),
                    "prove_over_train": round(prove_s / train_s, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
