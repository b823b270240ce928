"""Commitment overhead on a transformer step, as ratios against a plain torch loop measured in
the same process.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.lm_bench [--width 384] [--batch 8]

The model is examples/tiny_lm.py's causal transformer at ``--width`` (6 layers; 384 gives 10.8M
parameters), trained by AdamW on examples/corpus/ in windows of 128 + 1 bytes (238 of them),
one epoch in batches of ``--batch`` (8: 30 steps). veritrain's training loop (a record per step
with the parameters' digest, hashed on the spare core while the next step runs; a full state
digest every ``state_every`` steps; the epoch's checkpoint at its end) against the same plain
torch loop (same model, batches, learning rates, loss, threads), at two cadences:

- default: ``state_every`` and ``checkpoint_every`` at their defaults (100);
- every step: ``state_every: 1``, the parameters and the optimizer state digested on every step.

The epoch-end checkpoint (always written: parameters and AdamW's two moments) is in the
committed time, once in 30 steps where a real run writes one per 100 steps or per epoch, so the
default cadence's figure overstates its overhead. The plain loop runs before and after; the
faster of the two is the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.losses import Batches, build_loss
from veritrain.pipeline.train.trainer import open_trainer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONTEXT = 128


def _spec(width: int, batch: int, state_every: int | None):
    doc = {
        "task": "language_model",
        "model": {
            "kind": "import",
            "factory": "tiny_lm:make",
            "kwargs": {"width": width, "layers": 6, "heads": 6},
        },
        "dataset": {"kind": "text", "path": "corpus", "context": CONTEXT},
        "optimizer": {"kind": "import", "class": "torch.optim.AdamW"},
        "schedule": {"kind": "constant", "base_lr": 0.0003},
        "batch_size": batch,
        "epochs": 1,
        "finalize_every": 0,
    }
    if state_every is not None:
        doc["state_every"] = state_every
    return parse_spec(doc, base=EXAMPLES)


def plain_loop(t, steps: int) -> float:
    """The baseline: the same model, batches, learning rates and loss, nothing committed."""
    spec = t.spec
    samples, loss_fn = Batches(t.dataset), build_loss(spec)
    model, optimizer = st.torch_objects(t.model, t.optimizer)
    t0 = time.perf_counter()
    for k in range(steps):
        for g in optimizer.param_groups:
            g["lr"] = spec.schedule.lr_at(k)
        x, y = samples[batch_indices(spec, len(t.dataset), k)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - t0


def overhead(width: int, batch: int) -> dict:
    default = _spec(width, batch, None)
    every = _spec(width, batch, 1)
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root)
        first = open_trainer(default, store, "plain")
        steps = first.spe
        model, _ = st.torch_objects(first.model, first.optimizer)
        params = sum(p.numel() for p in model.parameters())
        plain = plain_loop(first, steps)
        timed = {}
        for name, spec in (("default", default), ("every_step", every)):
            t = open_trainer(spec, store, name)
            t0 = time.perf_counter()
            train(t)
            timed[name] = time.perf_counter() - t0
        plain2 = plain_loop(open_trainer(default, store, "plain2"), steps)
    baseline = min(plain, plain2)
    return {
        "params": params,
        "steps": steps,
        "batch": batch,
        "context": CONTEXT,
        "threads": default.threads,
        "plain_s": round(baseline, 3),
        "plain_runs_s": [round(plain, 3), round(plain2, 3)],
        "veritrain_default_s": round(timed["default"], 3),
        "veritrain_every_step_s": round(timed["every_step"], 3),
        "overhead_ratio_default": round(timed["default"] / baseline, 4),
        "overhead_ratio_every_step": round(timed["every_step"] / baseline, 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    torch.manual_seed(0)
    print(json.dumps({"lm_overhead": overhead(args.width, args.batch)}), flush=True)


if __name__ == "__main__":
    main()
