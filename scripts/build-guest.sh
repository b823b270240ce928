#!/usr/bin/env bash
# Builds the zkVM guest ELF for riscv32im-risc0-zkvm-elf with Debian's rustc-web toolchain and
# -Zbuild-std (no rzup, no docker here). Prints the ELF's path on stdout.
#
# The ELF is a reproducible build output: cargo's trim-paths replaces every absolute path that
# could leak into it (the repo, CARGO_HOME, Rust's library source), so the image id does not depend
# on where the clone, the cargo cache or the toolchain live. An auditor rebuilds with this script
# and compares (scripts/check-reproducible-guest.sh does it twice).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
TARGET=riscv32im-risc0-zkvm-elf
export CARGO_TARGET_DIR="$CACHE/target-guest"

# Debian's toolchain, not rustup's: it ships the library source that -Zbuild-std needs.
export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
unset RUSTC_WRAPPER
# No absolute path may reach RUSTFLAGS: cargo hashes them into every crate's symbol names, so a
# path there changes the ELF. Paths in the binary are trimmed by cargo's trim-paths instead.
# -Zlocation-detail=none keeps source locations out of panic messages, so the image id changes
# with what the code does, not with the line a function sits on.
export RUSTFLAGS="-C passes=lower-atomic -C link-arg=-Ttext=0x00200800 -C link-arg=--fatal-warnings \
-C panic=abort -Zlocation-detail=none --cfg getrandom_backend=\"custom\""
export CARGO_PROFILE_RELEASE_TRIM_PATHS=all
unset CARGO_ENCODED_RUSTFLAGS

cd "$REPO/rust"
/usr/bin/cargo build -p veritrain-guest --profile guest --locked --target "$TARGET" -Ztrim-paths \
  -Zbuild-std=alloc,core,proc_macro,panic_abort,std -Zbuild-std-features=compiler-builtins-mem >&2
echo "$CARGO_TARGET_DIR/$TARGET/guest/veritrain-guest"
