from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from veritrain.pipeline.run.spec import RunSpec, load_spec

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


CACHE = Path(os.environ.get("VERITRAIN_CACHE") or Path.home() / ".cache" / "veritrain")


@pytest.fixture(scope="session", autouse=True)
def _keys():
    """Run keys go to the test suite's own folder in the cache, never the user's (subprocesses
    inherit it). It outlives the session on purpose: run.json holds the run's public key and every
    state digest binds run.json, so the suite's proven runs make the same claims from one session
    to the next only with the same keys, and only then does the receipt cache serve them."""
    os.environ["VERITRAIN_KEYS"] = str(CACHE / "test-keys")


@pytest.fixture(scope="session", autouse=True)
def _receipt_cache():
    """The proven fixture runs take their receipts from the machine's receipt cache when an earlier
    session proved the same claims (pipeline/prove/receipt_cache.py: verified before use, keyed by
    guest image id and claim, so a changed guest or run is proven afresh). A test of proving
    itself turns it off (``NO_RECEIPT_CACHE``); ``VERITRAIN_RECEIPT_CACHE= bash scripts/test.sh``
    proves every epoch."""
    os.environ.setdefault("VERITRAIN_RECEIPT_CACHE", str(CACHE / "receipts"))


# Added to a command's environment when its proof, not only its receipt, is what is tested.
NO_RECEIPT_CACHE = {"VERITRAIN_RECEIPT_CACHE": ""}


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


@dataclass(frozen=True)
class Installed:
    """The wheel installed in a venv of its own, its commands run from an empty folder with no
    PYTHONPATH, so that the checkout is nowhere on their path."""

    venv: Path
    cwd: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def veritrain(self) -> str:
        return str(self.venv / "bin" / "veritrain")

    def run(self, *cmd: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Installed:
    """The wheel alone (no dependency resolution: nothing is downloaded) in a new venv whose
    dependencies are this interpreter's packages, through a .pth file appended after the venv's
    own site-packages."""
    home = tmp_path_factory.mktemp("installed")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "zz-test-dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return Installed(venv=venv, cwd=elsewhere, env=env)


@pytest.fixture(scope="session")
def demo(installed, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`veritrain demo` of the installed wheel: examples/tiny.yaml (two epochs, each proven for
    real, epoch 1's receipt verifying epoch 0's) through Prefect's ephemeral API into a store
    folder. Returns (the store folder, the finished command). It is the suite's shared proven
    run (tiny_run): proving is slow on 2 cores, and one run both shows that the wheel alone
    trains and proves and gives the tests their receipts."""
    store = tmp_path_factory.mktemp("tiny-store")
    r = installed.run(installed.veritrain, "demo", "--store", str(store), timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return store, r


@pytest.fixture(scope="session")
def tiny_run(demo) -> tuple[Path, str, str]:
    """The tiny run `veritrain demo` made (`veritrain run examples/tiny.yaml`, two epochs, each
    proven for real). Returns (store folder, run id, run URI)."""
    store, r = demo
    uri = r.stdout.strip().splitlines()[-1]
    assert uri.startswith(f"{store}/runs/"), r.stdout
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


@contextlib.contextmanager
def running_prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """A real `prefect server` on loopback with its home in ``home``; yields the environment that
    points at it."""
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
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
            assert server.poll() is None, (home / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server` on loopback for one test; yields the environment pointing at it."""
    with running_prefect_server(tmp_path) as env:
        yield env


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
        "CARGO_TARGET_DIR": str(CACHE / "target"),
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
