"""Canonical arithmetic against torch, as ratios measured in the same process.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.canonical_bench [--steps 200]

1. Speed: the canonical MLP step (veritrain.prover.canonical_step, the core's fixed-point
   mlp_step, on the digits example's model) against the plain torch step of the same model on
   the same batches, one thread each. Steps only: no records, digests or checkpoints.
2. Accuracy: the digits example's spec (examples/digits-mlp.yaml: MLP 64-64-32-10, SGD with
   momentum 0.9 and weight decay 1e-4, step decay, batch 64) trained 3 epochs in each mode with the
   sampler's batches, then the share of the 1,797 digits each model classifies right (the
   canonical model's forward in f64 over its fixed-point weights); and torch once more from the
   canonical initialization's values, which separates the initialization's share of a gap
   from the arithmetic's. With ``--seeds N`` the two modes are also trained from seeds 0..N-1
   (each mode draws its own initialization and batches from the seed, as a run would) and the
   mean accuracies compared: both initializations are U(-1/sqrt(in), 1/sqrt(in)), so one seed's
   gap is mostly which draw each mode got.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from veritrain.pipeline.data.datasets import load_dataset
from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.train.canonical import CanonicalState
from veritrain.pipeline.train.networks import build_model, build_optimizer
from veritrain.prover import steps_per_epoch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits-canonical.yaml"


def _batches(spec, n: int, epochs: int):
    for step in range(epochs * steps_per_epoch(n, spec.batch_size)):
        yield step, batch_indices(spec, n, step)


def _torch_run(
    spec, data, steps: int | None, epochs: int, init: CanonicalState | None = None
) -> tuple[float, torch.nn.Module]:
    torch.manual_seed(spec.seed)
    model = build_model(spec, data)
    if init is not None:  # start from the canonical initialization's values
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.from_numpy(init.arrays[f"param/{name}"] / 2.0**24))
    opt = build_optimizer(spec, model.parameters())
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    schedule = spec.schedule_for(len(data))
    started, done = time.perf_counter(), 0
    for step, idx in _batches(spec, len(data), epochs):
        if steps is not None and done == steps:
            break
        for g in opt.param_groups:
            g["lr"] = schedule.lr_at(step)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        done += 1
    return time.perf_counter() - started, model


def _canonical_run(spec, data, steps: int | None, epochs: int) -> tuple[float, CanonicalState]:
    state = CanonicalState(spec, data, bytes(32))
    rows = data.canonical_rows()
    started, done = time.perf_counter(), 0
    for step, idx in _batches(spec, len(data), epochs):
        if steps is not None and done == steps:
            break
        state.train(step, np.ascontiguousarray(rows[idx]))
        done += 1
    return time.perf_counter() - started, state


def _torch_accuracy(model: torch.nn.Module, data) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x)).argmax(1).numpy()
    return float((pred == data.y).mean())


def _canonical_accuracy(state: CanonicalState, data) -> float:
    a = data.x.reshape(len(data), -1).astype(np.float64)
    layers = len(state.dims) - 1
    for k in range(layers):
        w = state.arrays[f"param/{2 * k + 1}.weight"] / 2.0**24
        b = state.arrays[f"param/{2 * k + 1}.bias"] / 2.0**24
        a = a @ w.T + b
        if k + 1 < layers:
            a = np.maximum(a, 0)
    return float((a.argmax(1) == data.y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="steps timed in each mode")
    ap.add_argument("--seeds", type=int, default=10, help="seeds of the mean accuracies")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(EXAMPLE)
    data = load_dataset(spec.dataset)
    epochs = -(-args.steps // steps_per_epoch(len(data), spec.batch_size))
    _torch_run(spec, data, 5, 1)  # warm-up
    _canonical_run(spec, data, 5, 1)
    t_torch, _ = _torch_run(spec, data, args.steps, epochs)
    t_canon, _ = _canonical_run(spec, data, args.steps, epochs)
    _, model = _torch_run(spec, data, None, 3)
    _, state = _canonical_run(spec, data, None, 3)
    _, same_init = _torch_run(spec, data, None, 3, CanonicalState(spec, data, bytes(32)))
    out = {
        "model": state.dims,
        "steps_timed": args.steps,
        "torch_ms_per_step": 1000 * t_torch / args.steps,
        "canonical_ms_per_step": 1000 * t_canon / args.steps,
        "canonical_over_torch": t_canon / t_torch,
        "accuracy_after_3_epochs": {
            "torch": _torch_accuracy(model, data),
            "canonical": _canonical_accuracy(state, data),
            "torch_from_the_canonical_init": _torch_accuracy(same_init, data),
        },
    }
    if args.seeds:
        by_mode: dict[str, list[float]] = {"torch": [], "canonical": []}
        for seed in range(args.seeds):
            s = spec.model_copy(update={"seed": seed})
            by_mode["torch"].append(_torch_accuracy(_torch_run(s, data, None, 3)[1], data))
            by_mode["canonical"].append(
                _canonical_accuracy(_canonical_run(s, data, None, 3)[1], data)
            )
        mean = {m: sum(v) / len(v) for m, v in by_mode.items()}
        out["mean_accuracy_after_3_epochs"] = {
            "seeds": args.seeds,
            **mean,
            "canonical_minus_torch_points": 100 * (mean["canonical"] - mean["torch"]),
            "lowest": {m: min(v) for m, v in by_mode.items()},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
