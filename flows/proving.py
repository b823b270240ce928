"""The proving flows: `veritrain-prove` proves one epoch in parts (pipeline/prove/parts.py):
execute, prove each segment, join them in a tree, resolve the previous epoch's receipt.

With a prove pool, each segment proof and each join is a flow run of the small deployments
`veritrain-prove-segment/<pool>` and `veritrain-prove-join/<pool>`, so the pool's workers share
them; without one they run in this process, one after another. Everything passes plain values
(URIs, numbers): the store carries the segments and receipts. Provers need no run key; the
trainer adopts the stored receipt (flows/training.py).

Once the epoch is executed its plan and estimate are logged (pipeline/prove/estimate.py), then a
line per part as it lands in the store, with the seconds its prover took (from its
``.prover.json`` note when a pool's worker made it). A part proven in a process is timed there
and kept as that machine's rate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from veritrain.flows import progress
from veritrain.pipeline.errors import UsageError, WorkerError
from veritrain.pipeline.prove import estimate, parts
from veritrain.pipeline.store.base import NotFoundError, Store, open_store
from veritrain.pipeline.store.keys import part_receipt_key, prover_note_key, receipt_key

SEGMENT_FLOW, JOIN_FLOW, PROVE_FLOW = (
    "veritrain-prove-segment",
    "veritrain-prove-join",
    "veritrain-prove",
)


def _note() -> dict[str, Any]:
    return {"flow_run_id": str(flow_run.id)} if flow_run.id else {}


def _segment_here(
    store: Store, run_id: str, epoch: int, po2: int | None, segment: int
) -> float | None:
    """Proves a segment in this process: its seconds, kept as this machine's rate for its size,
    or None if it was stored already."""
    ex = parts.load_execution(store, run_id, epoch, po2)
    started = time.perf_counter()
    if not parts.prove_segment(store, run_id, epoch, po2, segment, _note()):
        return None
    seconds = time.perf_counter() - started
    size = estimate.segment_po2s(ex.total_cycles, len(ex.segments), po2)[segment]
    progress.rates().record(estimate.segment_key(size), seconds)
    return seconds


def _join_here(
    store: Store, run_id: str, epoch: int, po2: int | None, first: int, mid: int, end: int
) -> float | None:
    """Joins in this process: its seconds, kept as this machine's rate, or None if stored."""
    started = time.perf_counter()
    if not parts.join(store, run_id, epoch, po2, first, mid, end, _note()):
        return None
    seconds = time.perf_counter() - started
    progress.rates().record("join", seconds)
    return seconds


@flow(name=SEGMENT_FLOW)
def prove_segment_flow(
    store_uri: str, run_id: str, epoch: int, po2: int | None, segment: int
) -> bool:
    """Proves and lifts one segment of an executed epoch (a prove pool's unit of work)."""
    return _segment_here(open_store(store_uri), run_id, epoch, po2, segment) is not None


@flow(name=JOIN_FLOW)
def join_flow(
    store_uri: str, run_id: str, epoch: int, po2: int | None, first: int, mid: int, end: int
) -> bool:
    """Joins two adjacent stored parts of an epoch's receipt."""
    store = open_store(store_uri)
    return _join_here(store, run_id, epoch, po2, first, mid, end) is not None


def _noted(store: Store, receipt: str) -> tuple[float | None, str | None]:
    """The seconds and prover a part's note records. A note only informs: one that is missing
    (a racer's receipt won) or unreadable leaves the progress line without them."""
    try:
        note = json.loads(store.read(prover_note_key(receipt)))
        return float(note["seconds"]), str(note["prover"])
    except (NotFoundError, ValueError, TypeError, KeyError):
        return None, None


def _on_pool(pool: str, flow_name: str, parameters: dict[str, Any]) -> None:
    name = f"{flow_name}/{pool}"
    try:
        fr = run_deployment(name, parameters=parameters, timeout=None)
    except ObjectNotFound:
        raise WorkerError(
            f"--prove-pool {pool}: the Prefect server has no deployment {name}; "
            f"create it with `veritrain deploy-prove --pool {pool}`"
        ) from None
    assert isinstance(fr, FlowRun)  # a coroutine only when called from async code; this is sync
    state = fr.state
    if state is None or not state.is_completed():
        ended = f"{state.name}: {state.message or 'see its logs'}" if state else "with no state"
        raise WorkerError(f"flow run {fr.name} ({fr.id}) of deployment {name} ended {ended}")


