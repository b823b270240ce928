#!/usr/bin/env bash
# Builds the candidate loops and the core's kernels for the guest target with Debian's toolchain
# (as scripts/build-guest.sh does), links them into one ELF and counts what each executes.
# Usage: bash rust/bench-rv32im/run.sh   (CARGO_TARGET_DIR: where to build; default target/ here)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/target}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-C passes=lower-atomic -C panic=abort"
unset RUSTC_WRAPPER CARGO_ENCODED_RUSTFLAGS
cd "$HERE"
/usr/bin/cargo build --release --locked --target riscv32im-risc0-zkvm-elf \
  -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem >&2
ELF="$CARGO_TARGET_DIR/bench-rv32im.elf"
SYMS=(dot_i32_i64 dot_i32_i64_strided dot_i16_i32 dot_i16_i64 dot_f32 k_forward k_grad_input
  k_grad_params k_softmax_ce k_sgd k_adam k_relu k_relu_backward)
ld.lld-22 -o "$ELF" -Ttext=0x10000 --entry=dot_f32 "${SYMS[@]/#/--undefined=}" \
  "$CARGO_TARGET_DIR/riscv32im-risc0-zkvm-elf/release/libbench_rv32im.a"
echo "inner loops: llvm-objdump-22 -d --no-show-raw-insn $ELF --disassemble-symbols=dot_i32_i64" >&2
python3 count.py "$ELF"
