//! The schedules of language models (cosine, inverse square root): their rules, the range
//! reduction and polynomial that stand in for `cos` and the integer square root that stands in for
//! the target's `sqrt`, each measured against the host's own (PROTOCOL.md §6 states the figures).
use proptest::prelude::*;
use veritrain_core::schedule::{cospi, sqrt, ScheduleError, COS_PI};
use veritrain_core::Schedule;

fn cosine(warmup_steps: u64, min_lr: f64, total_steps: u64) -> Schedule {
    Schedule::Cosine {
        base_lr: 0.3,
        warmup_steps,
        min_lr,
        total_steps,
    }
}

/// `cos(pi * d)` for `d` in `[0, 1]` as `lr_at` evaluates it.
fn reduced_cos(d: f64) -> f64 {
    if d <= 0.5 {
        cospi(d)
    } else {
        -cospi(1.0 - d)
    }
}

#[test]
fn the_polynomial_stays_within_its_bound_of_libm_cos() {
    // A dense grid of d in [0, 1] (2^22 + 1 points) against libm's cos. Plain `cos(PI * d)` carries
    // the error of its argument (PI * d rounded, and PI itself): up to about 2.2e-16 near d = 1.
    // `exact` corrects libm's value to first order by that argument error (the product's rounding
    // error exactly, by an FMA, plus pi's low part times d), which leaves libm's own error.
    const PI_LO: f64 = 1.2246467991473532e-16; // pi - PI
    let pi = core::f64::consts::PI;
    let n = 1u32 << 22;
    let (mut plain, mut exact) = ((0.0f64, 0.0f64), (0.0f64, 0.0f64));
    for i in 0..=n {
        let d = f64::from(i) / f64::from(n);
        let x = pi * d;
        let dx = pi.mul_add(d, -x) + PI_LO * d;
        let ours = reduced_cos(d);
        let e1 = (ours - x.cos()).abs();
        let e2 = (ours - (x.cos() - x.sin() * dx)).abs();
        if e1 > plain.0 {
            plain = (e1, d);
        }
        if e2 > exact.0 {
            exact = (e2, d);
        }
    }
    println!(
        "max |cospi - libm cos(PI * d)| = {:e} at d = {}",
        plain.0, plain.1
    );
    println!(
        "max |cospi - libm cos(pi * d), argument corrected| = {:e} at d = {}",
        exact.0, exact.1
    );
    assert!(plain.0 <= 5e-16, "{plain:?}");
    assert!(exact.0 <= 4e-16, "{exact:?}");
    // The ends are exact, the middle nearly 0.
    assert_eq!(reduced_cos(0.0), 1.0);
    assert_eq!(reduced_cos(1.0), -1.0);
    println!("cospi(0.5) = {:e}", cospi(0.5));
    assert!(cospi(0.5).abs() < 3e-16);
}

#[test]
fn the_coefficients_are_the_taylor_series_of_cos_pi_u() {
    // c_k = -c_{k-1} * pi^2 / ((2k - 1) 2k), to within the rounding of each.
    let pi2 = core::f64::consts::PI * core::f64::consts::PI;
    assert_eq!(COS_PI[0], 1.0);
    for k in 1..COS_PI.len() {
        let want = -COS_PI[k - 1] * pi2 / ((2 * k - 1) * 2 * k) as f64;
        assert!(
            ((COS_PI[k] - want) / want).abs() < 1e-14,
            "c_{k} = {}",
            COS_PI[k]
        );
    }
}

#[test]
fn sqrt_is_correctly_rounded() {
    // The host's f64::sqrt is IEEE-754's (x86-64 sqrtsd, aarch64 fsqrt): correctly rounded.
    let edges = [
        0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::MAX,
        1.0,
        2.0,
        4.0,
        0.5,
        1.0 - f64::EPSILON / 2.0,
        1.0 + f64::EPSILON,
        6.0 / 7.0,
        1.0 / 3.0,
    ];
    for x in edges {
        assert_eq!(sqrt(x).to_bits(), x.sqrt().to_bits(), "sqrt({x:e})");
    }
    assert!(sqrt(-1.0).is_nan() && sqrt(f64::NAN).is_nan() && sqrt(f64::INFINITY).is_nan());
    // A million spread bit patterns (positive, finite, normal and subnormal) and the rates'
    // own range: warmup_steps / (step + 1) for small integers.
    let mut z = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1_000_000 {
        z = z
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = f64::from_bits((z >> 1) % 0x7ff0_0000_0000_0000);
        assert_eq!(sqrt(x).to_bits(), x.sqrt().to_bits(), "sqrt({x:e})");
    }
    for w in 1..300u64 {
        for s in w..w + 300 {
            let x = w as f64 / (s + 1) as f64;
            assert_eq!(sqrt(x).to_bits(), x.sqrt().to_bits(), "sqrt({w}/{})", s + 1);
        }
    }
}

