"""``run``, ``demo`` and ``deploy-prove``: training a spec, the tiny example end to end, and the
deployments a prove pool's workers run."""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from veritrain.flows.commands import open_run, require
from veritrain.prover.errors import EXIT_FAILED, EXIT_OK


def cmd_run(args) -> int:
    """Checks everything it can (pipeline/train/preflight.py) before it starts the Prefect API
    server and the flow; stops on SIGINT or SIGTERM with exit code 130 or 143 (flows/process.py)."""
    require("train", "run")
    from veritrain.flows import process

    stopper = process.Stopper()
    stopper.start()  # first: every thread started from here on inherits the blocked signals
    process.configure_prefect()
    from veritrain.pipeline.train.preflight import preflight

    plan = preflight(args.spec, args.store, args.run_id, args.key)
    from veritrain.flows import progress
    from veritrain.flows.training import train_flow
    from veritrain.pipeline.prove.parts import check_segment_po2

    check_segment_po2(args.segment_po2)
    if args.prove_pool:
        from veritrain.flows.proving import require_server

        require_server(f"--prove-pool {args.prove_pool}")
    process.quiet_known_errors()
    started = time.perf_counter()
    with process.prefect_api(stopper), progress.bars():
        uri = train_flow(
            plan.spec.model_dump(mode="json"),
            plan.store_uri,
            plan.run_id,
            args.prove_pool,
            args.segment_po2,
        )
    code = EXIT_OK
    if args.verify:
        from veritrain.pipeline.verify.verifier import verify_run

        store, run_id = open_run(uri)
        report = verify_run(store, run_id)
        for e in report.epochs:
            failed = ", ".join(c.name for c in e.checks if not c.ok)
            print(
                f"epoch {e.epoch}: steps {e.first_step}..{e.first_step + e.step_count - 1}, "
                f"{e.status}, end state {e.end_state_digest[:16]}… "
                + ("verified" if e.ok else f"FAILED: {failed}")
            )
        print(
            f"run {run_id}: {'verified' if report.ok else 'verification FAILED'} "
            f"(image id {report.image_id}, {time.perf_counter() - started:.0f} s)"
        )
        code = EXIT_OK if report.ok else EXIT_FAILED
    print(uri)
    return code


def cmd_demo(args) -> int:
    """Trains the tiny example, proves its epoch, verifies the receipt and prints the journal."""
    require("train", "demo")
    import contextlib
    import io

    from veritrain import example
    from veritrain.pipeline.run.manifest import (
        Manifest,
        open_ledger,
        read_committed,
        receipt_entries,
    )
    from veritrain.pipeline.verify.verifier import verify_run
    from veritrain.prover import verify_receipt

    spec = example("tiny.yaml")
    store_dir = args.store if args.store is not None else tempfile.mkdtemp(prefix="veritrain-demo-")
    ns = argparse.Namespace(
        spec=str(spec),
        store=store_dir,
        run_id=None,
        key=None,
        verify=False,
        prove_pool=None,
        segment_po2=None,
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cmd_run(ns)
    if code:
        return code
    uri = out.getvalue().strip().splitlines()[-1]
    store, run_id = open_run(uri)
    report = verify_run(store, run_id)
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    last = receipt_entries(entries)[max(receipt_entries(entries))].body
    receipt = read_committed(store, last.receipt, last.receipt_sha256)
    journal = verify_receipt(receipt, manifest.image_id)
    print(json.dumps(journal.journal_json(), indent=1))
    print(
        f"receipt for epoch {last.epoch} verified against image id {manifest.image_id.hex()}"
        if report.ok
        else "verification FAILED"
    )
    print(uri)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_deploy_prove(args) -> int:
    """Creates the prove pool's deployments on the Prefect server of PREFECT_API_URL."""
    require("prove", "deploy-prove")
    from veritrain.flows.proving import deploy

    for name in deploy(args.pool, args.flow_pool):
        print(name)
    return EXIT_OK


def add_run(sub) -> None:
    r = sub.add_parser("run", help="train a spec with per-step commitments and epoch receipts")
    r.add_argument("spec")
    r.add_argument(
        "--store", help="local folder or s3://bucket[/prefix] (default: the spec's store)"
    )
    r.add_argument(
        "--run-id",
        help="1-32 of [A-Za-z0-9._-], not . or .. (default: derived from the spec); rerunning "
        "resumes the run",
    )
    r.add_argument(
        "--key",
        metavar="FILE",
        help="sign the run with this Ed25519 private key (PEM), the trainer's identity across "
        "runs that verifiers pin with --trainer-key (default: a key made for the run)",
    )
    r.add_argument("--verify", action="store_true", help="verify the run when it is done")
    r.add_argument(
        "--prove-pool",
        metavar="POOL",
        help="prove epochs in parts on this Prefect work pool's workers (see deploy-prove) and "
        "adopt their receipts (default: prove in this process)",
    )
    r.add_argument(
        "--segment-po2",
        type=int,
        metavar="N",
        help="prove in segments of 2^N cycles, 14..22: smaller uses less memory per prover, "
        "larger fewer segments and joins (default: risc0's)",
    )
    r.set_defaults(fn=cmd_run)


def add_deploy_prove(sub) -> None:
    dp = sub.add_parser(
        "deploy-prove",
        help="create the deployments a prove pool's workers run (veritrain-prove-segment, "
        "veritrain-prove-join, veritrain-prove) on the server of PREFECT_API_URL",
    )
    dp.add_argument("--pool", default="prove", help="work pool of the provers (default: prove)")
    dp.add_argument(
        "--flow-pool",
        metavar="POOL",
        help="work pool for veritrain-prove itself, which waits for its parts (default: --pool)",
    )
    dp.set_defaults(fn=cmd_deploy_prove)


def add_demo(sub) -> None:
    d = sub.add_parser("demo", help="train, prove and verify the tiny example end to end")
    d.add_argument("--store", help="folder for the demo's store (default: a new temporary folder)")
    d.set_defaults(fn=cmd_demo)
