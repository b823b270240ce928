"""The ``veritrain`` subcommands, a module per job: ``train`` (run, demo, deploy-prove), ``verify``
(verify, audit, status, and the verifier options the publishing commands share), ``publish``
(attest, sign-checkpoint, report), ``challenge`` (challenge, check-fraud-proof) and ``tools``
(schema, bench). Each adds its parsers (``add_*``) and runs its command (``cmd_*``, returning the
exit code of a result; errors carry theirs, and flows/cli.py maps them in one place). What every
command uses is here: one line on stderr, the extras a command needs, a run URI opened."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veritrain.pipeline.store.base import Store


def err(msg: str) -> None:
    print(f"veritrain: {msg}", file=sys.stderr)


def require(extra: str, command: str) -> None:
    """Commands that train or re-execute steps need the ``train`` extra, ``deploy-prove`` the
    ``prove`` extra (pipeline/extras.py); verify, audit and status need neither, and import none
    of it."""
    from veritrain.pipeline.extras import require_extra

    require_extra(extra, f"veritrain {command}")


def open_run(uri: str) -> tuple[Store, str]:
    from veritrain.pipeline.store.base import open_store
    from veritrain.pipeline.store.uris import split_run_uri

    store_uri, run_id = split_run_uri(uri, "RUN_URI")
    return open_store(store_uri, "RUN_URI"), run_id