@task(name="execute-epoch", retries=1, retry_delay_seconds=2)
def execute_epoch(
    store_uri: str, run_id: str, epoch: int, po2: int | None, pool: str | None = None
) -> int:
    """Executes the epoch's guest once and stores its segments; returns how many there are
    (none if the epoch's receipt is stored already: then there is nothing left to prove). Logs
    the proof's plan and estimate."""
    store = open_store(store_uri)
    if store.exists(receipt_key(run_id, epoch)):
        return 0
    ex = parts.execute(store, run_id, epoch, po2)
    planned = estimate.plan(
        epoch, ex.user_cycles, ex.total_cycles, len(ex.segments), po2, progress.rates()
    )
    where = f" by prove pool {pool}'s workers (one at a time; more finish sooner)" if pool else ""
    progress.proof_planned(run_id, planned, get_run_logger(), where)
    return len(ex.segments)


@task(name="prove-segment", retries=1, retry_delay_seconds=2)
def prove_segment(
    store_uri: str, run_id: str, epoch: int, po2: int | None, segment: int, pool: str | None
) -> None:
    params = {
        "store_uri": store_uri,
        "run_id": run_id,
        "epoch": epoch,
        "po2": po2,
        "segment": segment,
    }
    store = open_store(store_uri)
    ex = parts.load_execution(store, run_id, epoch, po2)
    by = None
    if pool:
        _on_pool(pool, SEGMENT_FLOW, params)
        seconds, by = _noted(store, part_receipt_key(ex.prefix, segment, segment + 1))
    else:
        seconds = _segment_here(store, run_id, epoch, po2, segment)
    n = len(ex.segments)
    progress.proof_part(run_id, epoch, get_run_logger(), "segment", segment + 1, n, seconds, by)


@task(name="join-receipts", retries=1, retry_delay_seconds=2)
def join_receipts(
    store_uri: str,
    run_id: str,
    epoch: int,
    po2: int | None,
    first: int,
    mid: int,
    end: int,
    pool: str | None,
) -> None:
    params = {
        "store_uri": store_uri,
        "run_id": run_id,
        "epoch": epoch,
        "po2": po2,
        "first": first,
        "mid": mid,
        "end": end,
    }
    store = open_store(store_uri)
    ex = parts.load_execution(store, run_id, epoch, po2)
    by = None
    if pool:
        _on_pool(pool, JOIN_FLOW, params)
        seconds, by = _noted(store, part_receipt_key(ex.prefix, first, end))
    else:
        seconds = _join_here(store, run_id, epoch, po2, first, mid, end)
    joins = [j for level in parts.join_tree(len(ex.segments)) for j in level]
    index = joins.index((first, mid, end)) + 1
    progress.proof_part(run_id, epoch, get_run_logger(), "join", index, len(joins), seconds, by)


@task(name="finish-epoch", retries=1, retry_delay_seconds=2)
def finish_epoch(store_uri: str, run_id: str, epoch: int, po2: int | None) -> dict[str, Any]:
    """Resolves the previous epoch's receipt and stores this epoch's (verified) receipt."""
    log = get_run_logger()
    started = time.perf_counter()
    r = parts.finish(open_store(store_uri), run_id, epoch, po2)
    seconds = time.perf_counter() - started
    if epoch > 0 and r is not None:
        progress.rates().record("resolve", seconds)
        progress.proof_part(run_id, epoch, log, "resolve", 1, 1, seconds)
    stats = {
        "epoch": epoch,
        "stored": r is not None,
        "receipt_bytes": len(r.receipt) if r is not None else 0,
    }
    log.info(
        "epoch %d: %s",
        epoch,
        f"receipt stored ({stats['receipt_bytes']} bytes)"
        if r is not None
        else "its stored receipt verifies",
    )
    return stats


