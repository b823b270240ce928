"""Guest cycles per step and per sample, prove time, peak memory, receipt size and verify time.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.prover_bench [--steps 8 64 512] \
        [--batch 8] [--no-prove] [--example examples/digits-mlp.yaml]

Each epoch is real training of a tiny MLP. Cycle costs are slopes, which remove the fixed cost
(decoding the claims, the sampler's key, the commit):

- per step: the slope over epochs of --steps steps at batch size 1, minus one sample's cost. It is
  what the guest spends on a record: reading it, its encoding, place and chain, the batch digest's
  fixed part, the schedule, the record hash and its Merkle node.
- per sample: the slope over batch size at a fixed number of steps (--batch against 1), i.e. the
  sampler check's share that grows with the batch: drawing the permutation and hashing the index.

The goal is at most 1,500 cycles per step, the per-sample cost reported beside it; the
per-step line prints the ratio to the goal. ``--example SPEC`` also trains that spec's first epoch
and executes and proves it: the prove time per epoch of the examples.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import tempfile
import time

from veritrain import prover
from veritrain.pipeline.run.manifest import epoch_entries, load_epoch_records
from veritrain.pipeline.run.spec import load_spec, parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

GOAL_CYCLES_PER_STEP = 1500


def epoch_input_for(steps: int, batch: int, root: str) -> bytes:
    spec = parse_spec(
        {
            "model": {"kind": "mlp", "hidden": [8]},
            "dataset": {"kind": "synthetic", "samples": steps * batch, "features": 8, "classes": 3},
            "batch_size": batch,
            "epochs": 1,
            "state_every": 1_000_000,
            "checkpoint_every": 1_000_000,
        }
    )
    return first_epoch_input(spec, root, f"bench-{steps}x{batch}")


def first_epoch_input(spec, root: str, run_id: str) -> bytes:
    """Trains the spec's first epoch into a store under ``root``; the guest input for it."""
    t = open_trainer(spec, LocalStore(root), run_id)
    train(t)
    entry = epoch_entries(t.entries)[0]
    return prover.epoch_input(entry.body.claim, None, load_epoch_records(t.store, entry))


def example_epoch(path: str, root: str) -> dict:
    """Trains the first epoch of a spec file and executes and proves it."""
    spec = load_spec(path).model_copy(update={"epochs": 1, "finalize_every": 0})
    inp = first_epoch_input(spec, root, "bench-example")
    ex = prover.execute(inp)
    r = prover.prove_epoch(inp)
    assert r.stats is not None  # proven here, so measured
    return {
        "example": path,
        "steps": ex.claim.step_count,
        "batch": spec.batch_size,
        "user_cycles": ex.stats.user_cycles,
        "paging_cycles": ex.stats.paging_cycles,
        "total_cycles": ex.stats.total_cycles,
        "prove_s": round(r.stats.seconds, 1),
        "receipt_bytes": len(r.receipt),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 64, 512])
    ap.add_argument("--batch", type=int, default=8, help="batch size for the per-sample slope")
    ap.add_argument("--no-prove", action="store_true")
    ap.add_argument("--example", metavar="SPEC", help="also prove this spec's first epoch")
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    steps = sorted(args.steps)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for n in steps:
            inp = epoch_input_for(n, 1, root)
            ex = prover.execute(inp)
            row = {
                "steps": n,
                "batch": 1,
                "user_cycles": ex.stats.user_cycles,
                "paging_cycles": ex.stats.paging_cycles,
                "total_cycles": ex.stats.total_cycles,
                "segments": ex.stats.segments,
                "execute_s": round(ex.stats.seconds, 3),
            }
            if not args.no_prove:
                r = prover.prove_epoch(inp)
                assert r.stats is not None  # proven here, so measured
                t0 = time.perf_counter()
                prover.verify_receipt(r.receipt, prover.image_id())
                row |= {
                    "prove_s": round(r.stats.seconds, 1),
                    "receipt_bytes": len(r.receipt),
                    "verify_s": round(time.perf_counter() - t0, 3),
                    "peak_rss_mib_so_far": round(peak_rss_mib()),
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
        n = steps[-2] if len(steps) > 1 else steps[0]
        wide = prover.execute(epoch_input_for(n, args.batch, root)).stats.user_cycles
        narrow = next(r["user_cycles"] for r in rows if r["steps"] == n)
        per_sample = (wide - narrow) / (n * (args.batch - 1))
        print(json.dumps({"steps": n, "batch": args.batch, "user_cycles": wide}), flush=True)
        if args.example:
            print(json.dumps(example_epoch(args.example, root)), flush=True)

    print(f"per sample (batch {args.batch} against 1, {n} steps): {per_sample:.0f} user cycles")
    for a, b in itertools.pairwise(rows):
        slope = (b["user_cycles"] - a["user_cycles"]) / (b["steps"] - a["steps"])
        per_step = slope - per_sample
        print(
            f"per step ({a['steps']}->{b['steps']} steps): {per_step:.0f} user cycles "
            f"(goal <= {GOAL_CYCLES_PER_STEP}: {per_step / GOAL_CYCLES_PER_STEP:.2f} of it); "
            f"{slope:.0f} with its one sample"
        )


if __name__ == "__main__":
    main()
