"""The ``veritrain`` command. Exit codes: 0 ok, 1 verification failed, 2 usage or bad spec,
3 storage or environment error; ``run`` stopped by SIGINT 130, by SIGTERM 143. Logs and progress
go to stderr; results to stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(f"veritrain: {msg}", file=sys.stderr)


def _require(extra: str, command: str) -> None:
    """Commands that train or re-execute steps need the ``train`` extra, ``deploy-prove`` the
    ``prove`` extra (pipeline/extras.py); verify, audit and status need neither, and import none
    of it."""
    from veritrain.pipeline.extras import require_extra

    require_extra(extra, f"veritrain {command}")


def cmd_run(args) -> int:
    """Checks everything it can (pipeline/train/preflight.py) before it starts the Prefect API
    server and the flow; stops on SIGINT or SIGTERM with exit code 130 or 143 (flows/process.py)."""
    _require("train", "run")
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

        store, run_id = _open_run(uri)
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


def _open_run(uri: str):
    from veritrain.pipeline.store.base import open_store
    from veritrain.pipeline.store.uris import split_run_uri

    store_uri, run_id = split_run_uri(uri, "RUN_URI")
    return open_store(store_uri, "RUN_URI"), run_id


def _replayable(args):
    """The profiles --replayable-profile declares, or None for this machine's own."""
    from veritrain.pipeline.run.determinism import load_profiles

    if args.replayable_profile is None:
        return None
    return [p for path in args.replayable_profile for p in load_profiles(path)]


def _trust_words(args) -> list[str]:
    """The trust flags as given, to repeat them in the commands a report prints."""
    words = ["--policy", args.policy] if args.policy else []
    for v in args.image_id or []:
        words += ["--image-id", v]
    for v in args.trainer_key or []:
        words += ["--trainer-key", v]
    return words + (["--require-pinned"] if args.require_pinned else [])


def _policy(args):
    """The trust roots and requirements of --policy and the flags, which add to the file."""
    from veritrain.pipeline.verify.policy import policy_from

    return policy_from(args.policy, args.image_id, args.trainer_key, args.require_pinned)


def cmd_verify(args) -> int:
    from veritrain.pipeline.verify.verifier import verify_run

    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    if args.attestation is not None:
        from veritrain.pipeline.publish.attest import read_attestation, verify_attestation

        data = read_attestation(args.attestation, store, run_id)
        report = verify_attestation(
            store,
            run_id,
            data,
            args.attestation,
            args.epoch,
            trainer_keys=[bytes.fromhex(k) for k in policy.trainer_keys] or None,
            replayable=replayable,
            policy=policy,
        )
        return _report(report, args.json, "verification")
    report = verify_run(store, run_id, args.epoch, replayable=replayable, policy=policy)
    return _report(report, args.json, "verification")


def cmd_attest(args) -> int:
    """Writes an epoch's in-toto attestation (pipeline/publish/attest.py); its path is the last
    line."""
    from veritrain.pipeline.publish.attest import attest, write_attestation
    from veritrain.pipeline.verify.verifier import verify_run

    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    report = verify_run(store, run_id, args.epoch, replayable=replayable, policy=policy)
    data, stmt = attest(store, run_id, args.epoch, report)
    finality = stmt["predicate"]["finality"]
    path = write_attestation(store, run_id, args.epoch, finality, data, args.out)
    subject = stmt["subject"][0]
    _err(
        f"epoch {args.epoch} ({finality}): {subject['name']} sha256 "
        f"{subject['digest']['sha256'][:16]}…, signed with the run's key"
    )
    print(path)
    return EXIT_OK


