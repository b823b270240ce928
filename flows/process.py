"""The process `veritrain run` lives in: stopping on SIGINT or SIGTERM, the ephemeral Prefect API
server it starts, and Prefect's logging of veritrain's own errors."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

# A stopped run exits with the shell's code for death by that signal, so scripts and CI read it
# the same whether the process stopped itself or was killed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
# How long a stopping process lets the store creates under way finish. Creates are atomic, so one
# cut short by the exit leaves no object; waiting only spares a temporary file.
WRITES_GRACE_SECONDS = 10.0
# Prefect's own default (20 s, counted in its polling sleeps only) is too short on a busy machine.
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_TIMEOUT_DEFAULT = "300"


class Stopper:
    """Stops the process promptly on SIGINT or SIGTERM, wherever it is: in training, in a
    minutes-long proof inside the native extension (which holds no Python frame a signal handler
    could interrupt), or in Prefect, which swaps in its own SIGTERM handler during a flow and,
    like the default SIGINT handling, waits for running tasks (a proof) before it lets go.

    So the signals are blocked in every thread (threads inherit the mask of the thread that starts
    them, hence ``start`` before any other thread exists) and taken by one thread of ours with
    ``sigwait``. That thread lets the store creates under way finish, stops the ephemeral Prefect
    server, and exits. Every point of a run is resumable (the ledger entry naming an object is
    written after it), so rerunning the command resumes."""

    def __init__(self) -> None:
        self.server: Any = None  # the ephemeral Prefect server, once started

    def start(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._wait, name="veritrain-stopper", daemon=True).start()

    def _wait(self) -> None:
        signum = signal.sigwait(STOP_SIGNALS)
        self.stop(signum)

    def stop(self, signum: int) -> None:
        from veritrain.pipeline.store.base import stop_writes

        stop_writes(WRITES_GRACE_SECONDS)
        self._kill_server()
        with contextlib.suppress(Exception):
            from veritrain.flows import progress

            bar = progress.current()
            if bar is not None:
                bar.stop()  # the last frame stays, the cursor comes back, the line below is ours
        sig = signal.Signals(signum)
        print(
            f"veritrain: stopped by {sig.name}; rerun the same command to resume",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_SIGNAL[sig])

    def _kill_server(self) -> None:
        proc = getattr(self.server, "server_process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)

    @contextlib.contextmanager
    def unblocked(self) -> Iterator[None]:
        """Signals reach this thread directly inside the block (through ``stop``), so that a
        subprocess started here inherits no blocked signals: the Prefect server must still stop
        on the SIGTERM Prefect sends it at exit."""
        previous = {
            s: signal.signal(s, lambda signum, _frame: self.stop(signum)) for s in STOP_SIGNALS
        }
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            for s, handler in previous.items():
                signal.signal(s, handler)


@contextlib.contextmanager
def prefect_api(stopper: Stopper) -> Iterator[None]:
    """Prefect's ephemeral API server (when no PREFECT_API_URL is set) for the block, started with
    a bounded wait, so a busy machine gets a clear error and not a stack trace from deep inside
    the flow. The flow finds the server running: Prefect keeps one ephemeral server per process.
    It is stopped when the block ends, so that its log line comes before the command's last."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    from veritrain.pipeline.errors import StorageError

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield
        return
    server = SubprocessASGIServer()
    stopper.server = server
    try:
        with stopper.unblocked():
            try:
                server.start()
            except RuntimeError as e:
                reason = str(e).split(" stdout:")[0]
                raise StorageError(
                    f"the ephemeral Prefect API server did not start ({reason}); wait longer "
                    f"with {STARTUP_TIMEOUT_ENV} (now {os.environ.get(STARTUP_TIMEOUT_ENV)}) or "
                    "point PREFECT_API_URL at a running Prefect server"
                ) from None
        yield
    finally:
        # Logs and events still queued for the server go first, or their senders complain on
        # stderr after the command's last line.
        for worker in (APILogWorker, EventsWorker):
            with contextlib.suppress(Exception):
                worker.drain_all(timeout=5)
        server.stop()


class _KnownErrors(logging.Filter):
    """Drops the traceback from Prefect's log of a task or flow that failed with one of
    veritrain's own errors: the message is the whole story, and the command prints it as its one
    line. Other exceptions keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from veritrain.prover import VeritrainError

        if record.exc_info and isinstance(record.exc_info[1], VeritrainError):
            record.exc_info = None
            record.exc_text = None
        return True


# The loggers Prefect's engines report task and flow failures on.
_PREFECT_RUN_LOGGERS = (
    "prefect.task_runs",
    "prefect.flow_runs",
    "prefect.task_engine",
    "prefect.flow_engine",
)


def quiet_known_errors() -> None:
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(_KnownErrors())


def configure_prefect() -> None:
    """Prefect settings this process needs; call before importing prefect."""
    os.environ.setdefault(STARTUP_TIMEOUT_ENV, STARTUP_TIMEOUT_DEFAULT)