def submit_epoch_proof(
    store_uri: str,
    run_id: str,
    epoch: int,
    po2: int | None,
    pool: str | None,
    after: Sequence[PrefectFuture] = (),
) -> list[PrefectFuture]:
    """Executes the epoch now, then submits its segment proofs, its join tree and its finish
    (which also waits for ``after``: the previous epoch's finish). Returns their futures in
    submission order, the finish last.

    Only the finish waits for another epoch, so the parts of several epochs are proven at once."""
    n = execute_epoch(store_uri, run_id, epoch, po2, pool)
    if n == 0:
        return [
            finish_epoch.submit(store_uri, run_id, epoch, po2, wait_for=after, return_state=False)
        ]
    # Receipt of segments [first, end) -> its future (named apart from the module ``parts``).
    made: dict[tuple[int, int], PrefectFuture] = {}

    def chain() -> list[PrefectFuture]:
        # In this process proofs run one at a time: each already uses every core.
        return [] if pool or not made else [list(made.values())[-1]]

    for k in range(n):
        made[(k, k + 1)] = prove_segment.submit(
            store_uri, run_id, epoch, po2, k, pool, wait_for=chain(), return_state=False
        )
    for level in parts.join_tree(n):
        for first, mid, end in level:
            made[(first, end)] = join_receipts.submit(
                store_uri,
                run_id,
                epoch,
                po2,
                first,
                mid,
                end,
                pool,
                wait_for=[made[(first, mid)], made[(mid, end)], *chain()],
                return_state=False,
            )
    finish = finish_epoch.submit(
        store_uri, run_id, epoch, po2, wait_for=[made[(0, n)], *after], return_state=False
    )
    return [*made.values(), finish]


def results(futures: Sequence[PrefectFuture]) -> list[Any]:
    """Waits for every future; raises the error of the first one that failed, in submission
    order (the ones after it that depend on it never ran and only say so)."""
    for f in futures:
        f.wait()
    for f in futures:
        if not f.state.is_completed():
            f.result()
    return [f.result() for f in futures]


@flow(name=PROVE_FLOW)
def prove_flow(
    store_uri: str, run_id: str, epoch: int, po2: int | None = None, pool: str | None = None
) -> dict[str, Any]:
    """Proves one epoch and stores its receipt (the previous epoch's receipt must be stored by
    the time the parts are joined). Adopting it into the ledger is the trainer's."""
    parts.check_segment_po2(po2, "flow parameter po2")
    return results(submit_epoch_proof(store_uri, run_id, epoch, po2, pool))[-1]


def require_server(what: str) -> None:
    """A pool's workers poll a Prefect server; Prefect's ephemeral API in this process has none."""
    if not PREFECT_API_URL.value():
        raise UsageError(
            f"{what}: PREFECT_API_URL is not set; point it at the Prefect server the pool's "
            "workers poll"
        )


def deploy(pool: str, flow_pool: str | None = None) -> list[str]:
    """Creates (or updates) the deployments `veritrain-prove-segment/<pool>` and
    `veritrain-prove-join/<pool>` on work pool ``pool``, and `veritrain-prove/<pool>` on
    ``flow_pool`` (default ``pool``). Workers run them from this installation's folder.

    A `veritrain-prove` run waits for its parts' runs while holding its worker's slot, so on
    workers with a ``--limit`` give it a pool of its own."""
    require_server("deploy-prove")
    import veritrain

    source = str(Path(veritrain.__file__).parent.parent)
    names = []
    for fn, target, params in (
        (prove_segment_flow, pool, {}),
        (join_flow, pool, {}),
        (prove_flow, flow_pool or pool, {"pool": pool}),
    ):
        entrypoint = f"veritrain/flows/proving.py:{fn.fn.__name__}"
        source_flow = flow.from_source(source=source, entrypoint=entrypoint)
        assert isinstance(source_flow, Flow)  # a coroutine only when called from async code
        source_flow.deploy(
            name=pool, work_pool_name=target, parameters=params, print_next_steps=False
        )
        names.append(f"{fn.name}/{pool}")
    return names
