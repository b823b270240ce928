//! zk re-execution of training steps (guarantee `arithmetic`, docs/PROTOCOL.md §11): which steps
//! of an epoch the guest re-executes.
//!
//! The steps are chosen by Fiat–Shamir from the epoch's records root, which the trainer fixes by
//! training before it can know them: `k >= step count` re-executes every step; otherwise
//! xoshiro128** (§5), seeded with `H("veritrain/zk-steps/v1", records root)`, draws
//! `below(step count)` k times, and the distinct draws are re-executed in ascending order.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::canonical::{
    self, CanonicalError, CanonicalSettings, OptState, OptimizerKind, StepOut, SETTINGS_LEN,
};
use crate::claim::EpochClaim;
use crate::epoch::{CheckError, ErrorKind};
use crate::hash::{
    digest_bytes, digest_words, eq, store_words, tag, Digest, DigestWords, Frame, Sha256,
};
use crate::kernels::Coef;
use crate::merkle::NodeHasher;
use crate::record::{digest_at, u32_at, word, Records, FLAG_STATE_DIGEST};
use crate::sampler::{self, Xoshiro128};
use crate::tensor;

/// The steps (0-based within the epoch, ascending, distinct) that an epoch of `step_count` steps
/// with records root `records_root` re-executes, for `k` re-executions per epoch.
/// `step_count` must fit in a u32 (it does for every valid claim: the dataset length does).
pub fn zk_steps<H: Sha256>(records_root: &Digest, step_count: u64, k: u32) -> Vec<u64> {
    if k as u64 >= step_count {
        return (0..step_count).collect();
    }
    let bound = u32::try_from(step_count).expect("step count fits in a u32");
    let mut rng = Xoshiro128::from_key(&H::tagged(tag::ZK_STEPS, &[records_root]));
    let mut steps: Vec<u64> = (0..k).map(|_| rng.below(bound) as u64).collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// The part of the guest input that only canonical epochs (guarantees 31) carry: the canonical
/// settings (their digest is the claim's optimizer digest) and, for each re-executed step, the
/// pre-step state and the batch's samples with their audit paths.
#[derive(Clone, Debug, PartialEq)]
pub struct CanonicalSection {
    pub settings: [u8; SETTINGS_LEN],
    pub steps: Vec<ZkStep>,
}

/// One re-executed step's input.
#[derive(Clone, Debug, PartialEq)]
pub struct ZkStep {
    /// The global step.
    pub step: u64,
    /// The training state before the step, sorted by name (bytewise), names unique.
    pub state: Vec<StateTensor>,
    /// The batch's samples in batch order.
    pub samples: Vec<ZkSample>,
}

/// One tensor of a training state: what its tensor digest (§8) covers.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

/// One sample of a batch: its canonical row (pipeline/data.py) as words in memory order, and the
/// audit path of its leaf in the dataset root, from the leaf up.
#[derive(Clone, Debug, PartialEq)]
pub struct ZkSample {
    pub row: Vec<u32>,
    pub path: Vec<DigestWords>,
}

impl StateTensor {
    pub fn digest<H: Sha256>(&self) -> Digest {
        tensor::tensor_digest::<H>(&self.name, &self.dtype, &self.shape, &self.data)
    }
}

// The encoding (docs/PROTOCOL.md §10), little-endian, every part a whole number of words:
//   settings (32 bytes) || step count u32 || steps
//   step   = global step u64 || tensor count u32 || tensors || sample count u32
//            || row length u32 (bytes, a multiple of 4) || samples
//   tensor = len u32 || name || len u32 || dtype || ndim u32 || dims u64... || nbytes u64 || data
//            (name, dtype and data zero-padded to a multiple of 4 bytes)
//   sample = row || path length u32 || path (digests, from the leaf up)

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_padded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(4), 0);
}

