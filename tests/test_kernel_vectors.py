"""The canonical-arithmetic test vectors (tests/vectors/kernels-v1.json), recomputed from
docs/PROTOCOL.md §15 alone.

An independent reading of the document in pure Python (the standard library only: no extension,
no numpy, no torch): rust/core generated the vectors, so if this agrees with them the document and
the Rust kernels say the same thing, and a verifier without the Rust code can re-execute a step.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "kernels-v1.json").read_text()
)

FRAC = 24  # a value is v / 2^24
COEF_FRAC = 30  # a coefficient is c / 2^30; exp and ln work with 30 fractional bits
I32_MIN, I32_MAX = -(2**31), 2**31 - 1

LN2_Q30 = 744261118
LOG2E_Q30 = 1549082005
EXP2_NEG = [1073741824, -744261118, 257941248, -59597083, 10327387, -1431680]
EXP2_NEG += [165394, -16377, 1419, -109, 8]
LN_ATANH = [2147483648, 715827883, 429496730, 306783378, 238609294, 195225786]
LN_ATANH += [165191050, 143165577, 126322568]


# --- numbers ---------------------------------------------------------------------------------


def shr_rne(x: int, s: int) -> int:
    assert 1 <= s <= 62
    q = x >> s  # Python's >> is floor division by 2^s
    r = x - (q << s)
    half = 1 << (s - 1)
    return q + 1 if r > half or (r == half and q & 1) else q


def div_rne(n: int, d: int) -> int:
    assert d > 0
    q = n // d  # floor
    r2 = 2 * (n - q * d)
    return q + 1 if r2 > d or (r2 == d and q & 1) else q


def sat(x: int) -> int:
    return min(max(x, I32_MIN), I32_MAX)


def wrap64(x: int) -> int:
    """A sum of products: taken modulo 2^64, read as a signed 64-bit integer."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


def round_scaled(x: float, f: int) -> int | None:
    if math.isnan(x) or math.isinf(x):
        return None
    scaled = x * 2**f  # exact (a power of two), or infinite where far outside i64
    if math.isinf(scaled):
        return None
    r = round(scaled)  # half to even
    return r if -(2**63) <= r < 2**63 else None


def fx_from_f64(x: float) -> int | None:
    r = round_scaled(x, FRAC)
    return None if r is None else sat(r)


def coef_from_f64(x: float) -> int | None:
    r = round_scaled(x, COEF_FRAC)
    return r if r is not None and I32_MIN <= r <= I32_MAX else None


def to_f32_bits(raw: int, f: int) -> int:
    # raw / 2^f is exact in a double below 2^53, so packing it rounds once, to nearest even.
    assert abs(raw) < 2**53
    return struct.unpack("<I", struct.pack("<f", raw / 2**f))[0]


# --- kernels ---------------------------------------------------------------------------------


