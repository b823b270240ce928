"""Prefect flows for verification: ``verify_flow`` (a whole run, or one epoch) and ``audit_flow``
(pull one epoch into a folder and verify it from there). Tasks take and return plain values (run
URIs, folders, epoch numbers, the report as JSON); the work is veritrain.pipeline.verify and
veritrain.pipeline.audit.

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

from veritrain.pipeline.audit import holds_audit, pull_epoch, verify_audit
from veritrain.pipeline.store import open_store, split_run_uri
from veritrain.pipeline.verify import verify_run
from veritrain.prover.errors import VeritrainError


class VerificationFailed(VeritrainError):
    """A verify or audit flow found a failed check; ``report`` is the verify --json document."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


@task(name="verify-run")
def verify_run_task(run_uri: str, epoch: int | None = None) -> dict[str, Any]:
    store_uri, run_id = split_run_uri(run_uri)
    return verify_run(open_store(store_uri), run_id, epoch).to_json()


@task(name="pull-epoch", retries=2, retry_delay_seconds=5)
def pull_epoch_task(run_uri: str, epoch: int, out: str) -> dict[str, str]:
    """Copies the epoch's evidence into ``out``; skipped if ``out`` already holds this audit
    (so a retry after a partial pull is refused rather than mixed: start with a new folder)."""
    store_uri, run_id = split_run_uri(run_uri)
    if holds_audit(Path(out), run_id, epoch):
        return {}
    return pull_epoch(open_store(store_uri), run_id, epoch, Path(out), get_run_logger().warning)


@task(name="verify-audit")
def verify_audit_task(out: str, run_id: str, epoch: int) -> dict[str, Any]:
    return verify_audit(out, run_id, epoch).to_json()


@flow(name="veritrain-verify")
def verify_flow(run_uri: str, epoch: int | None = None) -> State:
    """Verifies a stored run (every epoch, or ``epoch``). Returns the report (verify --json's
    document); on a failed check the flow run is Failed and calling the flow raises
    VerificationFailed carrying the report."""
    return _outcome(verify_run_task(run_uri, epoch), "verification")


@flow(name="veritrain-audit")
def audit_flow(run_uri: str, epoch: int, out: str) -> State:
    """Pulls one epoch into ``out`` and verifies it from ``out`` alone."""
    _, run_id = split_run_uri(run_uri)
    pull_epoch_task(run_uri, epoch, out)
    return _outcome(verify_audit_task(out, run_id, epoch), f"audit of {out}")


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
