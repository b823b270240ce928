//! The step record: one fixed-size, little-endian binary record per training step.
//!
//! | offset | size | field            |
//! |-------:|-----:|------------------|
//! | 0      | 4    | version (u32 = 1)|
//! | 4      | 4    | flags (u32; bit 0: state digest present) |
//! | 8      | 32   | run id (ASCII, NUL-padded) |
//! | 40     | 8    | epoch (u64)      |
//! | 48     | 8    | global step (u64)|
//! | 56     | 32   | previous record hash |
//! | 88     | 32   | batch digest     |
//! | 120    | 32   | hyperparameter digest |
//! | 152    | 4    | loss (f32 bits)  |
//! | 156    | 4    | grad norm (f32 bits) |
//! | 160    | 32   | param digest (post-step) |
//! | 192    | 32   | state digest (post-step; zero unless flag bit 0) |
//!
//! `record hash = H(RECORD, record bytes)`.

use crate::hash::{tag, Digest, Sha256};
use crate::PROTOCOL_VERSION;

pub const RECORD_LEN: usize = 224;
pub const RUN_ID_LEN: usize = 32;
/// Flag bit: the record carries the full state digest.
pub const FLAG_STATE_DIGEST: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub flags: u32,
    pub run_id: [u8; RUN_ID_LEN],
    pub epoch: u64,
    pub step: u64,
    pub prev_record_hash: Digest,
    pub batch_digest: Digest,
    pub hparams_digest: Digest,
    pub loss_bits: u32,
    pub grad_norm_bits: u32,
    pub param_digest: Digest,
    pub state_digest: Digest,
}

/// Why bytes are not a valid encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Length {
        expected: usize,
        actual: usize,
    },
    Version(u32),
    Flags(u32),
    /// A state digest is present although the flag says none was taken.
    NonCanonical,
    RunId,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length { expected, actual } => {
                write!(f, "expected {expected} bytes, got {actual}")
            }
            Self::Version(v) => write!(f, "unsupported protocol version {v}"),
            Self::Flags(v) => write!(f, "unknown flag bits {v:#x}"),
            Self::NonCanonical => write!(f, "state digest set without its flag"),
            Self::RunId => write!(f, "run id is not 1-32 characters of [A-Za-z0-9._-]"),
        }
    }
}

/// A run id is 1 to 32 characters of `[A-Za-z0-9._-]`, NUL-padded to 32 bytes.
pub fn encode_run_id(run_id: &str) -> Result<[u8; RUN_ID_LEN], DecodeError> {
    let b = run_id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= RUN_ID_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if !ok {
        return Err(DecodeError::RunId);
    }
    let mut out = [0u8; RUN_ID_LEN];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

pub fn decode_run_id(raw: &[u8; RUN_ID_LEN]) -> Result<&str, DecodeError> {
    let len = raw.iter().position(|&c| c == 0).unwrap_or(RUN_ID_LEN);
    let s = core::str::from_utf8(&raw[..len]).map_err(|_| DecodeError::RunId)?;
    if raw[len..].iter().any(|&c| c != 0) {
        return Err(DecodeError::RunId);
    }
    encode_run_id(s)?;
    Ok(s)
}

impl StepRecord {
    pub fn has_state_digest(&self) -> bool {
        self.flags & FLAG_STATE_DIGEST != 0
    }

    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut w = Writer::<RECORD_LEN>::new();
        w.u32(PROTOCOL_VERSION);
        w.u32(self.flags);
        w.bytes(&self.run_id);
        w.u64(self.epoch);
        w.u64(self.step);
        w.bytes(&self.prev_record_hash);
        w.bytes(&self.batch_digest);
        w.bytes(&self.hparams_digest);
        w.u32(self.loss_bits);
        w.u32(self.grad_norm_bits);
        w.bytes(&self.param_digest);
        w.bytes(&self.state_digest);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, RECORD_LEN)?;
        let version = r.u32();
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = r.u32();
        if flags & !FLAG_STATE_DIGEST != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let rec = StepRecord {
            flags,
            run_id: r.array(),
            epoch: r.u64(),
            step: r.u64(),
            prev_record_hash: r.array(),
            batch_digest: r.array(),
            hparams_digest: r.array(),
            loss_bits: r.u32(),
            grad_norm_bits: r.u32(),
            param_digest: r.array(),
            state_digest: r.array(),
        };
        decode_run_id(&rec.run_id)?;
        if !rec.has_state_digest() && rec.state_digest != [0; 32] {
            return Err(DecodeError::NonCanonical);
        }
        Ok(rec)
    }

    pub fn hash<H: Sha256>(&self) -> Digest {
        H::tagged(tag::RECORD, &[&self.encode()])
    }
}

/// The link that the first record of epoch 0 carries as its previous record hash.
pub fn genesis_hash<H: Sha256>(
    run_id: &[u8; RUN_ID_LEN],
    start_state_digest: &Digest,
    dataset_root: &Digest,
    sampler_seed: u64,
) -> Digest {
    H::tagged(
        tag::GENESIS,
        &[
            run_id,
            start_state_digest,
            dataset_root,
            &sampler_seed.to_le_bytes(),
        ],
    )
}

pub(crate) struct Writer<const N: usize> {
    buf: [u8; N],
    pos: usize,
}

impl<const N: usize> Writer<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            pos: 0,
        }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn finish(self) -> [u8; N] {
        assert_eq!(self.pos, N, "encoding wrote the wrong number of bytes");
        self.buf
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], expected: usize) -> Result<Self, DecodeError> {
        if buf.len() != expected {
            return Err(DecodeError::Length {
                expected,
                actual: buf.len(),
            });
        }
        Ok(Self { buf, pos: 0 })
    }
    pub(crate) fn array<const K: usize>(&mut self) -> [u8; K] {
        let mut out = [0u8; K];
        out.copy_from_slice(&self.buf[self.pos..self.pos + K]);
        self.pos += K;
        out
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}
