"""Commitment overhead and state digest throughput, as ratios against baselines measured
in the same process.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.commit_bench [--steps 400] [--mib 256]

1. Overhead: veritrain's training loop (param digest every step, overlapped with the next step's
   forward/backward; full state digest every 100 steps; one record per step) against the same
   plain torch loop (same model, batches, learning rates, threads). Goal: at most 1.03.
2. Digest throughput over the tensors of one safetensors file: veritrain's parallel tensor
   digests against hashlib.sha256 on one core and against model_signing's hashing of the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

# ~1.06M parameters: 64 -> 1024 -> 960 -> 10.
MODEL = {"kind": "mlp", "hidden": [1024, 960]}


def _spec(steps: int) -> dict:
    return {
        "model": MODEL,
        "dataset": {"kind": "synthetic", "samples": 256 * steps, "features": 64, "classes": 10},
        "optimizer": {"kind": "sgd", "momentum": 0.9},
        "batch_size": 256,
        "epochs": 1,
        "state_every": 100,
        "checkpoint_every": 1_000_000,
        "finalize_every": 0,
    }


def plain_loop(t, steps: int) -> float:
    """The baseline: the same model, batches and learning rates, nothing committed."""
    spec = t.spec
    x_all, y_all = torch.from_numpy(t.dataset.x), torch.from_numpy(t.dataset.y)
    schedule = spec.schedule_for(len(t.dataset))
    t0 = time.perf_counter()
    for k in range(steps):
        for g in t.optimizer.param_groups:
            g["lr"] = schedule.lr_at(k)
        idx = batch_indices(spec, len(t.dataset), k)
        t.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(t.model(x_all[idx]), y_all[idx])
        loss.backward()
        t.optimizer.step()
        loss.item()
    return time.perf_counter() - t0


def overhead(steps: int) -> dict:
    spec = parse_spec(_spec(steps))
    with tempfile.TemporaryDirectory() as root:
        base = open_trainer(spec, LocalStore(root), "plain")
        model, _ = st.torch_objects(base.model, base.optimizer)
        params = sum(p.numel() for p in model.parameters())
        plain = plain_loop(base, steps)
        t = open_trainer(spec, LocalStore(root), "committed")
        t0 = time.perf_counter()
        train(t)
        committed = time.perf_counter() - t0
        plain2 = plain_loop(open_trainer(spec, LocalStore(root), "plain2"), steps)
    baseline = min(plain, plain2)
    return {
        "params": params,
        "steps": steps,
        "plain_s": round(baseline, 3),
        "veritrain_s": round(committed, 3),
        "overhead_ratio": round(committed / baseline, 4),
    }


def throughput(mib: int) -> dict:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    n = mib * (1 << 20) // 4 // 8
    tensors = {f"layer{i}.weight": torch.randn(n, generator=g) for i in range(8)}
    total = sum(t.numel() * 4 for t in tensors.values())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        save_file(tensors, str(path))
        t0 = time.perf_counter()
        st.digest_tensors(tensors)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        for t in tensors.values():
            hashlib.sha256(t.numpy().tobytes()).digest()
        hl = time.perf_counter() - t0
        ms = None
        try:
            from model_signing import hashing

            t0 = time.perf_counter()
            hashing.Config().use_shard_serialization(hashing_algorithm="sha256").hash(path)
            ms = time.perf_counter() - t0
        except ImportError:
            pass

    def gbs(s: float) -> float:
        return round(total / s / 1e9, 3)

    out = {
        "bytes": total,
        "cores": os.cpu_count(),
        "veritrain_gb_s": gbs(ours),
        "hashlib_1core_gb_s": gbs(hl),
        "ratio_vs_hashlib": round(hl / ours, 3),
    }
    if ms is not None:
        out |= {"model_signing_gb_s": gbs(ms), "ratio_vs_model_signing": round(ms / ours, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    print(json.dumps({"overhead": overhead(args.steps)}), flush=True)
    print(json.dumps({"digest_throughput": throughput(args.mib)}), flush=True)


if __name__ == "__main__":
    main()
