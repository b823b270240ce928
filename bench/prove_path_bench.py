"""One epoch's proof through veritrain's path against risc0's own prove of the same guest and
input, in the same process: the ratio is what our way of proving costs (or saves) over risc0's.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.prove_path_bench \
        [--example examples/digits-mlp.yaml] [--epoch 0] [--po2 N] [--risc0-first]

The spec's epochs up to --epoch are trained into a local store; epochs before --epoch are proven
first, untimed, since an epoch's receipt resolves its predecessor's. Then, timed:

- ours: the epoch's proof in parts through the store (pipeline/prove/parts.py): build the guest's
  input from the store, execute and store the segments, prove and lift each, join them, resolve
  the previous epoch's receipt and verify; what a prove pool's workers do, one after another
  (`veritrain run` without a pool makes the same prover calls without storing the parts);
- risc0: its default prover's ``prove_with_opts`` with succinct options, on the same input (and
  the previous epoch's receipt as a proven assumption): execution, segment proofs, lifts, joins
  and the resolve in one call, no parts and no store (``prover.prove_with_risc0``).

Both receipts are verified against the guest's image id and must carry the epoch's committed
claim. Prints one JSON line (seconds, cycles, segments, the load average before and after) and
the ratio ours / risc0. Ours runs first unless --risc0-first: on a shared machine the load can
drift between the two, so compare runs in both orders.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from veritrain import example, prover
from veritrain.pipeline.prove import parts
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import receipt_key
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

RUN_ID = "bench-prove-path"


def ours(store: Store, epoch: int, po2: int | None) -> tuple[float, parts.ExecutionRecord]:
    started = time.perf_counter()
    ex = parts.execute(store, RUN_ID, epoch, po2)
    for k in range(len(ex.segments)):
        parts.prove_segment(store, RUN_ID, epoch, po2, k)
    for level in parts.join_tree(len(ex.segments)):
        for first, mid, end in level:
            parts.join(store, RUN_ID, epoch, po2, first, mid, end)
    if parts.finish(store, RUN_ID, epoch, po2) is None:
        raise RuntimeError(f"epoch {epoch} had a receipt before it was timed")
    return time.perf_counter() - started, ex


def risc0(store: Store, epoch: int, po2: int | None) -> float:
    manifest = Manifest.load(store, RUN_ID)
    _, entries = open_ledger(store, manifest)
    epochs = epoch_entries(entries)
    inp = guest_input(store, manifest, epochs, epoch, entries)
    prev = store.read(receipt_key(RUN_ID, epoch - 1)) if epoch else None
    started = time.perf_counter()
    r = prover.prove_with_risc0(inp, prev, po2=po2)
    seconds = time.perf_counter() - started
    if r.claim != epochs[epoch].body.claim:
        raise RuntimeError(f"risc0's receipt of epoch {epoch} is not of its committed claim")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=str(example("digits-mlp.yaml")))
    ap.add_argument("--epoch", type=int, default=0, help="the epoch to prove (default 0)")
    ap.add_argument("--po2", type=int, help="segment size, log2 of cycles (risc0's default)")
    ap.add_argument("--risc0-first", action="store_true")
    args = ap.parse_args()
    parts.check_segment_po2(args.po2, "--po2")
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    spec = load_spec(args.example)
    if not 0 <= args.epoch < spec.epochs:
        ap.error(f"--epoch: {args.example} has epochs 0..{spec.epochs - 1}")
    spec = spec.model_copy(update={"epochs": args.epoch + 1, "finalize_every": 0})
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root)
        train(open_trainer(spec, store, RUN_ID))
        for e in range(args.epoch):
            ours(store, e, args.po2)
        load_before = os.getloadavg()[0]
        if args.risc0_first:
            risc0_s = risc0(store, args.epoch, args.po2)
            ours_s, ex = ours(store, args.epoch, args.po2)
        else:
            ours_s, ex = ours(store, args.epoch, args.po2)
            risc0_s = risc0(store, args.epoch, args.po2)
    row = {
        "example": args.example,
        "epoch": args.epoch,
        "po2": args.po2 or "risc0 default (20)",
        "segments": len(ex.segments),
        "total_cycles": ex.total_cycles,
        "user_cycles": ex.user_cycles,
        "first": "risc0" if args.risc0_first else "ours",
        "ours_s": round(ours_s, 1),
        "risc0_s": round(risc0_s, 1),
        "ratio": round(ours_s / risc0_s, 3),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), flush=True)
    print(
        f"epoch {args.epoch} of {args.example}: ours {ours_s:.1f} s / risc0's prove "
        f"{risc0_s:.1f} s = {ours_s / risc0_s:.3f}"
    )


if __name__ == "__main__":
    main()