impl CanonicalSection {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.settings);
        put_u32(out, self.steps.len() as u32);
        for s in &self.steps {
            put_u64(out, s.step);
            put_u32(out, s.state.len() as u32);
            for t in &s.state {
                put_u32(out, t.name.len() as u32);
                put_padded(out, t.name.as_bytes());
                put_u32(out, t.dtype.len() as u32);
                put_padded(out, t.dtype.as_bytes());
                put_u32(out, t.shape.len() as u32);
                for d in &t.shape {
                    put_u64(out, *d);
                }
                put_u64(out, t.data.len() as u64);
                put_padded(out, &t.data);
            }
            put_u32(out, s.samples.len() as u32);
            let row_len = s.samples.first().map_or(0, |x| 4 * x.row.len());
            put_u32(out, row_len as u32);
            for x in &s.samples {
                for w in &x.row {
                    out.extend_from_slice(&w.to_ne_bytes());
                }
                put_u32(out, x.path.len() as u32);
                for d in &x.path {
                    out.extend_from_slice(&digest_bytes(d));
                }
            }
        }
    }

    /// Reads the section with `read` (which fills its argument or fails). No length may exceed
    /// `max_words` words, so a corrupt length fails before a large allocation.
    pub(crate) fn read(
        max_words: usize,
        read: &mut dyn FnMut(&mut [u32]) -> Result<(), CheckError>,
    ) -> Result<Self, CheckError> {
        let mut r = Reader { read, max_words };
        let mut settings = [0u8; SETTINGS_LEN];
        let words = r.words(SETTINGS_LEN / 4)?;
        store_words(&mut settings, &words);
        let count = r.len()?;
        let mut steps = Vec::new();
        for _ in 0..count {
            let step = r.u64()?;
            let tensors = r.len()?;
            let mut state = Vec::new();
            for _ in 0..tensors {
                let name = r.text()?;
                let dtype = r.text()?;
                let ndim = r.len()?;
                let mut shape = Vec::new();
                for _ in 0..ndim {
                    shape.push(r.u64()?);
                }
                let nbytes = usize::try_from(r.u64()?).map_err(|_| too_long())?;
                let data = r.padded(nbytes)?;
                state.push(StateTensor {
                    name,
                    dtype,
                    shape,
                    data,
                });
            }
            let count = r.len()?;
            let row_len = r.len()?;
            if !row_len.is_multiple_of(4) {
                return Err(encoding("a sample row is not a whole number of words"));
            }
            let mut samples = Vec::new();
            for _ in 0..count {
                let row = r.words(row_len / 4)?;
                let depth = r.len()?;
                let mut path = Vec::new();
                for _ in 0..depth {
                    let w = r.words(8)?;
                    path.push(w.try_into().unwrap());
                }
                samples.push(ZkSample { row, path });
            }
            steps.push(ZkStep {
                step,
                state,
                samples,
            });
        }
        Ok(Self { settings, steps })
    }
}

fn encoding(detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Encoding,
        step: None,
        detail,
    }
}

fn too_long() -> CheckError {
    encoding("input is truncated")
}

struct Reader<'a> {
    read: &'a mut dyn FnMut(&mut [u32]) -> Result<(), CheckError>,
    max_words: usize,
}

impl Reader<'_> {
    fn words(&mut self, n: usize) -> Result<Vec<u32>, CheckError> {
        if n > self.max_words {
            return Err(too_long());
        }
        let mut w = alloc::vec![0u32; n];
        (self.read)(&mut w)?;
        Ok(w)
    }

    fn u32(&mut self) -> Result<u32, CheckError> {
        let mut w = [0u32];
        (self.read)(&mut w)?;
        Ok(u32::from_le(w[0]))
    }

    fn len(&mut self) -> Result<usize, CheckError> {
        Ok(self.u32()? as usize)
    }

    fn u64(&mut self) -> Result<u64, CheckError> {
        let lo = self.u32()? as u64;
        Ok(lo | (self.u32()? as u64) << 32)
    }

    /// `len` bytes, zero-padded to a whole number of words (the padding must be zero).
    fn padded(&mut self, len: usize) -> Result<Vec<u8>, CheckError> {
        let words = self.words(len.div_ceil(4))?;
        let mut bytes = alloc::vec![0u8; 4 * words.len()];
        store_words(&mut bytes, &words);
        if bytes[len..].iter().any(|b| *b != 0) {
            return Err(encoding("nonzero padding"));
        }
        bytes.truncate(len);
        Ok(bytes)
    }

    fn text(&mut self) -> Result<String, CheckError> {
        let len = self.len()?;
        String::from_utf8(self.padded(len)?).map_err(|_| encoding("a name is not UTF-8"))
    }
}

fn arithmetic(step: u64, detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Arithmetic,
        step: Some(step),
        detail,
    }
}

