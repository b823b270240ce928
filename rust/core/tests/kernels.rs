//! The canonical kernels (docs/PROTOCOL.md, "Canonical arithmetic"): against an f64 reference
//! within stated tolerances, a gradient check of the cross-entropy, independence of summation
//! order, and the test vectors `tests/vectors/kernels-v1.json` (`VERITRAIN_BLESS=1 cargo test`
//! rewrites them; tests/test_kernel_vectors.py recomputes them from the document in pure Python).
use serde_json::{json, Value};
use veritrain_core::canonical::{self, CanonicalSettings, OptState};
use veritrain_core::hash::Sha2;
use veritrain_core::kernels::{self, Adam, COEF_FRAC, FRAC, ONE};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/kernels-v1.json"
);

/// A small deterministic generator (64-bit LCG, high bits), so the vectors need no RNG crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
    /// A value uniform in (-bound, bound), as raw Q8.24.
    fn fx(&mut self, bound: f64) -> i32 {
        let u = f64::from(self.next()) / 4294967296.0;
        kernels::fx_from_f64((2.0 * u - 1.0) * bound).unwrap()
    }
    fn vec(&mut self, n: usize, bound: f64) -> Vec<i32> {
        (0..n).map(|_| self.fx(bound)).collect()
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

fn real(x: i32) -> f64 {
    f64::from(x) / f64::from(ONE)
}

fn coef(x: f64) -> i32 {
    kernels::coef_from_f64(x).unwrap()
}

const ULP: f64 = 1.0 / (1u64 << FRAC) as f64;

// ---------------------------------------------------------------------------------------------
// Rounding
// ---------------------------------------------------------------------------------------------

#[test]
fn rounding_is_half_to_even_and_saturation_clamps() {
    let cases = [
        (3i64, 2i64),
        (1, 0),
        (-1, 0),
        (-3, -2),
        (5, 2),
        (7, 4),
        (-5, -2),
        (6, 3),
    ];
    for (x, want) in cases {
        assert_eq!(kernels::shr_rne(x, 1), want, "shr_rne({x}, 1)");
        assert_eq!(kernels::div_rne(x, 2), want, "div_rne({x}, 2)");
    }
    assert_eq!(kernels::div_rne(10, 4), 2); // 2.5 -> 2
    assert_eq!(kernels::div_rne(14, 4), 4); // 3.5 -> 4
    assert_eq!(kernels::div_rne(-7, 3), -2); // -2.33 -> -2
    assert_eq!(kernels::sat(1 << 40), i32::MAX);
    assert_eq!(kernels::sat(-(1 << 40)), i32::MIN);
}

#[test]
fn reals_convert_by_their_bits_half_to_even() {
    assert_eq!(kernels::round_scaled(2.5, 0), Some(2));
    assert_eq!(kernels::round_scaled(-2.5, 0), Some(-2));
    assert_eq!(kernels::round_scaled(3.5, 0), Some(4));
    assert_eq!(kernels::round_scaled(0.1, 30), Some(107_374_182));
    assert_eq!(kernels::round_scaled(f64::MIN_POSITIVE / 2.0, 30), Some(0));
    assert_eq!(kernels::round_scaled(f64::NAN, 0), None);
    assert_eq!(kernels::round_scaled(f64::INFINITY, 0), None);
    assert_eq!(kernels::round_scaled(1e300, 0), None);
    assert_eq!(kernels::fx_from_f64(1000.0), Some(i32::MAX));
    assert_eq!(kernels::coef_from_f64(2.0), None);
    assert_eq!(kernels::coef_from_f64(-2.0), Some(i32::MIN));
}

// ---------------------------------------------------------------------------------------------
// Against f64
// ---------------------------------------------------------------------------------------------

#[test]
fn exp_and_ln_are_within_a_few_units_of_the_30th_bit() {
    let q30 = (1u64 << 30) as f64;
    let mut worst_exp = 0f64;
    for k in 0..=4000 {
        let d = -(k as i64) * (1 << FRAC) / 100 - k as i64 * 7; // [-40, 0], odd fractions
        let got = kernels::exp_neg_q30(d) as f64;
        let want = (d as f64 / f64::from(ONE)).exp() * q30;
        worst_exp = worst_exp.max((got - want).abs());
    }
    assert!(worst_exp <= 2.0, "exp error {worst_exp} units of 2^-30");
    let mut worst_ln = 0f64;
    let mut s = 1u64;
    while s < 1 << 50 {
        for t in [s, s + s / 3, s + s / 2 + 1, 2 * s - 1] {
            let got = kernels::ln_q30(t) as f64;
            let want = ((t as f64).ln() - 30.0 * 2f64.ln()) * q30;
            worst_ln = worst_ln.max((got - want).abs());
        }
        s *= 2;
    }
    assert!(worst_ln <= 4.0, "ln error {worst_ln} units of 2^-30");
}

#[test]
fn linear_layers_round_once_from_the_exact_sum() {
    let mut g = Lcg(1);
    let (batch, in_f, out_f) = (5, 7, 3);
    let x = g.vec(batch * in_f, 4.0);
    let w = g.vec(out_f * in_f, 1.0);
    let b = g.vec(out_f, 1.0);
    let dy = g.vec(batch * out_f, 1.0);
    let y = kernels::linear_forward(&x, &w, &b, in_f, out_f);
    let dx = kernels::linear_grad_input(&dy, &w, in_f, out_f);
    let (dw, db) = kernels::linear_grad_params(&dy, &x, in_f, out_f);
    // f64 is not exact here (a product has up to 62 bits), hence one unit besides the rounding.
    let close = |got: i32, want: f64| (real(got) - want).abs() <= 1.5 * ULP;
    for r in 0..batch {
        for o in 0..out_f {
            let want: f64 = real(b[o])
                + (0..in_f)
                    .map(|i| real(x[r * in_f + i]) * real(w[o * in_f + i]))
                    .sum::<f64>();
            assert!(close(y[r * out_f + o], want));
        }
        for i in 0..in_f {
            let want: f64 = (0..out_f)
                .map(|o| real(dy[r * out_f + o]) * real(w[o * in_f + i]))
                .sum();
            assert!(close(dx[r * in_f + i], want));
        }
    }
    for o in 0..out_f {
        let want_b: f64 = (0..batch).map(|r| real(dy[r * out_f + o])).sum();
        assert_eq!(real(db[o]), want_b); // a plain sum: exact
        for i in 0..in_f {
            let want: f64 = (0..batch)
                .map(|r| real(dy[r * out_f + o]) * real(x[r * in_f + i]))
                .sum();
            assert!(close(dw[o * in_f + i], want));
        }
    }
    assert_eq!(
        kernels::relu(&[-5, 0, 7, i32::MIN, i32::MAX]),
        [0, 0, 7, 0, i32::MAX]
    );
    assert_eq!(
        kernels::relu_backward(&[-5, 0, 7], &[11, 12, 13]),
        [0, 0, 13]
    );
}

fn ce_f64(z: &[f64], labels: &[u32], classes: usize) -> (f64, Vec<f64>) {
    let batch = labels.len() as f64;
    let mut loss = 0.0;
    let mut grad = Vec::new();
    for (row, &y) in z.chunks(classes).zip(labels) {
        let mx = row.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = row.iter().map(|v| (v - mx).exp()).sum();
        loss += s.ln() - (row[y as usize] - mx);
        for (c, v) in row.iter().enumerate() {
            let p = (v - mx).exp() / s;
            grad.push((p - if c == y as usize { 1.0 } else { 0.0 }) / batch);
        }
    }
    (loss / batch, grad)
}

#[test]
fn cross_entropy_matches_f64_and_its_gradient_checks() {
    let mut g = Lcg(2);
    let (batch, classes) = (6, 10);
    let z = g.vec(batch * classes, 6.0);
    let labels: Vec<u32> = (0..batch).map(|_| g.below(classes as u32)).collect();
    let (loss, grad) = kernels::softmax_cross_entropy(&z, &labels, classes);
    let zr: Vec<f64> = z.iter().map(|v| real(*v)).collect();
    let (want_loss, want_grad) = ce_f64(&zr, &labels, classes);
    assert!((real(loss) - want_loss).abs() <= 2.0 * ULP, "loss");
    for (got, want) in grad.iter().zip(&want_grad) {
        assert!((real(*got) - want).abs() <= 1.0 * ULP, "gradient");
    }
    // Central differences of the canonical loss itself, step 2^-10: the gradient it reports is
    // the slope of the loss it computes (to the loss's resolution over the step, and O(h^2)).
    let h = 1 << (FRAC - 10);
    for k in 0..z.len() {
        let mut up = z.clone();
        up[k] += h;
        let mut down = z.clone();
        down[k] -= h;
        let lu = kernels::softmax_cross_entropy(&up, &labels, classes).0;
        let ld = kernels::softmax_cross_entropy(&down, &labels, classes).0;
        let slope = f64::from(lu - ld) / f64::from(2 * h);
        assert!((slope - real(grad[k])).abs() < 1e-4, "slope at {k}");
    }
    // A confident right answer costs nearly nothing; equal logits cost ln(classes).
    let (flat, _) = kernels::softmax_cross_entropy(&[ONE; 10], &[3], 10);
    assert!((real(flat) - 10f64.ln()).abs() <= ULP);
}

#[test]
fn sgd_and_adam_follow_torch_within_the_rounding() {
    let mut g = Lcg(3);
    let n = 50;
    let mut w = g.vec(n, 1.0);
    let mut buf = vec![0; n];
    let (lr, mom, wd) = (0.05, 0.9, 1e-3);
    let mut wr: Vec<f64> = w.iter().map(|v| real(*v)).collect();
    let mut br = vec![0.0; n];
    let (mut wa, mut m, mut v) = (w.clone(), vec![0; n], vec![0u64; n]);
    let mut war = wr.clone();
    let (mut mr, mut vr) = (vec![0.0; n], vec![0.0; n]);
    let adam = Adam {
        lr: coef(1e-2),
        beta1: coef(0.9),
        beta2: coef(0.999),
        eps: kernels::fx_from_f64(1e-6).unwrap(),
        weight_decay: coef(1e-2),
    };
    for t in 1..=20u64 {
        let grad = g.vec(n, 0.5);
        kernels::sgd_step(&mut w, &grad, &mut buf, coef(lr), coef(mom), coef(wd));
        kernels::adam_step(&mut wa, &grad, &mut m, &mut v, &adam, t);
        for i in 0..n {
            let gi = real(grad[i]);
            let g2 = gi + wd * wr[i];
            br[i] = mom * br[i] + g2;
            wr[i] -= lr * br[i];
            let g2 = gi + 1e-2 * war[i];
            mr[i] = 0.9 * mr[i] + 0.1 * g2;
            vr[i] = 0.999 * vr[i] + 0.001 * g2 * g2;
            let mh = mr[i] / (1.0 - 0.9f64.powi(t as i32));
            let vh = vr[i] / (1.0 - 0.999f64.powi(t as i32));
            war[i] -= 1e-2 * mh / (vh.sqrt() + 1e-6);
        }
    }
    for i in 0..n {
        assert!((real(w[i]) - wr[i]).abs() < 1e-5, "sgd {i}");
        assert!((real(wa[i]) - war[i]).abs() < 1e-5, "adam {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Order independence
// ---------------------------------------------------------------------------------------------

#[test]
fn permuting_the_summation_order_gives_the_same_bits() {
    let mut g = Lcg(4);
    let (batch, in_f, out_f) = (9, 13, 4);
    // Large values as well, so that sums wrap: wrapping addition is still order-free.
    for bound in [2.0, 127.0] {
        let x = g.vec(batch * in_f, bound);
        let w = g.vec(out_f * in_f, bound);
        let b = g.vec(out_f, bound);
        let dy = g.vec(batch * out_f, bound);
        let y = kernels::linear_forward(&x, &w, &b, in_f, out_f);
        let dx = kernels::linear_grad_input(&dy, &w, in_f, out_f);
        let (dw, db) = kernels::linear_grad_params(&dy, &x, in_f, out_f);
        for _ in 0..20 {
            // A random permutation of the input features (the forward sum) ...
            let mut p: Vec<usize> = (0..in_f).collect();
            for i in (1..in_f).rev() {
                p.swap(i, g.below(i as u32 + 1) as usize);
            }
            let px: Vec<i32> = (0..batch * in_f)
                .map(|k| x[k / in_f * in_f + p[k % in_f]])
                .collect();
            let pw: Vec<i32> = (0..out_f * in_f)
                .map(|k| w[k / in_f * in_f + p[k % in_f]])
                .collect();
            assert_eq!(kernels::linear_forward(&px, &pw, &b, in_f, out_f), y);
            // ... of the batch rows (the parameter-gradient sums) ...
            let mut q: Vec<usize> = (0..batch).collect();
            for i in (1..batch).rev() {
                q.swap(i, g.below(i as u32 + 1) as usize);
            }
            let qx: Vec<i32> = (0..batch * in_f)
                .map(|k| x[q[k / in_f] * in_f + k % in_f])
                .collect();
            let qdy: Vec<i32> = (0..batch * out_f)
                .map(|k| dy[q[k / out_f] * out_f + k % out_f])
                .collect();
            assert_eq!(
                kernels::linear_grad_params(&qdy, &qx, in_f, out_f),
                (dw.clone(), db.clone())
            );
            // ... and of the outputs (the input-gradient sum).
            let mut r: Vec<usize> = (0..out_f).collect();
            for i in (1..out_f).rev() {
                r.swap(i, g.below(i as u32 + 1) as usize);
            }
            let rdy: Vec<i32> = (0..batch * out_f)
                .map(|k| dy[k / out_f * out_f + r[k % out_f]])
                .collect();
            let rw: Vec<i32> = (0..out_f * in_f)
                .map(|k| w[r[k / in_f] * in_f + k % in_f])
                .collect();
            assert_eq!(kernels::linear_grad_input(&rdy, &rw, in_f, out_f), dx);
        }
        // Any split of a sum into parts, added in any order, is the same sum.
        let whole = kernels::dot(&x[..in_f], &w[..in_f]);
        let parts =
            kernels::dot(&x[5..in_f], &w[5..in_f]).wrapping_add(kernels::dot(&x[..5], &w[..5]));
        assert_eq!(whole, parts);
    }
}

/// The linear kernels against their definitions written with `dot` (one sum per output), on
/// widths that are and are not multiples of the kernels' blocks, with about half of every operand
/// zero (the kernels skip zero terms) and with values large enough that the sums wrap.
#[test]
fn linear_kernels_equal_their_definition_with_zeros_and_any_width() {
    let mut g = Lcg(9);
    let r24 = |acc: i64| kernels::sat(kernels::shr_rne(acc, FRAC));
    for (batch, in_f, out_f) in [(1, 1, 1), (3, 5, 2), (4, 8, 3), (7, 9, 6), (16, 12, 10)] {
        for bound in [2.0, 127.0] {
            let mut sparse = |n: usize| -> Vec<i32> {
                (0..n)
                    .map(|_| if g.below(2) == 0 { 0 } else { g.fx(bound) })
                    .collect()
            };
            let (x, w, b, dy) = (
                sparse(batch * in_f),
                sparse(out_f * in_f),
                sparse(out_f),
                sparse(batch * out_f),
            );
            let col = |m: &[i32], c: usize, stride: usize| -> Vec<i32> {
                m[c..].iter().step_by(stride).copied().collect()
            };
            let mut y = vec![];
            let mut dx = vec![];
            for r in 0..batch {
                let (xr, dyr) = (&x[r * in_f..][..in_f], &dy[r * out_f..][..out_f]);
                for o in 0..out_f {
                    let acc = (i64::from(b[o]) << FRAC)
                        .wrapping_add(kernels::dot(xr, &w[o * in_f..][..in_f]));
                    y.push(r24(acc));
                }
                for i in 0..in_f {
                    dx.push(r24(kernels::dot(dyr, &col(&w, i, in_f))));
                }
            }
            let mut dw = vec![];
            let mut db = vec![];
            for o in 0..out_f {
                let dyo = col(&dy, o, out_f);
                db.push(kernels::sat(
                    dyo.iter().map(|d| i64::from(*d)).fold(0, i64::wrapping_add),
                ));
                for i in 0..in_f {
                    dw.push(r24(kernels::dot(&dyo, &col(&x, i, in_f))));
                }
            }
            assert_eq!(kernels::linear_forward(&x, &w, &b, in_f, out_f), y);
            assert_eq!(kernels::linear_grad_input(&dy, &w, in_f, out_f), dx);
            assert_eq!(kernels::linear_grad_params(&dy, &x, in_f, out_f), (dw, db));
        }
    }
}

/// Adam's element update exactly as PROTOCOL.md §15 states it, in `i128` throughout.
fn adam_reference(w: i32, g: i32, m: i32, v: u64, a: &Adam, t: u64) -> (i32, i32, u64) {
    let (one, r30) = (1i128 << 30, |x: i128| kernels::shr_rne_wide(x, 30));
    let sat = |x: i128| x.clamp(i32::MIN.into(), i32::MAX.into()) as i32;
    let bc1 = one - i128::from(kernels::coef_powu(a.beta1, t));
    let bc2 = one - i128::from(kernels::coef_powu(a.beta2, t));
    let (b1, b2) = (i128::from(a.beta1), i128::from(a.beta2));
    let g2 = i128::from(g) + r30(i128::from(a.weight_decay) * i128::from(w));
    let m = sat(r30(b1 * i128::from(m) + (one - b1) * g2));
    let v = r30(b2 * i128::from(v) + (one - b2) * g2 * g2).clamp(0, u64::MAX.into()) as u64;
    let r = ((i128::from(v) << 30) / bc2) as u128;
    let den = (r.isqrt() as i128 + i128::from(a.eps)).max(1);
    let upd = kernels::div_rne_wide((i128::from(a.lr) * i128::from(m)) << FRAC, bc1 * den);
    (sat(i128::from(w) - upd), m, v)
}

/// The Adam kernel narrows the rule's `i128` arithmetic where it is exact (rv32im pays for every
/// 128-bit multiply and divide): the same bits as the rule, on ordinary values and on extremes
/// that take the wide paths (huge second moments, weights and gradients at the `i32` limits,
/// betas near 1 at small and large `t`, tiny or negative `eps`).
#[test]
fn adam_equals_its_rule_in_wide_integers() {
    let mut g = Lcg(11);
    for case in 0..4000u32 {
        let wide = case % 2 == 1;
        let mut any = |small: f64| -> i32 {
            if wide && g.below(3) == 0 {
                [i32::MIN, i32::MAX, 0, -1, 1][g.below(5) as usize]
            } else if wide {
                g.next() as i32
            } else {
                g.fx(small)
            }
        };
        let (w, gr, m) = (any(1.0), any(0.1), any(0.01));
        let eps = any(1e-6);
        let mut g2 = Lcg(u64::from(case) * 7 + 3);
        let v = match g2.below(4) {
            0 => 0,
            1 => u64::from(g2.next()),
            2 => u64::from(g2.next()) << g2.below(33),
            _ => (u64::from(g2.next()) << 32) | u64::from(g2.next()),
        };
        let beta = |g: &mut Lcg| match g.below(3) {
            0 => (1 << COEF_FRAC) - 1 - g.below(2000) as i32,
            1 => g.below(1 << COEF_FRAC) as i32,
            _ => 0,
        };
        let a = Adam {
            lr: g2.next() as i32,
            beta1: beta(&mut g2),
            beta2: beta(&mut g2),
            eps,
            weight_decay: if g2.below(2) == 0 {
                0
            } else {
                g2.next() as i32
            },
        };
        let t = [1, 2, 3, 10, 1000, 1 << 20][g2.below(6) as usize];
        let (mut ww, mut mm, mut vv) = ([w], [m], [v]);
        kernels::adam_step(&mut ww, &[gr], &mut mm, &mut vv, &a, t);
        assert_eq!(
            (ww[0], mm[0], vv[0]),
            adam_reference(w, gr, m, v, &a, t),
            "case {case}: {a:?} w {w} g {gr} m {m} v {v} t {t}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Test vectors
// ---------------------------------------------------------------------------------------------

/// One training step of a 4-3-2 MLP (ReLU) on a batch of 3 with SGD: every kernel in sequence.
fn mlp_step(g: &mut Lcg) -> Value {
    let (inp, hid, cls, batch) = (4, 3, 2, 3);
    let x = g.vec(batch * inp, 1.0);
    let labels: Vec<u32> = (0..batch).map(|_| g.below(cls as u32)).collect();
    let (w1, b1, w2, b2) = (
        g.vec(hid * inp, 0.5),
        g.vec(hid, 0.1),
        g.vec(cls * hid, 0.5),
        g.vec(cls, 0.1),
    );
    let h_pre = kernels::linear_forward(&x, &w1, &b1, inp, hid);
    let h = kernels::relu(&h_pre);
    let z = kernels::linear_forward(&h, &w2, &b2, hid, cls);
    let (loss, dz) = kernels::softmax_cross_entropy(&z, &labels, cls);
    let (dw2, db2) = kernels::linear_grad_params(&dz, &h, hid, cls);
    let dh = kernels::relu_backward(&h_pre, &kernels::linear_grad_input(&dz, &w2, hid, cls));
    let (dw1, db1) = kernels::linear_grad_params(&dh, &x, inp, hid);
    let norm = kernels::grad_norm(&[&dw1, &db1, &dw2, &db2]);
    let (lr, mom, wd) = (coef(0.1), coef(0.9), coef(1e-4));
    let mut params = [w1.clone(), b1.clone(), w2.clone(), b2.clone()];
    let grads = [&dw1, &db1, &dw2, &db2];
    let mut bufs: Vec<Vec<i32>> = params.iter().map(|p| vec![0; p.len()]).collect();
    for ((p, gr), bu) in params.iter_mut().zip(grads).zip(bufs.iter_mut()) {
        kernels::sgd_step(p, gr, bu, lr, mom, wd);
    }
    json!({"x": x, "labels": labels, "w1": w1, "b1": b1, "w2": w2, "b2": b2,
           "lr": lr, "momentum": mom, "weight_decay": wd,
           "h_pre": h_pre, "z": z, "loss": loss, "dz": dz, "dh": dh,
           "grads": grads, "grad_norm": norm, "params": params, "momentum_buffers": bufs,
           "loss_f32_bits": kernels::to_f32_bits(i64::from(loss), FRAC),
           "grad_norm_f32_bits": kernels::to_f32_bits(norm as i64, FRAC)})
}

/// The canonical MLP through its API (`veritrain_core::canonical`): settings and their digests,
/// initialization, sample quantization, and two steps of a 5-4-3 MLP with each optimizer.
fn canonical_run(g: &mut Lcg) -> Value {
    let sgd = CanonicalSettings::sgd(2, 0.9, 1e-4).unwrap();
    let adam = CanonicalSettings::adam(3, 0.9, 0.999, 1e-8, 1e-2).unwrap();
    let settings: Vec<Value> = [sgd, adam]
        .iter()
        .map(|s| {
            json!({"bytes": hex::encode(s.to_bytes()), "digest": hex::encode(s.digest::<Sha2>())})
        })
        .collect();
    let (dims, seed, batch) = ([5usize, 4, 3], 11u64, 4usize);
    let init = canonical::mlp_init::<Sha2>(seed, &dims).unwrap();
    let classes = dims[2];
    let rows: Vec<Vec<u8>> = (0..2 * batch)
        .map(|i| {
            let mut row: Vec<u8> = (0..dims[0])
                .flat_map(|_| ((g.fx(2.0) as f32) / ONE as f32).to_le_bytes())
                .collect();
            row.extend_from_slice(&((i % classes) as i64).to_le_bytes());
            row
        })
        .collect();
    let run = |s: &CanonicalSettings| -> Vec<Value> {
        let mut params = init.clone();
        let lens: Vec<usize> = params.iter().map(Vec::len).collect();
        let mut bufs: Vec<Vec<i32>> = lens.iter().map(|n| vec![0; *n]).collect();
        let mut sq: Vec<Vec<u64>> = lens.iter().map(|n| vec![0; *n]).collect();
        (0..2u64)
            .map(|step| {
                let chunk = &rows[step as usize * batch..(step as usize + 1) * batch];
                let (x, labels) =
                    canonical::quantize_batch(chunk.iter().map(Vec::as_slice), dims[0], classes)
                        .unwrap();
                let lr = canonical::lr_coef(0.05).unwrap();
                let mut p: Vec<&mut [i32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
                let mut b: Vec<&mut [i32]> = bufs.iter_mut().map(|v| v.as_mut_slice()).collect();
                let opt = if s.kind == canonical::OptimizerKind::Sgd {
                    OptState::Sgd { momentum: &mut b }
                } else {
                    let mut v: Vec<&mut [u64]> = sq.iter_mut().map(|v| v.as_mut_slice()).collect();
                    let out = canonical::mlp_step(
                        &dims,
                        &mut p,
                        OptState::Adam {
                            exp_avg: &mut b,
                            exp_avg_sq: &mut v,
                        },
                        s,
                        lr,
                        &x,
                        &labels,
                        step + 1,
                    )
                    .unwrap();
                    return json!({"x": x, "labels": labels, "lr": lr, "t": step + 1,
                        "loss": out.loss, "grad_norm": out.grad_norm,
                        "loss_f32_bits": out.loss_bits, "grad_norm_f32_bits": out.grad_norm_bits,
                        "params": params, "exp_avg": bufs, "exp_avg_sq": sq});
                };
                let out =
                    canonical::mlp_step(&dims, &mut p, opt, s, lr, &x, &labels, step + 1).unwrap();
                json!({"x": x, "labels": labels, "lr": lr, "t": step + 1,
                    "loss": out.loss, "grad_norm": out.grad_norm,
                    "loss_f32_bits": out.loss_bits, "grad_norm_f32_bits": out.grad_norm_bits,
                    "params": params, "momentum_buffers": bufs})
            })
            .collect()
    };
    json!({"settings": settings, "dims": dims, "seed": seed, "init": init,
           "rows": rows.iter().map(hex::encode).collect::<Vec<_>>(),
           "sgd_steps": run(&sgd), "adam_steps": run(&adam)})
}

fn build() -> Value {
    let mut g = Lcg(2026);
    let rounding: Vec<Value> = [
        (3i64, 1u32),
        (-3, 1),
        (5, 1),
        (-5, 1),
        (1 << 40, 24),
        ((3 << 23) - 1, 24),
        (-(5 << 23), 24),
        (i64::MAX, 30),
    ]
    .iter()
    .map(|&(x, s)| json!({"x": x, "s": s, "shr_rne": kernels::shr_rne(x, s)}))
    .collect();
    let division: Vec<Value> = [
        (7i64, 2i64),
        (-7, 2),
        (10, 4),
        (-10, 4),
        (-7, 3),
        (1 << 60, 3),
    ]
    .iter()
    .map(|&(n, d)| json!({"n": n, "d": d, "div_rne": kernels::div_rne(n, d)}))
    .collect();
    let reals: Vec<Value> = [
        0.1,
        -0.1,
        2.5,
        1.0 / 3.0,
        1e-9,
        -127.99999999,
        5e-324,
        0.9,
        0.999,
        1e300,
    ]
    .iter()
    .map(|&x: &f64| {
        json!({"bits": format!("{:016x}", x.to_bits()),
                   "fx": kernels::fx_from_f64(x), "coef": kernels::coef_from_f64(x)})
    })
    .collect();
    let floats: Vec<Value> = [
        (16_777_217i64, 0u32),
        (16_777_219, 0),
        (-16_777_217, 0),
        (ONE as i64, FRAC),
        (-(1 << 40) - 1, FRAC),
        (123_456_789_123, FRAC),
        ((1 << 53) - 1, 24),
    ]
    .iter()
    .map(|&(raw, frac)| json!({"raw": raw, "frac": frac, "f32_bits": kernels::to_f32_bits(raw, frac)}))
    .collect();
    let exp_args: Vec<i64> = [0i64, -1, -(1 << 23), -ONE as i64, -(3 * ONE as i64) - 12345]
        .into_iter()
        .chain((0..12).map(|_| -i64::from(g.next() >> 5)))
        .chain([-(22 << 24), -(1 << 32)])
        .collect();
    let exps: Vec<Value> = exp_args
        .iter()
        .map(|&d| json!([d, kernels::exp_neg_q30(d)]))
        .collect();
    let ln_args: Vec<u64> = [
        1u64,
        2,
        3,
        1 << 29,
        1 << 30,
        (1 << 30) + 1,
        3 << 29,
        (1 << 31) - 1,
    ]
    .into_iter()
    .chain((0..8).map(|_| u64::from(g.next()) << (g.below(12))))
    .chain([10 << 30, u64::MAX])
    .collect();
    let lns: Vec<Value> = ln_args
        .iter()
        .map(|&s| json!([s, kernels::ln_q30(s)]))
        .collect();

    let (batch, in_f, out_f) = (3, 5, 4);
    let x = g.vec(batch * in_f, 2.0);
    let w = g.vec(out_f * in_f, 1.0);
    let b = g.vec(out_f, 1.0);
    let dy = g.vec(batch * out_f, 0.5);
    let (dw, db) = kernels::linear_grad_params(&dy, &x, in_f, out_f);
    let linear = json!({"in": in_f, "out": out_f, "x": x, "w": w, "b": b, "dy": dy,
        "y": kernels::linear_forward(&x, &w, &b, in_f, out_f),
        "dx": kernels::linear_grad_input(&dy, &w, in_f, out_f), "dw": dw, "db": db,
        "relu": kernels::relu(&x), "relu_backward": kernels::relu_backward(&x, &x)});
    let saturating = {
        let x = vec![127 * ONE, 127 * ONE];
        let w = vec![127 * ONE, 127 * ONE];
        json!({"in": 2, "out": 1, "x": x, "w": w, "b": [i32::MAX],
               "y": kernels::linear_forward(&x, &w, &[i32::MAX], 2, 1)})
    };

    // Three products of 2^62: the true sum, 3 * 2^62, wraps to -2^62 (the rule, not a bug: the
    // sum stays order-free), which saturates to the lowest value.
    let wrapping = {
        let x = vec![i32::MIN; 3];
        json!({"in": 3, "out": 1, "x": x, "w": x, "b": [0],
               "y": kernels::linear_forward(&x, &x, &[0], 3, 1)})
    };

    let ce: Vec<Value> = [(4usize, 3usize, 3.0f64), (2, 10, 20.0), (1, 1, 1.0)]
        .iter()
        .map(|&(batch, classes, bound)| {
            let z = g.vec(batch * classes, bound);
            let labels: Vec<u32> = (0..batch).map(|_| g.below(classes as u32)).collect();
            let (loss, grad) = kernels::softmax_cross_entropy(&z, &labels, classes);
            json!({"classes": classes, "logits": z, "labels": labels, "loss": loss, "grad": grad})
        })
        .chain([{
            let z = vec![i32::MIN, i32::MAX, 0];
            let (loss, grad) = kernels::softmax_cross_entropy(&z, &[0], 3);
            json!({"classes": 3, "logits": z, "labels": [0], "loss": loss, "grad": grad})
        }])
        .collect();

    let n = 6;
    let (mut w, mut buf) = (g.vec(n, 1.0), vec![0; n]);
    let (lr, mom, wd) = (coef(0.1), coef(0.9), coef(1e-4));
    let sgd: Vec<Value> = (0..3)
        .map(|_| {
            let grad = g.vec(n, 0.5);
            let before = w.clone();
            kernels::sgd_step(&mut w, &grad, &mut buf, lr, mom, wd);
            json!({"w": before, "grad": grad, "w_after": w, "buf_after": buf})
        })
        .collect();
    let adam = Adam {
        lr: coef(1e-3),
        beta1: coef(0.9),
        beta2: coef(0.999),
        eps: kernels::fx_from_f64(1e-6).unwrap(),
        weight_decay: coef(1e-2),
    };
    let (mut wa, mut m, mut v) = (g.vec(n, 1.0), vec![0; n], vec![0u64; n]);
    let adam_steps: Vec<Value> = (1..=3u64)
        .map(|t| {
            let mut grad = g.vec(n, 0.5);
            grad[0] = 0; // a zero gradient: the denominator's floor of one unit
            let before = wa.clone();
            kernels::adam_step(&mut wa, &grad, &mut m, &mut v, &adam, t);
            json!({"t": t, "w": before, "grad": grad, "w_after": wa, "m_after": m, "v_after": v})
        })
        .collect();
    let powers: Vec<Value> = [
        (coef(0.9), 0u64),
        (coef(0.9), 1),
        (coef(0.999), 7),
        (coef(0.5), 40),
    ]
    .iter()
    .map(|&(x, t)| json!([x, t, kernels::coef_powu(x, t)]))
    .collect();

    json!({
        "version": 1,
        "note": "Generated by rust/core/tests/kernels.rs; see docs/PROTOCOL.md, Canonical arithmetic.",
        "frac": FRAC, "coef_frac": COEF_FRAC,
        "shr_rne": rounding,
        "div_rne": division,
        "reals": reals,
        "to_f32": floats,
        "exp_neg_q30": exps,
        "ln_q30": lns,
        "linear": linear,
        "linear_saturating": saturating,
        "linear_wrapping": wrapping,
        "softmax_cross_entropy": ce,
        "sgd": {"lr": lr, "momentum": mom, "weight_decay": wd, "steps": sgd},
        "adam": {"lr": adam.lr, "beta1": adam.beta1, "beta2": adam.beta2, "eps": adam.eps,
                 "weight_decay": adam.weight_decay, "steps": adam_steps},
        "coef_powu": powers,
        "mlp_step": mlp_step(&mut g),
        "canonical": canonical_run(&mut g),
    })
}

#[test]
fn vectors_match_the_checked_in_file() {
    let built = build();
    if std::env::var("VERITRAIN_BLESS").is_ok() {
        std::fs::write(PATH, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(PATH).expect("tests/vectors/kernels-v1.json exists");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert!(
        stored == built,
        "kernel results changed: the vectors no longer match the core"
    );
}