def cmd_sign_checkpoint(args) -> int:
    """Signs an epoch's end checkpoint with model_signing (pipeline/publish/modelsign.py); the
    bundle's path is the last line."""
    _require("sign", "sign-checkpoint")
    from veritrain.pipeline.publish.modelsign import check_ec_key, sign_checkpoint, write_bundle
    from veritrain.pipeline.verify.verifier import verify_run

    check_ec_key(args.key)
    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    report = verify_run(store, run_id, args.epoch, replayable=replayable, policy=policy)
    bundle, checkpoint = sign_checkpoint(store, run_id, args.epoch, args.key, report)
    path = write_bundle(store, run_id, args.epoch, bundle, args.out)
    _err(
        f"epoch {args.epoch}: signed {checkpoint} with model_signing (verify with: "
        f"model_signing verify key --signature {path} --public_key PUB.pem CHECKPOINT)"
    )
    print(path)
    return EXIT_OK


def cmd_audit(args) -> int:
    """Calls the library directly, not veritrain.flows.verification.audit_flow: an auditor's machine
    needs no Prefect server, and Prefect's start-up would cost about 10 s per command."""
    from veritrain.pipeline.verify.audit import audit_epoch

    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    report = audit_epoch(
        store, run_id, args.epoch, args.out, log=_err, replayable=replayable, policy=policy
    )
    return _report(report, args.json, f"audit of {args.out}")


def _report(report, as_json: bool, what: str) -> int:
    """Prints a RunReport (one JSON document with --json); a failure also gets one line on
    stderr naming the first failed check, whose detail names the object."""
    failed = [("run", c) for c in report.checks if not c.ok]
    failed += [(f"epoch {e.epoch}", c) for e in report.epochs for c in e.checks if not c.ok]
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(f"trust: {_trust_line(report.trust)}")
        for c in report.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} run: {c.name} {c.detail}")
        for e in report.epochs:
            for c in e.checks:
                mark = "ok  " if c.ok else "FAIL"
                print(f"{mark} epoch {e.epoch} ({e.status}): {c.name} {c.detail}")
        print("verified" if report.ok else f"{what} FAILED")
    if failed:
        where, c = failed[0]
        more = f" (and {len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        _err(f"{what} failed: {where}: {c.name}: {c.detail}{more}")
    return EXIT_OK if report.ok else EXIT_FAILED


def _trust_line(trust: dict) -> str:
    """verify --json's ``trust`` in one line: the accepted guests, the trainer, what is
    required."""
    pinned = len(trust["trainer_keys"])
    parts = [
        "guest " + " or ".join(i[:16] + "…" for i in trust["image_ids"]),
        f"trainer: {trust['trainer']}"
        + (f" ({pinned} key{'s' if pinned > 1 else ''})" if pinned else ""),
    ]
    if trust["require_pinned"]:
        parts.append("pinned trainer required")
    if trust["required_status"]:
        parts.append(f"every epoch {trust['required_status']}")
    if trust["required_guarantees"]:
        parts.append("guarantees " + ", ".join(trust["required_guarantees"]))
    return "; ".join(parts)


