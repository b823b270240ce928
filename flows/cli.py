"""The ``veritrain`` command. Exit codes: 0 ok, 1 verification failed, 2 usage or bad spec,
3 storage or environment error; ``run`` stopped by SIGINT 130, by SIGTERM 143. Logs and progress
go to stderr; results to stdout."""

from __future__ import annotations

import argparse
import os
import sys

from veritrain.flows.commands import challenge, err, publish, tools, train, verify

# In the order `veritrain --help` lists them; each module adds its own (flows/commands/).
COMMANDS = (
    train.add_run,
    verify.add_verify,
    publish.add_attest,
    publish.add_sign_checkpoint,
    verify.add_audit,
    verify.add_status,
    publish.add_report,
    challenge.add_challenge,
    challenge.add_check_fraud_proof,
    train.add_deploy_prove,
    tools.add_schema,
    tools.add_bench,
    train.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veritrain", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs a command; the one place an error becomes a line on stderr and an exit code. Each of
    veritrain's errors carries its code (``exit_code``, pipeline/errors.py and prover/errors.py);
    anything else is the environment's (exit 3)."""
    args = build_parser().parse_args(argv)
    # Nothing leaves this machine but what the user points at (no registries or telemetry here).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from veritrain.prover.errors import EXIT_ENV, VeritrainError, message

    try:
        return args.fn(args)
    except VeritrainError as e:
        err(message(e))
        return e.exit_code
    except KeyboardInterrupt:
        err("interrupted; rerun the same command to resume")
        return 130
    except OSError as e:
        err(f"{e.filename or 'system'}: {e.strerror or e}")
        return EXIT_ENV
    except Exception as e:  # users get one line, never a traceback
        if os.environ.get("VERITRAIN_DEBUG"):
            raise
        err(
            f"internal error ({type(e).__name__}: {e}); this is a bug, please report it "
            "(VERITRAIN_DEBUG=1 shows the traceback)"
        )
        return EXIT_ENV


if __name__ == "__main__":
    sys.exit(main())
