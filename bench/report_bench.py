"""The audit report's cost against the verification it shows.

    ~/.cache/veritrain/venv/bin/python -m veritrain.bench.report_bench [--epochs 20]

The tiny spec (examples/tiny.yaml: 3 steps an epoch) is trained for ``--epochs`` epochs, unproven
(proving is verify_bench's subject). Printed, one JSON line each:

1. ``verify_run`` (the baseline) against ``build_report`` (which is verify_run plus reading the
   records back for the curves) and against writing the folder (drawing the plots with
   matplotlib, rendering the page and the markdown): the medians of 3, and their ratios;
2. the first write of the process, which also imports matplotlib, against a later one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from veritrain import example
from veritrain.pipeline.publish.report import build_report, write_report
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run

TINY = example("tiny.yaml")
RUN_ID = "bench-report"


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("VERITRAIN_KEYS", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VERITRAIN_STATE"] = str(Path(tmp) / "state")
        spec = load_spec(TINY).model_copy(update={"epochs": args.epochs, "finalize_every": 0})
        store = LocalStore(Path(tmp) / "store")
        train(open_trainer(spec, store, RUN_ID))
        out = Path(tmp) / "report"
        report = build_report(store, RUN_ID)
        first_write = _seconds(lambda: write_report(report, out))
        verify_s = statistics.median(_seconds(lambda: verify_run(store, RUN_ID)) for _ in range(3))
        build_s = statistics.median(_seconds(lambda: build_report(store, RUN_ID)) for _ in range(3))
        write_s = statistics.median(_seconds(lambda: write_report(report, out)) for _ in range(3))
        print(
            json.dumps(
                {
                    "steps": len(report.points),
                    "verify_run_s": round(verify_s, 3),
                    "build_report_s": round(build_s, 3),
                    "write_report_s": round(write_s, 3),
                    "build_over_verify": round(build_s / verify_s, 2),
                    "write_over_verify": round(write_s / verify_s, 2),
                }
            )
        )
        print(
            json.dumps(
                {
                    "first_write_s": round(first_write, 3),
                    "later_write_s": round(write_s, 3),
                    "first_over_later": round(first_write / write_s, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
