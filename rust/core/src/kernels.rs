//! Canonical fixed-point kernels (draft: not yet compiled into the guest).
//!
//! The arithmetic of a training step in integers only, so the host and the guest compute the same
//! bits on any machine: linear layers, ReLU, softmax cross-entropy, SGD and Adam. docs/PROTOCOL.md
//! ("Canonical arithmetic") is the normative text; `tests/vectors/kernels-v1.json` pins results.
//!
//! Why fixed point, and why this one (docs/DESIGN-NOTES.md has the measurement): the guest is
//! rv32im, where an f32 multiply-accumulate is two soft-float calls while an i32 x i32 -> i64
//! multiply-accumulate is a handful of instructions. Every value is an `i32` with [`FRAC`] = 24
//! fractional bits (Q8.24, range [-128, 128), resolution 2^-24 ~ 6e-8): the cost of a MAC is the
//! same for any split of 32 bits, and the fraction is what SGD needs (an update `lr * grad` of
//! 1e-6 and a weight-decay term of 1e-5 are still tens of units), while activations of the MLPs
//! on normalized inputs stay far below 128.
//!
//! Rules common to every kernel:
//! - Products are exact (`i64`, or `i128` in the optimizers) and sums of products are taken in
//!   `i64` modulo 2^64 (wrapping). Wrapping addition is associative and commutative, so a sum does
//!   not depend on its order: a host may split, vectorize and thread it freely. (It equals the true
//!   sum whenever that is below 2^63 in magnitude, i.e. below 2^15 in real units.)
//! - Every rescaling rounds half to even ([`shr_rne`], [`div_rne`]), except the few floors that
//!   are spelled out (ln's normalization, the integer square roots of Adam and the grad norm).
//! - Every value stored back into an `i32` saturates to [-2^31, 2^31 - 1] ([`sat`]).
//! - Optimizer coefficients (learning rate, momentum, betas, weight decay) are [`Coef`]s: `i32`
//!   with 30 fractional bits, range [-2, 2).
//!
//! Shapes are row-major (C order) like torch's: activations `[batch, features]`, a weight
//! `[out, in]`. A shape mismatch is a caller's bug and panics.

use alloc::vec;
use alloc::vec::Vec;

/// Fractional bits of a value: `value = raw / 2^24`.
pub const FRAC: u32 = 24;
/// 1.0 as a value.
pub const ONE: i32 = 1 << FRAC;
/// Fractional bits of a coefficient and of the exp/log internals: `coef = raw / 2^30`.
pub const COEF_FRAC: u32 = 30;
const C_ONE: i64 = 1 << COEF_FRAC;

/// An optimizer coefficient: `raw / 2^30`.
pub type Coef = i32;

/// ln 2 and log2 e, rounded to 30 fractional bits.
pub const LN2_Q30: i64 = 744_261_118;
pub const LOG2E_Q30: i64 = 1_549_082_005;
/// `2^-f = sum_k (-ln 2)^k f^k / k!` for k = 0..=10, each rounded to 30 fractional bits.
pub const EXP2_NEG: [i64; 11] = [
    1_073_741_824,
    -744_261_118,
    257_941_248,
    -59_597_083,
    10_327_387,
    -1_431_680,
    165_394,
    -16_377,
    1_419,
    -109,
    8,
];
/// `ln((1 + s) / (1 - s)) = sum_j 2 s^(2j+1) / (2j + 1)` for j = 0..=8, each `2 / (2j + 1)` rounded
/// to 30 fractional bits.
pub const LN_ATANH: [i64; 9] = [
    2_147_483_648,
    715_827_883,
    429_496_730,
    306_783_378,
    238_609_294,
    195_225_786,
    165_191_050,
    143_165_577,
    126_322_568,
];

// ---------------------------------------------------------------------------------------------
// Rounding and saturation
// ---------------------------------------------------------------------------------------------

/// `x / 2^s` rounded to the nearest integer, ties to even (`1 <= s <= 62`).
///
/// Without a branch: the floor `q` goes up exactly when `r + (q & 1) > half` (the remainder is
/// above half, or at half with `q` odd), and neither sum can overflow.
pub fn shr_rne(x: i64, s: u32) -> i64 {
    let q = x >> s; // floor
    let r = x & ((1i64 << s) - 1);
    q + i64::from(r + (q & 1) > 1i64 << (s - 1))
}

/// [`shr_rne`] on 128 bits (the optimizers' intermediates).
pub fn shr_rne_wide(x: i128, s: u32) -> i128 {
    let q = x >> s;
    let r = x & ((1i128 << s) - 1);
    q + i128::from(r + (q & 1) > 1i128 << (s - 1))
}

/// `n / d` rounded to the nearest integer, ties to even (`d > 0`).
pub fn div_rne(n: i64, d: i64) -> i64 {
    debug_assert!(d > 0);
    let q = n.div_euclid(d); // floor, since d > 0
                             // q * d may lie below i64::MIN (n near it, d large), but the remainder n - q * d is in
                             // [0, d): computed modulo 2^64 it is exact.
    let r2 = 2 * n.wrapping_sub(q.wrapping_mul(d));
    q + i64::from(r2 + (q & 1) > d)
}

/// [`div_rne`] on 128 bits (the optimizers only: a 128-bit division is a long library call on
/// rv32im, a 64-bit one a short one).
pub fn div_rne_wide(n: i128, d: i128) -> i128 {
    debug_assert!(d > 0);
    let q = n.div_euclid(d);
    let r2 = 2 * (n - q * d);
    q + i128::from(r2 + (q & 1) > d)
}

/// One divisor `d` (`1 <= d < 2^62`) for many divisions, as a row of the softmax and a step of
/// Adam have: a 64-bit division costs a library call of a few hundred instructions on rv32im, so
/// the quotient is estimated from `floor((2^64 - 1) / d)` with one wide multiplication and then
/// made exact.
struct Divisor {
    d: u64,
    inv: u64,
}

impl Divisor {
    fn new(d: u64) -> Self {
        assert!((1..1 << 62).contains(&d));
        Self {
            d,
            inv: u64::MAX / d,
        }
    }

