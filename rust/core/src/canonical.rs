//! The canonical MLP: its settings, initialization, sample quantization and training step, composed
//! from [`crate::kernels`]. The trainer (through the host extension), every replaying verifier and
//! the zkVM guest call these same functions, so a canonical run's states are one function of the
//! spec and the data on any machine. docs/PROTOCOL.md §15 is the normative text;
//! `tests/vectors/kernels-v1.json` (`canonical`) pins the results.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::hash::{tag, Digest, Sha256};
use crate::kernels::{self, Adam, Coef, COEF_FRAC, FRAC};
use crate::sampler::Xoshiro128;

/// Version of the canonical settings encoding.
pub const SETTINGS_VERSION: u32 = 1;
/// Bytes of the encoded settings.
pub const SETTINGS_LEN: usize = 32;

/// Why canonical input is refused: a static one-line reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalError(pub &'static str);

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn err<T>(why: &'static str) -> Result<T, CanonicalError> {
    Err(CanonicalError(why))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd = 0,
    Adam = 1,
}

/// What a canonical run's guest must know besides the records: the optimizer's settings and how
/// many steps each epoch's receipt re-executes. Its digest is the claim's optimizer digest.
///
/// Encoding (32 bytes, little-endian): `version u32 | kind u32 | zk_steps_per_epoch u32 |
/// weight_decay i32 | momentum i32 | beta1 i32 | beta2 i32 | eps i32`; coefficients are Q2.30,
/// `eps` a Q8.24 value; the fields another optimizer does not use are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalSettings {
    pub kind: OptimizerKind,
    pub zk_steps_per_epoch: u32,
    pub weight_decay: Coef,
    /// SGD only.
    pub momentum: Coef,
    /// Adam only.
    pub beta1: Coef,
    /// Adam only.
    pub beta2: Coef,
    /// Adam only; a value.
    pub eps: i32,
}

fn coef(x: f64, why: &'static str) -> Result<Coef, CanonicalError> {
    kernels::coef_from_f64(x).ok_or(CanonicalError(why))
}

