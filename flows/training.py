"""The training flow: commit the dataset, train epoch by epoch, and prove each finalized epoch
while the next one trains. Tasks take and return plain values (URIs, ids, JSON); every task
reopens the run from the store, so a retried task resumes from the last checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture

from veritrain.flows import progress
from veritrain.flows.proving import results, submit_epoch_proof
from veritrain.pipeline.prove import estimate
from veritrain.pipeline.prove.estimate import segment_key
from veritrain.pipeline.prove.finalize import finalize_epoch
from veritrain.pipeline.prove.parts import check_segment_po2
from veritrain.pipeline.run.ledger import load_or_create_key
from veritrain.pipeline.run.manifest import (
    Manifest,
    default_run_id,
    epoch_entries,
    open_ledger,
    receipt_entries,
)
from veritrain.pipeline.run.spec import RunSpec, parse_spec
from veritrain.pipeline.store.base import open_store
from veritrain.pipeline.store.uris import object_uri, run_uri
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.step import StepEvent
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.prover import ProofPart


def _spec(spec_json: dict[str, Any]) -> RunSpec:
    return parse_spec(spec_json, "flow parameter spec")


@task(name="commit-dataset")
def open_run(spec_json: dict[str, Any], store_uri: str, run_id: str) -> dict[str, Any]:
    """Creates (or reopens) the run: manifest with the dataset root, genesis checkpoint, ledger."""
    t = open_trainer(_spec(spec_json), open_store(store_uri), run_id)
    m = t.manifest
    get_run_logger().info(
        "run %s: dataset root %s (%d samples), image id %s",
        run_id,
        m.dataset_root.hex(),
        m.dataset_len,
        m.image_id.hex(),
    )
    return {
        "run_uri": run_uri(t.store, run_id),
        "steps_per_epoch": t.spe,
        "image_id": m.image_id.hex(),
    }


@task(name="train-epoch", retries=2, retry_delay_seconds=2)
def train_epoch(
    spec_json: dict[str, Any], store_uri: str, run_id: str, epoch: int
) -> Mapping[str, Any]:
    """Trains one epoch (resuming from the run's last checkpoint); returns the epoch's claim."""
    log = get_run_logger()
    t = open_trainer(_spec(spec_json), open_store(store_uri), run_id)
    artifact = create_progress_artifact(0.0, description=f"run {run_id} epoch {epoch}")
    assert isinstance(artifact, UUID)  # a coroutine only when called from async code
    bar = progress.current()
    task_id = bar.add_task(f"train epoch {epoch}", total=t.spe, info="") if bar else None
    first = epoch * t.spe

    def on_step(ev: StepEvent) -> None:
        done = ev.step - first
        if bar is not None and task_id is not None:
            bar.update(task_id, completed=done, info=f"loss {ev.loss:.4f}")
        if done == t.spe or done % max(1, t.spe // 10) == 0:
            update_progress_artifact(artifact, 100.0 * done / t.spe)

    t.on_step = on_step
    train(t, epoch + 1)
    claim = epoch_entries(t.entries)[epoch].body.claim
    log.info(
        "epoch %d committed: steps %d..%d, end state %s",
        epoch,
        claim.first_step,
        claim.first_step + claim.step_count - 1,
        claim.end_state_digest.hex(),
    )
    return claim.to_json()


@task(name="finalize-epoch", retries=1, retry_delay_seconds=2)
def prove_epoch(store_uri: str, run_id: str, epoch: int, po2: int | None = None) -> dict[str, Any]:
    """Proves one epoch in the zkVM (or adopts the receipt a prove pool stored) and records its
    receipt and journal. A proof made here says its plan first, then each part as it finishes,
    and keeps the parts' times as this machine's rates."""
    log = get_run_logger()
    store = open_store(store_uri)
    manifest = Manifest.load(store, run_id)
    ledger, entries = open_ledger(store, manifest)
    rates = progress.rates()
    po2s: list[int] = []

    def on_part(part: ProofPart) -> None:
        if part.stats is not None:
            s = part.stats
            planned = estimate.plan(epoch, s.user_cycles, s.total_cycles, s.segments, po2, rates)
            po2s[:] = planned.po2s
            progress.proof_planned(run_id, planned, log)
            return
        kind = segment_key(po2s[part.index - 1]) if part.kind == "segment" else part.kind
        rates.record(kind, part.seconds)
        progress.proof_part(run_id, epoch, log, part.kind, part.index, part.count, part.seconds)

    key = load_or_create_key(run_id)
    done = finalize_epoch(store, manifest, ledger, entries, key, epoch, po2, on_part)
    stats = {"epoch": epoch, "seconds": 0.0, "cycles": 0, "receipt_bytes": 0}
    if done is None:
        progress.proof_finished(run_id, epoch, "already proven")
        log.info("epoch %d: already proven (its receipt entry is in the ledger)", epoch)
        return stats
    r = done.receipt
    stats["receipt_bytes"] = len(r.receipt)
    if done.source == "cached":
        progress.proof_finished(run_id, epoch, f"{stats['receipt_bytes']} bytes, from the cache")
        log.info(
            "epoch %d proven: its receipt (%d bytes), proven before on this machine for the same "
            "claim, from the receipt cache (%s), verified",
            epoch,
            stats["receipt_bytes"],
            done.cache_path,
        )
        return stats
    if r.stats is None:  # a receipt a prove pool (or an earlier attempt) stored, verified here
        progress.proof_finished(run_id, epoch, f"{stats['receipt_bytes']} bytes, adopted")
        log.info(
            "epoch %d proven: its receipt (%d bytes), proven elsewhere and stored, verified and "
            "adopted",
            epoch,
            stats["receipt_bytes"],
        )
        return stats
    stats |= {"seconds": round(r.stats.seconds, 1), "cycles": r.stats.total_cycles}
    progress.proof_finished(
        run_id, epoch, f"{stats['cycles']} cycles, {stats['receipt_bytes']} bytes"
    )
    log.info("epoch %d proven: %s", epoch, stats)
    if done.cache_path is not None:
        log.info("epoch %d: its receipt is in the receipt cache (%s)", epoch, done.cache_path)
    return stats


@flow(name="veritrain-train")
def train_flow(
    spec: dict[str, Any],
    store: str | None = None,
    run_id: str | None = None,
    prove_pool: str | None = None,
    segment_po2: int | None = None,
) -> str:
    """Trains a spec with per-step commitments; proving epoch e overlaps training epoch e+1.

    With ``prove_pool``, epochs are proven in parts by that pool's workers (flows/proving.py) at
    segment size ``segment_po2`` and this flow adopts their receipts; else in this process."""
    s = _spec(spec)
    check_segment_po2(segment_po2, "flow parameter segment_po2")
    store_uri = store or s.store
    run_id = run_id or default_run_id(s)
    info = open_run(spec, store_uri, run_id)
    proofs: list[tuple[int, PrefectFuture]] = []
    previous = None
    finished = None
    parts = []
    for epoch in range(s.epochs):
        train_epoch(spec, store_uri, run_id, epoch)
        due = s.finalize_every and ((epoch + 1) % s.finalize_every == 0 or epoch == s.epochs - 1)
        if due:
            # Receipts are stored and adopted in order (each resolves its predecessor's).
            pending = [e for e in range(epoch + 1) if not any(p[0] == e for p in proofs)]
            for e in pending:
                after = [previous] if previous else []
                if prove_pool:
                    parts += submit_epoch_proof(
                        store_uri,
                        run_id,
                        e,
                        segment_po2,
                        prove_pool,
                        [finished] if finished else [],
                    )
                    finished = parts[-1]
                    after.append(finished)
                previous = prove_epoch.submit(
                    store_uri, run_id, e, segment_po2, wait_for=after, return_state=False
                )
                proofs.append((e, previous))
    results(parts)
    stats = [f.result() for _, f in proofs]
    _summarize(store_uri, run_id, info, stats)
    publish_report(store_uri, run_id)
    return info["run_uri"]


def artifact_key(run_id: str, what: str) -> str:
    """Prefect artifact keys are lowercase letters, digits and dashes."""
    return f"{run_id.lower().replace('_', '-').replace('.', '-')}-{what}"


@task(name="report")
def publish_report(store_uri: str, run_id: str) -> str:
    """The audit report (pipeline/publish/report.py, `veritrain report`) as a markdown artifact with
    its plots inline; returns the artifact key. It verifies the run as `veritrain verify` does on
    this machine, so this machine's first sightings of the receipts are recorded now."""
    from veritrain.pipeline.publish.report import build_report, markdown_standalone

    report = build_report(open_store(store_uri), run_id)
    key = artifact_key(run_id, "report")
    create_markdown_artifact(
        markdown_standalone(report),
        key=key,
        description=f"Audit report of run {run_id} (veritrain report)",
    )
    return key


def _summarize(
    store_uri: str, run_id: str, info: dict[str, Any], stats: list[dict[str, Any]]
) -> None:
    store = open_store(store_uri)
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    receipts = receipt_entries(entries)
    rows = []
    for e, entry in sorted(epoch_entries(entries).items()):
        c = entry.body.claim
        rows.append(
            {
                "epoch": e,
                "state": "proven" if e in receipts else "committed",
                "steps": f"{c.first_step}..{c.first_step + c.step_count - 1}",
                "end state digest": c.end_state_digest.hex()[:16],
                "receipt": object_uri(store, receipts[e].body.receipt) if e in receipts else "",
            }
        )
    create_table_artifact(
        rows, key=artifact_key(run_id, "epochs"), description=f"Epochs of run {run_id}"
    )
    proving = sum(s["seconds"] for s in stats)
    create_markdown_artifact(
        f"# veritrain run `{run_id}`\n\n"
        f"- run URI: `{info['run_uri']}`\n- guest image id: `{info['image_id']}`\n"
        f"- epochs: {len(rows)} ({len(receipts)} proven), {info['steps_per_epoch']} steps each\n"
        f"- proving time in this process: {proving:.1f} s\n\n"
        f"Verify with `veritrain verify {info['run_uri']}`.\n",
        description=f"Summary of run {run_id}",
    )