    /// `floor(a / d)` and `a mod d`.
    fn div_rem(&self, a: u64) -> (u64, u64) {
        // a * inv / 2^64 lies in (a / d - 1, a / d]: the floor is at most one short.
        let mut q = (mul_wide(a, self.inv) >> 64) as u64;
        let mut r = a - q * self.d;
        if r >= self.d {
            q += 1;
            r -= self.d;
        }
        (q, r)
    }

    /// `div_rne(n, d)` for `|n| < 2^63`. Round half to even is symmetric, so the quotient of
    /// `|n|` is rounded and the sign put back.
    fn div_rne(&self, n: i64) -> i64 {
        let (q, r) = self.div_rem(n.unsigned_abs());
        let q = q + u64::from(2 * r + (q & 1) > self.d);
        if n < 0 {
            -(q as i64)
        } else {
            q as i64
        }
    }
}

/// Saturates to an `i32`.
pub fn sat(x: i64) -> i32 {
    // The usual case, `x` in range, first: on rv32im one comparison of the high word.
    let lo = x as i32;
    if i64::from(lo) == x {
        lo
    } else if x < 0 {
        i32::MIN
    } else {
        i32::MAX
    }
}

/// `x * 2^frac` rounded half to even, from the bits of `x` (no float arithmetic); `None` for NaN,
/// infinities and results outside `i64`. How the host turns an f64 (a sample, a learning rate)
/// into fixed point; Python's `round(x * 2**frac)` is the same function.
pub fn round_scaled(x: f64, frac: u32) -> Option<i64> {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0x7ff {
        return None;
    }
    let frac_bits = bits & ((1u64 << 52) - 1);
    // x = mant * 2^(e): subnormals have no implicit bit and the exponent of the smallest normal.
    let (mant, e) = if exp == 0 {
        (frac_bits, -1074)
    } else {
        (frac_bits | (1 << 52), exp - 1075)
    };
    let shift = e + frac as i32;
    let mag: i128 = if shift >= 0 {
        if shift > 64 {
            return None;
        }
        i128::from(mant) << shift
    } else if shift < -60 {
        0 // below 2^-7 of a unit: rounds to zero
    } else {
        div_rne_wide(i128::from(mant), 1i128 << -shift)
    };
    let v = if bits >> 63 == 1 { -mag } else { mag };
    i64::try_from(v).ok()
}

/// A real number as a value (Q8.24), rounded half to even and saturated.
pub fn fx_from_f64(x: f64) -> Option<i32> {
    round_scaled(x, FRAC).map(sat)
}

/// A real number as a coefficient (Q2.30); `None` outside [-2, 2).
pub fn coef_from_f64(x: f64) -> Option<Coef> {
    round_scaled(x, COEF_FRAC).and_then(|r| i32::try_from(r).ok())
}

// ---------------------------------------------------------------------------------------------
// Linear layers and ReLU
// ---------------------------------------------------------------------------------------------

/// Sum of exact products modulo 2^64: the accumulation every kernel's sums are defined by (the
/// linear kernels compute the same sums column by column, see [`lane_sums`]).
///
/// Four terms a round: the order does not change a wrapping sum, and on rv32im the unrolled loop
/// costs about 9 instructions a term instead of 11 (docs/DESIGN-NOTES.md).
pub fn dot(a: &[i32], b: &[i32]) -> i64 {
    assert_eq!(a.len(), b.len());
    let mac = |acc: i64, (x, y): (&i32, &i32)| acc.wrapping_add(i64::from(*x) * i64::from(*y));
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail = a4.remainder().iter().zip(b4.remainder()).fold(0, mac);
    a4.zip(b4).fold(tail, |acc, (x, y)| {
        acc.wrapping_add(i64::from(x[0]) * i64::from(y[0]))
            .wrapping_add(i64::from(x[1]) * i64::from(y[1]))
            .wrapping_add(i64::from(x[2]) * i64::from(y[2]))
            .wrapping_add(i64::from(x[3]) * i64::from(y[3]))
    })
}

/// `y[b, o] = sat(shr_rne(bias[o] * 2^24 + sum_i x[b, i] * w[o, i], 24))`.
pub fn linear_forward(x: &[i32], w: &[i32], bias: &[i32], in_f: usize, out_f: usize) -> Vec<i32> {
    assert!(
        in_f > 0 && x.len().is_multiple_of(in_f) && w.len() == in_f * out_f && bias.len() == out_f
    );
    let wp = pack(w, in_f, out_f, true);
    let mut y = vec![0i32; x.len() / in_f * out_f];
    for (row, yrow) in x.chunks_exact(in_f).zip(y.chunks_exact_mut(out_f)) {
        for ((wb, yb), bb) in wp
            .chunks_exact(in_f)
            .zip(yrow.chunks_mut(LANES))
            .zip(bias.chunks(LANES))
        {
            let acc = lane_sums(row, wb);
            for ((y, a), b) in yb.iter_mut().zip(acc).zip(bb) {
                *y = sat(shr_rne((i64::from(*b) << FRAC).wrapping_add(a), FRAC));
            }
        }
    }
    y
}

/// Gradient of a linear layer's input: `dx[b, i] = sat(shr_rne(sum_o dy[b, o] * w[o, i], 24))`.
pub fn linear_grad_input(dy: &[i32], w: &[i32], in_f: usize, out_f: usize) -> Vec<i32> {
    assert!(in_f > 0 && out_f > 0 && dy.len().is_multiple_of(out_f) && w.len() == in_f * out_f);
    let wp = pack(w, out_f, in_f, false);
    let mut dx = vec![0i32; dy.len() / out_f * in_f];
    for (drow, dxrow) in dy.chunks_exact(out_f).zip(dx.chunks_exact_mut(in_f)) {
        for (wb, db) in wp.chunks_exact(out_f).zip(dxrow.chunks_mut(LANES)) {
            for (d, a) in db.iter_mut().zip(lane_sums(drow, wb)) {
                *d = sat(shr_rne(a, FRAC));
            }
        }
    }
    dx
}

