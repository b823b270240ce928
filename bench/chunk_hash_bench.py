"""Guest cycles per KiB of a tensor chunk hash: BLAKE3 (the protocol's, PROTOCOL.md §8) against
SHA-256 through the zkVM's accelerator, over the same bytes, in risc0's executor.

    VERITRAIN_CACHE=... bash scripts/build-guest.sh     # builds chunk-hash-cycles beside the guest
    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.chunk_hash_bench [--kib 4 64 256]

The measuring program (rust/guest/src/bin/chunk-hash-cycles.rs) counts cycles around each hash
inside the guest, so reading the input and committing the journal are not in the figures; the
per-KiB figures are slopes over the sizes, which removes each hash's fixed part.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from veritrain.prover import _native

ELF = "riscv32im-risc0-zkvm-elf/guest/chunk-hash-cycles"


def elf_path() -> Path:
    cache = Path(os.environ.get("VERITRAIN_CACHE", Path.home() / ".cache" / "veritrain"))
    return cache / "target-guest" / ELF


def cycles(elf: bytes, n: int) -> tuple[int, int]:
    data = bytes(i % 251 for i in range(n))
    journal, _ = _native._execute_elf(elf, n.to_bytes(4, "little") + data)
    return int.from_bytes(journal[:8], "little"), int.from_bytes(journal[8:16], "little")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kib", type=int, nargs="+", default=[4, 64, 256])
    args = ap.parse_args()
    elf = elf_path().read_bytes()
    rows = {k: cycles(elf, 1024 * k) for k in args.kib}
    lo, hi = min(rows), max(rows)
    slope = [(rows[hi][i] - rows[lo][i]) / (hi - lo) for i in (0, 1)]
    out = {
        "cycles": {f"{k} KiB": {"blake3": b, "sha256": s} for k, (b, s) in rows.items()},
        "per_kib": {"blake3": round(slope[0]), "sha256": round(slope[1])},
        "blake3_over_sha256": round(slope[0] / slope[1], 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
