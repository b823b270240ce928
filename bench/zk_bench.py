"""Guest cycles of zk re-execution (PROTOCOL.md §11), executor counts, no proving:

- per KiB of a tensor chunk hash: BLAKE3 (the protocol's chunk leaf, §8) against SHA-256
  through the zkVM's accelerator over the same bytes;
- per sample, checking a batch's samples against the dataset root (leaf and audit path);
- per training step of a canonical example, the kernels alone (``canonical::mlp_step`` between
  two cycle counts, on the example's first batch from its initialization), and per
  multiply-accumulate of that step (its forward and backward products; the optimizer, softmax
  and grad norm are in the step's cycles too, so this is an all-in figure);
- per re-executed step of a canonical example (default: tiny-canonical and digits-canonical):
  epoch 0 executed with every step re-executed and with one, the difference divided by the
  steps between (so the records' own check and the fixed costs drop out);
- with ``--prove SPEC``, proving: epoch 0 of that canonical example (its own
  ``zk_steps_per_epoch``) proved locally, against the same spec in torch arithmetic (the
  bookkeeping-only epoch of the same run shape) proved in the same process: seconds, cycles and
  segments of each, and the ratio.

    VERITRAIN_CACHE=... bash scripts/build-guest.sh     # builds zk-cycles beside the guest
    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.zk_bench [--example SPEC ...]
        [--prove SPEC [--po2 N]]

The first three run rust/guest/src/bin/zk-cycles.rs, which counts cycles around core's own code
inside the guest; per-KiB and per-sample figures are slopes over sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from veritrain import prover
from veritrain.pipeline.data.datasets import load_dataset
from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.manifest import Manifest, canonical_settings, epoch_entries, open_ledger
from veritrain.pipeline.run.spec import AdamOptimizer, RunSpec, load_spec
from veritrain.pipeline.run.tasks import DigitsDataset
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.canonical import CanonicalState
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

ROOT = Path(__file__).resolve().parent.parent
ELF = "riscv32im-risc0-zkvm-elf/guest/zk-cycles"
EXAMPLES = ["examples/tiny-canonical.yaml", "examples/digits-canonical.yaml"]


def _u32(*v: int) -> bytes:
    return b"".join(x.to_bytes(4, "little") for x in v)


def elf() -> bytes:
    cache = Path(os.environ.get("VERITRAIN_CACHE", Path.home() / ".cache" / "veritrain"))
    return (cache / "target-guest" / ELF).read_bytes()


def chunk_cycles(program: bytes, n: int) -> tuple[int, int]:
    data = bytes(i % 251 for i in range(n))
    journal, _ = prover.execute_elf(program, _u32(0, n) + data)
    return int.from_bytes(journal[:8], "little"), int.from_bytes(journal[8:16], "little")


def sample_cycles(program: bytes, rows: np.ndarray, indices: list[int]) -> int:
    root = prover.dataset_root(rows, rows.shape[1])
    paths = prover.dataset_paths(rows, rows.shape[1], indices)
    inp = len(rows).to_bytes(8, "little") + root + _u32(len(indices), rows.shape[1] // 4)
    for i, path in zip(indices, paths, strict=True):
        inp += _u32(i) + rows[i].tobytes() + _u32(len(path)) + b"".join(path)
    journal, _ = prover.execute_elf(program, _u32(1) + inp)
    assert journal[8:12] == _u32(1), "the samples did not check"
    return int.from_bytes(journal[:8], "little")


def step_cycles(program: bytes, spec: RunSpec) -> dict:
    """Exact executor cycles of one canonical training step (kernels only) of a spec's model."""
    data = load_dataset(spec.dataset)
    dims = CanonicalState(spec, data, bytes(32)).dims
    rows = data.canonical_rows()
    batch = rows[batch_indices(spec, len(rows), 0)]
    inp = _u32(2) + canonical_settings(spec).to_bytes() + spec.seed.to_bytes(8, "little")
    inp += _u32(len(dims), *dims, len(batch)) + np.ascontiguousarray(batch).tobytes()
    inp += struct.pack("<dQ", spec.schedule_for(len(rows)).lr_at(0), 1)
    journal, _ = prover.execute_elf(program, inp)
    cycles = int.from_bytes(journal[:8], "little")
    # Forward: batch x in x out per layer; backward: the weight gradient of every layer and the
    # input gradient of every layer but the first.
    layers = list(zip(dims, dims[1:], strict=False))
    macs = len(batch) * (2 * sum(i * o for i, o in layers) + sum(i * o for i, o in layers[1:]))
    return {
        "model": dims,
        "batch": len(batch),
        "optimizer": spec.optimizer.kind,
        "step_cycles": cycles,
        "multiply_accumulates": macs,
        "cycles_per_multiply_accumulate": round(cycles / macs, 2),
    }


