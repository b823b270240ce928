//! The learning-rate schedule and the per-step hyperparameter digest.
//!
//! Only schedules whose value is a short sequence of IEEE-754 basic operations are allowed
//! (multiplication, division, int-to-float): those round identically on every conforming platform,
//! including the guest's soft-float, so the guest recomputes each step's rate bit for bit. Cosine
//! schedules would need `cos`, whose last bit differs between libms; they are deliberately absent.
//!
//! Encoding (40 bytes, little-endian): kind u32, reserved u32 (0), base_lr f64, step_size u64,
//! gamma f64, warmup_steps u64. Unused fields are zero.

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
}

impl Schedule {
    pub const KIND_CONSTANT: u32 = 0;
    pub const KIND_STEP_DECAY: u32 = 1;
    pub const KIND_LINEAR_WARMUP: u32 = 2;

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
                    base_lr * (step + 1) as f64 / warmup_steps as f64
                } else {
                    base_lr
                }
            }
        }
    }

    /// The first step after `step` at which the rate may differ from `lr_at(step)`
    /// (`u64::MAX` if never): the epoch check recomputes the rate only there.
    pub fn constant_until(&self, step: u64) -> u64 {
        match *self {
            Schedule::Constant { .. } => u64::MAX,
            Schedule::StepDecay { step_size, .. } => (step / step_size)
                .saturating_add(1)
                .saturating_mul(step_size),
            Schedule::LinearWarmup { warmup_steps, .. } => {
                if step < warmup_steps {
                    step + 1
                } else {
                    u64::MAX
                }
            }
        }
    }

    pub fn encode(&self) -> [u8; SCHEDULE_LEN] {
        let (kind, base_lr, step_size, gamma, warmup) = match *self {
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
        };
        let mut w = Writer::<SCHEDULE_LEN>::new();
        w.u32(kind);
        w.u32(0);
        w.u64(base_lr.to_bits());
        w.u64(step_size);
        w.u64(f64::to_bits(gamma));
        w.u64(warmup);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ScheduleError> {
        let mut r = Reader::new(bytes, SCHEDULE_LEN).map_err(ScheduleError::Decode)?;
        let kind = r.u32();
        let reserved = r.u32();
        let base_lr = f64::from_bits(r.u64());
        let step_size = r.u64();
        let gamma = f64::from_bits(r.u64());
        let warmup_steps = r.u64();
        let s = match kind {
            Self::KIND_CONSTANT => Schedule::Constant { base_lr },
            Self::KIND_STEP_DECAY => Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            },
            Self::KIND_LINEAR_WARMUP => Schedule::LinearWarmup {
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
        let ok = match *self {
            Schedule::Constant { base_lr } => finite_pos(base_lr),
            Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => finite_pos(base_lr) && step_size > 0 && finite_pos(gamma),
            Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            } => finite_pos(base_lr) && warmup_steps > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(ScheduleError::Value)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    Decode(DecodeError),
    Kind(u32),
    NonCanonical,
    Value,
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "schedule: {e}"),
            Self::Kind(k) => write!(f, "schedule: unknown kind {k}"),
            Self::NonCanonical => write!(f, "schedule: unused fields must be zero"),
            Self::Value => write!(
                f,
                "schedule: rates must be finite and positive, periods non-zero"
            ),
        }
    }
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

/// `H(HPARAMS, lr f64 bits || optimizer digest)`: what a step record commits to as its
/// hyperparameters. The optimizer digest covers the constant optimizer settings (kind, momentum,
/// betas, weight decay) and is fixed for a run.
pub fn hparams_digest<H: Sha256>(lr: f64, optimizer_digest: &Digest) -> Digest {
    H::tagged(
        tag::HPARAMS,
        &[&lr.to_bits().to_le_bytes(), optimizer_digest],
    )
}