/// Checks the canonical section of an epoch whose records passed every other check (§11): the
/// settings are the claim's, the re-executed steps are the ones the records root chooses, and
/// each of them, recomputed from its pre-step state (the state digest of the record before) and
/// its batch (the sampler's indices, each sample under the dataset root), gives the record's
/// loss, grad norm, param digest and state digest.
pub fn check_arithmetic<H: Sha256>(
    c: &EpochClaim,
    records: &Records,
    perm: &[u32],
    section: &CanonicalSection,
) -> Result<(), CheckError> {
    let first = c.first_step;
    let settings = CanonicalSettings::from_bytes(&section.settings)
        .map_err(|_| arithmetic_none("the canonical settings are not a valid encoding"))?;
    if settings.digest::<H>() != c.optimizer_digest {
        return Err(arithmetic_none(
            "the canonical settings are not the claim's optimizer digest",
        ));
    }
    let chosen = zk_steps::<H>(&c.records_root, c.step_count, settings.zk_steps_per_epoch);
    if chosen.len() != section.steps.len()
        || chosen
            .iter()
            .zip(&section.steps)
            .any(|(k, s)| first + k != s.step)
    {
        return Err(arithmetic_none(
            "the input does not re-execute the steps the records root chooses",
        ));
    }
    let mut leaf_frame: Option<SampleCheck> = None;
    let dataset_root = digest_words(&c.dataset_root);
    // The model after the last re-executed step (and that step), whose state digest was found
    // equal to its record's: the next step's pre-state, if that step is re-executed too.
    let mut carried: Option<(u64, Model)> = None;
    for zs in &section.steps {
        let s = zs.step;
        let k = s - first;
        let before = match k {
            0 => digest_words(&c.start_state_digest),
            _ => {
                let r = records.get(k as usize - 1);
                if u32_at(r, word::FLAGS) & FLAG_STATE_DIGEST == 0 {
                    return Err(arithmetic(s, "the record before carries no state digest"));
                }
                *digest_at(r, word::STATE_DIGEST)
            }
        };
        if !zs
            .state
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
        {
            return Err(arithmetic(
                s,
                "state tensors are not sorted by unique names",
            ));
        }
        // A pre-state that is the state the previous step's re-execution produced has that
        // state's digest, which is the record before's: comparing the parsed values costs a
        // fraction of hashing them again (at k = the step count, every step but the first). A
        // state that does not parse is still reported as not the record's when it is not.
        let parsed = Model::parse(&zs.state, settings.kind, s);
        let carried_over = match (&parsed, &carried) {
            (Ok(m), Some((prev, after))) => prev + 1 == s && m.same_state(after),
            _ => false,
        };
        if !carried_over && state_digests::<H>(&zs.state).0 != before {
            return Err(arithmetic(
                s,
                "the pre-step state is not the state of the record before",
            ));
        }
        let mut model = parsed.map_err(|e| arithmetic(s, e.0))?;

        let indices = sampler::batch_indices(perm, c.batch_size, k);
        let in_f = model.dims[0];
        let row_words = in_f + 2;
        if zs.samples.len() != indices.len() || zs.samples.iter().any(|x| x.row.len() != row_words)
        {
            return Err(dataset(
                s,
                "the samples are not the batch's (count or row length)",
            ));
        }
        let samples = leaf_frame.get_or_insert_with(|| SampleCheck::new(row_words));
        if samples.row_words() != row_words {
            *samples = SampleCheck::new(row_words);
        }
        let mut rows = Vec::with_capacity(indices.len());
        for (x, &i) in zs.samples.iter().zip(indices) {
            if !samples.check::<H>(i, c.dataset_len, x, &dataset_root) {
                return Err(dataset(
                    s,
                    "a sample's Merkle path does not lead to the dataset root",
                ));
            }
            let mut bytes = alloc::vec![0u8; 4 * row_words];
            store_words(&mut bytes, &x.row);
            rows.push(bytes);
        }
        let classes = model.dims[model.dims.len() - 1];
        let (x, labels) = canonical::quantize_batch(rows.iter().map(Vec::as_slice), in_f, classes)
            .map_err(|e| arithmetic(s, e.0))?;
        let lr = canonical::lr_coef(c.schedule.lr_at(s)).map_err(|e| arithmetic(s, e.0))?;
        let out = model
            .step(&settings, lr, &x, &labels, s + 1)
            .map_err(|e| arithmetic(s, e.0))?;

        let after = model.state_after(&zs.state, s + 1);
        let (state, params) = state_digests::<H>(&after);
        let r = records.get(k as usize);
        if u32_at(r, word::LOSS) != out.loss_bits {
            return Err(arithmetic(s, "the recomputed loss is not the record's"));
        }
        if u32_at(r, word::GRAD_NORM) != out.grad_norm_bits {
            return Err(arithmetic(
                s,
                "the recomputed grad norm is not the record's",
            ));
        }
        if !eq(&params, digest_at(r, word::PARAM_DIGEST)) {
            return Err(arithmetic(
                s,
                "the recomputed parameters are not the record's param digest",
            ));
        }
        if u32_at(r, word::FLAGS) & FLAG_STATE_DIGEST == 0
            || !eq(&state, digest_at(r, word::STATE_DIGEST))
        {
            return Err(arithmetic(
                s,
                "the recomputed state is not the record's state digest",
            ));
        }
        carried = Some((s, model));
    }
    Ok(())
}