def epoch_input(spec, root: str, run_id: str) -> tuple[bytes, int]:
    """Epoch 0's guest input of ``spec`` trained for one epoch, and its steps per epoch."""
    spec = spec.model_copy(update={"epochs": 1, "finalize_every": 0})
    store = LocalStore(root)
    train(open_trainer(spec, store, run_id))
    m = Manifest.load(store, run_id)
    _, entries = open_ledger(store, m)
    return guest_input(store, m, epoch_entries(entries), 0, entries), m.steps_per_epoch


def epoch_cycles(spec_path: Path, k: int, root: str) -> tuple[int, int]:
    """(user cycles of epoch 0's guest, steps per epoch) with k steps re-executed."""
    spec = load_spec(spec_path).model_copy(update={"zk_steps_per_epoch": k})
    inp, spe = epoch_input(spec, root, f"zk-{spec_path.stem[:16]}-{k}")
    return prover.execute(inp).stats.user_cycles, spe


def prove_cost(spec_path: Path, root: str, po2: int | None) -> dict:
    """Epoch 0 of a canonical spec proved, against its torch-arithmetic twin proved alike."""
    canonical = load_spec(spec_path)
    # The twin keeps everything a torch spec can have; state_every stays 1, so both epochs
    # commit a state digest every step and differ only in the arithmetic's check.
    twin = RunSpec.model_validate(
        canonical.model_dump() | {"arithmetic": "torch", "zk_steps_per_epoch": 1}
    )
    out: dict[str, Any] = {}
    for name, spec in (("torch", twin), ("canonical", canonical)):
        inp, _ = epoch_input(spec, root, f"prove-{name}")
        r = prover.prove_epoch(inp, po2=po2)
        assert prover.verify_receipt(r.receipt, r.claim.image_id) == r.claim
        assert r.stats is not None  # proven here, so measured
        out[name] = {
            "seconds": round(r.stats.seconds, 1),
            "total_cycles": r.stats.total_cycles,
            "segments": r.stats.segments,
            "guarantees": r.claim.guarantees,
        }
        print(json.dumps({name: out[name]}), flush=True)
    out["canonical_over_torch"] = round(out["canonical"]["seconds"] / out["torch"]["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kib", type=int, nargs="+", default=[4, 64, 256])
    ap.add_argument("--example", nargs="*", default=EXAMPLES)
    ap.add_argument("--prove", type=Path, help="prove epoch 0 of this canonical spec instead")
    ap.add_argument("--po2", type=int, help="segment size when proving (risc0's default: 20)")
    args = ap.parse_args()
    if args.prove:
        with tempfile.TemporaryDirectory() as root:
            cost = {"spec": str(args.prove), **prove_cost(args.prove, root, args.po2)}
        print(json.dumps(cost, indent=1))
        return
    program = elf()
    out: dict[str, Any] = {}

    rows = {k: chunk_cycles(program, 1024 * k) for k in args.kib}
    lo, hi = min(rows), max(rows)
    per_kib = [(rows[hi][i] - rows[lo][i]) / (hi - lo) for i in (0, 1)]
    out["chunk_hash_cycles_per_kib"] = {
        "blake3": round(per_kib[0]),
        "sha256_accelerated": round(per_kib[1]),
        "ratio": round(per_kib[0] / per_kib[1], 2),
    }

    digits = load_dataset(DigitsDataset(kind="digits")).canonical_rows()
    perm = prover.epoch_permutation(0, 0, len(digits))
    one, many = sample_cycles(program, digits, perm[:1]), sample_cycles(program, digits, perm[:64])
    out["sample_check_cycles_per_sample"] = {
        "dataset": f"digits ({len(digits)} samples, {digits.shape[1]}-byte rows)",
        "per_sample": round((many - one) / 63),
    }

    for example in args.example:
        path = ROOT / example
        spec = load_spec(path)
        out[f"{example} kernels"] = [
            step_cycles(program, s)
            for s in (spec, spec.model_copy(update={"optimizer": AdamOptimizer()}))
        ]
        print(json.dumps({f"{example} kernels": out[f"{example} kernels"]}), flush=True)

    with tempfile.TemporaryDirectory() as root:
        for example in args.example:
            path = ROOT / example
            all_steps, spe = epoch_cycles(path, 10**6, root)
            single, _ = epoch_cycles(path, 1, root)
            out[example] = {
                "steps_per_epoch": spe,
                "epoch_cycles_every_step_re_executed": all_steps,
                "epoch_cycles_one_step_re_executed": single,
                "cycles_per_re_executed_step": round((all_steps - single) / (spe - 1)),
            }
            print(json.dumps({example: out[example]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
