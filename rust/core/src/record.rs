//! The step record: one fixed-size, little-endian binary record per training step. Its fields are
//! [`RECORD_FIELDS`] (PROTOCOL.md §3 is the prose, checked against the table by
//! `tests/test_vectors.py`); the state digest is zero unless flag bit 0 says one was taken.
//!
//! `record hash = H(RECORD, record bytes)`.
//!
//! Every field is 4-byte aligned, so the epoch check reads a record as 56 words ([`RecordWords`],
//! memory order as in [`crate::hash`]) and compares fields a word at a time, without decoding.

use alloc::vec::Vec;

use crate::fields::{covers, Field};
use crate::hash::{
    digest_bytes, eq, load_words, store_words, tag, Block, Digest, DigestWords, Sha256, IV,
};
use crate::PROTOCOL_VERSION;

pub const RECORD_LEN: usize = 224;
pub const RECORD_WORDS: usize = RECORD_LEN / 4;
pub const RUN_ID_LEN: usize = 32;
/// Flag bit: the record carries the full state digest.
pub const FLAG_STATE_DIGEST: u32 = 1;

/// A record's bytes as words in memory order.
pub type RecordWords = [u32; RECORD_WORDS];

/// Writes the record's table once: [`RECORD_FIELDS`] in encoding order, each field's bytes as a
/// constant range in [`field`] and its word offset in [`word`], for reading [`RecordWords`].
macro_rules! record_fields {
    ($($konst:ident = $name:literal, $size:expr;)*) => {
        /// The record's fields in encoding order: name, offset and size in bytes.
        pub const RECORD_FIELDS: &[Field] = &Field::table([$(($name, $size)),*]);

        const _: () = assert!(covers(RECORD_FIELDS, RECORD_LEN, 4));

        /// Each field's bytes in a record.
        pub mod field {
            use core::ops::Range;

            use super::RECORD_FIELDS;

            #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
            enum Index {
                $($konst),*
            }

            $(pub const $konst: Range<usize> = RECORD_FIELDS[Index::$konst as usize].range();)*
        }

        /// Word offsets of the fields, for reading [`RecordWords`].
        pub mod word {
            $(pub const $konst: usize = super::field::$konst.start / 4;)*
        }
    };
}

record_fields! {
    VERSION = "version", 4;
    FLAGS = "flags", 4;
    RUN_ID = "run_id", RUN_ID_LEN;
    EPOCH = "epoch", 8;
    STEP = "step", 8;
    PREV_RECORD_HASH = "prev_record_hash", 32;
    BATCH_DIGEST = "batch_digest", 32;
    HPARAMS_DIGEST = "hparams_digest", 32;
    LOSS = "loss", 4;
    GRAD_NORM = "grad_norm", 4;
    PARAM_DIGEST = "param_digest", 32;
    STATE_DIGEST = "state_digest", 32;
}

pub fn to_words(bytes: &[u8; RECORD_LEN]) -> RecordWords {
    let mut out = [0u32; RECORD_WORDS];
    load_words(&mut out, bytes);
    out
}

pub fn from_words(words: &RecordWords) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    store_words(&mut out, words);
    out
}

/// The little-endian u32 field at word `i`.
pub fn u32_at(r: &RecordWords, i: usize) -> u32 {
    u32::from_le(r[i])
}

/// The little-endian u64 field at words `i, i + 1`.
pub fn u64_at(r: &RecordWords, i: usize) -> u64 {
    u32_at(r, i) as u64 | (u32_at(r, i + 1) as u64) << 32
}

/// The 32-byte field at words `i..i + 8`.
pub fn digest_at(r: &RecordWords, i: usize) -> &DigestWords {
    r[i..i + 8].try_into().unwrap()
}

/// The encoding rules that need no context: version, known flags, and a zero state digest unless
/// the flag says one was taken. (The run id's spelling is checked by [`StepRecord::decode`]; the
/// epoch check compares it with the claim's, which was checked.)
pub fn check_words(r: &RecordWords) -> Result<(), DecodeError> {
    let version = u32_at(r, word::VERSION);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(version));
    }
    let flags = u32_at(r, word::FLAGS);
    if flags & !FLAG_STATE_DIGEST != 0 {
        return Err(DecodeError::Flags(flags));
    }
    if flags & FLAG_STATE_DIGEST == 0 && !eq(digest_at(r, word::STATE_DIGEST), &[0; 8]) {
        return Err(DecodeError::NonCanonical);
    }
    Ok(())
}

