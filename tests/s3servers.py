"""Real S3-compatible servers for the store tests, each a subprocess on 127.0.0.1 and a free port.

- moto's server mode (``python -m moto.server``): in memory, supports Object Lock.
- s3s-fs (a Rust binary, ``cargo install s3s-fs --features binary``): objects are files under a
  root folder, so a killed server can be restarted on the same data.

Import the fixtures into a test module (``from s3servers import moto_s3, s3s_fs``); no conftest is
needed. ``s3_env`` points boto3 at a server through the standard variables only (AWS_ENDPOINT_URL
and the credential variables), exactly as a user's environment would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "veritrain-test"
SECRET_KEY = "veritrain-test-secret"
REGION = "us-east-1"

S3S_FS_ENV = "VERITRAIN_S3S_FS"
# Where scripts/setup.sh installs it: $VERITRAIN_CACHE/cargo-bin, the cache defaulting as there.
CACHE = Path(os.environ.get("VERITRAIN_CACHE") or Path.home() / ".cache" / "veritrain")
S3S_FS_DEFAULT = CACHE / "cargo-bin" / "bin" / "s3s-fs"
S3S_FS_INSTALL = (
    f"bash scripts/setup.sh, or by hand: cargo install s3s-fs --version 0.14.1 --features binary "
    f"--locked --root {CACHE / 'cargo-bin'} (or point {S3S_FS_ENV} at an s3s-fs binary)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound and released; nothing else here grabs it meanwhile)."""
    return free_port()


def s3s_fs_binary() -> Path:
    """The s3s-fs binary, or a test failure saying how to install it (never a skip: CI must run
    the S3 conformance suite against both servers)."""
    path = Path(os.environ.get(S3S_FS_ENV) or S3S_FS_DEFAULT)
    if not (path.is_file() and os.access(path, os.X_OK)):
        found = shutil.which("s3s-fs")
        if found and not os.environ.get(S3S_FS_ENV):
            return Path(found)
        pytest.fail(f"s3s-fs not found at {path}; install it with: {S3S_FS_INSTALL}", pytrace=False)
    return path


class S3Server:
    """One server process. ``kill`` is SIGKILL (a crash, no clean shutdown); ``start`` after it
    brings the same server back on the same port and, for s3s-fs, the same data folder."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, root: Path | None = None):
        self.name = name
        self.argv = argv
        self.port = port
        self.root = root
        self.log = log
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the test run must not hit it first
            )
        # Readiness is the port accepting connections: both servers bind only once they can
        # serve. moto imports a lot and the machine may be busy, hence the generous timeout.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.proc.returncode} at start; "
                    f"log {self.log}:\n{self.log.read_text(errors='replace')[-2000:]}",
                    pytrace=False,
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"{self.name} did not listen on port {self.port} within {timeout:.0f} s", pytrace=False
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self):
        """A boto3 client for test set-up and inspection (buckets, head_object), not the store's."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def new_bucket(self, object_lock: bool = False, name: str | None = None) -> str:
        """A new bucket, named ``name`` or at random."""
        bucket = name or f"vt-{uuid.uuid4().hex[:16]}"
        kwargs = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        self.client().create_bucket(Bucket=bucket, **kwargs)
        return bucket


@contextlib.contextmanager
def running(server: S3Server) -> Iterator[S3Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def moto_server(tmp: Path) -> S3Server:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return S3Server("moto", argv, port, tmp / "moto.log")


def s3s_fs_server(tmp: Path, root: Path | None = None) -> S3Server:
    binary = s3s_fs_binary()
    port = free_port()
    root = root or tmp / "s3s-root"
    root.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
        str(root),
    ]
    return S3Server("s3s-fs", argv, port, tmp / "s3s-fs.log", root=root)


# Servers live for a module (starting moto costs seconds); tests isolate by using fresh buckets.
@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory) -> Iterator[S3Server]:
    with running(moto_server(tmp_path_factory.mktemp("moto"))) as server:
        yield server


@pytest.fixture(scope="module")
def s3s_fs(tmp_path_factory) -> Iterator[S3Server]:
    with running(s3s_fs_server(tmp_path_factory.mktemp("s3s-fs"))) as server:
        yield server


@pytest.fixture
def s3s_fs_own(tmp_path) -> Iterator[S3Server]:
    """An s3s-fs of the test's own, for tests that kill it."""
    with running(s3s_fs_server(tmp_path)) as server:
        yield server


def set_s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """The standard variables boto3 reads; nothing from the developer's ~/.aws leaks in."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
