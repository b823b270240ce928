//! The learning-rate schedule and the per-step hyperparameter digest.
//!
//! Every rate is a fixed sequence of IEEE-754 basic operations (`+`, `-`, `*`, `/`, square root,
//! integer-to-float conversion), each correctly rounded to nearest, so every conforming platform,
//! including the guest's soft-float and Python's floats, gets the same bits and the guest
//! recomputes each step's rate bit for bit. No operation is fused (Rust never contracts `a * b + c`
//! into an FMA). `cos` is not such an operation (its last bit differs between libms), so the cosine
//! schedule evaluates `cos(pi * d)` by a fixed range reduction and a fixed polynomial ([`cospi`]),
//! and the square root is the correctly rounded one computed with integers ([`sqrt`]), the same on
//! every target whatever its own `sqrt`.
//!
//! Encoding (40 bytes, little-endian): kind u32, reserved u32 (0), then three slots whose meaning
//! is the kind's: base_lr f64; slot A u64 (step_decay: step_size; cosine: total_steps); slot B f64
//! (step_decay: gamma; cosine: min_lr); warmup_steps u64 (linear_warmup, cosine, inverse_sqrt).
//! Unused slots are zero. PROTOCOL.md §6 is the prose version.

use crate::hash::{tag, Digest, Sha256};
use crate::record::{DecodeError, Reader, Writer};

pub const SCHEDULE_LEN: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `lr = base_lr`.
    Constant { base_lr: f64 },
    /// `lr = base_lr * gamma^(step / step_size)` (integer division; power by repeated squaring).
    StepDecay {
        base_lr: f64,
        step_size: u64,
        gamma: f64,
    },
    /// `lr = base_lr * (step + 1) / warmup_steps` for step < warmup_steps, then `base_lr`.
    LinearWarmup { base_lr: f64, warmup_steps: u64 },
    /// Linear warmup as above, then cosine decay from `base_lr` to `min_lr` over the remaining
    /// steps of the run: `min_lr + (base_lr - min_lr) * (1 + cos(pi * d)) / 2` with
    /// `d = (step - warmup_steps) / (total_steps - warmup_steps)`; `min_lr` from `total_steps` on.
    Cosine {
        base_lr: f64,
        warmup_steps: u64,
        min_lr: f64,
        total_steps: u64,
    },
    /// Linear warmup as above, then `base_lr * sqrt(warmup_steps / (step + 1))`.
    InverseSqrt { base_lr: f64, warmup_steps: u64 },
}

impl Schedule {
    pub const KIND_CONSTANT: u32 = 0;
    pub const KIND_STEP_DECAY: u32 = 1;
    pub const KIND_LINEAR_WARMUP: u32 = 2;
    pub const KIND_COSINE: u32 = 3;
    pub const KIND_INVERSE_SQRT: u32 = 4;

