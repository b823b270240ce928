"""Prefect flows for verification: ``verify_flow`` (a whole run, or one epoch) and ``audit_flow``
(pull one epoch into a folder and verify it from there). Tasks take and return plain values (run
URIs, folders, epoch numbers, the report as JSON); the work is veritrain.pipeline.verify.verifier
and veritrain.pipeline.verify.audit.

The CLI does not go through these flows (Prefect's start-up costs about 10 s and an auditor needs
no server); they are for running verification on a Prefect deployment, where a failed check makes
the flow run Failed and its checks appear as a table artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from veritrain.pipeline.store.base import open_store
from veritrain.pipeline.store.uris import split_run_uri
from veritrain.pipeline.verify.audit import check_dataset, holds_audit, pull_epoch, verify_audit
from veritrain.pipeline.verify.policy import Policy, policy_from
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover.errors import VeritrainError


class VerificationFailed(VeritrainError):
    """A verify or audit flow found a failed check; ``report`` is the verify --json document."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _trust(trust: dict[str, Any]) -> Policy:
    """The flow's trust parameters as a policy (pipeline/verify/policy.py), checked as the CLI's
    flags."""
    return policy_from(
        trust["policy"],
        trust["image_ids"],
        trust["trainer_keys"],
        trust["require_pinned"],
        names=("image_ids", "trainer_keys"),
    )


@task(name="verify-run")
def verify_run_task(
    run_uri: str, epoch: int | None = None, trust: dict[str, Any] | None = None
) -> dict[str, Any]:
    store_uri, run_id = split_run_uri(run_uri)
    policy = _trust(trust) if trust else None
    return verify_run(open_store(store_uri), run_id, epoch, policy=policy).to_json()


@task(name="pull-epoch", retries=2, retry_delay_seconds=5)
def pull_epoch_task(
    run_uri: str, epoch: int, out: str, dataset: str | None = None
) -> dict[str, str]:
    """Copies the epoch's evidence into ``out`` (after checking a sharded run's dataset where
    ``dataset`` is not None: "" where the run read it, else there); skipped if ``out`` already
    holds this audit (so a retry after a partial pull is refused rather than mixed: start with a
    new folder)."""
    store_uri, run_id = split_run_uri(run_uri)
    if holds_audit(Path(out), run_id, epoch):
        return {}
    store = open_store(store_uri)
    if dataset is not None:
        check_dataset(store, run_id, dataset or None)
    return pull_epoch(store, run_id, epoch, Path(out), get_run_logger().warning)


@task(name="verify-audit")
def verify_audit_task(
    out: str, run_id: str, epoch: int, trust: dict[str, Any] | None = None
) -> dict[str, Any]:
    policy = _trust(trust) if trust else None
    return verify_audit(out, run_id, epoch, policy=policy).to_json()


@flow(name="veritrain-verify")
def verify_flow(
    run_uri: str,
    epoch: int | None = None,
    policy: str | None = None,
    image_ids: list[str] | None = None,
    trainer_keys: list[str] | None = None,
    require_pinned: bool = False,
) -> State:
    """Verifies a stored run (every epoch, or ``epoch``). Returns the report (verify --json's
    document); on a failed check the flow run is Failed and calling the flow raises
    VerificationFailed carrying the report.

    The trust roots are the verifier's, as with ``veritrain verify``'s flags: ``policy`` a
    policy file on the worker, ``image_ids`` the guests accepted (64 hex digits or
    ``installed``), ``trainer_keys`` the trainers (64 hex digits, or a PEM file on the worker),
    ``require_pinned`` to fail a run whose trainer no key names."""
    trust = _trust_parameters(policy, image_ids, trainer_keys, require_pinned)
    return _outcome(verify_run_task(run_uri, epoch, trust), "verification")


@flow(name="veritrain-audit")
def audit_flow(
    run_uri: str,
    epoch: int,
    out: str,
    policy: str | None = None,
    image_ids: list[str] | None = None,
    trainer_keys: list[str] | None = None,
    require_pinned: bool = False,
    dataset: str | None = None,
) -> State:
    """Pulls one epoch into ``out`` and verifies it from ``out`` alone, against the trust roots
    named as for ``verify_flow``; with ``dataset`` ("" where the run read it, or a copy's path),
    a sharded run's dataset is checked against run.json first."""
    _, run_id = split_run_uri(run_uri)
    trust = _trust_parameters(policy, image_ids, trainer_keys, require_pinned)
    pull_epoch_task(run_uri, epoch, out, dataset)
    return _outcome(verify_audit_task(out, run_id, epoch, trust), f"audit of {out}")


def _trust_parameters(
    policy: str | None,
    image_ids: list[str] | None,
    trainer_keys: list[str] | None,
    require_pinned: bool,
) -> dict[str, Any]:
    trust = {
        "policy": policy,
        "image_ids": image_ids or [],
        "trainer_keys": trainer_keys or [],
        "require_pinned": require_pinned,
    }
    _trust(trust)  # a bad value fails the flow at once, naming the parameter
    return trust


def _outcome(doc: dict[str, Any], what: str) -> State:
    rows = [{"scope": "run", **c} for c in doc["checks"]]
    rows += [
        {"scope": f"epoch {e['epoch']} ({e['status']})", **c}
        for e in doc["epochs"]
        for c in e["checks"]
    ]
    create_table_artifact(rows, description=f"{what} of run {doc['run_id']}")
    failed = [f"{r['scope']}: {r['name']}: {r['detail']}" for r in rows if not r["ok"]]
    if failed:
        message = f"{what} failed: {failed[0]}"
        return Failed(message=message, data=VerificationFailed(message, doc))
    return Completed(message=f"{what}: every check passed", data=doc)