/// Checks samples of one row length against a dataset root, reusing its buffers: the sample's
/// leaf (§4) from its row words in place, then its audit path.
pub struct SampleCheck {
    leaf: Frame,
    nodes: NodeHasher,
    row_words: usize,
}

impl SampleCheck {
    pub fn new(row_words: usize) -> Self {
        Self {
            leaf: Frame::new(tag::SAMPLE, 2 + row_words),
            nodes: NodeHasher::new(),
            row_words,
        }
    }

    pub fn row_words(&self) -> usize {
        self.row_words
    }

    /// True if `sample` is sample `index` of the `n`-sample dataset with root `root`.
    pub fn check<H: Sha256>(
        &mut self,
        index: u32,
        n: u64,
        sample: &ZkSample,
        root: &DigestWords,
    ) -> bool {
        let i = [index.to_le(), 0];
        let leaf = self.leaf.hash::<H>(&[&i, &sample.row]);
        match self
            .nodes
            .root_from_path::<H>(&leaf, index as u64, n, &sample.path)
        {
            Some(r) => eq(&r, root),
            None => false,
        }
    }
}

fn arithmetic_none(detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Arithmetic,
        step: None,
        detail,
    }
}

fn dataset(step: u64, detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Dataset,
        step: Some(step),
        detail,
    }
}

/// The state digest of `tensors` (sorted by unique names) and the param digest (the same over
/// the `param/` tensors), as words.
fn state_digests<H: Sha256>(tensors: &[StateTensor]) -> (DigestWords, DigestWords) {
    let digests: Vec<DigestWords> = tensors
        .iter()
        .map(|t| digest_words(&t.digest::<H>()))
        .collect();
    let params: Vec<DigestWords> = tensors
        .iter()
        .zip(&digests)
        .filter(|(t, _)| t.name.starts_with(PARAM_PREFIX))
        .map(|(_, d)| *d)
        .collect();
    let mut h = NodeHasher::new();
    (h.root::<H>(&digests), h.root::<H>(&params))
}

const PARAM_PREFIX: &str = "param/";

/// A canonical MLP's training state, read from its tensors (the names of the design: the
/// Sequential's Linear layers `param/{1,3,5...}.{weight,bias}`, the optimizer state per
/// parameter `optim/{j}/...` in parameter order, `step` and `manifest`).
struct Model {
    dims: Vec<usize>,
    params: Vec<Vec<i32>>,
    /// SGD's momentum buffers, or Adam's first moments.
    first: Vec<Vec<i32>>,
    /// Adam's second moments (empty for SGD).
    second: Vec<Vec<u64>>,
    kind: OptimizerKind,
    /// The `manifest` tensor's bytes, which a step leaves as they are.
    manifest: Vec<u8>,
    /// The `step` counter: the global step the state is before.
    step: u64,
    /// Where each of these is in the state it was parsed from.
    at: Slots,
}

/// Indices of a model's tensors in its state (sorted by name).
#[derive(Default)]
struct Slots {
    params: Vec<usize>,
    first: Vec<usize>,
    second: Vec<usize>,
    step: usize,
}