/// Gradients of a linear layer's parameters, summed over the batch (the loss is already a mean):
/// `dw[o, i] = sat(shr_rne(sum_b dy[b, o] * x[b, i], 24))`, `db[o] = sat(sum_b dy[b, o])`.
pub fn linear_grad_params(
    dy: &[i32],
    x: &[i32],
    in_f: usize,
    out_f: usize,
) -> (Vec<i32>, Vec<i32>) {
    assert!(in_f > 0 && out_f > 0 && x.len().is_multiple_of(in_f));
    let batch = x.len() / in_f;
    assert!(batch > 0 && dy.len() == batch * out_f);
    let (dyt, xp) = (transpose(dy, batch, out_f), pack(x, batch, in_f, false));
    let mut dw = vec![0i32; out_f * in_f];
    let mut db = Vec::with_capacity(out_f);
    for (dyo, dwo) in dyt.chunks_exact(batch).zip(dw.chunks_exact_mut(in_f)) {
        db.push(sat(dyo
            .iter()
            .fold(0i64, |acc, d| acc.wrapping_add(i64::from(*d)))));
        for (xb, dwb) in xp.chunks_exact(batch).zip(dwo.chunks_mut(LANES)) {
            for (d, a) in dwb.iter_mut().zip(lane_sums(dyo, xb)) {
                *d = sat(shr_rne(a, FRAC));
            }
        }
    }
    (dw, db)
}

/// Columns summed together by [`lane_sums`]: their accumulators stay in registers (8 of rv32im's
/// 32 for four `i64`s), so each term costs a load, the product and the 64-bit add.
const LANES: usize = 4;

/// `[rows, cols]` (or, with `transposed`, the transpose of `[cols, rows]`) as blocks of
/// [`LANES`] columns: block `k` holds `m[r][k * LANES..(k + 1) * LANES]` for every row `r`,
/// zero-padded past the last column.
fn pack(m: &[i32], rows: usize, cols: usize, transposed: bool) -> Vec<[i32; LANES]> {
    let blocks = cols.div_ceil(LANES);
    let mut p = vec![[0i32; LANES]; blocks * rows];
    for (k, block) in p.chunks_exact_mut(rows).enumerate() {
        let (c0, n) = (k * LANES, (cols - k * LANES).min(LANES));
        if transposed {
            // column c of the result is row c of m: read it contiguously
            for (j, src) in m[c0 * rows..].chunks_exact(rows).take(n).enumerate() {
                for (lanes, v) in block.iter_mut().zip(src) {
                    lanes[j] = *v;
                }
            }
        } else {
            for (r, lanes) in block.iter_mut().enumerate() {
                for (j, v) in lanes.iter_mut().enumerate().take(n) {
                    *v = m[r * cols + c0 + j];
                }
            }
        }
    }
    p
}

/// `sum_r s[r] * block[r][j]` for each lane `j` (wrapping, as [`dot`]). A zero `s[r]` adds
/// nothing, so it is skipped: a wrapping sum is the same without its zero terms, and about half
/// of an MLP's activations (after ReLU) and of their gradients are zero.
/// Kept out of line: inlined into the kernels' loops, its accumulators lose registers and its
/// operands are indexed instead of walked (about one instruction more a term on rv32im).
#[inline(never)]
fn lane_sums(s: &[i32], block: &[[i32; LANES]]) -> [i64; LANES] {
    let mut acc = [0i64; LANES];
    for (sv, lanes) in s.iter().zip(block) {
        if *sv != 0 {
            let sv = i64::from(*sv);
            for (a, v) in acc.iter_mut().zip(lanes) {
                *a = a.wrapping_add(sv * i64::from(*v));
            }
        }
    }
    acc
}

/// `[rows, cols]` to `[cols, rows]`.
fn transpose(a: &[i32], rows: usize, cols: usize) -> Vec<i32> {
    let mut t = vec![0i32; a.len()];
    for (r, row) in a.chunks_exact(cols).enumerate() {
        for (tc, v) in t[r..].iter_mut().step_by(rows).zip(row) {
            *tc = *v;
        }
    }
    t
}

/// `max(x, 0)`.
pub fn relu(x: &[i32]) -> Vec<i32> {
    x.iter().map(|v| (*v).max(0)).collect()
}

