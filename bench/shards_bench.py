"""Sharded datasets (pipeline/data/shards.py): the dataset root's cost against ``sha256sum`` of the
same files, peak memory against the dataset's size, and step time against the in-memory loader.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.shards_bench [--mb 64] [--shard-mb 4]

Samples are classification rows of 256 float32 features (1 KiB each) and an int64 label, made
from a seed, written as safetensors shards in a temporary folder (the page cache is warmed
first, so both sides read from memory):

- **root**: ``Shards(folder)`` (each shard read, parsed, checked, its root over its samples'
  leaves and its sha256) and the root over the shards' roots, against ``sha256sum`` of the same
  files in a subprocess, in seconds per GiB, for 1, 8 and 64 shards of the same data;
- **memory**: peak resident memory of a child process that trains one epoch of a sharded run
  (no proof) at ``--mb`` and four times ``--mb``, beside the same runs from one in-memory file
  (``kind: file``): the goal is that the sharded figure stays flat as the data grows;
- **step time**: one epoch trained from the shards (memory-mapped, a shard's status checked on
  every read) against the same epoch from the same samples held in memory (``kind: file``), in
  the same process, five times each, alternately, the fastest of each compared: the goal is a
  ratio of at most 1.05. Two models: a small MLP (64 hidden units), whose step is mostly the
  loader and the commitments (a worst case for the loader's share), and an MLP of two layers of
  1024, whose step is a few milliseconds of arithmetic. The shards' files are dated
  an hour back first, as a dataset that is not being written is (see RACY_SECONDS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 256
CLASSES = 10
ROW_BYTES = FEATURES * 4
# The step-time models: the bench's small MLP (a step mostly loader and commitments), and one
# whose step is a few milliseconds of arithmetic, as a model's own step is.
HIDDEN = ((64,), (1024, 1024))
# Epochs trained from each loader, alternately; the fastest of each is compared.
ROUNDS = 5


def write_shards(folder: Path, samples: int, shards: int, seed: int = 0) -> list[Path]:
    """``samples`` rows split evenly over ``shards`` safetensors files part-NNNN.safetensors."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, samples, shards + 1).astype(int)
    paths = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        x = rng.standard_normal((b - a, FEATURES), dtype=np.float32)
        y = rng.integers(0, CLASSES, size=b - a, dtype=np.int64)
        y[: min(CLASSES, b - a)] = np.arange(min(CLASSES, b - a))  # every class in every shard
        path = folder / f"part-{i:04d}.safetensors"
        save_file({"x": x, "y": y}, str(path))
        st = path.stat()  # dated an hour back: a dataset at rest, not one being written
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))
        paths.append(path)
    return paths


def write_file(path: Path, shards: list[Path]) -> None:
    """The same samples as one in-memory dataset file (``kind: file``)."""
    from safetensors.numpy import load_file, save_file

    parts = [load_file(str(p)) for p in shards]
    x = np.concatenate([p["x"] for p in parts])
    y = np.concatenate([p["y"] for p in parts])
    save_file({"x": x, "y": y}, str(path))


def _warm(paths: list[Path]) -> None:
    for p in paths:
        p.read_bytes()


def root_figures(mb: int, counts: tuple[int, ...]) -> list[dict]:
    from veritrain.pipeline.data.shards import Shards

    samples = mb * (1 << 20) // ROW_BYTES
    out = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_shards(Path(tmp) / "shards", samples, n)
            size = sum(p.stat().st_size for p in paths)
            _warm(paths)
            t0 = time.perf_counter()
            subprocess.run(["sha256sum", *map(str, paths)], check=True, capture_output=True)
            base = time.perf_counter() - t0
            t0 = time.perf_counter()
            s = Shards(str(Path(tmp) / "shards"), "safetensors", "classification")
            s.root()
            ours = time.perf_counter() - t0
        gib = size / (1 << 30)
        out.append(
            {
                "shards": n,
                "bytes": size,
                "root_s_per_gib": round(ours / gib, 2),
                "sha256sum_s_per_gib": round(base / gib, 2),
                "ratio": round(ours / base, 2),
            }
        )
    return out