def cmd_status(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from veritrain.pipeline.verify.verifier import verify_run

    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    report = verify_run(store, run_id, replayable=replayable, policy=policy)
    failed_run = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    table = Table(
        title=f"run {run_id}  image {report.image_id[:16]}…\ntrust: {_trust_line(report.trust)}",
        caption="FAIL " + "; ".join(failed_run) if failed_run else None,
    )
    for col in ("epoch", "state", "steps", "end state digest", "checks"):
        table.add_column(col)
    for e in report.epochs:
        failed = [c.name for c in e.checks if not c.ok]
        table.add_row(
            str(e.epoch),
            e.status,
            f"{e.first_step}..{e.first_step + e.step_count - 1}",
            e.end_state_digest[:16] + "…",
            "ok" if not failed else "FAIL: " + ", ".join(failed),
        )
    Console().print(table)
    if failed_run:
        _err(f"status: run: {failed_run[0]}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_report(args) -> int:
    """Writes the audit report (pipeline/publish/report.py): exit 0 if the run verifies, 1 if not
    (the report is written either way); its index.html is the last stdout line."""
    _require("report", "report")
    from veritrain.pipeline.publish.report import build_report, check_out_dir, write_report

    replayable = _replayable(args)
    policy = _policy(args)
    store, run_id = _open_run(args.run_uri)
    out = Path(args.out)
    check_out_dir(out, run_id)
    report = build_report(
        store,
        run_id,
        replayable=replayable,
        replayable_files=args.replayable_profile,
        policy=policy,
        flags=_trust_words(args),
    )
    page = write_report(report, out)
    v = report.verification
    failed = [("run", c) for c in v.checks if not c.ok]
    failed += [(f"epoch {e.epoch}", c) for e in v.epochs for c in e.checks if not c.ok]
    if failed:
        where, c = failed[0]
        _err(f"verification failed: {where}: {c.name}: {c.detail}")
    print(f"run {run_id}: {len(v.epochs)} epochs, {'verified' if v.ok else 'verification FAILED'}")
    print(page)
    return EXIT_OK if v.ok else EXIT_FAILED


def cmd_challenge(args) -> int:
    """Calls the library directly, not veritrain.flows.challenge.challenge_flow: a challenger needs
    no Prefect server, and Prefect's start-up would add about 10 s to every challenge."""
    _require("train", "challenge")
    from veritrain.pipeline.challenge.search import challenge
    from veritrain.pipeline.store.keys import proof_key
    from veritrain.pipeline.store.uris import object_uri

    store, run_id = _open_run(args.run_uri)
    result = challenge(store, run_id, args.steps, bisect=args.bisect)
    doc = result.to_json()
    uri = object_uri(store, proof_key(run_id, doc["proof_id"])) if doc["fraud"] else None
    doc["proof_uri"] = uri
    first, end = doc["steps"]
    bound = f" (bound {doc['probe_bound']})" if args.bisect else ""
    _err(
        f"{doc['method']} of steps {first}..{end - 1}: {doc['probes']} probes{bound}, "
        f"{doc['replayed_steps']} steps replayed"
    )
    for note in doc["notes"]:
        _err(note)
    if args.json:
        print(json.dumps(doc, indent=1))
    if not doc["fraud"]:
        if not args.json:
            print(f"no fraud found in steps {first}..{end - 1}")
        return EXIT_OK
    _err(
        f"fraud: step {doc['step']} (epoch {doc['epoch']}) re-executes to another "
        f"{', '.join(doc['fields'])} than the run committed; proof {doc['proof_id']}"
    )
    if not args.json:
        # Alone on the last line, for scripts.
        print(uri)
    return EXIT_FAILED


def cmd_check_fraud_proof(args) -> int:
    import re

    from veritrain.pipeline.challenge.fraudproof import check_filed_proof, record_verdict
    from veritrain.pipeline.errors import UsageError

    _require("train", "check-fraud-proof")

    # The id, or the path `challenge` printed.
    pid = Path(args.proof_id).name.removesuffix(".json")
    if not re.fullmatch(r"[0-9a-f]{32}", pid):
        raise UsageError(f"{args.proof_id}: not a fraud proof id (32 hex digits) or its path")
    store, run_id = _open_run(args.run_uri)
    verdict = check_filed_proof(store, run_id, pid)
    if record_verdict(store, verdict) is None:
        _err(f"a verdict on proof {pid} was already recorded; it was left as it is")
    doc = verdict.to_json()
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"{doc['verdict']}: {doc['reason']}")
    return EXIT_OK if verdict.upheld else EXIT_FAILED


def cmd_demo(args) -> int:
    """Trains the tiny example, proves its epoch, verifies the receipt and prints the journal."""
    _require("train", "demo")
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
    store, run_id = _open_run(uri)
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
    _require("prove", "deploy-prove")
    from veritrain.flows.proving import deploy

    for name in deploy(args.pool, args.flow_pool):
        print(name)
    return EXIT_OK


def cmd_schema(args) -> int:
    from veritrain.pipeline.run.spec import spec_json_schema
    from veritrain.pipeline.verify.policy import policy_json_schema
    from veritrain.pipeline.verify.verifier import VERIFY_JSON_SCHEMA

    schemas = {
        "spec": spec_json_schema,
        "verify": lambda: VERIFY_JSON_SCHEMA,
        "policy": policy_json_schema,
    }
    print(json.dumps(schemas[args.which](), indent=1))
    return EXIT_OK


BENCHES = (
    "commit_bench",
    "prover_bench",
    "orchestration_bench",
    "challenge_bench",
    "verify_bench",
    "prove_pool_bench",
    "report_bench",
    "verify_startup_bench",
    "canonical_bench",
)


def cmd_bench(args) -> int:
    """Runs bench/ modules in their own processes (each measures its baseline in the same run)."""
    import subprocess

    names = args.only or list(BENCHES)
    results: dict[str, list] = {}
    for name in names:
        print(f"bench {name} ...", file=sys.stderr)
        r = subprocess.run(
            [sys.executable, "-m", f"veritrain.bench.{name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
            _err(f"bench/{name}.py failed: {last}")
            return EXIT_ENV
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        results[name] = [json.loads(ln) if ln.startswith("{") else ln for ln in lines]
        if not args.json:
            print("\n".join(lines))
    if args.json:
        print(json.dumps(results, indent=1))
    return EXIT_OK


def _replayable_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replayable-profile",
        action="append",
        metavar="FILE",
        help='JSON file with a determinism profile (as in run.json\'s "determinism") or a list '
        "of them, that you can replay (repeatable; default: this machine's). A proven epoch "
        "past its window is final only if one of them replays the run's profile, else "
        "unreplayable",
    )


def _trust_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="YAML file of trust roots and requirements (veritrain schema policy); the flags "
        "below add to it",
    )
    p.add_argument(
        "--image-id",
        action="append",
        metavar="HEX",
        help="accept receipts of the guest with this image id (repeatable; 'installed' names "
        "this installation's). Default: this installation's guest only; once any is named, "
        "exactly the named ones",
    )
    p.add_argument(
        "--trainer-key",
        action="append",
        metavar="FILE|HEX",
        help="accept a run only if its ledger is signed by this Ed25519 public key: 64 hex "
        "digits (as run.json's public_key), or a file holding a PEM public key or them "
        "(repeatable). Default: unpinned, the run's own key",
    )
    p.add_argument(
        "--require-pinned",
        action="store_true",
        help="fail when no trainer key is pinned (for CI)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veritrain", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
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
    v = sub.add_parser("verify", help="verify a stored run: ledger, receipts, records, checkpoints")
    v.add_argument("run_uri")
    v.add_argument("--epoch", type=int)
    v.add_argument("--json", action="store_true")
    v.add_argument(
        "--attestation",
        metavar="FILE",
        help="check an in-toto attestation (from attest; a local file or an object under "
        "RUN_URI) against the epoch it names, which is verified too",
    )
    _replayable_flag(v)
    _trust_flags(v)
    v.set_defaults(fn=cmd_verify)
    at = sub.add_parser(
        "attest",
        help="write a verified epoch's in-toto attestation (a DSSE envelope signed with the "
        "run's key); its path is the last stdout line",
    )
    at.add_argument("run_uri")
    at.add_argument("--epoch", type=int, required=True)
    at.add_argument(
        "--out",
        metavar="FILE",
        help="local file to write (default: "
        "RUN_URI/attestations/epoch-<N:06d>.<state>.intoto.json)",
    )
    _replayable_flag(at)
    _trust_flags(at)
    at.set_defaults(fn=cmd_attest)
    sg = sub.add_parser(
        "sign-checkpoint",
        help="sign a proven or final epoch's end checkpoint with OpenSSF model_signing (EC key); "
        "the bundle's path is the last stdout line",
    )
    sg.add_argument("run_uri")
    sg.add_argument("--epoch", type=int, required=True)
    sg.add_argument(
        "--key",
        required=True,
        metavar="EC_PEM",
        help="unencrypted PEM private key on P-256, P-384 or P-521",
    )
    sg.add_argument(
        "--out",
        metavar="BUNDLE",
        help="local file to write (default: RUN_URI/attestations/epoch-<N:06d>.model-signing.sig)",
    )
    _replayable_flag(sg)
    _trust_flags(sg)
    sg.set_defaults(fn=cmd_sign_checkpoint)
    a = sub.add_parser(
        "audit",
        help="pull one epoch's checkpoint, receipt, journal, records, manifest and ledger into "
        "DIR and verify them from DIR alone",
    )
    a.add_argument("run_uri")
    a.add_argument("--epoch", type=int, required=True)
    a.add_argument(
        "--out",
        required=True,
        help="empty or new folder (or one holding exactly this audit, which is re-verified)",
    )
    a.add_argument("--json", action="store_true")
    _replayable_flag(a)
    _trust_flags(a)
    a.set_defaults(fn=cmd_audit)
    s = sub.add_parser("status", help="a table of epochs and their states")
    s.add_argument("run_uri")
    _replayable_flag(s)
    _trust_flags(s)
    s.set_defaults(fn=cmd_status)
    rp = sub.add_parser(
        "report",
        help="verify a run and write an audit report: DIR/index.html (self-contained) and "
        "DIR/report.md with loss and learning-rate curves, finality timeline, trust roots, "
        "checks and the commands to re-verify",
    )
    rp.add_argument("run_uri")
    rp.add_argument(
        "--out",
        required=True,
        help="empty or new folder (or one holding a report of this run, which is rewritten)",
    )
    _replayable_flag(rp)
    _trust_flags(rp)
    rp.set_defaults(fn=cmd_report)
    ch = sub.add_parser(
        "challenge",
        help="replay committed steps and compare every digest; on fraud, file a fraud proof "
        "(exit 1, its path on stdout)",
    )
    ch.add_argument("run_uri")
    ch.add_argument("--steps", metavar="A:B", help="global steps A..B-1 (default: all committed)")
    ch.add_argument(
        "--bisect",
        action="store_true",
        help="binary search (O(log n) probes from the nearest checkpoints) instead of replaying "
        "every step; finds a deviation that persists to the end of the range",
    )
    ch.add_argument("--json", action="store_true")
    ch.set_defaults(fn=cmd_challenge)
    cf = sub.add_parser(
        "check-fraud-proof",
        help="re-execute a filed fraud proof's step; exit 0 upheld, 1 rejected",
    )
    cf.add_argument("run_uri")
    cf.add_argument("proof_id")
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(fn=cmd_check_fraud_proof)
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
    sc = sub.add_parser(
        "schema", help="print a JSON Schema: the run spec, verify --json output or a policy file"
    )
    sc.add_argument("which", choices=["spec", "verify", "policy"])
    sc.set_defaults(fn=cmd_schema)
    b = sub.add_parser("bench", help="run the benchmarks of bench/ (ratios against baselines)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--only", nargs="+", choices=BENCHES)
    b.set_defaults(fn=cmd_bench)
    d = sub.add_parser("demo", help="train, prove and verify the tiny example end to end")
    d.add_argument("--store", help="folder for the demo's store (default: a new temporary folder)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Nothing leaves this machine but what the user points at (no registries or telemetry here).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from veritrain.pipeline.errors import (
        DeterminismError,
        MissingExtraError,
        SpecError,
        StorageError,
        UsageError,
        WorkerError,
    )
    from veritrain.prover.errors import VeritrainError, message

    try:
        return args.fn(args)
    except (SpecError, UsageError) as e:
        _err(str(e))
        return EXIT_USAGE
    except (StorageError, DeterminismError, WorkerError, MissingExtraError) as e:
        _err(str(e))
        return EXIT_ENV
    except VeritrainError as e:
        _err(message(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume")
        return 130
    except OSError as e:
        _err(f"{e.filename or 'system'}: {e.strerror or e}")
        return EXIT_ENV
    except Exception as e:  # users get one line, never a traceback
        if os.environ.get("VERITRAIN_DEBUG"):
            raise
        _err(
            f"internal error ({type(e).__name__}: {e}); this is a bug, please report it "
            "(VERITRAIN_DEBUG=1 shows the traceback)"
        )
        return EXIT_ENV


if __name__ == "__main__":
    sys.exit(main())
