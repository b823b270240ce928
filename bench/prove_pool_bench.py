"""Wall time to prove epochs split into segments, with 1 worker against 2.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.prove_pool_bench \
        [--example examples/digits-mlp.yaml] [--po2 16] [--epochs 1] [--workers 1 2] [--threads N]

The spec's first ``--epochs`` epochs are trained once, copied into one store per measurement,
executed there into segments of 2^po2 cycles (pipeline/prove/parts.py; ``--po2 0`` is risc0's
default, 2^20, one segment per digits epoch), and then proven by N worker processes that take
every epoch's segment proofs, and then each level of joins, from a shared queue; the parent
finishes the epochs in order (resolve, verify). The wall time from the first segment proof to
the last stored receipt is reported per N, with the ratio to 1 worker in the same run. Workers
are processes on this machine, as a prove pool's process workers would be; risc0 proves each
segment on every core unless ``--threads`` limits each worker (RAYON_NUM_THREADS), so on a
machine with few cores the ratio shows what parallel segments buy over risc0's own parallelism,
and with ``--threads 1`` how the work scales with workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from veritrain import example
from veritrain.pipeline.prove import parts
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

RUN_ID = "bench-pool"


def _segment(root: str, epoch: int, po2: int | None, k: int) -> None:
    parts.prove_segment(LocalStore(root), RUN_ID, epoch, po2, k)


def _join(root: str, epoch: int, po2: int | None, first: int, mid: int, end: int) -> None:
    parts.join(LocalStore(root), RUN_ID, epoch, po2, first, mid, end)


def prove_with(root: str, po2: int | None, workers: int, threads: int | None, epochs: int) -> dict:
    store = LocalStore(root)
    t0 = time.perf_counter()
    executions = [parts.execute(store, RUN_ID, e, po2) for e in range(epochs)]
    executed = time.perf_counter() - t0
    if threads:
        os.environ["RAYON_NUM_THREADS"] = str(threads)  # inherited by the worker processes
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        # Warm the workers (imports, the extension) outside the measurement.
        wait([pool.submit(time.sleep, 0) for _ in range(workers)])
        t0 = time.perf_counter()
        # Every epoch's segments, then every epoch's joins level by level: nothing here waits
        # for another epoch, as on a prove pool.
        for f in [
            pool.submit(_segment, root, e, po2, k)
            for e, ex in enumerate(executions)
            for k in range(len(ex.segments))
        ]:
            f.result()
        trees = [parts.join_tree(len(ex.segments)) for ex in executions]
        for depth in range(max(map(len, trees))):
            level = [(e, j) for e, t in enumerate(trees) if depth < len(t) for j in t[depth]]
            for f in [pool.submit(_join, root, e, po2, *j) for e, j in level]:
                f.result()
    os.environ.pop("RAYON_NUM_THREADS", None)
    for e in range(epochs):  # the resolves: each needs the previous epoch's receipt
        parts.finish(store, RUN_ID, e, po2)
    wall = time.perf_counter() - t0
    return {
        "workers": workers,
        "threads_per_worker": threads or "all",
        "po2": po2 or "risc0 default (20)",
        "epochs": epochs,
        "segments": sum(len(ex.segments) for ex in executions),
        "total_cycles": sum(ex.total_cycles for ex in executions),
        "execute_s": round(executed, 2),
        "prove_wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=str(example("digits-mlp.yaml")))
    ap.add_argument(
        "--po2", type=int, default=16, help="segment size, log2 of cycles (0: risc0's default)"
    )
    ap.add_argument("--epochs", type=int, default=1, help="prove this many epochs together")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, help="prover threads per worker (default: all cores)")
    args = ap.parse_args()
    po2 = parts.check_segment_po2(args.po2 or None, "--po2")
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    spec = load_spec(args.example).model_copy(update={"epochs": args.epochs, "finalize_every": 0})
    with tempfile.TemporaryDirectory() as tmp:
        trained = Path(tmp) / "trained"
        t0 = time.perf_counter()
        train(open_trainer(spec, LocalStore(trained), RUN_ID))
        train_s = time.perf_counter() - t0  # the baseline: training (and committing) the epochs
        print(json.dumps({"epochs": args.epochs, "train_s": round(train_s, 2)}), flush=True)
        rows = []
        for n in args.workers:
            root = Path(tmp) / f"workers-{n}"
            shutil.copytree(trained, root)
            rows.append(prove_with(str(root), po2, n, args.threads, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["prove_wall_s"]
    for r in rows:
        print(
            f"{r['workers']} workers: proving takes {r['prove_wall_s'] / train_s:.0f}x the "
            f"training time of the same epochs ({train_s:.1f} s)"
        )
    for r in rows[1:]:
        print(
            f"{r['epochs']} epochs, {r['segments']} segments of 2^{args.po2 or 20} cycles at most: "
            f"{r['workers']} workers prove them in {r['prove_wall_s']} s, "
            f"{rows[0]['workers']} in {base} s: "
            f"{base / r['prove_wall_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