def _spec(dataset: dict, batch: int, hidden: tuple[int, ...] = (64,)) -> dict:
    return {
        "task": "classification",
        "model": {"kind": "mlp", "hidden": list(hidden)},
        "dataset": dataset,
        "optimizer": {"kind": "sgd"},
        "schedule": {"kind": "constant", "base_lr": 0.01},
        "batch_size": batch,
        "epochs": 1,
        "finalize_every": 0,
        "checkpoint_every": 1_000_000,
        "state_every": 1_000_000,
    }


def _train(doc: dict, folder: Path, run_id: str) -> tuple[float, int]:
    """One epoch of ``doc`` (paths relative to ``folder``, stored in its own store there) in this
    process: (seconds in the training loop, steps)."""
    from veritrain.pipeline.run.spec import parse_spec
    from veritrain.pipeline.store.local import LocalStore
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    t = open_trainer(parse_spec(doc, base=folder), LocalStore(folder / f"store-{run_id}"), run_id)
    t0 = time.perf_counter()
    train(t)
    return time.perf_counter() - t0, t.spe


def child(doc_json: str, folder: str, run_id: str) -> None:
    """A child process: train ``doc`` and print its peak resident memory (KiB)."""
    _train(json.loads(doc_json), Path(folder), run_id)
    print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def _peak(doc: dict, folder: Path, run_id: str) -> float:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "veritrain.bench.shards_bench",
            "--child",
            json.dumps(doc),
            str(folder),
            run_id,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if r.returncode != 0:
        sys.exit(f"shards_bench: the child run failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024


def memory_figures(mb: int, shard_mb: int, batch: int) -> list[dict]:
    out = []
    for size in (mb, 4 * mb):
        samples = size * (1 << 20) // ROW_BYTES
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = write_shards(root / "shards", samples, max(1, size // shard_mb))
            write_file(root / "all.safetensors", paths)
            sharded = _peak(
                _spec({"kind": "shards", "uri": "shards", "format": "safetensors"}, batch),
                root,
                "sharded",
            )
            whole = _peak(_spec({"kind": "file", "path": "all.safetensors"}, batch), root, "file")
        out.append(
            {
                "dataset_mib": size,
                "shards": len(paths),
                "sharded_peak_mib": round(sharded),
                "in_memory_peak_mib": round(whole),
            }
        )
    return out


def step_figures(mb: int, shard_mb: int, batch: int, hidden: tuple[int, ...]) -> dict:
    samples = mb * (1 << 20) // ROW_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_shards(root / "shards", samples, max(1, mb // shard_mb))
        write_file(root / "all.safetensors", paths)
        times: dict[str, list[float]] = {"file": [], "shards": []}
        steps = 0
        for k in range(ROUNDS):  # alternating, so a busy moment of the machine hits both
            for name, dataset in (
                ("file", {"kind": "file", "path": "all.safetensors"}),
                ("shards", {"kind": "shards", "uri": "shards", "format": "safetensors"}),
            ):
                seconds, steps = _train(_spec(dataset, batch, hidden), root, f"{name}-{k}")
                times[name].append(seconds)
    base, sharded = min(times["file"]), min(times["shards"])
    return {
        "dataset_mib": mb,
        "shards": len(paths),
        "hidden": list(hidden),
        "steps": steps,
        "batch": batch,
        "in_memory_s": round(base, 3),
        "sharded_s": round(sharded, 3),
        "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ratio": round(sharded / base, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64, help="dataset size in MiB (default 64)")
    ap.add_argument("--shard-mb", type=int, default=4, help="shard size in MiB (default 4)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--only", choices=["root", "memory", "step"])
    ap.add_argument(
        "--child", nargs=3, metavar=("SPEC_JSON", "FOLDER", "RUN_ID"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    if args.child:
        child(*args.child)
        return
    result: dict = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if args.only in (None, "root"):
        result["root"] = root_figures(args.mb, (1, 8, 64))
    if args.only in (None, "memory"):
        result["memory"] = memory_figures(args.mb, args.shard_mb, args.batch)
    if args.only in (None, "step"):
        result["step"] = [
            step_figures(args.mb, args.shard_mb, args.batch, hidden) for hidden in HIDDEN
        ]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"shards": result}), flush=True)


if __name__ == "__main__":
    main()