impl CanonicalSettings {
    /// SGD settings from the spec's reals (converted exactly by their bits, no float arithmetic).
    pub fn sgd(
        zk_steps_per_epoch: u32,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<Self, CanonicalError> {
        let s = Self {
            kind: OptimizerKind::Sgd,
            zk_steps_per_epoch,
            weight_decay: coef(weight_decay, "weight_decay must be in [0, 2)")?,
            momentum: coef(momentum, "momentum must be in [0, 2)")?,
            beta1: 0,
            beta2: 0,
            eps: 0,
        };
        s.validate()?;
        Ok(s)
    }

    /// Adam settings from the spec's reals.
    pub fn adam(
        zk_steps_per_epoch: u32,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> Result<Self, CanonicalError> {
        let s = Self {
            kind: OptimizerKind::Adam,
            zk_steps_per_epoch,
            weight_decay: coef(weight_decay, "weight_decay must be in [0, 2)")?,
            momentum: 0,
            beta1: coef(beta1, "beta1 must be in [0, 1)")?,
            beta2: coef(beta2, "beta2 must be in [0, 1)")?,
            eps: kernels::fx_from_f64(eps).ok_or(CanonicalError("eps must be finite"))?,
        };
        s.validate()?;
        Ok(s)
    }

    /// The rules every settings value obeys, whichever way it was made.
    pub fn validate(&self) -> Result<(), CanonicalError> {
        if self.zk_steps_per_epoch == 0 {
            return err("zk_steps_per_epoch must be at least 1");
        }
        if self.weight_decay < 0 {
            return err("weight_decay must be in [0, 2)");
        }
        let below_one = 0..1 << COEF_FRAC;
        match self.kind {
            OptimizerKind::Sgd => {
                if self.momentum < 0 {
                    return err("momentum must be in [0, 2)");
                }
                if (self.beta1, self.beta2, self.eps) != (0, 0, 0) {
                    return err("SGD settings with Adam fields set");
                }
            }
            OptimizerKind::Adam => {
                if !below_one.contains(&self.beta1) {
                    return err("beta1 must be in [0, 1)");
                }
                if !below_one.contains(&self.beta2) {
                    return err("beta2 must be in [0, 1)");
                }
                if self.eps < 0 {
                    return err("eps must not be negative");
                }
                if self.momentum != 0 {
                    return err("Adam settings with the momentum field set");
                }
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; SETTINGS_LEN] {
        let fields = [
            SETTINGS_VERSION,
            self.kind as u32,
            self.zk_steps_per_epoch,
            self.weight_decay as u32,
            self.momentum as u32,
            self.beta1 as u32,
            self.beta2 as u32,
            self.eps as u32,
        ];
        let mut out = [0u8; SETTINGS_LEN];
        for (o, f) in out.chunks_exact_mut(4).zip(fields) {
            o.copy_from_slice(&f.to_le_bytes());
        }
        out
    }

    /// The inverse of [`Self::to_bytes`]; refuses any other version, kind, length, a nonzero
    /// unused field and settings [`Self::validate`] refuses, so each settings value has one
    /// encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CanonicalError> {
        if bytes.len() != SETTINGS_LEN {
            return err("canonical settings are 32 bytes");
        }
        let f = |i: usize| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        if f(0) != SETTINGS_VERSION {
            return err("unknown canonical settings version");
        }
        let kind = match f(1) {
            0 => OptimizerKind::Sgd,
            1 => OptimizerKind::Adam,
            _ => return err("unknown optimizer kind"),
        };
        let s = Self {
            kind,
            zk_steps_per_epoch: f(2),
            weight_decay: f(3) as i32,
            momentum: f(4) as i32,
            beta1: f(5) as i32,
            beta2: f(6) as i32,
            eps: f(7) as i32,
        };
        s.validate()?;
        Ok(s)
    }

    /// `H("veritrain/canonical-settings/v1", settings bytes)`: a canonical run's optimizer digest.
    pub fn digest<H: Sha256>(&self) -> Digest {
        H::tagged(tag::CANONICAL_SETTINGS, &[&self.to_bytes()])
    }
}

/// The optimizer state of every parameter tensor, in parameter order (`1.weight, 1.bias,
/// 3.weight, ...`), each the length of its parameter.
pub enum OptState<'a, 'b> {
    Sgd {
        momentum: &'a mut [&'b mut [i32]],
    },
    Adam {
        exp_avg: &'a mut [&'b mut [i32]],
        exp_avg_sq: &'a mut [&'b mut [u64]],
    },
}

/// What a step reports: the loss and gradient norm (24 fractional bits) and their f32 bits, as
/// the step record carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOut {
    pub loss: i32,
    pub grad_norm: u64,
    pub loss_bits: u32,
    pub grad_norm_bits: u32,
}

/// The number of elements of each parameter tensor of an MLP of layer widths `dims`
/// (`[in, hidden..., classes]`), in parameter order.
pub fn param_lens(dims: &[usize]) -> Vec<usize> {
    dims.windows(2).flat_map(|w| [w[0] * w[1], w[1]]).collect()
}

fn check_dims(dims: &[usize]) -> Result<(), CanonicalError> {
    if dims.len() < 2 || dims.contains(&0) {
        return err("an MLP needs at least an input and an output width, none zero");
    }
    if dims[dims.len() - 1] > 256 {
        return err("a canonical MLP has at most 256 classes");
    }
    Ok(())
}

