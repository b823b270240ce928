"""Wall time to prove one epoch split into segments, with 1 worker against 2.

    ~/.cache/veritrain/venv/bin/python -m bench.prove_pool_bench \
        [--example examples/digits-mlp.yaml] [--po2 16] [--workers 1 2] [--threads N]

The spec's first epoch is trained once, copied into one store per measurement, executed there
into segments of 2^po2 cycles (pipeline/proving.py), and then proven by N worker processes that
take the segment proofs, and then each level of joins, from a shared queue; the parent finishes
the epoch (resolve, verify). The wall time from the first segment proof to the stored receipt is
reported per N, with the ratio to 1 worker in the same run. Workers are processes on this
machine, as a prove pool's process workers would be; risc0 proves each segment on every core
unless ``--threads`` limits each worker (RAYON_NUM_THREADS), so on a machine with few cores the
ratio shows what parallel segments buy over risc0's own parallelism, and with ``--threads 1`` how
the work scales with workers.
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

from pipeline import proving
from pipeline.spec import load_spec
from pipeline.store import LocalStore
from pipeline.train import open_trainer, train
from veritrain import example

RUN_ID = "bench-pool"


def _segment(root: str, po2: int, k: int) -> None:
    proving.prove_segment(LocalStore(root), RUN_ID, 0, po2, k)


def _join(root: str, po2: int, first: int, mid: int, end: int) -> None:
    proving.join(LocalStore(root), RUN_ID, 0, po2, first, mid, end)


def prove_with(root: str, po2: int, workers: int, threads: int | None) -> dict:
    store = LocalStore(root)
    t0 = time.perf_counter()
    ex = proving.execute(store, RUN_ID, 0, po2)
    executed = time.perf_counter() - t0
    if threads:
        os.environ["RAYON_NUM_THREADS"] = str(threads)  # inherited by the worker processes
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        # Warm the workers (imports, the extension) outside the measurement.
        wait([pool.submit(time.sleep, 0) for _ in range(workers)])
        t0 = time.perf_counter()
        for f in [pool.submit(_segment, root, po2, k) for k in range(len(ex.segments))]:
            f.result()
        for level in proving.join_tree(len(ex.segments)):
            for f in [pool.submit(_join, root, po2, *j) for j in level]:
                f.result()
    os.environ.pop("RAYON_NUM_THREADS", None)
    proving.finish(store, RUN_ID, 0, po2)
    wall = time.perf_counter() - t0
    return {
        "workers": workers,
        "threads_per_worker": threads or "all",
        "po2": po2,
        "segments": len(ex.segments),
        "total_cycles": ex.total_cycles,
        "execute_s": round(executed, 2),
        "prove_wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=str(example("digits-mlp.yaml")))
    ap.add_argument("--po2", type=int, default=16, help="segment size, log2 of cycles")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, help="prover threads per worker (default: all cores)")
    args = ap.parse_args()
    proving.check_segment_po2(args.po2, "--po2")
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    spec = load_spec(args.example).model_copy(update={"epochs": 1, "finalize_every": 0})
    with tempfile.TemporaryDirectory() as tmp:
        trained = Path(tmp) / "trained"
        train(open_trainer(spec, LocalStore(trained), RUN_ID))
        rows = []
        for n in args.workers:
            root = Path(tmp) / f"workers-{n}"
            shutil.copytree(trained, root)
            rows.append(prove_with(str(root), args.po2, n, args.threads))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["prove_wall_s"]
    for r in rows[1:]:
        print(
            f"{r['segments']} segments of 2^{args.po2} cycles: {r['workers']} workers prove the "
            f"epoch in {r['prove_wall_s']} s, {rows[0]['workers']} in {base} s: "
            f"{base / r['prove_wall_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