/// Words of `tag || 0x00` before the record in its hash message (the tag is 19 bytes).
const RECORD_AT: usize = (tag::RECORD.len() + 1) / 4;
const _: () =
    assert!((tag::RECORD.len() + 1).is_multiple_of(4) && RECORD_AT + RECORD_WORDS + 3 == 64);

/// One record inside its hash message, `RECORD || 0x00 || record || SHA-256 padding`: exactly four
/// blocks, hashed where it lies.
pub type Slot = [Block; 4];
pub const SLOT_LEN: usize = 256;

/// An epoch's records as the guest input carries them: each in its [`Slot`], so the guest hashes
/// a record with one call of the compression function and no copy. Only the record words can be
/// set; the rest of every slot is the fixed prefix and padding, checked when read.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Records {
    slots: Vec<Slot>,
}

/// The fixed part of every slot: the tag, its NUL, and the padding of a 244-byte message.
const TEMPLATE: Slot = {
    let mut bytes = [0u8; SLOT_LEN];
    let t = tag::RECORD.as_bytes();
    let mut i = 0;
    while i < t.len() {
        bytes[i] = t[i];
        i += 1;
    }
    let len = 4 * RECORD_AT + RECORD_LEN;
    bytes[len] = 0x80;
    let bits = ((len * 8) as u64).to_be_bytes();
    let mut i = 0;
    while i < 8 {
        bytes[SLOT_LEN - 8 + i] = bits[i];
        i += 1;
    }
    let mut slot = [[0u32; 16]; 4];
    let mut w = 0;
    while w < 64 {
        let b = [
            bytes[4 * w],
            bytes[4 * w + 1],
            bytes[4 * w + 2],
            bytes[4 * w + 3],
        ];
        slot[w / 16][w % 16] = u32::from_ne_bytes(b);
        w += 1;
    }
    slot
};

impl Records {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn push(&mut self, r: &RecordWords) {
        let mut slot = TEMPLATE;
        slot.as_flattened_mut()[RECORD_AT..RECORD_AT + RECORD_WORDS].copy_from_slice(r);
        self.slots.push(slot);
    }

    pub fn pop(&mut self) -> Option<RecordWords> {
        let slot = self.slots.pop()?;
        Some(*Self::record_of(&slot))
    }

    fn record_of(slot: &Slot) -> &RecordWords {
        slot.as_flattened()[RECORD_AT..RECORD_AT + RECORD_WORDS]
            .try_into()
            .unwrap()
    }

    pub fn get(&self, k: usize) -> &RecordWords {
        Self::record_of(&self.slots[k])
    }

