"""The challenge flow: replay (or bisect) a run's committed steps and, on fraud, file a fraud proof
and check it. Tasks take and return plain values (the run URI, the step range, the proof id, the
result as JSON); the work is veritrain.pipeline.challenge.search.

The CLI (`veritrain challenge`, `veritrain check-fraud-proof`) calls the library directly (no
Prefect start-up, no server for a challenger); this flow is for running challenges on a Prefect
deployment, e.g. a watcher that challenges every new epoch.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from veritrain.pipeline.challenge.fraudproof import check_filed_proof, record_verdict
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.store.base import open_store
from veritrain.pipeline.store.uris import split_run_uri


@task(name="challenge-steps")
def challenge_task(run_uri: str, steps: str | None = None, bisect: bool = False) -> dict[str, Any]:
    store_uri, run_id = split_run_uri(run_uri)
    return challenge(open_store(store_uri), run_id, steps, bisect=bisect).to_json()


@task(name="check-fraud-proof")
def check_fraud_proof_task(run_uri: str, proof_id: str) -> dict[str, Any]:
    """Re-executes the proof's step from the store alone and records the verdict beside it."""
    store_uri, run_id = split_run_uri(run_uri)
    store = open_store(store_uri)
    verdict = check_filed_proof(store, run_id, proof_id)
    record_verdict(store, verdict)
    return verdict.to_json()


@flow(name="veritrain-challenge")
def challenge_flow(run_uri: str, steps: str | None = None, bisect: bool = False) -> dict[str, Any]:
    """Challenges steps ``A:B`` of a run (default: all committed). Returns the challenge result;
    when it found fraud, also the verdict of checking the filed proof independently."""
    log = get_run_logger()
    result = challenge_task(run_uri, steps, bisect)
    log.info(
        "%s: %d probes, %d steps replayed",
        result["method"],
        result["probes"],
        result["replayed_steps"],
    )
    if not result["fraud"]:
        return result
    verdict = check_fraud_proof_task(run_uri, result["proof_id"])
    result["verdict"] = verdict
    create_markdown_artifact(
        f"# Fraud proof `{result['proof_id']}`\n\n- run: `{run_uri}`\n"
        f"- step {result['step']} (epoch {result['epoch']}): {', '.join(result['fields'])} differ\n"
        f"- verdict: **{verdict['verdict']}**: {verdict['reason']}\n",
        description=f"Challenge of {run_uri}",
    )
    return result
