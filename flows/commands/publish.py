"""``attest``, ``sign-checkpoint`` and ``report``: what a verified run publishes (an in-toto
attestation, a model_signing bundle, the audit report), each under verify.py's verifier options."""

from __future__ import annotations

from pathlib import Path

from veritrain.flows.commands import err, require
from veritrain.flows.commands.verify import add_verifier_options, trust_words, verifier
from veritrain.prover.errors import EXIT_FAILED, EXIT_OK


def cmd_attest(args) -> int:
    """Writes an epoch's in-toto attestation (pipeline/publish/attest.py); its path is the last
    line."""
    from veritrain.pipeline.publish.attest import attest, write_attestation

    v = verifier(args)
    data, stmt = attest(v.store, v.run_id, args.epoch, v.verify(args.epoch))
    finality = stmt["predicate"]["finality"]
    path = write_attestation(v.store, v.run_id, args.epoch, finality, data, args.out)
    subject = stmt["subject"][0]
    err(
        f"epoch {args.epoch} ({finality}): {subject['name']} sha256 "
        f"{subject['digest']['sha256'][:16]}…, signed with the run's key"
    )
    print(path)
    return EXIT_OK


def cmd_sign_checkpoint(args) -> int:
    """Signs an epoch's end checkpoint with model_signing (pipeline/publish/modelsign.py); the
    bundle's path is the last line."""
    require("sign", "sign-checkpoint")
    from veritrain.pipeline.publish.modelsign import check_ec_key, sign_checkpoint, write_bundle

    check_ec_key(args.key)
    v = verifier(args)
    bundle, checkpoint = sign_checkpoint(
        v.store, v.run_id, args.epoch, args.key, v.verify(args.epoch)
    )
    path = write_bundle(v.store, v.run_id, args.epoch, bundle, args.out)
    err(
        f"epoch {args.epoch}: signed {checkpoint} with model_signing (verify with: "
        f"model_signing verify key --signature {path} --public_key PUB.pem CHECKPOINT)"
    )
    print(path)
    return EXIT_OK


def cmd_report(args) -> int:
    """Writes the audit report (pipeline/publish/report.py): exit 0 if the run verifies, 1 if not
    (the report is written either way); its index.html is the last stdout line."""
    require("report", "report")
    from veritrain.pipeline.publish.report import build_report, check_out_dir, write_report

    v = verifier(args)
    out = Path(args.out)
    check_out_dir(out, v.run_id)
    report = build_report(
        v.store,
        v.run_id,
        replayable=v.replayable,
        replayable_files=args.replayable_profile,
        policy=v.policy,
        flags=trust_words(args),
    )
    page = write_report(report, out)
    r = report.verification
    failed = [("run", c) for c in r.checks if not c.ok]
    failed += [(f"epoch {e.epoch}", c) for e in r.epochs for c in e.checks if not c.ok]
    if failed:
        where, c = failed[0]
        err(f"verification failed: {where}: {c.name}: {c.detail}")
    print(
        f"run {v.run_id}: {len(r.epochs)} epochs, {'verified' if r.ok else 'verification FAILED'}"
    )
    print(page)
    return EXIT_OK if r.ok else EXIT_FAILED


def add_attest(sub) -> None:
    at = sub.add_parser(
        "attest",
        help="write a verified epoch's in-toto attestation (a DSSE envelope signed with the "
        "run's key); its path is the last stdout line",
    )
    at.add_argument("--epoch", type=int, required=True)
    at.add_argument(
        "--out",
        metavar="FILE",
        help="local file to write (default: "
        "RUN_URI/attestations/epoch-<N:06d>.<state>.intoto.json)",
    )
    add_verifier_options(at)
    at.set_defaults(fn=cmd_attest)


def add_sign_checkpoint(sub) -> None:
    sg = sub.add_parser(
        "sign-checkpoint",
        help="sign a proven or final epoch's end checkpoint with OpenSSF model_signing (EC key); "
        "the bundle's path is the last stdout line",
    )
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
    add_verifier_options(sg)
    sg.set_defaults(fn=cmd_sign_checkpoint)


def add_report(sub) -> None:
    rp = sub.add_parser(
        "report",
        help="verify a run and write an audit report: DIR/index.html (self-contained) and "
        "DIR/report.md with loss and learning-rate curves, finality timeline, trust roots, "
        "checks and the commands to re-verify",
    )
    rp.add_argument(
        "--out",
        required=True,
        help="empty or new folder (or one holding a report of this run, which is rewritten)",
    )
    add_verifier_options(rp)
    rp.set_defaults(fn=cmd_report)
