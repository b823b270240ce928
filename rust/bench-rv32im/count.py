"""Counts the rv32im instructions the benchmark's functions execute (standard library only).

    python count.py bench.elf

A plain RV32IM interpreter (no privileged instructions, no compressed ones: the guest target has
none): it calls each candidate dot product on vectors of length 0 and 64 and prints the
instructions per element, soft-float calls included. The zkVM executes one such instruction per
cycle (paging aside), so these are the guest's cycles per multiply-accumulate.
"""

from __future__ import annotations

import struct
import sys

M32 = 0xFFFFFFFF
RETURN = 0xFFFFFFF0  # a return address no code lives at: the call is over when pc reaches it


def sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


class Cpu:
    def __init__(self, elf: bytes) -> None:
        self.mem = bytearray(1 << 24)
        self.symbols: dict[str, int] = {}
        (e_phoff, e_shoff) = struct.unpack_from("<II", elf, 28)
        (e_phentsize, e_phnum, e_shentsize, e_shnum) = struct.unpack_from("<HHHH", elf, 42)
        for i in range(e_phnum):
            p_type, off, vaddr, _, filesz, _memsz = struct.unpack_from(
                "<IIIIII", elf, e_phoff + i * e_phentsize
            )
            if p_type == 1:
                self.mem[vaddr : vaddr + filesz] = elf[off : off + filesz]
        sections = [
            struct.unpack_from("<IIIIIIIIII", elf, e_shoff + i * e_shentsize)
            for i in range(e_shnum)
        ]
        for sh in sections:
            if sh[1] == 2:  # SHT_SYMTAB
                strtab = sections[sh[6]]
                for j in range(sh[5] // 16):
                    name, value = struct.unpack_from("<II", elf, sh[4] + j * 16)
                    end = elf.index(b"\0", strtab[4] + name)
                    self.symbols[elf[strtab[4] + name : end].decode()] = value

    def ld(self, a: int, n: int, signed: bool) -> int:
        v = int.from_bytes(self.mem[a : a + n], "little")
        return sx(v, 8 * n) & M32 if signed else v

    def call(self, fn: str, *args: int) -> tuple[int, int]:
        x = [0] * 32
        x[1], x[2] = RETURN, 0xF00000
        for i, a in enumerate(args):
            x[10 + i] = a & M32
        pc, n = self.symbols[fn], 0
        while pc != RETURN:
            ins = int.from_bytes(self.mem[pc : pc + 4], "little")
            if ins == 0x6F:  # `j .`: the panic handler's endless loop
                raise RuntimeError(f"{fn} panicked")
            n += 1
            op, rd, f3 = ins & 0x7F, (ins >> 7) & 31, (ins >> 12) & 7
            rs1, rs2, f7 = x[(ins >> 15) & 31], x[(ins >> 20) & 31], ins >> 25
            iimm = sx(ins >> 20, 12)
            npc, v = pc + 4, None
            if op == 0x37:
                v = ins & 0xFFFFF000
            elif op == 0x17:
                v = (pc + (ins & 0xFFFFF000)) & M32
            elif op == 0x6F:
                imm = (
                    ((ins >> 31) << 20)
                    | (((ins >> 12) & 0xFF) << 12)
                    | (((ins >> 20) & 1) << 11)
                    | (((ins >> 21) & 0x3FF) << 1)
                )
                v, npc = pc + 4, (pc + sx(imm, 21)) & M32
            elif op == 0x67:
                v, npc = pc + 4, (rs1 + iimm) & ~1 & M32
            elif op == 0x63:
                imm = (
                    ((ins >> 31) << 12)
                    | (((ins >> 7) & 1) << 11)
                    | (((ins >> 25) & 0x3F) << 5)
                    | (((ins >> 8) & 0xF) << 1)
                )
                a, b = sx(rs1, 32), sx(rs2, 32)
                take = [a == b, a != b, 0, 0, a < b, a >= b, rs1 < rs2, rs1 >= rs2][f3]
                if take:
                    npc = (pc + sx(imm, 13)) & M32
            elif op == 0x03:
                a = (rs1 + iimm) & M32
                v = {0: (1, 1), 1: (2, 1), 2: (4, 0), 4: (1, 0), 5: (2, 0)}[f3]
                v = self.ld(a, v[0], bool(v[1]))
            elif op == 0x23:
                a = (rs1 + sx(((ins >> 25) << 5) | ((ins >> 7) & 31), 12)) & M32
                size = 1 << f3
                self.mem[a : a + size] = (rs2 & ((1 << 8 * size) - 1)).to_bytes(size, "little")
            elif op in (0x13, 0x33):
                b = iimm & M32 if op == 0x13 else rs2
                sh = b & 31
                a1, b1 = sx(rs1, 32), sx(b, 32)
                if op == 0x33 and f7 == 1:
                    v = [
                        a1 * b1,
                        (a1 * b1) >> 32,
                        (a1 * b) >> 32,
                        (rs1 * b) >> 32,
                        -1 if b == 0 else (a1 // b1 if a1 * b1 >= 0 else -(-a1 // b1)),
                        M32 if b == 0 else rs1 // b,
                        a1 if b == 0 else a1 - b1 * int(a1 / b1),
                        rs1 if b == 0 else rs1 % b,
                    ][f3]
                elif f3 == 0:
                    v = rs1 - b if op == 0x33 and f7 == 0x20 else rs1 + b
                elif f3 == 1:
                    v = rs1 << sh
                elif f3 == 2:
                    v = int(a1 < b1)
                elif f3 == 3:
                    v = int(rs1 < b)
                elif f3 == 4:
                    v = rs1 ^ b
                elif f3 == 5:
                    v = a1 >> sh if (ins >> 30) & 1 else rs1 >> sh
                elif f3 == 6:
                    v = rs1 | b
                else:
                    v = rs1 & b
            else:
                raise ValueError(f"unsupported instruction {ins:08x} at {pc:#x}")
            if v is not None and rd:
                x[rd] = v & M32
            pc = npc
        return n, x[10]


def main() -> None:
    cpu = Cpu(open(sys.argv[1], "rb").read())
    a, b, n = 0x100000, 0x200000, 64
    for i in range(n):  # values of both signs, all non-trivial for the soft-float paths
        struct.pack_into("<i", cpu.mem, a + 4 * i, (i * 2654435761) % 2**24 - 2**23)
        struct.pack_into("<i", cpu.mem, b + 4 * i, (i * 40503 + 7) % 2**24 - 2**23)
        struct.pack_into("<hh", cpu.mem, 0x300000 + 2 * i, ((i * 37) % 512) - 256, 0)
        struct.pack_into("<f", cpu.mem, 0x400000 + 4 * i, 0.37 * (i - 31.5))
        struct.pack_into("<f", cpu.mem, 0x500000 + 4 * i, 0.011 * (17 - i))
    cases = {
        "dot_i32_i64": (a, b),
        "dot_i16_i32": (0x300000, 0x300000),
        "dot_i16_i64": (0x300000, 0x300000),
        "dot_f32": (0x400000, 0x500000),
    }
    # The interpreter is checked by the results: each must equal the same sum done here.
    f32 = struct.Struct("<f")

    def f(v: float) -> float:
        return f32.unpack(f32.pack(v))[0]

    xs = [struct.unpack_from("<i", cpu.mem, a + 4 * i)[0] for i in range(n)]
    ys = [struct.unpack_from("<i", cpu.mem, b + 4 * i)[0] for i in range(n)]
    hs = [struct.unpack_from("<h", cpu.mem, 0x300000 + 2 * i)[0] for i in range(n)]
    fa = [struct.unpack_from("<f", cpu.mem, 0x400000 + 4 * i)[0] for i in range(n)]
    fb = [struct.unpack_from("<f", cpu.mem, 0x500000 + 4 * i)[0] for i in range(n)]
    acc = 0.0
    for u, w in zip(fa, fb, strict=True):
        acc = f(acc + f(u * w))
    expect = {
        "dot_i32_i64": sum(u * w for u, w in zip(xs, ys, strict=True)) & M32,  # the low word (a0)
        "dot_i16_i32": sum(h * h for h in hs) & M32,
        "dot_i16_i64": sum(h * h for h in hs) & M32,
        "dot_f32": struct.unpack("<I", f32.pack(acc))[0],
    }
    print("function             instructions per element (n = 64)")
    for fn, (p, q) in cases.items():
        full, result = cpu.call(fn, p, n, q, n)
        assert result == expect[fn], (fn, result, expect[fn])
        empty, _ = cpu.call(fn, p, 0, q, 0)
        print(f"{fn:20} {(full - empty) / n:6.2f}")
    full, _ = cpu.call("dot_i32_i64_strided", a, n, b, 16 * n, 16)
    empty, _ = cpu.call("dot_i32_i64_strided", a, 0, b, 0, 16)
    print(f"{'dot_i32_i64_strided':20} {(full - empty) / n:6.2f}")

    # The kernels of rust/core, at a layer's shape (in 64, out 32): two runs whose only
    # difference is 32 more terms in every sum (inputs for the forward pass, outputs for the
    # input gradient, batch rows for the parameter gradient).
    for i in range(1 << 16):
        struct.pack_into("<i", cpu.mem, 0x600000 + 4 * i, (i * 7919) % 2**22 - 2**21)
    v = 0x600000
    x0 = [struct.unpack_from("<i", cpu.mem, v + 4 * i)[0] for i in range(64)]
    forward = [cpu.call("k_forward", v, v, v, 32, k, 32) for k in (32, 64)]
    acc = (x0[0] << 24) + sum(t * t for t in x0[:64])
    assert forward[1][1] == (acc + (1 << 23)) >> 24 & M32  # no tie here: rounding is plain
    # name: (the two runs, multiply-accumulates the second adds)
    rows = {
        "linear_forward": (forward, 32 * 32 * 32),
        "linear_grad_input": (
            [cpu.call("k_grad_input", v, v, 32, 64, k) for k in (32, 64)],
            32 * 64 * 32,
        ),
        "linear_grad_params": (
            [cpu.call("k_grad_params", v, v, k, 64, 32) for k in (32, 64)],
            32 * 64 * 32,
        ),
    }
    print("kernel               instructions per multiply-accumulate (in 64, out 32, batch 32)")
    for name, (((short, _), (long, _)), macs) in rows.items():
        print(f"{name:20} {(long - short) / macs:6.2f}")

    # Per row of 10 classes, and per parameter (labels: 0..9 at 0xA00000; moments start at 0).
    for i in range(64):
        struct.pack_into("<I", cpu.mem, 0xA00000 + 4 * i, i % 10)
    ce = [cpu.call("k_softmax_ce", v, 0xA00000, k, 10)[0] for k in (32, 64)]
    sgd = [cpu.call("k_sgd", 0xB00000, v, 0xC00000, k)[0] for k in (32, 64)]
    adam = [cpu.call("k_adam", 0xB00000, v, 0xC00000, 0xD00000, k)[0] for k in (32, 64)]
    print("kernel               instructions per row (10 classes) or per parameter")
    print(f"{'softmax_ce':20} {(ce[1] - ce[0]) / 32:6.0f}")
    print(f"{'sgd_step':20} {(sgd[1] - sgd[0]) / 32:6.1f}")
    print(f"{'adam_step':20} {(adam[1] - adam[0]) / 32:6.0f}")

    # A whole training step of an MLP (forward, loss, backward, optimizer), kernels only. The
    # linear kernels skip zero terms, so a step's count depends on how many of the multiplied
    # activations and gradients are zero: "dense" has none (the most a step can cost), "data"
    # the model's share of zero inputs and half of every hidden layer's units at zero after
    # ReLU (their gradients then zero too). Which elements are zero does not change a count.
    x_in, hidden, dy_hidden = 0x680000, 0x6A0000, 0x6C0000
    for i in range(1 << 14):
        d = struct.unpack_from("<i", cpu.mem, v + 4 * i)[0]
        struct.pack_into("<i", cpu.mem, 0x700000 + 4 * i, d)  # the dense copy below reads
        struct.pack_into("<i", cpu.mem, 0x740000 + 4 * i, (i * 2654435761 >> 7) & 0xFFFF)
    for name, (sizes, classes, batch, zero_inputs) in MODELS.items():
        dims = [*sizes, classes]
        for data, zeros in (("dense", (0.0, 0.0)), ("data", (zero_inputs, 0.5))):
            for region, share in ((x_in, zeros[0]), (hidden, zeros[1]), (dy_hidden, zeros[1])):
                for i in range(1 << 14):
                    u = struct.unpack_from("<i", cpu.mem, 0x740000 + 4 * i)[0]
                    d = struct.unpack_from("<i", cpu.mem, 0x700000 + 4 * i)[0]
                    struct.pack_into("<i", cpu.mem, region + 4 * i, 0 if u < share * 65536 else d)
            for optimizer in ("sgd", "adam"):
                parts: dict[str, int] = {}

                def run(kernel: str, *args: int, parts: dict[str, int] = parts) -> None:
                    parts[kernel] = parts.get(kernel, 0) + cpu.call(kernel, *args)[0]

                last = len(dims) - 2
                for k, (i, o) in enumerate(zip(dims, dims[1:], strict=False)):
                    x = x_in if k == 0 else hidden
                    dy = v if k == last else dy_hidden  # the logits' gradient has no zeros
                    run("k_forward", x, v, v, batch, i, o)
                    run("k_grad_params", dy, x, batch, i, o)
                    if optimizer == "sgd":
                        run("k_sgd", 0xB00000, v, 0xC00000, i * o + o)
                    else:  # moments from zero (t = 3), so that every count starts alike
                        n = i * o + o
                        cpu.mem[0xC00000 : 0xC00000 + 4 * n] = bytes(4 * n)
                        cpu.mem[0xE00000 : 0xE00000 + 8 * n] = bytes(8 * n)
                        run("k_adam", 0xB00000, v, 0xC00000, 0xE00000, i * o + o)
                    if k > 0:  # the first layer's input gradient is not needed
                        run("k_grad_input", dy, v, batch, i, o)
                    if k < last:
                        run("k_relu", v, batch * o)
                        run("k_relu_backward", v, v, batch * o)
                for i in range(batch):
                    struct.pack_into("<I", cpu.mem, 0xA00000 + 4 * i, i % classes)
                run("k_softmax_ce", v, 0xA00000, batch, classes)
                detail = ", ".join(f"{k[2:]} {n}" for k, n in parts.items())
                total = sum(parts.values())
                print(f"step of {name}, {optimizer}, {data}: {total} instructions ({detail})")


# inputs and hidden sizes, classes, batch (examples/tiny.yaml, examples/digits-mlp.yaml), and the
# share of zero inputs: tiny's synthetic features have none, 48.9% of scikit-learn's digits pixels
# are 0
MODELS = {
    "tiny (8-16-3, batch 16)": ([8, 16], 3, 16, 0.0),
    "digits (64-64-32-10, batch 64)": ([64, 64, 32], 10, 64, 0.489),
}


if __name__ == "__main__":
    main()