    /// The learning rate used at global step `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant { base_lr } => base_lr,
            Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => base_lr * powu(gamma, step / step_size),
            Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            } => {
                if step < warmup_steps {
                    warmup(base_lr, step, warmup_steps)
                } else {
                    base_lr
                }
            }
            Schedule::Cosine {
                base_lr,
                warmup_steps,
                min_lr,
                total_steps,
            } => {
                if step < warmup_steps {
                    warmup(base_lr, step, warmup_steps)
                } else if step >= total_steps {
                    min_lr
                } else {
                    let d = (step - warmup_steps) as f64 / (total_steps - warmup_steps) as f64;
                    let c = if d <= 0.5 { cospi(d) } else { -cospi(1.0 - d) };
                    min_lr + (base_lr - min_lr) * (0.5 * (1.0 + c))
                }
            }
            Schedule::InverseSqrt {
                base_lr,
                warmup_steps,
            } => {
                if step < warmup_steps {
                    warmup(base_lr, step, warmup_steps)
                } else {
                    base_lr * sqrt(warmup_steps as f64 / step.saturating_add(1) as f64)
                }
            }
        }
    }

    /// The first step after `step` at which the rate may differ from `lr_at(step)`
    /// (`u64::MAX` if never): the epoch check recomputes the rate only there.
    pub fn constant_until(&self, step: u64) -> u64 {
        let next = step.saturating_add(1);
        match *self {
            Schedule::Constant { .. } => u64::MAX,
            Schedule::StepDecay { step_size, .. } => (step / step_size)
                .saturating_add(1)
                .saturating_mul(step_size),
            Schedule::LinearWarmup { warmup_steps, .. } => {
                if step < warmup_steps {
                    next
                } else {
                    u64::MAX
                }
            }
            Schedule::Cosine { total_steps, .. } => {
                if step < total_steps {
                    next
                } else {
                    u64::MAX
                }
            }
            Schedule::InverseSqrt { .. } => next,
        }
    }

    /// (kind, base_lr, slot A u64, slot B f64, warmup_steps): the encoding's fields.
    fn slots(&self) -> (u32, f64, u64, f64, u64) {
        match *self {
            Schedule::Constant { base_lr } => (Self::KIND_CONSTANT, base_lr, 0, 0.0, 0),
            Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => (Self::KIND_STEP_DECAY, base_lr, step_size, gamma, 0),
            Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            } => (Self::KIND_LINEAR_WARMUP, base_lr, 0, 0.0, warmup_steps),
            Schedule::Cosine {
                base_lr,
                warmup_steps,
                min_lr,
                total_steps,
            } => (
                Self::KIND_COSINE,
                base_lr,
                total_steps,
                min_lr,
                warmup_steps,
            ),
            Schedule::InverseSqrt {
                base_lr,
                warmup_steps,
            } => (Self::KIND_INVERSE_SQRT, base_lr, 0, 0.0, warmup_steps),
        }
    }

    pub fn encode(&self) -> [u8; SCHEDULE_LEN] {
        let (kind, base_lr, a, b, warmup) = self.slots();
        let mut w = Writer::<SCHEDULE_LEN>::new();
        w.u32(kind);
        w.u32(0);
        w.u64(base_lr.to_bits());
        w.u64(a);
        w.u64(b.to_bits());
        w.u64(warmup);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ScheduleError> {
        let mut r = Reader::new(bytes, SCHEDULE_LEN).map_err(ScheduleError::Decode)?;
        let kind = r.u32();
        let reserved = r.u32();
        let base_lr = f64::from_bits(r.u64());
        let a = r.u64();
        let b = f64::from_bits(r.u64());
        let warmup_steps = r.u64();
        let s = match kind {
            Self::KIND_CONSTANT => Schedule::Constant { base_lr },
            Self::KIND_STEP_DECAY => Schedule::StepDecay {
                base_lr,
                step_size: a,
                gamma: b,
            },
            Self::KIND_LINEAR_WARMUP => Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            },
            Self::KIND_COSINE => Schedule::Cosine {
                base_lr,
                warmup_steps,
                min_lr: b,
                total_steps: a,
            },
            Self::KIND_INVERSE_SQRT => Schedule::InverseSqrt {
                base_lr,
                warmup_steps,
            },
            _ => return Err(ScheduleError::Kind(kind)),
        };
        if reserved != 0 || s.encode().as_slice() != bytes {
            return Err(ScheduleError::NonCanonical);
        }
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        let (kind, base_lr, a, b, warmup_steps) = self.slots();
        let fail = |rule| Err(ScheduleError::Value(rule));
        if !finite_pos(base_lr) {
            return fail("base_lr must be finite and positive");
        }
        match kind {
            Self::KIND_STEP_DECAY if a == 0 => fail("step_size must be positive"),
            Self::KIND_STEP_DECAY if !finite_pos(b) => fail("gamma must be finite and positive"),
            Self::KIND_LINEAR_WARMUP | Self::KIND_COSINE | Self::KIND_INVERSE_SQRT
                if warmup_steps == 0 =>
            {
                fail("warmup_steps must be positive")
            }
            // +0.0 or a positive finite rate (-0.0 is another encoding of zero: refused).
            Self::KIND_COSINE if !(b.to_bits() == 0 || finite_pos(b)) || b > base_lr => {
                fail("min_lr must be 0 or positive, and at most base_lr")
            }
            Self::KIND_COSINE if warmup_steps > a => {
                fail("warmup_steps must be at most total_steps (the run's steps)")
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    Decode(DecodeError),
    Kind(u32),
    NonCanonical,
    /// A field breaks its kind's rule, stated here.
    Value(&'static str),
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "schedule: {e}"),
            Self::Kind(k) => write!(f, "schedule: unknown kind {k}"),
            Self::NonCanonical => write!(f, "schedule: unused fields must be zero"),
            Self::Value(rule) => write!(f, "schedule: {rule}"),
        }
    }
}