/// `dx = dy where the ReLU's input x > 0, else 0` (0 at x = 0, as torch).
pub fn relu_backward(x: &[i32], dy: &[i32]) -> Vec<i32> {
    assert_eq!(x.len(), dy.len());
    x.iter()
        .zip(dy)
        .map(|(x, d)| if *x > 0 { *d } else { 0 })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// exp, ln and softmax cross-entropy
// ---------------------------------------------------------------------------------------------

/// `e^d` for a value `d <= 0` (24 fractional bits, as an `i64` so a difference of two values
/// fits), with 30 fractional bits: in [0, 2^30].
///
/// `y = shr_rne(-d * LOG2E_Q30, 24)` is `-d * log2 e` with 30 fractional bits; `n = y >> 30`,
/// `f = y & (2^30 - 1)`; if `n >= 31` the result is 0. Otherwise `2^-f` by Horner from the top
/// coefficient: `p = EXP2_NEG[10]`, then for k = 9 down to 0 `p = EXP2_NEG[k] + shr_rne(p * f, 30)`;
/// the result is `p` if `n = 0`, else `shr_rne(p, n)`.
pub fn exp_neg_q30(d: i64) -> i64 {
    assert!((-(1i64 << 32)..=0).contains(&d));
    let y = shr_rne(-d * LOG2E_Q30, FRAC);
    let n = y >> COEF_FRAC;
    if n >= 31 {
        return 0;
    }
    let f = (y & (C_ONE - 1)) as i32;
    // |p| <= sum of |EXP2_NEG| = 2^31 - 1 at every step (f < 2^30 makes |p * f / 2^30| < |p|, and
    // rounding keeps it at most |p|), so the products are i32 x i32: one mul and one mulh each
    // on rv32im rather than a full 64 x 64-bit multiply.
    let mut p = EXP2_NEG[10] as i32;
    for k in (0..10).rev() {
        p = (EXP2_NEG[k] + shr_rne(i64::from(p) * i64::from(f), COEF_FRAC)) as i32;
    }
    let p = i64::from(p);
    if n == 0 {
        p
    } else {
        shr_rne(p, n as u32)
    }
}

/// `ln(s / 2^30)` for an integer `s >= 1`, with 30 fractional bits.
///
/// `k = bit_length(s) - 1`; `m = s >> (k - 30)` if `k >= 30` (floor), else `s << (30 - k)`, so
/// `m / 2^30` is in [1, 2). `t = div_rne((m - 2^30) * 2^30, m + 2^30)` (that is `(m-1)/(m+1)`),
/// `z = shr_rne(t * t, 30)`; `q = LN_ATANH[8]`, then for j = 7 down to 0
/// `q = LN_ATANH[j] + shr_rne(q * z, 30)`; the result is `(k - 30) * LN2_Q30 + shr_rne(q * t, 30)`.
pub fn ln_q30(s: u64) -> i64 {
    assert!(s >= 1);
    let k = 63 - s.leading_zeros() as i64;
    let m = if k >= 30 {
        (s >> (k - 30)) as i64
    } else {
        (s << (30 - k)) as i64
    };
    let t = div_rne((m - C_ONE) << COEF_FRAC, m + C_ONE);
    let z = shr_rne(t * t, COEF_FRAC);
    let mut q = LN_ATANH[8];
    for j in (0..8).rev() {
        q = LN_ATANH[j] + shr_rne(q * z, COEF_FRAC);
    }
    (k - 30) * LN2_Q30 + shr_rne(q * t, COEF_FRAC)
}

/// Mean softmax cross-entropy of `logits` (`[batch, classes]`, at most 256 classes) against
/// `labels`, and its gradient with respect to the logits. For each row: `mx = max_c z[c]`,
/// `e[c] = exp_neg_q30(z[c] - mx)`, `S = sum_c e[c]` (exact), the row's loss
/// `l = ln_q30(S) - (z[y] - mx) * 2^6` (30 fractional bits) and its gradient
/// `dz[c] = sat(div_rne((e[c] - [c == y] * S) * 2^24, S * batch))`, that is
/// `(softmax(z)[c] - [c == y]) / batch` rounded once. The loss is
/// `sat(div_rne(sum_rows l, batch * 2^6))`. Both are means over the batch, as torch's
/// `cross_entropy` with `reduction="mean"`.
pub fn softmax_cross_entropy(logits: &[i32], labels: &[u32], classes: usize) -> (i32, Vec<i32>) {
    let batch = labels.len();
    assert!((1..=256).contains(&classes) && batch > 0 && logits.len() == batch * classes);
    assert!(batch < 1 << 24, "batch too large");
    let mut loss_sum = 0i64;
    let mut grad = Vec::with_capacity(logits.len());
    let mut e = vec![0i64; classes];
    for (row, &y) in logits.chunks_exact(classes).zip(labels) {
        let y = y as usize;
        assert!(y < classes, "label out of range");
        let mx = i64::from(*row.iter().max().unwrap());
        for (ec, z) in e.iter_mut().zip(row) {
            *ec = exp_neg_q30(i64::from(*z) - mx);
        }
        let s: i64 = e.iter().sum();
        let dy = i64::from(row[y]) - mx;
        loss_sum += ln_q30(s as u64) - (dy << (COEF_FRAC - FRAC));
        let den = Divisor::new((s * batch as i64) as u64);
        for (c, ec) in e.iter().enumerate() {
            let num = if c == y { ec - s } else { *ec };
            grad.push(sat(den.div_rne(num << FRAC)));
        }
    }
    let loss = div_rne(loss_sum, (batch as i64) << (COEF_FRAC - FRAC));
    (sat(loss), grad)
}

// ---------------------------------------------------------------------------------------------
// Optimizers
// ---------------------------------------------------------------------------------------------

/// SGD with momentum and (L2) weight decay, torch's order (`nesterov=False`, `dampening=0`), per
/// element: `g2 = g + shr_rne(wd * w, 30)`; `buf = sat(shr_rne(momentum * buf, 30) + g2)`;
/// `w = sat(w - shr_rne(lr * buf, 30))`. The buffer starts at zero, which is torch's first step
/// (`buf = g2`); it is kept (and committed) even when `momentum` is 0.
pub fn sgd_step(w: &mut [i32], g: &[i32], buf: &mut [i32], lr: Coef, momentum: Coef, wd: Coef) {
    assert!(w.len() == g.len() && w.len() == buf.len());
    for ((w, g), b) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
        let g2 = i64::from(*g) + shr_rne(i64::from(wd) * i64::from(*w), COEF_FRAC);
        *b = sat(shr_rne(i64::from(momentum) * i64::from(*b), COEF_FRAC) + g2);
        *w = sat(i64::from(*w) - shr_rne(i64::from(lr) * i64::from(*b), COEF_FRAC));
    }
}

/// `x^n` for a coefficient `0 <= x <= 2^30` (at most 1), square-and-multiply low bit first as `powu` (PROTOCOL.md §6), each
/// product rounded: `acc = 2^30; base = x; while n > 0 { if n & 1: acc = shr_rne(acc * base, 30);
/// base = shr_rne(base * base, 30); n >>= 1 }`.
pub fn coef_powu(x: Coef, mut n: u64) -> i64 {
    let mut acc = C_ONE;
    let mut base = i64::from(x);
    while n > 0 {
        if n & 1 == 1 {
            acc = shr_rne(acc * base, COEF_FRAC);
        }
        base = shr_rne(base * base, COEF_FRAC);
        n >>= 1;
    }
    acc
}

/// Adam's settings; `eps` is a value (24 fractional bits), the others coefficients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adam {
    pub lr: Coef,
    pub beta1: Coef,
    pub beta2: Coef,
    pub eps: i32,
    pub weight_decay: Coef,
}

