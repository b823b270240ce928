from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritrain.pipeline.run.spec import RunSpec, load_spec

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture(scope="session", autouse=True)
def _keys(tmp_path_factory):
    """Run keys go to a per-session folder, never the user's (subprocesses inherit it)."""
    os.environ["VERITRAIN_KEYS"] = str(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session", autouse=True)
def _verifier_state(tmp_path_factory):
    """The verifier's receipt sightings go to a per-session folder, never the user's."""
    os.environ["VERITRAIN_STATE"] = str(tmp_path_factory.mktemp("verifier-state"))


@pytest.fixture(scope="session")
def tiny_spec() -> RunSpec:
    return load_spec(ROOT / "examples" / "tiny.yaml")


def in_env(env: dict[str, str], *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs a command from the repository root with ``env`` (e.g. a test Prefect server's)."""
    return subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def veritrain(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Runs the installed command line as a user would, in a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "veritrain.flows.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run_process(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`veritrain run examples/tiny.yaml` through Prefect (ephemeral API): two epochs, each proven
    for real. Returns (store folder, the finished command). Shared: proving is slow on 2 cores."""
    store = tmp_path_factory.mktemp("tiny-store")
    r = veritrain("run", str(ROOT / "examples" / "tiny.yaml"), "--store", str(store))
    assert r.returncode == 0, r.stderr[-3000:]
    return store, r


@pytest.fixture(scope="session")
def tiny_run(tiny_run_process) -> tuple[Path, str, str]:
    """The tiny run's (store folder, run id, run URI)."""
    store, r = tiny_run_process
    uri = r.stdout.strip().splitlines()[-1]
    return store, uri.rsplit("/", 1)[-1], uri


@pytest.fixture(scope="session")
def unproven_run(tmp_path_factory, tiny_spec) -> tuple[Path, str]:
    """Another run of the tiny spec (run id "other-run"), trained in-process and never proven
    (finalize_every 0): seconds, where a proven run takes minutes. Returns (store folder, run id).
    Its key is in the session's key folder, so tests can sign ledger entries for it."""
    from veritrain.pipeline.store.local import LocalStore
    from veritrain.pipeline.train.loop import train
    from veritrain.pipeline.train.trainer import open_trainer

    store = tmp_path_factory.mktemp("unproven-store")
    spec = tiny_spec.model_copy(update={"finalize_every": 0})
    train(open_trainer(spec, LocalStore(store), "other-run"))
    return store, "other-run"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server` on loopback; yields the environment that points at it."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def process_worker(env: dict[str, str], pool: str, log: Path, *args: str) -> Iterator[None]:
    """A `prefect worker` of a process pool, running flow runs from the repository."""
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            # Prefect's worker shuts down gracefully on SIGTERM, which takes well over 30 s on a
            # loaded machine; how long is not what these tests are about.
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The veritrain wheel, built once per session the way scripts/setup.sh builds the extension
    (the guest from scripts/build-guest.sh, Rust targets in the cache's target folder, this venv's
    interpreter), so an up-to-date cache only relinks. VERITRAIN_WHEEL names one already built."""
    if os.environ.get("VERITRAIN_WHEEL"):
        return Path(os.environ["VERITRAIN_WHEEL"])
    cache = Path(os.environ.get("VERITRAIN_CACHE", Path.home() / ".cache" / "veritrain"))
    guest = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-guest.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert guest.returncode == 0, guest.stderr[-3000:]
    out = tmp_path_factory.mktemp("wheel")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(bin_dir.parent),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CARGO_TARGET_DIR": str(cache / "target"),
        "VERITRAIN_GUEST_ELF": guest.stdout.strip(),
    }
    r = subprocess.run(
        [
            str(bin_dir / "maturin"),
            "build",
            "--release",
            "--interpreter",
            sys.executable,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (built,) = out.glob("veritrain-*.whl")
    return built
