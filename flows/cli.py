"""The ``veritrain`` command. Exit codes: 0 ok, 1 verification failed, 2 usage or bad spec,
3 storage or environment error. Logs and progress go to stderr; results to stdout."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(f"veritrain: {msg}", file=sys.stderr)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def cmd_run(args) -> int:
    from pipeline.finalize import finalize_epoch, unproven_epochs
    from pipeline.run import new_run_id
    from pipeline.spec import load_spec
    from pipeline.store import open_store, run_uri
    from pipeline.train import open_trainer, train

    spec = load_spec(args.spec)
    store = open_store(args.store or spec.store)
    run_id = args.run_id or new_run_id()
    t = open_trainer(spec, store, run_id)
    total_epochs = spec.epochs
    with _progress() as bar:
        task = bar.add_task("train", total=total_epochs * t.spe, info="")

        def on_step(ev) -> None:
            bar.update(task, completed=ev.step, info=f"epoch {ev.epoch} loss {ev.loss:.4f}")

        t.on_step = on_step
        every = spec.finalize_every
        epoch = 0
        while epoch < total_epochs:
            upto = min(total_epochs, epoch + every) if every else total_epochs
            epoch = train(t, upto)
            if every:
                for e in unproven_epochs(t.entries):
                    ptask = bar.add_task(f"prove epoch {e}", total=None, info="")
                    r = finalize_epoch(store, t.manifest, t.ledger, t.entries, t.key, e)
                    bar.update(ptask, total=1, completed=1,
                               info=f"{r.stats.total_cycles} cycles, {len(r.receipt)} bytes")
    print(f"run {run_id}: {total_epochs} epochs, {total_epochs * t.spe} steps", file=sys.stderr)
    print(run_uri(store, run_id))
    return EXIT_OK


def _open_run(uri: str):
    from pipeline.store import open_store, split_run_uri

    store_uri, run_id = split_run_uri(uri)
    return open_store(store_uri), run_id


def cmd_verify(args) -> int:
    from pipeline.verify import verify_run

    store, run_id = _open_run(args.run_uri)
    report = verify_run(store, run_id, args.epoch)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        for c in report.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} run: {c.name} {c.detail}")
        for e in report.epochs:
            for c in e.checks:
                print(f"{'ok  ' if c.ok else 'FAIL'} epoch {e.epoch} ({e.status}): {c.name} {c.detail}")
        print("verified" if report.ok else "verification FAILED")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_status(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from pipeline.verify import verify_run

    store, run_id = _open_run(args.run_uri)
    report = verify_run(store, run_id)
    table = Table(title=f"run {run_id}  image {report.image_id[:16]}…")
    for col in ("epoch", "state", "steps", "end state digest", "checks"):
        table.add_column(col)
    for e in report.epochs:
        failed = [c.name for c in e.checks if not c.ok]
        table.add_row(
            str(e.epoch), e.status, f"{e.first_step}..{e.first_step + e.step_count - 1}",
            e.end_state_digest[:16] + "…", "ok" if not failed else "FAIL: " + ", ".join(failed),
        )
    Console().print(table)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_demo(args) -> int:
    """Trains the tiny example, proves its epoch, verifies the receipt and prints the journal."""
    import contextlib
    import io

    from pipeline.run import Manifest, open_ledger, receipt_entries
    from pipeline.verify import verify_run
    from prover import verify_receipt

    spec = Path(__file__).resolve().parent.parent / "examples" / "tiny.yaml"
    store_dir = args.store or tempfile.mkdtemp(prefix="veritrain-demo-")
    ns = argparse.Namespace(spec=str(spec), store=store_dir, run_id=None)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cmd_run(ns)
    if code:
        return code
    uri = out.getvalue().strip().splitlines()[-1]
    store, run_id = _open_run(uri)
    report = verify_run(store, run_id)
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    last = max(receipt_entries(entries))
    receipt = store.read(receipt_entries(entries)[last].body["receipt"])
    journal = verify_receipt(receipt, manifest.image_id)
    print(json.dumps(journal.journal_json(), indent=1))
    print(f"receipt for epoch {last} verified against image id {manifest.image_id.hex()}"
          if report.ok else "verification FAILED")
    print(uri)
    return EXIT_OK if report.ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veritrain", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train a spec with per-step commitments and epoch receipts")
    r.add_argument("spec")
    r.add_argument("--store", help="local folder (default: the spec's store)")
    r.add_argument("--run-id", help="1-32 of [A-Za-z0-9._-]; rerun with the same id to resume")
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser("verify", help="verify a stored run: ledger, receipts, records, checkpoints")
    v.add_argument("run_uri")
    v.add_argument("--epoch", type=int)
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_verify)
    s = sub.add_parser("status", help="a table of epochs and their states")
    s.add_argument("run_uri")
    s.set_defaults(fn=cmd_status)
    d = sub.add_parser("demo", help="train, prove and verify the tiny example end to end")
    d.add_argument("--store", help="folder for the demo's store (default: a new temporary folder)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.errors import DeterminismError, SpecError, StorageError
    from prover import VeritrainError

    try:
        return args.fn(args)
    except SpecError as e:
        _err(str(e))
        return EXIT_USAGE
    except (StorageError, DeterminismError) as e:
        _err(str(e))
        return EXIT_ENV
    except VeritrainError as e:
        _err(str(e.args[0]) if e.args else type(e).__name__)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