/// One Adam step (torch's `Adam`, L2 weight decay, `amsgrad=False`) at step `t >= 1`. The first
/// moment `m` is a value; the second moment `v` is a `u64` with 48 fractional bits (a squared
/// value, kept exact so small gradients do not vanish). `0 <= beta < 2^30` (below 1). All in
/// `i128` as stated (the code narrows where that is exact). Once per step:
/// `bc1 = 2^30 - coef_powu(beta1, t)`, `bc2 = 2^30 - coef_powu(beta2, t)`.
/// Per element: `g2 = g + shr_rne(wd * w, 30)`;
/// `m = sat(shr_rne(beta1 * m + (2^30 - beta1) * g2, 30))`;
/// `v = clamp(shr_rne(beta2 * v + (2^30 - beta2) * g2 * g2, 30), 0, 2^64 - 1)`;
/// `r = isqrt(floor(v * 2^30 / bc2))` (floor square root: `sqrt(v_hat)` with 24 fractional bits);
/// `den = max(r + eps, 1)`; `w = sat(w - div_rne(lr * m * 2^24, bc1 * den))`.
pub fn adam_step(w: &mut [i32], g: &[i32], m: &mut [i32], v: &mut [u64], a: &Adam, t: u64) {
    assert!(w.len() == g.len() && w.len() == m.len() && w.len() == v.len());
    assert!(t >= 1);
    for beta in [a.beta1, a.beta2] {
        assert!(
            (0..1 << COEF_FRAC).contains(&beta),
            "beta must be in [0, 1)"
        );
    }
    // The rule is stated in i128; each quantity below is computed in the narrowest type that
    // holds it exactly (rv32im multiplies and divides 128-bit integers in long library calls, and
    // 64-bit ones in calls of a few hundred instructions): estimates from 32-bit divisions made
    // exact by integer comparisons, with the general path only where a value is out of range.
    let bc1 = C_ONE - coef_powu(a.beta1, t); // in [1, 2^30]
    let bc2 = (C_ONE - coef_powu(a.beta2, t)) as u64; // in [1, 2^30]
    let step = AdamStep {
        bc1: bc1 as u64,
        bc2: Divisor::new(bc2),
    };
    let (b1, b2) = (i64::from(a.beta1), a.beta2 as u64);
    for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        // |wd * w| <= 2^62, so |g2| < 2^31 + 2^32.
        let g2 = i64::from(*g) + shr_rne(i64::from(a.weight_decay) * i64::from(*w), COEF_FRAC);
        // A convex combination of |m| and |g2| times 2^30: below 1.5 * 2^62.
        *m = sat(shr_rne(b1 * i64::from(*m) + (C_ONE - b1) * g2, COEF_FRAC));
        *v = second_moment(*v, g2.unsigned_abs(), b2);
        let den = (step.root(*v) as i64 + i64::from(a.eps)).max(1);
        let upd = step.update(i64::from(a.lr) * i64::from(*m), den); // |lr * m| <= 2^62
        *w = sat(i64::from(*w) - upd);
    }
}

/// Adam's per-step divisors, `bc1` and `bc2`.
struct AdamStep {
    bc1: u64,
    bc2: Divisor,
}

impl AdamStep {
    /// `isqrt(floor(v * 2^30 / bc2))`: the largest `r` with `r^2 * bc2 <= v * 2^30`.
    fn root(&self, v: u64) -> u64 {
        // v * 2^30 / bc2 from below through floor((2^64 - 1) / bc2): short by under 2^-33 of
        // itself plus 1, so the root of the estimate is within a unit or two.
        let x = mul_wide(v, self.bc2.inv) >> 34;
        if x >= 1 << 62 {
            // A root of 2^31 and more (an unnormalized value of 2^7 and more): the 128-bit way.
            let (vq, vr) = self.bc2.div_rem(v);
            let low = self.bc2.div_rem(vr << COEF_FRAC).0;
            return ((u128::from(vq) << COEF_FRAC) + u128::from(low)).isqrt() as u64;
        }
        let rhs = u128::from(v) << COEF_FRAC;
        let bc2 = self.bc2.d; // <= 2^30
        let mut r = isqrt_estimate(x as u64).min(1 << 31) as u32;
        // The estimate made exact: r^2 * bc2 <= v * 2^30 < (r + 1)^2 * bc2 (r <= 2^31 here).
        loop {
            let sq = u64::from(r) * u64::from(r);
            let lhs = (u128::from((sq >> 32) * bc2) << 32) + u128::from((sq & 0xFFFF_FFFF) * bc2);
            if lhs > rhs {
                r -= 1;
            } else if rhs - lhs >= u128::from((2 * u64::from(r) + 1) * bc2) {
                r += 1;
            } else {
                return r.into();
            }
        }
    }

    /// `div_rne(lm * 2^24, bc1 * den)` for `|lm| <= 2^62`, `den >= 1`; a quotient of 2^32 and
    /// more in magnitude is returned as 2^32 with its sign (the weight saturates either way).
    fn update(&self, lm: i64, den: i64) -> i64 {
        let den = den as u64;
        if den >> 32 != 0 {
            return adam_update_wide(lm, self.bc1 as i64, den as i64);
        }
        let d = self.bc1 * den; // < 2^62
        let a = lm.unsigned_abs();
        // n = a * 2^24; floor(n / d) < 2^32 exactly when a < d * 2^8.
        let q = if a >> 8 >= d {
            1 << 32
        } else {
            // Estimated from the top 64 bits of n and the top 32 of d (rounded up), both scaled
            // so d's top bit is bit 63: from below, and short by at most 3.
            let s = leading_zeros(d);
            let dh = ((d << s) >> 32) as u32;
            let nh = if s >= 8 { a << (s - 8) } else { a >> (8 - s) }; // < (dh + 1) * 2^32
            let mut q = match dh.checked_add(1) {
                Some(dh1) => u64::from(div_u64_u32(nh, dh1).0),
                None => nh >> 32,
            };
            // The remainder is below 4d < 2^64, so it is exact modulo 2^64.
            let mut r = (a << FRAC).wrapping_sub(q.wrapping_mul(d));
            while r >= d {
                q += 1;
                r -= d;
            }
            q + u64::from(2 * r + (q & 1) > d)
        };
        if lm < 0 {
            -(q as i64)
        } else {
            q as i64
        }
    }
}

/// Leading zero bits of `x != 0`, by halving (rv32im has no instruction for it; the library's
/// bit-count sequence is longer).
fn leading_zeros(x: u64) -> u32 {
    let (mut x, mut n) = if x >> 32 == 0 {
        (x as u32, 32)
    } else {
        ((x >> 32) as u32, 0)
    };
    for k in [16, 8, 4, 2, 1] {
        if x >> (32 - k) == 0 {
            n += k;
            x <<= k;
        }
    }
    n
}

