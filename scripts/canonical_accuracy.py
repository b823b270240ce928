"""Digits accuracy after 3 epochs: the canonical kernels against float32 (docs/DESIGN-NOTES.md).

    python scripts/canonical_accuracy.py [SEEDS]

A third reading of docs/PROTOCOL.md §15, vectorized in numpy's int64 (whose matrix products wrap
modulo 2^64 as §15's sums do), first checked against tests/vectors/kernels-v1.json's whole MLP
step; then examples/digits-mlp.yaml's model and settings (64-64-32-10, batch 64, SGD momentum
0.9, weight decay 1e-4, lr 0.1 decayed by 0.7 every 29 steps, 3 epochs) trained twice from the
same initialization (torch's nn.Linear default) over the same batches: in float32 as torch mode
does, and canonically. Prints the accuracy of both on the 1,797 samples, per seed. Needs numpy
and scikit-learn (the `train` extra); not the extension.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

FRAC, CF = 24, 30
I32 = (-(2**31), 2**31 - 1)
LN2, LOG2E = 744261118, 1549082005
EXP2 = [1073741824, -744261118, 257941248, -59597083, 10327387, -1431680]
EXP2 += [165394, -16377, 1419, -109, 8]
LNA = [2147483648, 715827883, 429496730, 306783378, 238609294, 195225786]
LNA += [165191050, 143165577, 126322568]
VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "kernels-v1.json"


def shr(x, s):
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    q = x >> s
    r = x - (q << s)
    half = np.int64(1) << np.maximum(s - 1, 0)
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return np.where(s == 0, x, q + up)


def div(n, d):
    n = np.asarray(n, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    q = n // d
    r2 = 2 * (n - q * d)
    return q + ((r2 > d) | ((r2 == d) & ((q & 1) == 1)))


def sat(x):
    return np.clip(x, *I32).astype(np.int64)


def fwd(x, w, b):
    return sat(shr((x @ w.T) + (b << FRAC)[None, :], FRAC))


def exp_neg(d):
    y = shr(-d * LOG2E, FRAC)
    n, f = y >> CF, y & ((1 << CF) - 1)
    p = np.full_like(y, EXP2[10])
    for k in range(9, -1, -1):
        p = EXP2[k] + shr(p * f, CF)
    nn = np.minimum(n, 62)
    return np.where(n >= 31, 0, shr(p, nn))


def ln(s):
    k = np.frexp(s.astype(np.float64))[1].astype(np.int64) - 1  # exact: s < 2^53
    m = np.where(k >= 30, s >> np.maximum(k - 30, 0), s << np.maximum(30 - k, 0))
    t = div((m - (1 << 30)) << 30, m + (1 << 30))
    z = shr(t * t, CF)
    q = np.full_like(s, LNA[8])
    for j in range(7, -1, -1):
        q = LNA[j] + shr(q * z, CF)
    return (k - 30) * LN2 + shr(q * t, CF)


def ce(z, y):
    bsz, c = z.shape
    mx = z.max(axis=1, keepdims=True)
    e = exp_neg(z - mx)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(bsz)
    loss_rows = ln(s[:, 0]) - ((z[rows, y] - mx[:, 0]) << 6)
    onehot = np.zeros_like(e)
    onehot[rows, y] = 1
    grad = sat(div((e - onehot * s) << FRAC, s * bsz))
    return int(sat(div(loss_rows.sum(), bsz << 6))), grad


def grads(x, dz, w):
    return sat(shr(dz.T @ x, FRAC)), sat(dz.sum(axis=0)), sat(shr(dz @ w, FRAC))


def sgd(w, g, buf, lr, mom, wd):
    g2 = g + shr(wd * w, CF)
    buf[...] = sat(shr(mom * buf, CF) + g2)
    w[...] = sat(w - shr(lr * buf, CF))


def step_fx(params, bufs, x, y, lr, mom, wd):
    acts, pre = [x], []
    for i in range(0, len(params), 2):
        h = fwd(acts[-1], params[i], params[i + 1])
        pre.append(h)
        acts.append(np.maximum(h, 0) if i + 2 < len(params) else h)
    loss, d = ce(acts[-1], y)
    gs = [None] * len(params)
    for i in range(len(params) - 2, -1, -2):
        gw, gb, dx = grads(acts[i // 2], d, params[i])
        gs[i], gs[i + 1] = gw, gb
        if i > 0:
            d = np.where(pre[i // 2 - 1] > 0, dx, 0)
    for p, g, b in zip(params, gs, bufs, strict=True):
        sgd(p, g, b, lr, mom, wd)
    return loss


def quantize(v):
    return np.clip(np.round(v * 2**FRAC), *I32).astype(np.int64)  # half to even, as §15


def check_against_vectors() -> None:
    c = json.loads(VECTORS.read_text())["mlp_step"]

    def a(k):
        return np.array(c[k], dtype=np.int64)

    params = [a("w1").reshape(3, 4), a("b1"), a("w2").reshape(2, 3), a("b2")]
    bufs = [np.zeros_like(p) for p in params]
    x = a("x").reshape(3, 4)
    loss = step_fx(params, bufs, x, a("labels"), c["lr"], c["momentum"], c["weight_decay"])
    assert loss == c["loss"]
    for p, want in zip(params, c["params"], strict=True):
        assert p.ravel().tolist() == want


def main() -> None:
    check_against_vectors()
    d = load_digits()
    X, Y = (d.data / 16.0), d.target
    n = len(Y)
    dims = [64, 64, 32, 10]
    results = {}
    for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
        rng = np.random.default_rng(seed)
        init = []
        for i, o in zip(dims, dims[1:], strict=False):
            bound = 1 / np.sqrt(i)  # torch's nn.Linear default
            init += [rng.uniform(-bound, bound, (o, i)), rng.uniform(-bound, bound, o)]
        perms = [rng.permutation(n) for _ in range(3)]
        # float32, as torch mode
        pf = [p.astype(np.float32) for p in init]
        bf = [np.zeros_like(p) for p in pf]
        # canonical
        px = [quantize(p) for p in init]
        bx = [np.zeros_like(p) for p in px]
        Xq, Xf = quantize(X), X.astype(np.float32)
        step = 0
        for epoch in range(3):
            for k in range(0, n, 64):
                idx = perms[epoch][k : k + 64]
                lr = 0.1 * 0.7 ** (step // 29)
                coefs = (round(lr * 2**30), round(0.9 * 2**30), round(1e-4 * 2**30))
                step_fx(px, bx, Xq[idx], Y[idx], *coefs)
                # float32 reference
                xs, ys = Xf[idx], Y[idx]
                acts, pre = [xs], []
                for i in range(0, 6, 2):
                    h = acts[-1] @ pf[i].T + pf[i + 1]
                    pre.append(h)
                    acts.append(np.maximum(h, 0) if i < 4 else h)
                z = acts[-1]
                e = np.exp(z - z.max(axis=1, keepdims=True))
                p = e / e.sum(axis=1, keepdims=True)
                dz = p.copy()
                dz[np.arange(len(ys)), ys] -= 1
                dz /= len(ys)
                for i in range(4, -1, -2):
                    gw, gb = dz.T @ acts[i // 2], dz.sum(axis=0)
                    if i > 0:
                        dz = np.where(pre[i // 2 - 1] > 0, dz @ pf[i], 0)
                    for j, g in ((i, gw), (i + 1, gb)):
                        g = g + 1e-4 * pf[j]
                        bf[j] = 0.9 * bf[j] + g
                        pf[j] = (pf[j] - np.float32(lr) * bf[j]).astype(np.float32)
                step += 1

        def acc(params, x, fx):
            a = x
            for i in range(0, 6, 2):
                a = fwd(a, params[i], params[i + 1]) if fx else a @ params[i].T + params[i + 1]
                if i < 4:
                    a = np.maximum(a, 0)
            return float((a.argmax(axis=1) == Y).mean())

        results[seed] = (acc(pf, Xf, False), acc(px, Xq, True))
        print(f"seed {seed}: float32 {results[seed][0]:.4f}  canonical {results[seed][1]:.4f}")
    gaps = [f - c for f, c in results.values()]
    print(f"float32 - canonical: mean {np.mean(gaps):+.4f}, largest {max(gaps, key=abs):+.4f}")


if __name__ == "__main__":
    main()
