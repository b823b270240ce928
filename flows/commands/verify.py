"""``verify``, ``audit`` and ``status``, and what every verifier command shares (these three and
publish.py's): its options (``add_verifier_options``, as sigstore's shared verify options) and its
preamble (``verifier``: the replayable profiles, the trust policy, the run, in that order)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from veritrain.flows.commands import err, open_run
from veritrain.prover.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from veritrain.pipeline.run.determinism import DeterminismProfile
    from veritrain.pipeline.store.base import Store
    from veritrain.pipeline.verify.policy import Policy
    from veritrain.pipeline.verify.verifier import RunReport


def add_verifier_options(p) -> None:
    """RUN_URI, --replayable-profile and the trust flags, which ``verifier`` reads."""
    p.add_argument("run_uri")
    p.add_argument(
        "--replayable-profile",
        action="append",
        metavar="FILE",
        help='JSON file with a determinism profile (as in run.json\'s "determinism") or a list '
        "of them, that you can replay (repeatable; default: this machine's). A proven epoch "
        "past its window is final only if one of them replays the run's profile, else "
        "unreplayable",
    )
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


@dataclass(frozen=True)
class Verifier:
    """A run as a verifier command sees it: under its trust policy, with the determinism
    profiles it can replay (None: this machine's own)."""

    store: Store
    run_id: str
    policy: Policy
    replayable: list[DeterminismProfile] | None

    def verify(self, epoch: int | None = None) -> RunReport:
        from veritrain.pipeline.verify.verifier import verify_run

        return verify_run(
            self.store, self.run_id, epoch, replayable=self.replayable, policy=self.policy
        )


def verifier(args) -> Verifier:
    """The options of ``add_verifier_options`` read: the profile files, then --policy and the
    trust flags (which add to the file), then RUN_URI, so a bad file or flag is named before the
    store is touched."""
    from veritrain.pipeline.run.determinism import load_profiles
    from veritrain.pipeline.verify.policy import policy_from

    replayable = None
    if args.replayable_profile is not None:
        replayable = [p for path in args.replayable_profile for p in load_profiles(path)]
    policy = policy_from(args.policy, args.image_id, args.trainer_key, args.require_pinned)
    store, run_id = open_run(args.run_uri)
    return Verifier(store, run_id, policy, replayable)


def trust_words(args) -> list[str]:
    """The trust flags as given, to repeat them in the commands a report prints."""
    words = ["--policy", args.policy] if args.policy else []
    for v in args.image_id or []:
        words += ["--image-id", v]
    for v in args.trainer_key or []:
        words += ["--trainer-key", v]
    return words + (["--require-pinned"] if args.require_pinned else [])


def cmd_verify(args) -> int:
    v = verifier(args)
    if args.attestation is not None:
        from veritrain.pipeline.publish.attest import read_attestation, verify_attestation

        data = read_attestation(args.attestation, v.store, v.run_id)
        report = verify_attestation(
            v.store,
            v.run_id,
            data,
            args.attestation,
            args.epoch,
            trainer_keys=[bytes.fromhex(k) for k in v.policy.trainer_keys] or None,
            replayable=v.replayable,
            policy=v.policy,
        )
        return print_report(report, args.json, "verification")
    return print_report(v.verify(args.epoch), args.json, "verification")


def cmd_audit(args) -> int:
    """Calls the library directly, not veritrain.flows.verification.audit_flow: an auditor's machine
    needs no Prefect server, and Prefect's start-up would cost about 10 s per command."""
    from veritrain.pipeline.verify.audit import audit_epoch

    v = verifier(args)
    report = audit_epoch(
        v.store,
        v.run_id,
        args.epoch,
        args.out,
        log=err,
        replayable=v.replayable,
        policy=v.policy,
        dataset=args.dataset,
    )
    return print_report(report, args.json, f"audit of {args.out}")


def cmd_status(args) -> int:
    from rich.console import Console
    from rich.table import Table

    v = verifier(args)
    report = v.verify()
    failed_run = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    table = Table(
        title=f"run {v.run_id}  image {report.image_id[:16]}…\ntrust: {trust_line(report.trust)}",
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
        err(f"status: run: {failed_run[0]}")
    return EXIT_OK if report.ok else EXIT_FAILED


def print_report(report: RunReport, as_json: bool, what: str) -> int:
    """Prints a RunReport (one JSON document with --json); a failure also gets one line on
    stderr naming the first failed check, whose detail names the object."""
    from veritrain.pipeline.run.code import describe_code

    failed = [("run", c) for c in report.checks if not c.ok]
    failed += [(f"epoch {e.epoch}", c) for e in report.epochs for c in e.checks if not c.ok]
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(f"trust: {trust_line(report.trust)}")
        print(f"code: {describe_code(report.code)}")
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
        err(f"{what} failed: {where}: {c.name}: {c.detail}{more}")
    return EXIT_OK if report.ok else EXIT_FAILED


def trust_line(trust: dict) -> str:
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


def add_verify(sub) -> None:
    v = sub.add_parser("verify", help="verify a stored run: ledger, receipts, records, checkpoints")
    v.add_argument("--epoch", type=int)
    v.add_argument("--json", action="store_true")
    v.add_argument(
        "--attestation",
        metavar="FILE",
        help="check an in-toto attestation (from attest; a local file or an object under "
        "RUN_URI) against the epoch it names, which is verified too",
    )
    add_verifier_options(v)
    v.set_defaults(fn=cmd_verify)


def add_audit(sub) -> None:
    a = sub.add_parser(
        "audit",
        help="pull one epoch's checkpoint, receipt, journal, records, manifest and ledger into "
        "DIR and verify them from DIR alone",
    )
    a.add_argument("--epoch", type=int, required=True)
    a.add_argument(
        "--out",
        required=True,
        help="empty or new folder (or one holding exactly this audit, which is re-verified)",
    )
    a.add_argument("--json", action="store_true")
    a.add_argument(
        "--dataset",
        nargs="?",
        const="",
        metavar="PATH",
        help="also check a sharded run's dataset against run.json before the pull (the listing "
        "and every shard's sha256, each shard read once): where the run read it, or at PATH "
        "(this machine's copy: a shard folder or s3:// prefix)",
    )
    add_verifier_options(a)
    a.set_defaults(fn=cmd_audit)


def add_status(sub) -> None:
    s = sub.add_parser("status", help="a table of epochs and their states")
    add_verifier_options(s)
    s.set_defaults(fn=cmd_status)
