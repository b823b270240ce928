"""The Python API, for notebooks and scripts: ``veritrain.run`` and ``veritrain.verify`` do what
``veritrain run`` and ``veritrain verify --json`` do, and raise the errors those commands print
(each a VeritrainError with the command's ``exit_code``).

``verify`` imports neither torch nor Prefect, like the command; ``run`` needs the ``train``
extra."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veritrain.pipeline.run.spec import RunSpec
    from veritrain.pipeline.verify.policy import Policy


def run(
    spec: str | Path | RunSpec | dict[str, Any],
    *,
    store: str | None = None,
    run_id: str | None = None,
    key: str | None = None,
) -> str:
    """Trains ``spec`` (a spec file, a RunSpec or a mapping of its keys; relative paths in a
    file are its folder's, in the others the current folder's) with the checks of ``veritrain
    run`` first, through the same Prefect flow (Prefect's ephemeral API unless PREFECT_API_URL
    names a server); returns the run URI. ``store``, ``run_id`` and ``key`` are ``--store``,
    ``--run-id`` and ``--key``. Calling it again resumes the run, as rerunning the command
    does."""
    from veritrain.pipeline.extras import require_extra

    require_extra("train", "veritrain.run")
    from veritrain.flows import process

    process.configure_prefect()
    from veritrain.flows.training import train_flow
    from veritrain.pipeline.train.preflight import preflight

    plan = preflight(spec, store, run_id, key)
    return str(train_flow(plan.spec.model_dump(mode="json"), plan.store_uri, plan.run_id))


def verify(
    uri: str,
    *,
    policy: str | Path | Policy | dict[str, Any] | None = None,
    epoch: int | None = None,
) -> dict[str, Any]:
    """Verifies the run at ``uri`` as ``veritrain verify URI --json`` does and returns the
    document it prints (``ok`` says whether it passed). ``policy`` is a ``--policy`` file, a
    Policy or a mapping of a policy file's keys (None: this installation's guest, any
    trainer)."""
    from veritrain.flows.commands import open_run
    from veritrain.pipeline.verify.policy import Policy, load_policy, parse_policy
    from veritrain.pipeline.verify.verifier import verify_run

    if policy is None:
        chosen = Policy()
    elif isinstance(policy, Policy):
        chosen = policy
    elif isinstance(policy, dict):
        chosen = parse_policy(policy)
    else:
        chosen = load_policy(policy)
    store, run_id = open_run(uri)
    return verify_run(store, run_id, epoch, policy=chosen).to_json()
