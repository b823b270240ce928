"""``challenge`` and ``check-fraud-proof``: replaying committed steps to find a wrong one and file
a fraud proof, and re-executing a filed proof's step to uphold or reject it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from veritrain.flows.commands import err, open_run, require
from veritrain.prover.errors import EXIT_FAILED, EXIT_OK


def cmd_challenge(args) -> int:
    """Calls the library directly, not veritrain.flows.challenge.challenge_flow: a challenger needs
    no Prefect server, and Prefect's start-up would add about 10 s to every challenge."""
    require("train", "challenge")
    from veritrain.pipeline.challenge.search import challenge
    from veritrain.pipeline.store.keys import proof_key
    from veritrain.pipeline.store.uris import object_uri

    store, run_id = open_run(args.run_uri)
    result = challenge(store, run_id, args.steps, bisect=args.bisect, local=_local(args))
    doc = result.to_json()
    uri = object_uri(store, proof_key(run_id, doc["proof_id"])) if doc["fraud"] else None
    doc["proof_uri"] = uri
    first, end = doc["steps"]
    bound = f" (bound {doc['probe_bound']})" if args.bisect else ""
    err(
        f"{doc['method']} of steps {first}..{end - 1}: {doc['probes']} probes{bound}, "
        f"{doc['replayed_steps']} steps replayed"
    )
    for note in doc["notes"]:
        err(note)
    if args.json:
        print(json.dumps(doc, indent=1))
    if not doc["fraud"]:
        if not args.json:
            print(f"no fraud found in steps {first}..{end - 1}")
        return EXIT_OK
    err(
        f"fraud: step {doc['step']} (epoch {doc['epoch']}) re-executes to another "
        f"{', '.join(doc['fields'])} than the run committed; proof {doc['proof_id']}"
    )
    if not args.json:
        # Alone on the last line, for scripts.
        print(uri)
    return EXIT_FAILED


def cmd_check_fraud_proof(args) -> int:
    from veritrain.pipeline.challenge.fraudproof import check_filed_proof, record_verdict
    from veritrain.pipeline.errors import UsageError

    require("train", "check-fraud-proof")

    # The id, or the path `challenge` printed.
    pid = Path(args.proof_id).name.removesuffix(".json")
    if not re.fullmatch(r"[0-9a-f]{32}", pid):
        raise UsageError(f"{args.proof_id}: not a fraud proof id (32 hex digits) or its path")
    store, run_id = open_run(args.run_uri)
    verdict = check_filed_proof(store, run_id, pid, _local(args))
    if record_verdict(store, verdict) is None:
        err(f"a verdict on proof {pid} was already recorded; it was left as it is")
    doc = verdict.to_json()
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"{doc['verdict']}: {doc['reason']}")
    return EXIT_OK if verdict.upheld else EXIT_FAILED


def _local(args):
    from veritrain.pipeline.run.spec import LocalCopy

    return LocalCopy(args.dataset, tuple(args.import_path or ()))


def _add_local(parser) -> None:
    """The options of a replay on a machine that keeps the run's files elsewhere."""
    parser.add_argument(
        "--dataset",
        metavar="PATH",
        help="this machine's copy of the run's dataset (its file, corpus, or shard folder or "
        "s3:// prefix), if not where the run read it; it must have the run's dataset root",
    )
    parser.add_argument(
        "--import-path",
        metavar="DIR",
        action="append",
        help="where this machine keeps the run's imported modules (repeatable; replaces the "
        "run's import_path); they must have the run's code identity",
    )


def add_challenge(sub) -> None:
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
    _add_local(ch)
    ch.set_defaults(fn=cmd_challenge)


def add_check_fraud_proof(sub) -> None:
    cf = sub.add_parser(
        "check-fraud-proof",
        help="re-execute a filed fraud proof's step; exit 0 upheld, 1 rejected",
    )
    cf.add_argument("run_uri")
    cf.add_argument("proof_id")
    cf.add_argument("--json", action="store_true")
    _add_local(cf)
    cf.set_defaults(fn=cmd_check_fraud_proof)
