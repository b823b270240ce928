"""Challenge cost: bisection against a naive linear replay, and the numbers behind the
choice of ``checkpoint_every``, measured in the same run.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.challenge_bench [--sizes 100 1000 10000]

1. Probes: for n = 100, 1,000 and 10,000 steps of a tiny model, a dishonest trainer that trains on
   other samples than the sampler's from step d on (a deviation that persists, the case bisection
   is complete for; see pipeline/challenge/search.py) at d = 10%, 50% and 90% of the run. The naive
   linear replay re-executes from checkpoint 0 up to the first wrong step, comparing every record
   (each step is a probe); bisection probes ceil(log2(n + 1)) times at most, each replaying at most
   ``checkpoint_every`` steps from the nearest checkpoint. Both must find d.
2. Cost model: for the tiny model and a ~1M-parameter MLP, the checkpoint size P, the time to
   write one checkpoint W, and the time to replay one step T (forward, backward, optimizer step,
   param digest, state digest where committed); then, for a run of n steps and a few values of
   ``checkpoint_every`` k: storage P * n / k, the share of training spent writing checkpoints,
   the bisection's worst replay ceil(log2(n + 1)) * k * T, a fraud proof check's worst replay
   k * T and the complete challenge's n * T.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from veritrain.pipeline.challenge.replay import Replay
from veritrain.pipeline.challenge.search import bisect_range, replay_range
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

TINY: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [8]},
    "dataset": {"kind": "synthetic", "samples": 800, "features": 4, "classes": 2},
}
# The model of bench/commit_bench.py: 64 -> 1024 -> 960 -> 10, about 1.06M parameters.
MLP_1M = {
    "model": {"kind": "mlp", "hidden": [1024, 960]},
    "dataset": {"kind": "synthetic", "samples": 2560, "features": 64, "classes": 10},
}
PROBE_K = 10  # checkpoint_every of the probe runs


class FromStepOn:
    """The dishonest trainer: from step ``at`` on, trains on the next samples over."""

    def __init__(self, at: int, n: int):
        self.at, self.n = at, n

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return (idx + 1) % self.n if step >= self.at else idx

    def after_update(self, step, model, optimizer) -> None:
        pass


def _spec(base: dict, steps: int, batch: int, k: int) -> dict:
    spe = base["dataset"]["samples"] // batch
    return {
        **base,
        "optimizer": {"kind": "sgd", "momentum": 0.9},
        "batch_size": batch,
        "epochs": max(1, steps // spe),
        "state_every": k,
        "checkpoint_every": k,
        "finalize_every": 0,
    }


def probes(n: int, frac: float, root: Path) -> dict:
    spec = parse_spec(_spec(TINY, n, 8, PROBE_K))
    d = int(frac * n) + 3  # off the checkpoint grid
    store = LocalStore(root / f"n{n}-{frac}")
    t = open_trainer(spec, store, "bench")
    t.tamper = FromStepOn(d, TINY["dataset"]["samples"])
    t0 = time.perf_counter()
    train(t)
    trained = time.perf_counter() - t0
    r = Replay(store, "bench")
    t0 = time.perf_counter()
    lin = replay_range(r, 0, n)
    lin_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bis = bisect_range(r, 0, n)
    bis_s = time.perf_counter() - t0
    assert lin.finding and lin.finding.step == d, "linear replay missed the dishonest step"
    assert bis.finding and bis.finding.step == d, "bisection missed the dishonest step"
    assert bis.probes <= bis.probe_bound <= math.ceil(math.log2(n)) + 1
    return {
        "n": n,
        "wrong_step": d,
        "checkpoint_every": PROBE_K,
        "linear_probes": lin.probes,
        "linear_replayed": lin.replayed_steps,
        "bisect_probes": bis.probes,
        "probe_bound": bis.probe_bound,
        "ceil_log2_n": math.ceil(math.log2(n)),
        "bisect_replayed": bis.replayed_steps,
        "probe_ratio": round(lin.probes / bis.probes, 1),
        "replay_ratio": round(lin.replayed_steps / bis.replayed_steps, 1),
        "linear_s": round(lin_s, 3),
        "bisect_s": round(bis_s, 3),
        "train_s": round(trained, 1),
    }


def cost_model(name: str, base: dict, batch: int, steps: int, root: Path) -> dict:
    spec = parse_spec(_spec(base, steps, batch, 10))
    store = LocalStore(root / f"cost-{name}")
    t = open_trainer(spec, store, "cost")
    model, optimizer = st.torch_objects(t.model, t.optimizer)
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    train(t)
    train_step = (time.perf_counter() - t0) / (spec.epochs * t.spe)
    tensors = st.state_tensors(model, optimizer, 0, t.manifest.digest)
    t0 = time.perf_counter()
    for i in range(3):
        LocalStore(root / f"w-{name}").create(f"ck{i}", st.checkpoint_bytes(tensors))
    write = (time.perf_counter() - t0) / 3
    size = len(st.checkpoint_bytes(tensors))
    r = Replay(store, "cost")
    total = spec.epochs * r.spe
    t0 = time.perf_counter()
    res = replay_range(r, 0, total)
    step_s = (time.perf_counter() - t0) / res.replayed_steps
    assert res.finding is None
    n = 10_000
    rows = []
    for k in (10, 100, 1000):
        rows.append(
            {
                "checkpoint_every": k,
                "storage_mb_per_10k_steps": round(size * n / k / 1e6, 1),
                "checkpoint_write_share": round(write / (k * train_step), 4),
                "bisect_worst_replay_s": round(math.ceil(math.log2(n + 1)) * k * step_s, 2),
                "proof_check_worst_s": round(k * step_s, 3),
            }
        )
    return {
        "model": name,
        "params": params,
        "checkpoint_bytes": size,
        "checkpoint_write_s": round(write, 4),
        "train_step_s": round(train_step, 5),
        "replay_step_s": round(step_s, 5),
        "full_challenge_10k_steps_s": round(n * step_s, 1),
        "by_checkpoint_every": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--positions", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for n in args.sizes:
            for frac in args.positions:
                print(json.dumps({"bisection": probes(n, frac, root)}), flush=True)
        print(json.dumps({"cost_model": cost_model("tiny", TINY, 8, 200, root)}), flush=True)
        print(json.dumps({"cost_model": cost_model("mlp-1m", MLP_1M, 256, 40, root)}), flush=True)


if __name__ == "__main__":
    main()
