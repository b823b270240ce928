"""Peak memory of one prove-pool worker by segment size.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.segment_memory_bench \
        [--example examples/digits-mlp.yaml] [--po2 14 16 17 18]

The spec's first epoch is trained once and executed into segments of 2^po2 cycles for each size
(pipeline/prove/parts.py). A fresh process per size then does what a worker does with the largest
segment: prove it and lift it (`prove_segment`), and joins two lifted segments where the epoch
has two; it reports its own peak resident memory (ru_maxrss) and seconds. The baseline is the
same fresh-process measurement for risc0's default segment size (2^20; a digits epoch is one
2^18 segment then), and each line prints the ratio of peak memory to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from veritrain import example
from veritrain.pipeline.prove import parts
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

RUN_ID = "bench-memory"


def _worker(root: str, po2: int | None) -> dict:
    """In a fresh process: prove and lift the largest segment (and join two, if there are)."""
    store = LocalStore(root)
    ex = parts.load_execution(store, RUN_ID, 0, po2)
    t0 = time.perf_counter()
    parts.prove_segment(store, RUN_ID, 0, po2, 0)
    prove_s = time.perf_counter() - t0
    join_s = None
    if len(ex.segments) >= 2:
        parts.prove_segment(store, RUN_ID, 0, po2, 1)
        t0 = time.perf_counter()
        parts.join(store, RUN_ID, 0, po2, 0, 1, 2)
        join_s = round(time.perf_counter() - t0, 1)
    return {
        "segment_prove_and_lift_s": round(prove_s, 1),
        "join_s": join_s,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def measure(trained: Path, tmp: Path, po2: int | None) -> dict:
    root = tmp / f"po2-{po2 or 'default'}"
    shutil.copytree(trained, root)
    ex = parts.execute(LocalStore(root), RUN_ID, 0, po2)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        row = pool.submit(_worker, str(root), po2).result()
    shutil.rmtree(root)
    return {
        "po2": po2 or "risc0 default (20)",
        "segments": len(ex.segments),
        "total_cycles": ex.total_cycles,
    } | row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=str(example("digits-mlp.yaml")))
    ap.add_argument("--po2", type=int, nargs="+", default=[14, 16, 17, 18])
    args = ap.parse_args()
    for p in args.po2:
        parts.check_segment_po2(p, "--po2")
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    spec = load_spec(args.example).model_copy(update={"epochs": 1, "finalize_every": 0})
    with tempfile.TemporaryDirectory() as tmp:
        trained = Path(tmp) / "trained"
        train(open_trainer(spec, LocalStore(trained), RUN_ID))
        base = measure(trained, Path(tmp), None)
        print(json.dumps(base), flush=True)
        for p in args.po2:
            row = measure(trained, Path(tmp), p)
            row["peak_rss_vs_default"] = round(row["peak_rss_mib"] / base["peak_rss_mib"], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