/// Adam's `v` update: `clamp(shr_rne(b2 * v + (2^30 - b2) * ag^2, 30), 0, 2^64 - 1)` for
/// `0 <= b2 < 2^30` and `ag < 2^31 + 2^32`.
fn second_moment(v: u64, ag: u64, b2: u64) -> u64 {
    let c2 = C_ONE as u64 - b2;
    if ag >> 32 != 0 {
        // Below 2^30 * max(v, ag^2) < 2^97: 128 bits, but from 64-bit halves.
        let acc = mul_wide(b2, v) + mul_wide(c2 * ag, ag);
        return u64::try_from(shr_rne_u128(acc, COEF_FRAC)).unwrap_or(u64::MAX);
    }
    // acc = hi * 2^32 + lo, where each half is a sum of two products below 2^62.
    let sq = ag * ag;
    let lo = b2 * (v & 0xFFFF_FFFF) + c2 * (sq & 0xFFFF_FFFF);
    let hi = b2 * (v >> 32) + c2 * (sq >> 32);
    if hi >> 62 != 0 {
        return u64::MAX; // acc >= 2^94
    }
    let Some(q) = (hi << 2).checked_add(lo >> COEF_FRAC) else {
        return u64::MAX;
    };
    let r = lo & ((1 << COEF_FRAC) - 1);
    q.saturating_add(u64::from(r + (q & 1) > 1 << (COEF_FRAC - 1)))
}

/// Adam's update by the rule's i128 division, for a `den` of 2^32 and more.
fn adam_update_wide(lm: i64, bc1: i64, den: i64) -> i64 {
    let q = div_rne_wide(i128::from(lm) << FRAC, i128::from(bc1) * i128::from(den));
    // Beyond i64 only if the weight saturates anyway; clamped it changes nothing.
    q.clamp(i128::from(i64::MIN / 2), i128::from(i64::MAX / 2)) as i64
}

/// `floor(sqrt(x))` or within a few units of it, for `x < 2^62`: a first guess by a line through
/// the ends of the top 32 bits' range, two Newton steps in 32 bits, one in 64 bits (each a
/// 32-bit division, which rv32im has).
fn isqrt_estimate(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    let k = leading_zeros(x) & !1;
    let xn = x << k; // in [2^62, 2^64)
    let t = (xn >> 32) as u32; // in [2^30, 2^32)
    let mut s = ((t >> 15) + (1 << 16)) / 3; // in [2^15, 2^16)
    s = (s + t / s) >> 1;
    s = ((s + t / s) >> 1).min(0xFFFF);
    // xn / (s * 2^16) in two 16-bit digits.
    let q1 = t / s;
    let r1 = t - q1 * s; // < 2^16
    let q0 = ((r1 << 16) | ((xn >> 16) as u32 & 0xFFFF)) / s;
    let root = ((u64::from(s) << 16) + (u64::from(q1) << 16) + u64::from(q0)) >> 1;
    root >> (k / 2)
}

/// `floor(n / d)` and `n mod d` for `d >= 2^31` and `n < d * 2^32` (a 32-bit quotient), from
/// 32-bit divisions: Hacker's Delight's `divlu` on a normalized divisor (two 16-bit quotient
/// digits, each corrected at most twice).
fn div_u64_u32(n: u64, d: u32) -> (u32, u32) {
    const B: u32 = 1 << 16;
    debug_assert!(d >> 31 == 1 && n >> 32 < u64::from(d));
    let (d1, d0) = (d >> 16, d & 0xFFFF);
    let n32 = (n >> 32) as u32;
    let (n1, n0) = ((n as u32) >> 16, n as u32 & 0xFFFF);
    let mut q1 = n32 / d1;
    let mut rhat = n32 - q1 * d1;
    while q1 >= B || q1 * d0 > (rhat << 16) + n1 {
        q1 -= 1;
        rhat += d1;
        if rhat >= B {
            break;
        }
    }
    let n21 = (n32 << 16)
        .wrapping_add(n1)
        .wrapping_sub(q1.wrapping_mul(d));
    let mut q0 = n21 / d1;
    let mut rhat = n21 - q0 * d1;
    while q0 >= B || q0 * d0 > (rhat << 16) + n0 {
        q0 -= 1;
        rhat += d1;
        if rhat >= B {
            break;
        }
    }
    let r = (n21 << 16)
        .wrapping_add(n0)
        .wrapping_sub(q0.wrapping_mul(d));
    ((q1 << 16) + q0, r)
}

/// `a * b`, exactly, from four 32 x 32 -> 64-bit products (no 128-bit multiply call on rv32im).
fn mul_wide(a: u64, b: u64) -> u128 {
    let (a0, a1, b0, b1) = (a & 0xFFFF_FFFF, a >> 32, b & 0xFFFF_FFFF, b >> 32);
    let mid = u128::from(a0 * b1) + u128::from(a1 * b0);
    u128::from(a0 * b0) + (mid << 32) + (u128::from(a1 * b1) << 64)
}

/// [`shr_rne`] on a non-negative 128-bit integer.
fn shr_rne_u128(x: u128, s: u32) -> u128 {
    let q = x >> s;
    let r = x & ((1u128 << s) - 1);
    q + u128::from(r + (q & 1) > 1u128 << (s - 1))
}

/// A value with `frac` fractional bits as the nearest f32 (ties to even): how a loss (24) and a
/// gradient norm (24) enter a step record. One rounding: the integer converts to the nearest f32
/// and the scaling by a power of two is exact.
pub fn to_f32_bits(raw: i64, frac: u32) -> u32 {
    (raw as f32 * f32::from_bits((127 - frac) << 23)).to_bits()
}

