"""Wall time of `veritrain verify` on the digits example's proven run, against `python -c pass`.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.verify_startup_bench [--run RUN_URI] \
        [--repeat 9]

A CI job that verifies runs pays, per run, the interpreter's start, veritrain's imports and the
checks themselves (three succinct receipts, the records, every checkpoint's state digest). Target:
under 1 s of wall time. Without ``--run`` the bench makes the run first: it trains
examples/digits-mlp.yaml in this process and proves its three epochs (as bench/verify_bench.py
does; about a quarter of an hour on 2 cores) in a temporary store. ``--run`` takes a proven run
instead, e.g. the one `veritrain run examples/digits-mlp.yaml` leaves; nothing is written to it.

Printed, one JSON line each:

1. the median wall seconds of `python -m veritrain.flows.cli verify RUN_URI` (exit 0 required) and
   of `python -c pass`, measured alternately with the same interpreter, their ratio, and whether
   verify took under 1 s;
2. where verify's start-up goes: `python -X importtime`'s import seconds per top-level package,
   the largest first, their total, and which of torch, prefect, sklearn and numpy it imported
   (none, or the slim install could not verify);
3. for reference, the median wall seconds of `python -c "import torch"`: what every verify paid
   before verification stopped importing torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from veritrain import example

DIGITS = example("digits-mlp.yaml")
TARGET_S = 1.0
HEAVY = ("torch", "prefect", "sklearn", "numpy")


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        raise SystemExit(f"{' '.join(cmd)}: {tail[0]}")
    return seconds


def _imports(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Import seconds per top-level package (veritrain's per subpackage), from ``python -X
    importtime``: the self time of each of its modules, so the figures add up to the whole import
    time (a module's body, like the pydantic models it builds, counts for its own package)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    by_package: dict[str, float] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        parts = name.strip().split(".")
        package = ".".join(parts[:2] if parts[0] == "veritrain" else parts[:1])
        by_package[package] = by_package.get(package, 0.0) + int(own) / 1e6
    return dict(sorted(by_package.items(), key=lambda kv: -kv[1]))


def _make_run(root: Path) -> str:
    from veritrain.bench.verify_bench import proven_run
    from veritrain.pipeline.run.spec import load_spec
    from veritrain.pipeline.store.uris import run_uri

    run_id = "bench-verify-startup"
    store, train_s, prove_s = proven_run(root, load_spec(DIGITS), run_id)
    uri = run_uri(store, run_id)
    print(
        f"made {uri}: trained in {train_s:.0f} s, proved in {prove_s:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return uri


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", metavar="RUN_URI", help="a proven run (default: make the digits run)")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("VERITRAIN_KEYS", str(Path(tmp) / "keys"))
        uri = args.run or _make_run(Path(tmp) / "store")
        # The verifier's own state (first sightings of receipts) goes to a fresh folder.
        env = {**os.environ, "VERITRAIN_STATE": str(Path(tmp) / "state")}
        verify = [sys.executable, "-m", "veritrain.flows.cli", "verify", uri]
        baseline = [sys.executable, "-c", "pass"]
        _wall(verify, env)  # first sighting written, files in the page cache
        verify_s, pass_s = [], []
        for _ in range(args.repeat):
            verify_s.append(_wall(verify, env))
            pass_s.append(_wall(baseline, env))
        v, p = statistics.median(verify_s), statistics.median(pass_s)
        print(
            json.dumps(
                {
                    "run": uri,
                    "verify_s": round(v, 3),
                    "python_pass_s": round(p, 3),
                    "ratio": round(v / p, 1),
                    "target_s": TARGET_S,
                    "under_target": v < TARGET_S,
                }
            )
        )
        imports = _imports(verify, env)
        print(
            json.dumps(
                {
                    "import_s": {k: round(s, 3) for k, s in list(imports.items())[:8]},
                    "import_total_s": round(sum(imports.values()), 3),
                    "imported": [m for m in HEAVY if m in imports],
                }
            )
        )
        torch_s = statistics.median(
            _wall([sys.executable, "-c", "import torch"], env) for _ in range(3)
        )
        print(
            json.dumps(
                {"import_torch_s": round(torch_s, 3), "over_python_pass": round(torch_s / p, 1)}
            )
        )


if __name__ == "__main__":
    main()
