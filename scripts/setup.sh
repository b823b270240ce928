#!/usr/bin/env bash
# Installs everything veritrain needs on a fresh Debian 12 machine, idempotently, then builds the
# zkVM guest and the Python extension. Caches (venv, cargo targets) live outside the clone, in
# $VERITRAIN_CACHE (default ~/.cache/veritrain), so a fresh clone on the same machine reuses them.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
VENV="$CACHE/venv"
mkdir -p "$CACHE"
say() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# 1. Debian: the guest toolchain (rustc 1.96 with its library source, lld) and build tools.
APT_PKGS=(rustc-web cargo-web rust-web-src lld-22 build-essential pkg-config python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# 2. Python: one venv with the project's dependencies. PyPI's torch is a large CUDA build; it runs
# on the CPU and is installed once per machine (pip skips it when it is already satisfied).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
say "pip: dependencies"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/requirements.txt" >&2

# 3. The guest ELF, with Debian's toolchain and -Zbuild-std.
say "building the guest (riscv32im-risc0-zkvm-elf)"
GUEST_ELF="$(bash "$REPO/scripts/build-guest.sh")"

# 4. The extension veritrain.prover._native, installed into the venv in editable mode.
# risc0-zkvm 3.1.0-rc.1 takes its recursion programs from crates.io (risc0-circuit-recursion-zkrs),
# so succinct receipts need no download at build time.
say "building veritrain.prover._native (first build of risc0 takes a while on 2 cores)"
cd "$REPO"
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$CACHE/target" \
  VERITRAIN_GUEST_ELF="$GUEST_ELF" \
  "$VENV/bin/maturin" develop --release -q >&2

say "ready: $VENV/bin/veritrain"
