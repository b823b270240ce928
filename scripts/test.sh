#!/usr/bin/env bash
# The whole test suite: rust/core's rules (cargo test) and the Python side with real proofs (pytest).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
cd "$REPO/rust"
CARGO_TARGET_DIR="$CACHE/target-core" cargo test -p veritrain-core --quiet
cd "$REPO"
"$CACHE/venv/bin/python" -m pytest -q "$@"
