"""Guest cycles per step, prove time, peak memory, receipt size and verify time for epochs of
8, 64 and 512 steps (issue 2's first figures).

    ~/.cache/veritrain/venv/bin/python -m bench.prover_bench [--steps 8 64 512] [--no-prove]

Each epoch is real training of a tiny MLP (batch size 1, so steps = samples). Per-step cost is the
slope between two epoch sizes, which removes the fixed cost (decoding, sampler setup, commit).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import tempfile
import time

import prover
from pipeline.finalize import load_epoch_records
from pipeline.run import claim_of, epoch_entries
from pipeline.spec import parse_spec
from pipeline.store import LocalStore
from pipeline.train import open_trainer, train


def epoch_input_for(steps: int, root: str) -> bytes:
    spec = parse_spec(
        {
            "model": {"kind": "mlp", "hidden": [8]},
            "dataset": {"kind": "synthetic", "samples": steps, "features": 8, "classes": 3},
            "batch_size": 1,
            "epochs": 1,
            "state_every": 1_000_000,
            "checkpoint_every": 1_000_000,
        }
    )
    t = open_trainer(spec, LocalStore(root), f"bench-{steps}")
    train(t)
    entry = epoch_entries(t.entries)[0]
    return prover.epoch_input(claim_of(entry), None, load_epoch_records(t.store, entry))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 64, 512])
    ap.add_argument("--no-prove", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for n in sorted(args.steps):
            inp = epoch_input_for(n, root)
            ex = prover.execute(inp)
            row = {"steps": n, "user_cycles": ex.stats.user_cycles, "total_cycles": ex.stats.total_cycles,
                   "segments": ex.stats.segments, "execute_s": round(ex.stats.seconds, 3)}
            if not args.no_prove:
                r = prover.prove_epoch(inp)
                t0 = time.perf_counter()
                prover.verify_receipt(r.receipt, prover.image_id())
                row |= {"prove_s": round(r.stats.seconds, 1), "receipt_bytes": len(r.receipt),
                        "verify_s": round(time.perf_counter() - t0, 3),
                        "peak_rss_mib_so_far": round(peak_rss_mib())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for a, b in itertools.pairwise(rows):
        slope = (b["user_cycles"] - a["user_cycles"]) / (b["steps"] - a["steps"])
        print(f"user cycles per step ({a['steps']}->{b['steps']}): {slope:.0f} "
              "(includes the per-sample sampler cost: batch size 1 here)")


if __name__ == "__main__":
    main()