#[test]
fn cosine_warms_up_then_decays_to_min_lr() {
    let s = cosine(10, 0.01, 110);
    for step in 0..10 {
        assert_eq!(s.lr_at(step), 0.3 * (step + 1) as f64 / 10.0);
    }
    assert_eq!(s.lr_at(10), 0.3);
    // Half-way through the decay the rate is half-way between the two.
    assert!((s.lr_at(60) - (0.3 + 0.01) / 2.0).abs() < 1e-16);
    let mut prev = s.lr_at(10);
    for step in 11..110 {
        let lr = s.lr_at(step);
        assert!(lr < prev && lr > 0.01, "step {step}: {lr}");
        prev = lr;
    }
    assert_eq!(s.lr_at(110), 0.01);
    assert_eq!(s.lr_at(u64::MAX), 0.01);
    // Warmup as long as the run: no decay step at all.
    assert_eq!(cosine(5, 0.0, 5).lr_at(4), 0.3);
}

#[test]
fn inverse_sqrt_warms_up_then_decays_as_one_over_the_root() {
    let s = Schedule::InverseSqrt {
        base_lr: 0.3,
        warmup_steps: 4,
    };
    assert_eq!(s.lr_at(0), 0.075);
    assert_eq!(s.lr_at(3), 0.3);
    assert_eq!(s.lr_at(4), 0.3 * (4.0f64 / 5.0).sqrt());
    assert_eq!(s.lr_at(15), 0.15);
    assert_eq!(s.lr_at(63), 0.075);
    assert!(s.lr_at(u64::MAX) > 0.0);
    assert_eq!(s.constant_until(u64::MAX), u64::MAX);
}

#[test]
fn new_kinds_keep_the_layout_and_refuse_bad_values() {
    let c = cosine(5, 0.01, 101);
    let bytes = c.encode();
    assert_eq!(&bytes[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&bytes[16..24], &101u64.to_le_bytes()); // slot A: total_steps
    assert_eq!(&bytes[24..32], &0.01f64.to_bits().to_le_bytes()); // slot B: min_lr
    assert_eq!(&bytes[32..], &5u64.to_le_bytes());
    assert_eq!(Schedule::decode(&bytes), Ok(c));
    let inv = Schedule::InverseSqrt {
        base_lr: 0.3,
        warmup_steps: 6,
    };
    assert_eq!(Schedule::decode(&inv.encode()), Ok(inv));
    // An inverse_sqrt with a total_steps or a min_lr is not canonical.
    for at in [16, 24] {
        let mut b = inv.encode();
        b[at] = 1;
        assert_eq!(Schedule::decode(&b), Err(ScheduleError::NonCanonical));
    }
    let bad = [
        cosine(0, 0.01, 100),
        cosine(101, 0.01, 100),
        cosine(5, 0.31, 100),
        cosine(5, -0.0, 100),
        cosine(5, -0.01, 100),
        cosine(5, f64::NAN, 100),
        Schedule::InverseSqrt {
            base_lr: 0.3,
            warmup_steps: 0,
        },
        Schedule::InverseSqrt {
            base_lr: f64::INFINITY,
            warmup_steps: 1,
        },
    ];
    for s in bad {
        assert!(
            matches!(s.validate(), Err(ScheduleError::Value(_))),
            "{s:?}"
        );
        assert!(Schedule::decode(&s.encode()).is_err(), "{s:?}");
    }
    // min_lr may be 0 or base_lr itself; warmup may last the whole run.
    for s in [
        cosine(5, 0.0, 100),
        cosine(5, 0.3, 100),
        cosine(100, 0.01, 100),
    ] {
        assert_eq!(s.validate(), Ok(()), "{s:?}");
    }
    assert_eq!(
        Schedule::decode(&[5; 40]),
        Err(ScheduleError::Kind(0x0505_0505))
    );
}

proptest! {
    /// Decay is monotone: never above base_lr nor below min_lr, never rising.
    #[test]
    fn cosine_decay_is_monotone(
        warmup in 1u64..1000, len in 0u64..100_000, base in 1e-6f64..1.0, frac in 0.0f64..1.0,
        step in 0u64..100_000,
    ) {
        let min_lr = base * frac;
        let s = Schedule::Cosine {
            base_lr: base, warmup_steps: warmup, min_lr, total_steps: warmup + len,
        };
        let t = warmup + step % (len + 1);
        let (a, b) = (s.lr_at(t), s.lr_at(t + 1));
        prop_assert!(b <= a && a <= base && b >= min_lr, "{a} {b}");
    }
}
