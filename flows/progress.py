"""Progress on stderr, shared by the command line and the tasks it runs in this process: rich
bars on a terminal, and the lines of an epoch's proof (its estimate, then one per part) in the
task's Prefect log, which prints to stderr too."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from veritrain.pipeline.prove.estimate import ProofPlan, ProofProgress, Rates, duration
from veritrain.pipeline.verify.finality import state_dir

_current: Progress | None = None
# The proofs under way in this process, by (run id, epoch): their parts finish in other tasks.
_proofs: dict[tuple[str, int], tuple[ProofProgress, TaskID | None]] = {}
_lock = threading.Lock()
# What Prefect's get_run_logger returns.
RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@contextlib.contextmanager
def bars() -> Iterator[Progress]:
    global _current
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    _current = progress
    try:
        with progress:
            yield progress
    finally:
        _current = None


def current() -> Progress | None:
    """The command line's progress display, or None (e.g. in a worker process)."""
    return _current


def rates() -> Rates:
    """This machine's measured proving rates ($VERITRAIN_STATE/prove-rates.json)."""
    return Rates.load(state_dir())


def proof_planned(run_id: str, plan: ProofPlan, log: RunLogger, where: str = "") -> None:
    """Says what an epoch's proof will prove and how long it should take, before it starts, and
    gives it a bar of one step per part."""
    log.info("%s", plan.line(where))
    bar = current()
    task = None
    if bar is not None:
        info = f"about {duration(plan.total)}"
        task = bar.add_task(f"prove epoch {plan.epoch}", total=plan.parts, info=info)
    with _lock:
        _proofs[(run_id, plan.epoch)] = (ProofProgress(plan), task)


def proof_part(
    run_id: str,
    epoch: int,
    log: RunLogger,
    kind: str,
    index: int,
    count: int,
    seconds: float | None,
    by: str | None = None,
) -> None:
    """A part of a planned proof finished (``seconds`` None: it was stored already)."""
    with _lock:
        entry = _proofs.get((run_id, epoch))
    if entry is None:  # planned in another process (a resumed flow): nothing to measure against
        return
    proof, task = entry
    line = proof.done(kind, index, count, seconds, by)
    log.info("%s", line)
    bar = current()
    if bar is not None and task is not None:
        bar.update(task, completed=proof.completed, info=line.split(": ", 1)[1])


def proof_finished(run_id: str, epoch: int, info: str) -> None:
    """Completes the epoch's bar (one is made if its proof had no plan here: an adopted receipt)."""
    with _lock:
        _, task = _proofs.pop((run_id, epoch), (None, None))
    bar = current()
    if bar is None:
        return
    if task is None:
        task = bar.add_task(f"prove epoch {epoch}", total=1, info="")
    total = next(t.total for t in bar.tasks if t.id == task) or 1
    bar.update(task, total=total, completed=total, info=info)