    pub fn get_mut(&mut self, k: usize) -> &mut RecordWords {
        (&mut self.slots[k].as_flattened_mut()[RECORD_AT..RECORD_AT + RECORD_WORDS])
            .try_into()
            .unwrap()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RecordWords> {
        self.slots.iter().map(Self::record_of)
    }

    /// `H(RECORD, record k)`.
    pub fn hash<H: Sha256>(&self, k: usize) -> DigestWords {
        let mut state = IV;
        H::compress(&mut state, &self.slots[k]);
        state
    }

    /// The slots as words, for encoding.
    pub fn words(&self) -> &[u32] {
        self.slots.as_flattened().as_flattened()
    }

    /// Reads `count` slots with `read` (which fills its argument or fails) and checks that each
    /// holds the fixed prefix and padding; returns the index of the first slot that does not.
    pub fn read<E>(
        count: usize,
        mut read: impl FnMut(&mut [u32]) -> Result<(), E>,
    ) -> Result<Result<Self, usize>, E> {
        let mut slots = alloc::vec![[[0u32; 16]; 4]; count];
        read(slots.as_flattened_mut().as_flattened_mut())?;
        let t = TEMPLATE;
        let t = t.as_flattened();
        for (k, slot) in slots.iter().enumerate() {
            let w = slot.as_flattened();
            let mut diff = 0;
            for i in (0..RECORD_AT).chain(RECORD_AT + RECORD_WORDS..64) {
                diff |= w[i] ^ t[i];
            }
            if diff != 0 {
                return Ok(Err(k));
            }
        }
        Ok(Ok(Self { slots }))
    }
}

impl FromIterator<RecordWords> for Records {
    fn from_iter<I: IntoIterator<Item = RecordWords>>(iter: I) -> Self {
        let mut out = Self::new();
        for r in iter {
            out.push(&r);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub run_id: [u8; RUN_ID_LEN],
    pub epoch: u64,
    pub step: u64,
    pub prev_record_hash: Digest,
    pub batch_digest: Digest,
    pub hparams_digest: Digest,
    pub loss_bits: u32,
    pub grad_norm_bits: u32,
    pub param_digest: Digest,
    /// Taken at checkpoint steps only; the encoding's flag bit 0 says whether it is present.
    pub state_digest: Option<Digest>,
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
            Self::RunId => write!(
                f,
                "run id is not 1-32 characters of [A-Za-z0-9._-], other than . and .."
            ),
        }
    }
}

/// A run id is 1 to 32 characters of `[A-Za-z0-9._-]`, NUL-padded to 32 bytes. `.` and `..` are
/// not run ids: a run lives under the store key `runs/<run_id>/`, where they would name the
/// runs folder itself or the store's parent.
pub fn encode_run_id(run_id: &str) -> Result<[u8; RUN_ID_LEN], DecodeError> {
    let b = run_id.as_bytes();
    let ok = !b.is_empty()
        && b != b"."
        && b != b".."
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
    fn flags(&self) -> u32 {
        FLAG_STATE_DIGEST * u32::from(self.state_digest.is_some())
    }

    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut w = Writer::<RECORD_LEN>::new();
        w.put(field::VERSION, &PROTOCOL_VERSION.to_le_bytes());
        w.put(field::FLAGS, &self.flags().to_le_bytes());
        w.put(field::RUN_ID, &self.run_id);
        w.put(field::EPOCH, &self.epoch.to_le_bytes());
        w.put(field::STEP, &self.step.to_le_bytes());
        w.put(field::PREV_RECORD_HASH, &self.prev_record_hash);
        w.put(field::BATCH_DIGEST, &self.batch_digest);
        w.put(field::HPARAMS_DIGEST, &self.hparams_digest);
        w.put(field::LOSS, &self.loss_bits.to_le_bytes());
        w.put(field::GRAD_NORM, &self.grad_norm_bits.to_le_bytes());
        w.put(field::PARAM_DIGEST, &self.param_digest);
        w.put(field::STATE_DIGEST, &self.state_digest.unwrap_or([0; 32]));
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != RECORD_LEN {
            return Err(DecodeError::Length {
                expected: RECORD_LEN,
                actual: bytes.len(),
            });
        }
        let r = to_words(bytes.try_into().unwrap());
        check_words(&r)?;
        let digest = |i| digest_bytes(digest_at(&r, i));
        let rec = StepRecord {
            run_id: digest(word::RUN_ID),
            epoch: u64_at(&r, word::EPOCH),
            step: u64_at(&r, word::STEP),
            prev_record_hash: digest(word::PREV_RECORD_HASH),
            batch_digest: digest(word::BATCH_DIGEST),
            hparams_digest: digest(word::HPARAMS_DIGEST),
            loss_bits: u32_at(&r, word::LOSS),
            grad_norm_bits: u32_at(&r, word::GRAD_NORM),
            param_digest: digest(word::PARAM_DIGEST),
            // The flag says whether the field holds one (`check_words` checked the rest).
            state_digest: Some(digest(word::STATE_DIGEST))
                .filter(|_| u32_at(&r, word::FLAGS) & FLAG_STATE_DIGEST != 0),
        };
        decode_run_id(&rec.run_id)?;
        Ok(rec)
    }

    pub fn hash<H: Sha256>(&self) -> Digest {
        let mut one = Records::new();
        one.push(&to_words(&self.encode()));
        crate::hash::digest_bytes(&one.hash::<H>(0))
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
    /// Writes a field at its place, which is where the previous field ended.
    pub(crate) fn put(&mut self, at: core::ops::Range<usize>, b: &[u8]) {
        debug_assert_eq!(self.pos, at.start, "fields are written in order");
        self.buf[at.clone()].copy_from_slice(b);
        self.pos = at.end;
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