/// The gradient norm: `isqrt(sum of g^2 over every gradient)` (exact sum, floor square root),
/// with 24 fractional bits.
pub fn grad_norm(grads: &[&[i32]]) -> u64 {
    let sum: u128 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|x| u128::from(x.unsigned_abs()).pow(2))
        .sum();
    sum.isqrt() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Adam step as first written (64-bit and 128-bit divisions and square roots from the
    /// library): the optimized one must give the same bits.
    #[allow(clippy::all)]
    fn adam_step_reference(
        w: &mut [i32],
        g: &[i32],
        m: &mut [i32],
        v: &mut [u64],
        a: &Adam,
        t: u64,
    ) {
        assert!(w.len() == g.len() && w.len() == m.len() && w.len() == v.len());
        assert!(t >= 1);
        for beta in [a.beta1, a.beta2] {
            assert!(
                (0..1 << COEF_FRAC).contains(&beta),
                "beta must be in [0, 1)"
            );
        }
        // The rule is stated in i128; each quantity below is computed in the narrowest type that
        // holds it exactly (rv32im multiplies and divides 128-bit integers in long library calls),
        // with a 128-bit path only where a value can really exceed 64 bits.
        let bc1 = C_ONE - coef_powu(a.beta1, t); // in [1, 2^30]
        let bc2 = Divisor::new((C_ONE - coef_powu(a.beta2, t)) as u64);
        let (b1, b2) = (i64::from(a.beta1), a.beta2 as u64);
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            // |wd * w| <= 2^62, so |g2| < 2^31 + 2^32.
            let g2 = i64::from(*g) + shr_rne(i64::from(a.weight_decay) * i64::from(*w), COEF_FRAC);
            // A convex combination of |m| and |g2| times 2^30: below 1.5 * 2^62.
            *m = sat(shr_rne(b1 * i64::from(*m) + (C_ONE - b1) * g2, COEF_FRAC));
            // Below 2^30 * max(v, g2^2) < 2^97: 128 bits, but from 64-bit halves.
            let ag = g2.unsigned_abs();
            let acc = mul_wide(b2, *v) + mul_wide((C_ONE as u64 - b2) * ag, ag);
            *v = u64::try_from(shr_rne_u128(acc, COEF_FRAC)).unwrap_or(u64::MAX);
            // floor(v * 2^30 / bc2) in two 64-bit divisions by the step's one divisor (bc2 <= 2^30,
            // so the remainder shifted by 30 fits): floor(v / bc2) * 2^30 + floor((v mod bc2) *
            // 2^30 / bc2).
            let (vq, vr) = bc2.div_rem(*v);
            let low = bc2.div_rem(vr << COEF_FRAC).0;
            let r = if vq < 1 << 34 {
                ((vq << COEF_FRAC) + low).isqrt()
            } else {
                ((u128::from(vq) << COEF_FRAC) + u128::from(low)).isqrt() as u64
                // below 2^47
            };
            let den = (r as i64 + i64::from(a.eps)).max(1);
            let lm = i64::from(a.lr) * i64::from(*m); // |lm| <= 2^62
                                                      // In i64 when `lm * 2^24` fits and `bc1 * den < 2^62` (div_rne doubles a remainder).
            let upd = if lm.unsigned_abs() < 1 << 39 && den < 1 << 32 {
                div_rne(lm << FRAC, bc1 * den)
            } else {
                let q = div_rne_wide(i128::from(lm) << FRAC, i128::from(bc1) * i128::from(den));
                // Beyond i64 only if the weight saturates anyway; clamped it changes nothing.
                q.clamp(i128::from(i64::MIN / 2), i128::from(i64::MAX / 2)) as i64
            };
            *w = sat(i64::from(*w) - upd);
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A value of a random bit length (small and huge magnitudes alike) or an edge.
        fn i32(&mut self) -> i32 {
            match self.next() % 8 {
                0 => [0, 1, -1, i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 1][self.below(7)],
                _ => (self.next() as i32) >> (self.next() % 32),
            }
        }

        fn u64(&mut self) -> u64 {
            match self.next() % 8 {
                0 => [0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 62) - 1][self.below(7)],
                _ => self.next() >> (self.next() % 64),
            }
        }

        fn coef(&mut self) -> Coef {
            match self.next() % 4 {
                0 => [0, 1, 2, (1 << 30) - 1, (1 << 30) - 2, 1 << 29][self.below(6)],
                1 => (1 << 30) - 1 - (self.next() % 4096) as i32,
                _ => (self.next() % (1 << 30)) as i32,
            }
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn adam_step_equals_the_reference() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let n = 64;
        for round in 0..100_000 {
            let beta = |rng: &mut Rng| rng.coef().clamp(0, (1 << 30) - 1);
            let a = Adam {
                lr: if round % 2 == 0 {
                    rng.i32()
                } else {
                    rng.coef()
                },
                beta1: beta(&mut rng),
                beta2: beta(&mut rng),
                eps: match rng.next() % 3 {
                    0 => 0,
                    1 => (rng.next() % 4096) as i32,
                    _ => rng.i32(),
                },
                weight_decay: if rng.next().is_multiple_of(2) {
                    0
                } else {
                    rng.i32()
                },
            };
            let t = match rng.next() % 4 {
                0 => 1,
                1 => 1 + rng.next() % 16,
                2 => rng.next() >> (rng.next() % 64),
                _ => u64::MAX - rng.next() % 4,
            }
            .max(1);
            let g: Vec<i32> = (0..n).map(|_| rng.i32()).collect();
            let mut w: Vec<i32> = (0..n).map(|_| rng.i32()).collect();
            let mut m: Vec<i32> = (0..n).map(|_| rng.i32()).collect();
            let mut v: Vec<u64> = (0..n).map(|_| rng.u64()).collect();
            let (mut w2, mut m2, mut v2) = (w.clone(), m.clone(), v.clone());
            adam_step(&mut w, &g, &mut m, &mut v, &a, t);
            adam_step_reference(&mut w2, &g, &mut m2, &mut v2, &a, t);
            assert_eq!((&w, &m, &v), (&w2, &m2, &v2), "{a:?} t = {t}");
        }
    }

    #[test]
    fn adam_step_equals_the_reference_over_a_training_run() {
        // Moments that evolve as in training: small gradients, torch's default betas, steps 1..
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let a = Adam {
                lr: (rng.next() % (1 << 24)) as i32,
                beta1: 966_367_642,
                beta2: 1_072_668_082,
                eps: (rng.next() % 512) as i32,
                weight_decay: (rng.next() % (1 << 20)) as i32,
            };
            let n = 256;
            let mut w: Vec<i32> = (0..n).map(|_| (rng.next() as i32) >> 6).collect();
            let (mut m, mut v) = (vec![0; n], vec![0; n]);
            let (mut w2, mut m2, mut v2) = (w.clone(), m.clone(), v.clone());
            for t in 1..=50 {
                let g: Vec<i32> = (0..n)
                    .map(|_| (rng.next() as i32) >> (4 + rng.next() % 24))
                    .collect();
                adam_step(&mut w, &g, &mut m, &mut v, &a, t);
                adam_step_reference(&mut w2, &g, &mut m2, &mut v2, &a, t);
                assert_eq!((&w, &m, &v), (&w2, &m2, &v2), "{a:?} t = {t}");
            }
        }
    }

    #[test]
    fn the_adam_helpers_are_exact() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..2_000_000 {
            let d = rng.u64() as u32 | 1 << 31;
            let n = match rng.next() % 3 {
                0 => (u64::from(d) << 32) - 1 - rng.next() % 1024.min(u64::from(d) << 32),
                _ => rng.u64() % (u64::from(d) << 32),
            };
            let (q, r) = div_u64_u32(n, d);
            assert_eq!(
                (u64::from(q), u64::from(r)),
                (n / u64::from(d), n % u64::from(d))
            );
            let x = rng.u64() >> 2;
            let e = isqrt_estimate(x) as i64 - x.isqrt() as i64;
            assert!(e.abs() <= 2, "isqrt_estimate({x}) off by {e}");
        }
    }

    #[test]
    fn the_adam_root_and_update_are_the_rule_s() {
        let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
        for _ in 0..2_000_000 {
            // Powers of two and small divisors give exact squares and ties.
            let pick = |rng: &mut Rng, max: u64| match rng.next() % 3 {
                0 => 1 << (rng.next() % (max.ilog2() as u64 + 1)),
                1 => 1 + rng.next() % 64,
                _ => 1 + rng.next() % max,
            };
            let (bc1, bc2) = (pick(&mut rng, 1 << 30), pick(&mut rng, 1 << 30));
            let step = AdamStep {
                bc1,
                bc2: Divisor::new(bc2),
            };
            let v = match rng.next() % 3 {
                // k^2 * bc2 / 2^30 and its neighbours: roots at their boundaries
                0 => {
                    let k = u128::from(rng.next() >> (rng.next() % 64));
                    let x = k
                        .checked_mul(k)
                        .and_then(|k2| k2.checked_mul(u128::from(bc2)))
                        .map_or(u128::MAX, |x| x >> 30);
                    u64::try_from(x)
                        .unwrap_or(u64::MAX)
                        .wrapping_add(rng.next() % 3)
                        .wrapping_sub(1)
                }
                _ => rng.u64(),
            };
            let expect = ((u128::from(v) << 30) / u128::from(bc2)).isqrt();
            assert_eq!(u128::from(step.root(v)), expect, "v = {v}, bc2 = {bc2}");

            let den = match rng.next() % 3 {
                0 => pick(&mut rng, 1 << 40),
                _ => rng.u64() >> (16 + rng.next() % 48),
            }
            .max(1) as i64;
            let lm = match rng.next() % 3 {
                // multiples of half the divisor: ties
                0 => {
                    let d = i128::from(bc1) * i128::from(den);
                    let k = i128::from(rng.next() % 64) * 2 + 1;
                    i64::try_from((d * k / 2) >> 24)
                        .unwrap_or(1 << 62)
                        .clamp(-(1 << 62), 1 << 62)
                }
                _ => (rng.next() as i64) >> (1 + rng.next() % 63),
            };
            let lm = if rng.next().is_multiple_of(2) {
                lm
            } else {
                -lm
            };
            let exact = div_rne_wide(i128::from(lm) << FRAC, i128::from(bc1) * i128::from(den));
            let got = step.update(lm, den);
            if exact.abs() < 1 << 32 {
                assert_eq!(
                    i128::from(got),
                    exact,
                    "lm = {lm}, bc1 = {bc1}, den = {den}"
                );
            } else {
                assert!(got.signum() as i128 == exact.signum() && got.abs() >= 1 << 32);
            }
        }
    }

    #[test]
    fn exp_in_i32_products_equals_the_64_bit_horner() {
        let horner = |d: i64| {
            let y = shr_rne(-d * LOG2E_Q30, FRAC);
            let (n, f) = (y >> COEF_FRAC, y & (C_ONE - 1));
            let p = (0..10)
                .rev()
                .fold(EXP2_NEG[10], |p, k| EXP2_NEG[k] + shr_rne(p * f, COEF_FRAC));
            match n {
                0 => p,
                31.. => 0,
                _ => shr_rne(p, n as u32),
            }
        };
        // small differences, whole units and a sweep of the whole range
        let near = (0..4096).flat_map(|k| [-k, -(1 << 24) + k, -(1 << 25) + k]);
        let sweep = (0..=1 << 16).map(|k: i64| -(k << 16));
        for d in near.chain(sweep).filter(|d| *d <= 0) {
            assert_eq!(exp_neg_q30(d), horner(d), "d = {d}");
        }
    }

    #[test]
    fn a_divisor_reused_divides_as_division() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let d = (next() >> (2 + next() % 62)).max(1);
            let div = Divisor::new(d);
            // |n| < 2^62, the softmax's range (div_rne itself overflows near 2^63)
            let n = match next() % 5 {
                // exact multiples: the estimate one short leaves a remainder of exactly d
                4 => i64::try_from((next() % 4096).saturating_mul(d))
                    .ok()
                    .filter(|n| *n < 1 << 62)
                    .unwrap_or(0),
                0 => (next() >> 2) as i64,
                // odd multiples of d / 2: the ties (when d is even)
                1 => i64::try_from(((next() % 64) * 2 + 1).saturating_mul(d / 2))
                    .ok()
                    .filter(|n| *n < 1 << 62)
                    .unwrap_or(0),
                2 => -((next() >> (2 + next() % 62)) as i64),
                _ => 1 - (1 << 62),
            };
            assert_eq!(div.div_rne(n), div_rne(n, d as i64), "{n} / {d}");
            let a = match next() % 3 {
                0 => next(),
                1 => u64::MAX - next() % 4096,
                _ => (next() % 4096).saturating_mul(d),
            };
            assert_eq!(div.div_rem(a), (a / d, a % d), "{a} / {d}");
        }
    }
}