/// The warmup rate `(base_lr * f64(step + 1)) / f64(warmup_steps)`, for `step < warmup_steps`.
fn warmup(base_lr: f64, step: u64, warmup_steps: u64) -> f64 {
    base_lr * (step + 1) as f64 / warmup_steps as f64
}

/// `x^n` by square-and-multiply, low bit first. Spelled out so every platform does the same
/// multiplications in the same order (and so rounds the same way).
pub fn powu(x: f64, mut n: u64) -> f64 {
    let mut acc = 1.0f64;
    let mut base = x;
    while n > 0 {
        if n & 1 == 1 {
            acc *= base;
        }
        base *= base;
        n >>= 1;
    }
    acc
}

/// `COS_PI[k]`: the f64 nearest to `(-1)^k pi^(2k) / (2k)!`, the Taylor coefficients of
/// `cos(pi * u)` in `u^2`. On `|u| <= 1/2` the first omitted term is below `8.3e-20`.
pub const COS_PI: [f64; 12] = [
    1.0,
    -4.934802200544679,
    4.0587121264167685,
    -1.3352627688545895,
    0.2353306303588932,
    -0.02580689139001406,
    0.0019295743094039231,
    -0.0001046381049248457,
    4.303069587032947e-6,
    -1.3878952462213771e-7,
    3.604730797462501e-9,
    -7.700707130601354e-11,
];

/// `cos(pi * u)` for `0 <= u <= 1/2`: Horner's rule in `y = u * u`, highest coefficient first,
/// each step a multiplication then an addition. [`Schedule::lr_at`] reduces `d` in `[0, 1]` to
/// this range by `cos(pi * d) = -cos(pi * (1 - d))` (`1 - d` is exact for `d >= 1/2`).
pub fn cospi(u: f64) -> f64 {
    let y = u * u;
    let mut r = COS_PI[11];
    for c in COS_PI[..11].iter().rev() {
        r = r * y + c;
    }
    r
}

/// The correctly rounded (to nearest, ties to even) square root of a finite `x >= 0`, computed
/// with integers: IEEE-754's squareRoot, whatever the target's own `sqrt` does. Other inputs give
/// NaN.
pub fn sqrt(x: f64) -> f64 {
    const FRAC: u64 = (1 << 52) - 1;
    if x == 0.0 {
        return x;
    }
    if !(x.is_finite() && x > 0.0) {
        return f64::NAN;
    }
    let bits = x.to_bits();
    let biased = (bits >> 52) as i64;
    // x = m * 2^e with m an integer of 53 bits (subnormals shifted up to 53 bits).
    let (mut m, mut e) = if biased == 0 {
        let f = bits & FRAC;
        let shift = f.leading_zeros() as i64 - 11;
        (f << shift, -1074 - shift)
    } else {
        ((bits & FRAC) | (1 << 52), biased - 1075)
    };
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    // sqrt(x) = sqrt(m * 2^54) * 2^((e - 54) / 2), and sqrt(m * 2^54) has 54 integer bits.
    let big = u128::from(m) << 54;
    let r = big.isqrt();
    let exact = r * r == big;
    // Halve r to 53 bits, rounding to nearest: a tie needs r odd and exact, which never happens
    // for a square root, but is broken to even all the same.
    let mut q = (r >> 1) as u64;
    let mut k = (e - 54) / 2 + 1;
    if r & 1 == 1 && (!exact || q & 1 == 1) {
        q += 1;
        if q == 1 << 53 {
            q >>= 1;
            k += 1;
        }
    }
    // q in [2^52, 2^53): the result q * 2^k is normal (the square root of any finite double is).
    f64::from_bits((((k + 1075) as u64) << 52) | (q & FRAC))
}

/// `H(HPARAMS, lr f64 bits || optimizer digest)`: what a step record commits to as its
/// hyperparameters. The optimizer digest covers the constant optimizer settings (kind, momentum,
/// betas, weight decay) and is fixed for a run.
pub fn hparams_digest<H: Sha256>(lr: f64, optimizer_digest: &Digest) -> Digest {
    H::tagged(
        tag::HPARAMS,
        &[&lr.to_bits().to_le_bytes(), optimizer_digest],
    )
}