/// The index of the tensor `name` in `tensors` (sorted by name).
fn find(tensors: &[StateTensor], name: &str) -> Option<usize> {
    tensors
        .binary_search_by(|t| t.name.as_bytes().cmp(name.as_bytes()))
        .ok()
}

fn param_name(j: usize) -> String {
    let layer = 2 * (j / 2) + 1;
    match j % 2 {
        0 => format!("{PARAM_PREFIX}{layer}.weight"),
        _ => format!("{PARAM_PREFIX}{layer}.bias"),
    }
}

fn first_name(kind: OptimizerKind, j: usize) -> String {
    match kind {
        OptimizerKind::Sgd => format!("optim/{j}/momentum_buffer"),
        OptimizerKind::Adam => format!("optim/{j}/exp_avg"),
    }
}

fn second_name(j: usize) -> String {
    format!("optim/{j}/exp_avg_sq")
}

/// Records where a tensor is (in `slots`) and passes its bytes on.
fn take<'t>(slots: &mut Vec<usize>, (i, bytes): (usize, &'t [u8])) -> &'t [u8] {
    slots.push(i);
    bytes
}

/// The index and bytes of the tensor `name` with dtype `dtype`, shape `shape` and whole elements
/// of `size` bytes.
fn expect<'t>(
    tensors: &'t [StateTensor],
    name: &str,
    dtype: &str,
    shape: &[u64],
    size: usize,
) -> Result<(usize, &'t [u8]), CanonicalError> {
    let i = find(tensors, name).ok_or(CanonicalError("a canonical state tensor is missing"))?;
    let t = &tensors[i];
    let numel = shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
    if t.dtype != dtype
        || t.shape != shape
        || numel.and_then(|n| n.checked_mul(size as u64)) != Some(t.data.len() as u64)
    {
        return Err(CanonicalError(
            "a canonical state tensor has the wrong dtype or shape",
        ));
    }
    Ok((i, &t.data))
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Little-endian bytes of integers, written a whole element at a time (a byte iterator's
/// collect pushes byte by byte, several times the cost in the guest).
fn le_bytes<T: ToLe>(v: &[T]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; T::SIZE * v.len()];
    for (o, x) in out.chunks_exact_mut(T::SIZE).zip(v) {
        x.write_le(o);
    }
    out
}

trait ToLe {
    const SIZE: usize;
    fn write_le(&self, out: &mut [u8]);
}

impl ToLe for i32 {
    const SIZE: usize = 4;
    fn write_le(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
}

impl ToLe for u64 {
    const SIZE: usize = 8;
    fn write_le(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

impl Model {
    /// Reads the state before global step `step`; refuses missing, extra or misshapen tensors.
    fn parse(
        tensors: &[StateTensor],
        kind: OptimizerKind,
        step: u64,
    ) -> Result<Self, CanonicalError> {
        let layers = tensors
            .iter()
            .filter(|t| t.name.starts_with(PARAM_PREFIX))
            .count()
            / 2;
        if layers == 0 {
            return Err(CanonicalError("a canonical state has no parameters"));
        }
        let mut dims = Vec::with_capacity(layers + 1);
        let mut params = Vec::with_capacity(2 * layers);
        let mut at = Slots::default();
        for l in 0..layers {
            let (weight, bias) = (param_name(2 * l), param_name(2 * l + 1));
            let w = find(tensors, &weight)
                .ok_or(CanonicalError("a canonical state tensor is missing"))?;
            let [out_f, in_f] = tensors[w].shape[..] else {
                return Err(CanonicalError("a weight is not two-dimensional"));
            };
            if l == 0 {
                dims.push(
                    usize::try_from(in_f).map_err(|_| CanonicalError("a layer is too wide"))?,
                );
            } else if in_f as usize != dims[l] {
                return Err(CanonicalError(
                    "a layer's input width is not the previous output",
                ));
            }
            dims.push(usize::try_from(out_f).map_err(|_| CanonicalError("a layer is too wide"))?);
            let e = expect(tensors, &weight, "I32", &[out_f, in_f], 4)?;
            params.push(i32s(take(&mut at.params, e)));
            let e = expect(tensors, &bias, "I32", &[out_f], 4)?;
            params.push(i32s(take(&mut at.params, e)));
        }
        let shape = |j: usize| -> [u64; 2] {
            let l = j / 2;
            [dims[l + 1] as u64, dims[l] as u64]
        };
        let mut first = Vec::with_capacity(2 * layers);
        let mut second = Vec::new();
        for j in 0..2 * layers {
            let sh = shape(j);
            let sh: &[u64] = if j % 2 == 0 { &sh } else { &sh[..1] };
            let e = expect(tensors, &first_name(kind, j), "I32", sh, 4)?;
            first.push(i32s(take(&mut at.first, e)));
            if kind == OptimizerKind::Adam {
                let e = expect(tensors, &second_name(j), "U64", sh, 8)?;
                second.push(u64s(take(&mut at.second, e)));
            }
        }
        let (step_at, counter) = expect(tensors, "step", "I64", &[1], 8)?;
        at.step = step_at;
        if u64s(counter)[0] != step {
            return Err(CanonicalError("the state's step counter is not the step's"));
        }
        let manifest = expect(tensors, "manifest", "U8", &[32], 1)?.1.to_vec();
        let optim = if kind == OptimizerKind::Adam { 4 } else { 2 };
        if tensors.len() != 2 * layers + optim * layers + 2 {
            return Err(CanonicalError(
                "a canonical state has tensors besides the MLP's",
            ));
        }
        Ok(Self {
            dims,
            params,
            first,
            second,
            kind,
            manifest,
            step,
            at,
        })
    }

    /// True if `other`, after its step, is this state: a parsed state is its tensors (parse
    /// fixes every name, dtype and shape from the widths and the optimizer), so equal values
    /// are equal states. Compared word by word, without early exit: the guest's memcmp goes
    /// byte by byte.
    fn same_state(&self, other: &Model) -> bool {
        fn same<
            T: Copy
                + core::ops::BitXor<Output = T>
                + core::ops::BitOr<Output = T>
                + Default
                + PartialEq,
        >(
            a: &[Vec<T>],
            b: &[Vec<T>],
        ) -> bool {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.len() == y.len()
                        && x.iter()
                            .zip(y)
                            .fold(T::default(), |acc, (p, q)| acc | (*p ^ *q))
                            == T::default()
                })
        }
        self.kind == other.kind
            && self.dims == other.dims
            && self.step == other.step + 1
            && self.manifest == other.manifest
            && same(&self.params, &other.params)
            && same(&self.first, &other.first)
            && same(&self.second, &other.second)
    }

    fn step(
        &mut self,
        s: &CanonicalSettings,
        lr: Coef,
        x: &[i32],
        labels: &[u32],
        t: u64,
    ) -> Result<StepOut, CanonicalError> {
        let mut params: Vec<&mut [i32]> = self.params.iter_mut().map(Vec::as_mut_slice).collect();
        let mut first: Vec<&mut [i32]> = self.first.iter_mut().map(Vec::as_mut_slice).collect();
        let mut second: Vec<&mut [u64]> = self.second.iter_mut().map(Vec::as_mut_slice).collect();
        let opt = match self.kind {
            OptimizerKind::Sgd => OptState::Sgd {
                momentum: &mut first,
            },
            OptimizerKind::Adam => OptState::Adam {
                exp_avg: &mut first,
                exp_avg_sq: &mut second,
            },
        };
        canonical::mlp_step(&self.dims, &mut params, opt, s, lr, x, labels, t)
    }

    /// The state after the step: `before` (the state this model was parsed from) with this
    /// model's tensors and the counter `step`.
    fn state_after(&self, before: &[StateTensor], step: u64) -> Vec<StateTensor> {
        let mut data: Vec<Option<Vec<u8>>> = alloc::vec![None; before.len()];
        for (j, p) in self.params.iter().enumerate() {
            data[self.at.params[j]] = Some(le_bytes(p));
            data[self.at.first[j]] = Some(le_bytes(&self.first[j]));
        }
        for (j, v) in self.second.iter().enumerate() {
            data[self.at.second[j]] = Some(le_bytes(v));
        }
        data[self.at.step] = Some(step.to_le_bytes().to_vec());
        // Only what the step leaves alone (the manifest digest) is copied from before.
        before
            .iter()
            .zip(data)
            .map(|(t, d)| StateTensor {
                name: t.name.clone(),
                dtype: t.dtype.clone(),
                shape: t.shape.clone(),
                data: d.unwrap_or_else(|| t.data.clone()),
            })
            .collect()
    }
}