/// The initial parameters of an MLP of widths `dims`, in parameter order.
///
/// Linear layer `l` (0-based among the Linear layers) draws from xoshiro128** keyed by
/// `H("veritrain/init/v1", seed u64 || l u32)`: first its weight row-major, then its bias, each
/// element `below(2 * bound + 1) - bound` with `bound = isqrt(floor(2^48 / in))`, that is
/// uniform integers in `[-bound, bound]`, about torch's default `U(-1/sqrt(in), 1/sqrt(in))`.
pub fn mlp_init<H: Sha256>(seed: u64, dims: &[usize]) -> Result<Vec<Vec<i32>>, CanonicalError> {
    check_dims(dims)?;
    let mut params = Vec::with_capacity(2 * (dims.len() - 1));
    for (l, w) in dims.windows(2).enumerate() {
        let (in_f, out_f) = (w[0], w[1]);
        let key = H::tagged(tag::INIT, &[&seed.to_le_bytes(), &(l as u32).to_le_bytes()]);
        let mut rng = Xoshiro128::from_key(&key);
        let bound = ((1u64 << 48) / in_f as u64).isqrt() as u32;
        let mut draw = |n: usize| -> Vec<i32> {
            (0..n)
                .map(|_| rng.below(2 * bound + 1) as i32 - bound as i32)
                .collect()
        };
        params.push(draw(in_f * out_f));
        params.push(draw(out_f));
    }
    Ok(params)
}

/// One sample's canonical bytes (features as f32 LE, then the label as i64 LE; pipeline/data.py)
/// into `x` (its features as values) and its label: each feature `f` becomes
/// `sat(round_scaled(f, 24))` (exact, half to even; a non-finite feature is refused), the label
/// must be in `[0, classes)`.
pub fn quantize_sample(row: &[u8], classes: usize, x: &mut [i32]) -> Result<u32, CanonicalError> {
    if row.len() != 4 * x.len() + 8 {
        return err("a sample row is its features as f32 and its label as i64");
    }
    let (feats, label) = row.split_at(4 * x.len());
    for (v, b) in x.iter_mut().zip(feats.chunks_exact(4)) {
        let f = f32::from_le_bytes(b.try_into().unwrap());
        if !f.is_finite() {
            return err("a sample feature is not finite");
        }
        // A finite f32 beyond i64 after scaling saturates like any other large value.
        *v =
            kernels::fx_from_f64(f64::from(f)).unwrap_or(if f < 0.0 { i32::MIN } else { i32::MAX });
    }
    let label = i64::from_le_bytes(label.try_into().unwrap());
    if label < 0 || label >= classes as i64 {
        return err("a sample label is outside [0, classes)");
    }
    Ok(label as u32)
}

/// [`quantize_sample`] over a batch of rows: the batch's inputs `[batch, in]` and labels.
pub fn quantize_batch<'r>(
    rows: impl IntoIterator<Item = &'r [u8]>,
    in_f: usize,
    classes: usize,
) -> Result<(Vec<i32>, Vec<u32>), CanonicalError> {
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for row in rows {
        let at = x.len();
        x.resize(at + in_f, 0);
        labels.push(quantize_sample(row, classes, &mut x[at..])?);
    }
    Ok((x, labels))
}

