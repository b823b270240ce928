"""Runs training for the crash-safety tests: exactly what the flow's train task calls
(open_trainer + train), without the orchestrator, so a SIGKILL hits only this process."""

import sys

from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.base import open_store
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer

if __name__ == "__main__":
    spec_path, store_root, run_id = sys.argv[1:4]
    try:
        train(open_trainer(load_spec(spec_path), open_store(store_root), run_id))
    except Exception as e:  # noqa: BLE001 - report the failure kind to the test, one line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2 if type(e).__name__ == "SpecError" else 1)
    print(f"{store_root}/runs/{run_id}")
