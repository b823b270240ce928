"""Storage: one write-once key space, the same keys in a local folder or an S3 bucket.

Every object veritrain writes is created once and never changed (ledger entries, records,
checkpoints, receipts, the manifest), so the store has exactly one write: a conditional create.
Creating an object that already exists with the same bytes succeeds (a resumed run re-creates what
a crash left behind); with other bytes it raises ConflictError.

The rules for naming a store and a run (store URIs, run URIs, run ids) are here, once, for every
command: a store is a local folder or ``s3://bucket[/prefix]``; any other ``scheme://`` is refused
rather than read as a relative path. A run URI is ``<store>/runs/<run_id>``; the run id rule is the
core's (``prover.check_run_id``). Breaking a rule is a UsageError naming the flag or argument.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from veritrain import prover
from veritrain.pipeline import failpoints
from veritrain.pipeline.errors import ConflictError, StorageError, UsageError
from veritrain.pipeline.keys import RUNS, run_prefix


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
        only the writer keeps such a time (pipeline/finality.py)."""
        ...

    def probe(self) -> None:
        """Raises StorageError unless the store can be reached and written; writes nothing."""
        ...


# -- names ---------------------------------------------------------------------------------------

S3_SCHEME = "s3://"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# AWS's rule for new buckets is stricter (3-63 of [a-z0-9.-]); older buckets and other S3 servers
# allow capitals and underscores, so the syntax check only refuses what no server accepts.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
STORE_URI_FORM = "a local folder or s3://bucket[/prefix]"


def store_uri_problem(uri: str) -> str | None:
    """What is wrong with a store URI, or None: the store-URI rule, in one place."""
    if not uri:
        return f"empty; a store is {STORE_URI_FORM}"
    if "\0" in uri:
        return "contains a NUL character"
    if uri.startswith(S3_SCHEME):
        bucket, _, prefix = uri.removeprefix(S3_SCHEME).rstrip("/").partition("/")
        if not bucket:
            return "no bucket name; an S3 store is s3://bucket[/prefix]"
        if not _BUCKET.match(bucket):
            return (
                f"bucket name {bucket!r} is not 1-255 of [A-Za-z0-9._-] starting with a "
                "letter or digit"
            )
        if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
            return "the prefix after the bucket has an empty, '.' or '..' segment"
        return None
    scheme = _SCHEME.match(uri)
    if scheme:
        return f"unsupported URI scheme {scheme.group(1)}://; a store is {STORE_URI_FORM}"
    return None


def check_store_uri(uri: str, source: str) -> str:
    """Returns ``uri`` or raises UsageError naming ``source`` (a flag, or a spec file and key)."""
    problem = store_uri_problem(uri)
    if problem:
        raise UsageError(f"{source} {uri!r}: {problem}")
    return uri


def run_id_problem(run_id: str) -> str | None:
    """What is wrong with a run id, or None: the core's rule, which every record, claim and
    store key (``runs/<run_id>/``) relies on."""
    try:
        prover.check_run_id(run_id)
    except ValueError as e:
        return str(e)
    return None


def check_run_id(run_id: str, source: str = "--run-id") -> str:
    """Returns ``run_id`` or raises UsageError naming ``source``."""
    problem = run_id_problem(run_id)
    if problem:
        raise UsageError(f"{source} {run_id!r}: {problem}")
    return run_id


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


def _file_mode() -> int:
    """0666 less the process umask, as open(2) applies it (mkstemp's files are 0600)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    # Without /proc (not Linux): reading the umask means setting it, briefly, for every thread.
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


# -- stores --------------------------------------------------------------------------------------


class LocalStore:
    """A folder. Creates are atomic and exclusive: the bytes go to a temporary file that is fsynced
    and then hard-linked to its final name, which fails if the name exists (O_EXCL semantics
    without ever exposing a half-written file, even after SIGKILL)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.uri}: bad object key {key!r}")
        return self.root / key

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with writing():
            self._create(key, path, data)

    def _create(self, key: str, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    # Readable by whoever the umask lets read (an auditor on a shared folder).
                    os.fchmod(f.fileno(), _file_mode())
                    f.write(data)
                    failpoints.hit("mid-write", key)
                    f.flush()
                    os.fsync(f.fileno())
                failpoints.hit("before-link", key)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if path.read_bytes() != data:
                        raise ConflictError(f"{path}: already exists with other content") from None
                    return
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise StorageError(f"{path}: cannot write: {e.strerror}") from None

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such object") from None
        except OSError as e:
            raise StorageError(f"{path}: cannot read: {e.strerror}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def server_time(self, key: str) -> float | None:
        return None  # a file's times are set by whoever writes the folder, the trainer included

    def probe(self) -> None:
        # The folder need not exist yet (the first create makes it): its nearest existing
        # ancestor must be a folder this process may create entries in.
        here = self.root
        while not here.exists() and here != here.parent:
            here = here.parent
        if not here.is_dir():
            raise StorageError(f"{self.uri}: cannot be a store: {here} is not a folder")
        if not os.access(here, os.W_OK | os.X_OK):
            raise StorageError(f"{self.uri}: cannot write: {here} is not writable by this user")

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        keys = [
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]
        return sorted(keys)


def open_store(uri: str, source: str = "store") -> Store:
    """A store from a URI, ``s3://bucket[/prefix]`` or a local folder; ``source`` names where the
    URI came from in the UsageError for a URI that breaks the rule."""
    check_store_uri(uri, source)
    if uri.startswith(S3_SCHEME):
        # Imported here so that local-only use never pays for (or needs) boto3.
        from veritrain.pipeline.s3store import S3Store

        return S3Store(uri)
    return LocalStore(uri)


def split_run_uri(uri: str, source: str = "run URI") -> tuple[str, str]:
    """``<store>/runs/<run_id>`` -> (store URI, run id), both checked; UsageError names
    ``source``."""
    path = uri.rstrip("/")
    head, sep, run_id = path.rpartition(f"/{RUNS}/")
    if not sep and path.startswith(f"{RUNS}/"):
        head, sep, run_id = ".", f"/{RUNS}/", path.removeprefix(f"{RUNS}/")
    if not sep or "/" in run_id:
        raise UsageError(f"{source} {uri!r}: a run URI looks like <store>/runs/<run_id>")
    head = head or "/"  # /runs/<id>: a store at the root folder
    problem = store_uri_problem(head) or run_id_problem(run_id)
    if problem:
        raise UsageError(f"{source} {uri!r}: {problem}")
    return head, run_id


def object_uri(store: Store, key: str) -> str:
    """Where an object is, for people: a path in a local store, s3://... otherwise."""
    return f"{store.uri.rstrip('/')}/{key}"


def run_uri(store: Store, run_id: str) -> str:
    return object_uri(store, run_prefix(run_id))