/// One training step of the canonical MLP of widths `dims` on a batch (`x` `[batch, dims[0]]`,
/// `labels`), updating `params` and `opt` in place.
///
/// Forward: `z_l = linear_forward(a_l, W_l, b_l)` with `a_0 = x`, `a_{l+1} = relu(z_l)` between
/// layers and the last `z` the logits; `softmax_cross_entropy`; backward from the last layer:
/// `linear_grad_params(dz_l, a_l)`, then `dz_{l-1} = relu_backward(z_{l-1},
/// linear_grad_input(dz_l, W_l))`; `grad_norm` over every gradient in parameter order; then the
/// optimizer of `s` per parameter tensor in parameter order, with learning rate `lr` and, for
/// Adam, step `t` (the global step + 1). Shapes that do not match `dims`, labels out of range or
/// an optimizer state of the other kind are refused before anything changes.
#[allow(clippy::too_many_arguments)]
pub fn mlp_step(
    dims: &[usize],
    params: &mut [&mut [i32]],
    opt: OptState<'_, '_>,
    s: &CanonicalSettings,
    lr: Coef,
    x: &[i32],
    labels: &[u32],
    t: u64,
) -> Result<StepOut, CanonicalError> {
    check_dims(dims)?;
    let lens = param_lens(dims);
    if params.len() != lens.len() || params.iter().zip(&lens).any(|(p, n)| p.len() != *n) {
        return err("parameters of the wrong shapes for the model");
    }
    let classes = dims[dims.len() - 1];
    let batch = labels.len();
    if batch == 0 || x.len() != batch * dims[0] {
        return err("a batch of the wrong shape for the model");
    }
    if labels.iter().any(|y| *y as usize >= classes) {
        return err("a label is outside [0, classes)");
    }
    let lens_match =
        |n: &[usize]| n.len() == lens.len() && n.iter().zip(&lens).all(|(a, b)| a == b);
    match (&opt, s.kind) {
        (OptState::Sgd { momentum }, OptimizerKind::Sgd) => {
            let n: Vec<usize> = momentum.iter().map(|m| m.len()).collect();
            if !lens_match(&n) {
                return err("momentum buffers of the wrong shapes for the model");
            }
        }
        (
            OptState::Adam {
                exp_avg,
                exp_avg_sq,
            },
            OptimizerKind::Adam,
        ) => {
            let n: Vec<usize> = exp_avg.iter().map(|m| m.len()).collect();
            let n2: Vec<usize> = exp_avg_sq.iter().map(|m| m.len()).collect();
            if !lens_match(&n) || !lens_match(&n2) {
                return err("Adam moments of the wrong shapes for the model");
            }
            if t == 0 {
                return err("Adam's first step is t = 1");
            }
        }
        _ => return err("optimizer state of another kind than the settings"),
    }

    let layers = dims.len() - 1;
    // pre[l] = z_l; acts[l] = a_l (acts[0] is x, borrowed).
    let mut pre: Vec<Vec<i32>> = Vec::with_capacity(layers);
    let mut acts: Vec<Vec<i32>> = Vec::with_capacity(layers - 1);
    for l in 0..layers {
        let input: &[i32] = if l == 0 { x } else { &acts[l - 1] };
        let z = kernels::linear_forward(
            input,
            params[2 * l],
            params[2 * l + 1],
            dims[l],
            dims[l + 1],
        );
        if l + 1 < layers {
            acts.push(kernels::relu(&z));
        }
        pre.push(z);
    }
    let (loss, mut dz) = kernels::softmax_cross_entropy(&pre[layers - 1], labels, classes);
    let mut grads: Vec<Vec<i32>> = vec![Vec::new(); 2 * layers];
    for l in (0..layers).rev() {
        let input: &[i32] = if l == 0 { x } else { &acts[l - 1] };
        let (dw, db) = kernels::linear_grad_params(&dz, input, dims[l], dims[l + 1]);
        if l > 0 {
            let dx = kernels::linear_grad_input(&dz, params[2 * l], dims[l], dims[l + 1]);
            dz = kernels::relu_backward(&pre[l - 1], &dx);
        }
        grads[2 * l] = dw;
        grads[2 * l + 1] = db;
    }
    let refs: Vec<&[i32]> = grads.iter().map(Vec::as_slice).collect();
    let norm = kernels::grad_norm(&refs);

    match opt {
        OptState::Sgd { momentum } => {
            for ((p, g), b) in params.iter_mut().zip(&grads).zip(momentum.iter_mut()) {
                kernels::sgd_step(p, g, b, lr, s.momentum, s.weight_decay);
            }
        }
        OptState::Adam {
            exp_avg,
            exp_avg_sq,
        } => {
            let a = Adam {
                lr,
                beta1: s.beta1,
                beta2: s.beta2,
                eps: s.eps,
                weight_decay: s.weight_decay,
            };
            for (((p, g), m), v) in params
                .iter_mut()
                .zip(&grads)
                .zip(exp_avg.iter_mut())
                .zip(exp_avg_sq.iter_mut())
            {
                kernels::adam_step(p, g, m, v, &a, t);
            }
        }
    }
    Ok(StepOut {
        loss,
        grad_norm: norm,
        loss_bits: kernels::to_f32_bits(i64::from(loss), FRAC),
        grad_norm_bits: kernels::to_f32_bits(norm as i64, FRAC),
    })
}

/// The learning rate of a step as a coefficient: the schedule's f64 rate, converted exactly.
pub fn lr_coef(lr: f64) -> Result<Coef, CanonicalError> {
    coef(lr, "the learning rate must be in [-2, 2)")
}