def linear_forward(x: list[int], w: list[int], b: list[int], n_in: int, n_out: int) -> list[int]:
    y = []
    for r in range(len(x) // n_in):
        for o in range(n_out):
            acc = b[o] * 2**FRAC + sum(x[r * n_in + i] * w[o * n_in + i] for i in range(n_in))
            y.append(sat(shr_rne(wrap64(acc), FRAC)))
    return y


def linear_grad_input(dy: list[int], w: list[int], n_in: int, n_out: int) -> list[int]:
    dx = []
    for r in range(len(dy) // n_out):
        for i in range(n_in):
            acc = sum(dy[r * n_out + o] * w[o * n_in + i] for o in range(n_out))
            dx.append(sat(shr_rne(wrap64(acc), FRAC)))
    return dx


def linear_grad_params(
    dy: list[int], x: list[int], n_in: int, n_out: int
) -> tuple[list[int], list[int]]:
    batch = len(x) // n_in
    dw = [
        sat(shr_rne(wrap64(sum(dy[r * n_out + o] * x[r * n_in + i] for r in range(batch))), FRAC))
        for o in range(n_out)
        for i in range(n_in)
    ]
    db = [sat(wrap64(sum(dy[r * n_out + o] for r in range(batch)))) for o in range(n_out)]
    return dw, db


def relu(x: list[int]) -> list[int]:
    return [max(v, 0) for v in x]


def relu_backward(x: list[int], dy: list[int]) -> list[int]:
    return [d if v > 0 else 0 for v, d in zip(x, dy, strict=True)]


def exp_neg_q30(d: int) -> int:
    assert -(2**32) <= d <= 0
    y = shr_rne(-d * LOG2E_Q30, FRAC)
    n, f = y >> COEF_FRAC, y & (2**COEF_FRAC - 1)
    if n >= 31:
        return 0
    p = EXP2_NEG[10]
    for k in range(9, -1, -1):
        p = EXP2_NEG[k] + shr_rne(p * f, COEF_FRAC)
    return p if n == 0 else shr_rne(p, n)


def ln_q30(s: int) -> int:
    assert s >= 1
    k = s.bit_length() - 1
    m = s >> (k - 30) if k >= 30 else s << (30 - k)
    t = div_rne((m - 2**30) * 2**30, m + 2**30)
    z = shr_rne(t * t, COEF_FRAC)
    q = LN_ATANH[8]
    for j in range(7, -1, -1):
        q = LN_ATANH[j] + shr_rne(q * z, COEF_FRAC)
    return (k - 30) * LN2_Q30 + shr_rne(q * t, COEF_FRAC)


def softmax_cross_entropy(z: list[int], labels: list[int], classes: int) -> tuple[int, list[int]]:
    batch = len(labels)
    assert 1 <= classes <= 256 and len(z) == batch * classes
    total, grad = 0, []
    for r, y in enumerate(labels):
        row = z[r * classes : (r + 1) * classes]
        mx = max(row)
        e = [exp_neg_q30(v - mx) for v in row]
        s = sum(e)
        total += ln_q30(s) - (row[y] - mx) * 2**6
        for c in range(classes):
            grad.append(sat(div_rne((e[c] - (s if c == y else 0)) * 2**FRAC, s * batch)))
    return sat(div_rne(total, batch * 2**6)), grad


def grad_norm(grads: list[list[int]]) -> int:
    return math.isqrt(sum(g * g for grad in grads for g in grad))


def sgd_step(w: list[int], g: list[int], buf: list[int], lr: int, mom: int, wd: int) -> None:
    for i in range(len(w)):
        g2 = g[i] + shr_rne(wd * w[i], COEF_FRAC)
        buf[i] = sat(shr_rne(mom * buf[i], COEF_FRAC) + g2)
        w[i] = sat(w[i] - shr_rne(lr * buf[i], COEF_FRAC))


def coef_powu(x: int, n: int) -> int:
    acc, base = 2**30, x
    while n > 0:
        if n & 1:
            acc = shr_rne(acc * base, COEF_FRAC)
        base = shr_rne(base * base, COEF_FRAC)
        n >>= 1
    return acc


def adam_step(
    w: list[int], g: list[int], m: list[int], v: list[int], a: dict[str, int], t: int
) -> None:
    one = 2**30
    b1, b2 = a["beta1"], a["beta2"]
    bc1, bc2 = one - coef_powu(b1, t), one - coef_powu(b2, t)
    for i in range(len(w)):
        g2 = g[i] + shr_rne(a["weight_decay"] * w[i], COEF_FRAC)
        m[i] = sat(shr_rne(b1 * m[i] + (one - b1) * g2, COEF_FRAC))
        v[i] = min(max(shr_rne(b2 * v[i] + (one - b2) * g2 * g2, COEF_FRAC), 0), 2**64 - 1)
        r = math.isqrt(v[i] * 2**30 // bc2)
        den = max(r + a["eps"], 1)
        w[i] = sat(w[i] - div_rne(a["lr"] * m[i] * 2**FRAC, bc1 * den))


# --- the canonical MLP (§15, "The canonical MLP") -------------------------------------------


def tagged(tag: str, data: bytes) -> bytes:
    return hashlib.sha256(tag.encode() + b"\0" + data).digest()


def settings_bytes(s: dict[str, int]) -> bytes:
    kind = {"sgd": 0, "adam": 1}[s["kind"]]
    head = struct.pack("<3I", 1, kind, s["zk_steps_per_epoch"])
    return head + struct.pack("<5i", *(s[k] for k in ("wd", "momentum", "beta1", "beta2", "eps")))


def decode_settings(b: bytes) -> dict[str, Any]:
    version, kind, k, wd, mom, b1, b2, eps = struct.unpack("<3I5i", b)
    assert version == 1 and kind in (0, 1) and k >= 1
    s = {"kind": ("sgd", "adam")[kind], "zk_steps_per_epoch": k, "wd": wd, "momentum": mom}
    s |= {"beta1": b1, "beta2": b2, "eps": eps}
    unused = (b1, b2, eps) if kind == 0 else (mom,)
    assert not any(unused)
    return s


class Xoshiro128:
    """xoshiro128** keyed by a digest's first four LE words (PROTOCOL.md §5)."""

    def __init__(self, key: bytes) -> None:
        self.s = list(struct.unpack("<4I", key[:16]))
        if self.s == [0, 0, 0, 0]:  # xoshiro's fixed point, as the Rust sampler
            self.s[0] = 1

    def next_u32(self) -> int:
        m = 0xFFFFFFFF
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (32 - k))) & m  # noqa: E731
        result = (rotl((s[1] * 5) & m, 7) * 9) & m
        t = (s[1] << 9) & m
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
        return result

    def below(self, bound: int) -> int:
        m = self.next_u32() * bound
        threshold = (2**32 - bound) % bound
        while m & 0xFFFFFFFF < threshold:
            m = self.next_u32() * bound
        return m >> 32


def mlp_init(seed: int, dims: list[int]) -> list[list[int]]:
    params = []
    for layer, (n_in, n_out) in enumerate(zip(dims, dims[1:], strict=False)):
        rng = Xoshiro128(tagged("veritrain/init/v1", struct.pack("<QI", seed, layer)))
        bound = math.isqrt(2**48 // n_in)
        params.append([rng.below(2 * bound + 1) - bound for _ in range(n_in * n_out)])
        params.append([rng.below(2 * bound + 1) - bound for _ in range(n_out)])
    return params


def quantize_sample(row: bytes, n_in: int, classes: int) -> tuple[list[int], int]:
    feats = struct.unpack(f"<{n_in}f", row[: 4 * n_in])
    (label,) = struct.unpack("<q", row[4 * n_in :])
    assert all(math.isfinite(f) for f in feats) and 0 <= label < classes
    return [sat(round(f * 2**FRAC)) for f in feats], label


def mlp_step(
    dims: list[int],
    params: list[list[int]],
    state: list[list[list[int]]],
    s: dict[str, Any],
    lr: int,
    x: list[int],
    labels: list[int],
    t: int,
) -> tuple[int, int]:
    layers = len(dims) - 1
    acts, pre = [x], []
    for layer in range(layers):
        z = linear_forward(
            acts[-1], params[2 * layer], params[2 * layer + 1], *dims[layer : layer + 2]
        )
        pre.append(z)
        acts.append(relu(z))
    loss, dz = softmax_cross_entropy(pre[-1], labels, dims[-1])
    grads: list[list[int]] = [[] for _ in params]
    for layer in reversed(range(layers)):
        n_in, n_out = dims[layer : layer + 2]
        grads[2 * layer], grads[2 * layer + 1] = linear_grad_params(dz, acts[layer], n_in, n_out)
        if layer:
            dz = relu_backward(
                pre[layer - 1], linear_grad_input(dz, params[2 * layer], n_in, n_out)
            )
    norm = grad_norm(grads)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if s["kind"] == "sgd":
            sgd_step(p, g, state[0][i], lr, s["momentum"], s["wd"])
        else:
            a = {"lr": lr, "beta1": s["beta1"], "beta2": s["beta2"], "eps": s["eps"]}
            adam_step(p, g, state[0][i], state[1][i], a | {"weight_decay": s["wd"]}, t)
    return loss, norm


# --- the vectors -----------------------------------------------------------------------------


def test_the_vectors_are_version_1_in_this_format():
    assert VECTORS["version"] == 1
    assert (VECTORS["frac"], VECTORS["coef_frac"]) == (FRAC, COEF_FRAC)


def test_rounding_is_half_to_even():
    for case in VECTORS["shr_rne"]:
        assert shr_rne(case["x"], case["s"]) == case["shr_rne"], case
    for case in VECTORS["div_rne"]:
        assert div_rne(case["n"], case["d"]) == case["div_rne"], case


def test_reals_convert_to_values_coefficients_and_f32():
    for case in VECTORS["reals"]:
        x = struct.unpack("<d", bytes.fromhex(case["bits"])[::-1])[0]
        assert fx_from_f64(x) == case["fx"], case
        assert coef_from_f64(x) == case["coef"], case
    for case in VECTORS["to_f32"]:
        assert to_f32_bits(case["raw"], case["frac"]) == case["f32_bits"], case


def test_exp_and_ln():
    for d, want in VECTORS["exp_neg_q30"]:
        assert exp_neg_q30(d) == want, d
    for s, want in VECTORS["ln_q30"]:
        assert ln_q30(s) == want, s


def test_linear_layers_and_relu():
    c = VECTORS["linear"]
    n_in, n_out = c["in"], c["out"]
    assert linear_forward(c["x"], c["w"], c["b"], n_in, n_out) == c["y"]
    assert linear_grad_input(c["dy"], c["w"], n_in, n_out) == c["dx"]
    assert linear_grad_params(c["dy"], c["x"], n_in, n_out) == (c["dw"], c["db"])
    assert relu(c["x"]) == c["relu"]
    assert relu_backward(c["x"], c["x"]) == c["relu_backward"]
    s = VECTORS["linear_saturating"]
    assert linear_forward(s["x"], s["w"], s["b"], s["in"], s["out"]) == s["y"] == [I32_MAX]
    # 3 * 2^62 wraps modulo 2^64 to -2^62: a sum of positive products comes out negative.
    s = VECTORS["linear_wrapping"]
    assert linear_forward(s["x"], s["w"], s["b"], s["in"], s["out"]) == s["y"] == [I32_MIN]


def test_softmax_cross_entropy():
    for c in VECTORS["softmax_cross_entropy"]:
        loss, grad = softmax_cross_entropy(c["logits"], c["labels"], c["classes"])
        assert (loss, grad) == (c["loss"], c["grad"]), c


def test_sgd_steps():
    c = VECTORS["sgd"]
    buf = [0] * len(c["steps"][0]["w"])
    for step in c["steps"]:
        w = list(step["w"])
        sgd_step(w, step["grad"], buf, c["lr"], c["momentum"], c["weight_decay"])
        assert (w, buf) == (step["w_after"], step["buf_after"])


def test_adam_steps():
    c = VECTORS["adam"]
    n = len(c["steps"][0]["w"])
    m, v = [0] * n, [0] * n
    for step in c["steps"]:
        w = list(step["w"])
        adam_step(w, step["grad"], m, v, c, step["t"])
        assert (w, m, v) == (step["w_after"], step["m_after"], step["v_after"]), step["t"]
    for x, n, want in VECTORS["coef_powu"]:
        assert coef_powu(x, n) == want


def test_a_whole_mlp_training_step():
    c = VECTORS["mlp_step"]
    inp, hid, cls = 4, 3, 2
    h_pre = linear_forward(c["x"], c["w1"], c["b1"], inp, hid)
    h = relu(h_pre)
    z = linear_forward(h, c["w2"], c["b2"], hid, cls)
    loss, dz = softmax_cross_entropy(z, c["labels"], cls)
    dw2, db2 = linear_grad_params(dz, h, hid, cls)
    dh = relu_backward(h_pre, linear_grad_input(dz, c["w2"], hid, cls))
    dw1, db1 = linear_grad_params(dh, c["x"], inp, hid)
    grads = [dw1, db1, dw2, db2]
    assert (h_pre, z, loss, dz, dh, grads) == (
        c["h_pre"],
        c["z"],
        c["loss"],
        c["dz"],
        c["dh"],
        c["grads"],
    )
    assert grad_norm(grads) == c["grad_norm"]
    assert to_f32_bits(loss, FRAC) == c["loss_f32_bits"]
    assert to_f32_bits(c["grad_norm"], FRAC) == c["grad_norm_f32_bits"]
    params = [list(c[k]) for k in ("w1", "b1", "w2", "b2")]
    bufs = [[0] * len(p) for p in params]
    for p, g, b in zip(params, grads, bufs, strict=True):
        sgd_step(p, g, b, c["lr"], c["momentum"], c["weight_decay"])
    assert (params, bufs) == (c["params"], c["momentum_buffers"])


def test_canonical_settings_encode_and_digest():
    c = VECTORS["canonical"]
    kinds = []
    for case in c["settings"]:
        raw = bytes.fromhex(case["bytes"])
        s = decode_settings(raw)
        kinds.append(s["kind"])
        assert settings_bytes(s) == raw
        assert tagged("veritrain/canonical-settings/v1", raw).hex() == case["digest"]
    assert kinds == ["sgd", "adam"]


def test_canonical_init_quantization_and_steps():
    c = VECTORS["canonical"]
    dims = c["dims"]
    assert mlp_init(c["seed"], dims) == c["init"]
    rows = [bytes.fromhex(r) for r in c["rows"]]
    for i, name in enumerate(("sgd_steps", "adam_steps")):
        s = decode_settings(bytes.fromhex(c["settings"][i]["bytes"]))
        params = [list(p) for p in c["init"]]
        state = [[[0] * len(p) for p in params] for _ in range(2)]
        for step, want in enumerate(c[name]):
            batch = len(want["labels"])
            quantized = [
                quantize_sample(r, dims[0], dims[-1]) for r in rows[step * batch :][:batch]
            ]
            x = [v for feats, _ in quantized for v in feats]
            labels = [label for _, label in quantized]
            assert (x, labels) == (want["x"], want["labels"])
            assert want["lr"] == coef_from_f64(0.05)
            loss, norm = mlp_step(dims, params, state, s, want["lr"], x, labels, want["t"])
            assert (loss, norm) == (want["loss"], want["grad_norm"])
            assert to_f32_bits(loss, FRAC) == want["loss_f32_bits"]
            assert to_f32_bits(norm, FRAC) == want["grad_norm_f32_bits"]
            assert params == want["params"]
            if s["kind"] == "sgd":
                assert state[0] == want["momentum_buffers"]
            else:
                assert (state[0], state[1]) == (want["exp_avg"], want["exp_avg_sq"])
