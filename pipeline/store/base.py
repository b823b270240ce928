"""The store's contract: one write-once key space, the same keys in a local folder or an S3 bucket.

Every object veritrain writes is created once and never changed (ledger entries, records,
checkpoints, receipts, the manifest), so the store has exactly one write: a conditional create.
Creating an object that already exists with the same bytes succeeds (a resumed run re-creates what
a crash left behind); with other bytes it raises ConflictError. ``store/local.py`` and
``store/s3.py`` implement it; ``store/uris.py`` holds the rules for naming stores and runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

from veritrain.pipeline.errors import StorageError
from veritrain.pipeline.store.uris import S3_SCHEME, check_store_uri


class NotFoundError(StorageError):
    """The object does not exist."""


class Store(Protocol):
    uri: str

    def create(self, key: str, data: bytes) -> None: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def server_time(self, key: str) -> float | None:
        """When the store's server says the object was written (Unix seconds), or None where
        only the writer keeps such a time (pipeline/verify/finality.py)."""
        ...

    def probe(self) -> None:
        """Raises StorageError unless the store can be reached and written; writes nothing."""
        ...


# -- creates in flight ---------------------------------------------------------------------------

# A process that is told to stop (flows/cli.py on SIGINT or SIGTERM) lets the creates under way
# finish, so it leaves no temporary files behind, and starts no new one. Creates are atomic
# either way: one cut short leaves no object, only (locally) a hidden temporary file.
_writes = threading.Condition()
_in_flight = 0
_stopping = False


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Every store's create runs inside this."""
    global _in_flight
    with _writes:
        while _stopping:
            _writes.wait()  # the process exits before this returns
        _in_flight += 1
    try:
        yield
    finally:
        with _writes:
            _in_flight -= 1
            _writes.notify_all()


def stop_writes(timeout: float) -> bool:
    """Blocks every create from now on and waits up to ``timeout`` seconds for those under way;
    True when none is left. For a process about to exit."""
    global _stopping
    with _writes:
        _stopping = True
        return _writes.wait_for(lambda: _in_flight == 0, timeout)


def open_store(uri: str, source: str = "store") -> Store:
    """A store from a URI, ``s3://bucket[/prefix]`` or a local folder; ``source`` names where the
    URI came from in the UsageError for a URI that breaks the rule."""
    check_store_uri(uri, source)
    if uri.startswith(S3_SCHEME):
        # Imported here so that local-only use never pays for (or needs) boto3.
        from veritrain.pipeline.store.s3 import S3Store

        return S3Store(uri)
    from veritrain.pipeline.store.local import LocalStore

    return LocalStore(uri)
