#!/usr/bin/env bash
# The whole test suite: rust/core's rules (cargo test) and the Python side with real proofs (pytest).
# Installs what only the tests need first, so that the main command never builds it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
say() { printf '[test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# CI allows set-up and tests 90 minutes together; this script's budget is 35 of them. The wall
# time is printed however the script ends, and pytest lists its slowest tests (--durations).
trap 'say "wall time $((SECONDS / 60)) min $((SECONDS % 60)) s (budget: 35 min)"' EXIT

# s3s-fs, the second real S3 server of the store conformance tests (tests/s3servers.py finds it
# in $CACHE/cargo-bin or at $VERITRAIN_S3S_FS). Pinned to 0.14.1: every later release needs rustc
# 1.96, newer than the rustup stable here, and the tests document this version's behaviour. Built
# from $CACHE so that no rust-toolchain file in the repo picks the compiler.
S3S_FS="$CACHE/cargo-bin/bin/s3s-fs"
if [ ! -x "$S3S_FS" ]; then
  say "cargo: installing s3s-fs (test S3 server, once per machine)"
  (cd "$CACHE" && cargo install s3s-fs --version 0.14.1 --features binary --locked \
    --root "$CACHE/cargo-bin" >&2)
fi

# Chromium, the real browser tests/test_report.py renders the audit report in (headless).
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
  say "apt: installing chromium (renders the audit report in the tests, once per machine)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi

# House rules first (seconds on warm caches): formatting, lints and types, Rust and Python. The
# host's clippy shares the release build's cache (its build scripts, risc0's kernels among them,
# are not rerun), so it checks only the crate itself.
say "rustfmt, clippy, ruff, stubtest, mypy"
cd "$REPO/rust"
cargo fmt --check
CARGO_TARGET_DIR="$CACHE/target-core" cargo clippy -p veritrain-core --all-targets --quiet \
  -- -D warnings
GUEST_ELF="$(bash "$REPO/scripts/build-guest.sh" 2>/dev/null)"
VERITRAIN_GUEST_ELF="$GUEST_ELF" CARGO_TARGET_DIR="$CACHE/target" cargo clippy --release \
  -p veritrain-host --features pyo3/extension-module --quiet -- -D warnings
"$CACHE/venv/bin/ruff" check "$REPO"
"$CACHE/venv/bin/ruff" format --check "$REPO"
# The hand-written stub of the extension against the built module: every name, signature and
# attribute (scripts/stubtest-allowlist.txt names what it leaves out, and why), with the
# package's mypy settings (its pydantic plugin among them) whichever clone the venv points to.
(cd "$REPO" && "$CACHE/venv/bin/python" -m mypy.stubtest veritrain.prover._native \
  --allowlist scripts/stubtest-allowlist.txt --mypy-config-file pyproject.toml)
# From the root, where veritrain/ links the folders as the installed package has them
# (pyproject.toml's [tool.mypy] says how strict).
(cd "$REPO" && MYPY_CACHE_DIR="$CACHE/mypy-cache" "$CACHE/venv/bin/mypy" -p veritrain)

CARGO_TARGET_DIR="$CACHE/target-core" cargo test -p veritrain-core --quiet
cd "$REPO"
# Proven runs are shared between tests (tests/conftest.py: the wheel's demo, the prove pool's
# epoch), so no test proves what a fixture already has; and between sessions through the receipt
# cache in $CACHE/receipts (verified on use: docs/OPERATIONS.md, "The receipt cache"), so a session
# proves only what changed and what its tests of proving prove afresh.
say "pytest"
"$CACHE/venv/bin/python" -m pytest -q --durations=25 "$@"
