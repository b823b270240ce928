//! The epoch check: the statement the guest proves, and that any verifier can run natively.
//!
//! Guest input (`EpochInput`), little-endian: claim (384 bytes) || has_prev u32 (0 or 1) ||
//! previous epoch's claim (384 bytes, only if has_prev) || record count u32 || record slots (256
//! bytes each: the record inside its hash message, see [`Records`]) || for a canonical epoch
//! (guarantees 31) the canonical section ([`CanonicalSection`]).

use alloc::vec::Vec;

use crate::claim::{ClaimDecodeError, EpochClaim, Guarantees, CLAIM_LEN};
use crate::hash::{digest_words, eq, load_words, store_words, DigestWords, Sha256};
use crate::merkle;
use crate::record::{
    check_words, digest_at, genesis_hash, u32_at, u64_at, word, DecodeError, Records,
    FLAG_STATE_DIGEST, SLOT_LEN,
};
use crate::sampler::{self, BatchHasher};
use crate::schedule::hparams_digest;
use crate::zk::{check_arithmetic, CanonicalSection};

#[derive(Clone, Debug, PartialEq)]
pub struct EpochInput {
    pub claim: EpochClaim,
    /// The previous epoch's claim (its receipt's journal); `None` for epoch 0.
    pub prev: Option<EpochClaim>,
    /// The epoch's records, in step order.
    pub records: Records,
    /// What the guest re-executes: present exactly when the claim has guarantee `arithmetic`.
    pub canonical: Option<CanonicalSection>,
}

/// Which rule failed. The names are the check names `veritrain verify` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not a valid encoding.
    Encoding,
    /// The claim asks for guarantees this guest does not give.
    Guarantees,
    /// Dataset length or batch size out of range.
    Parameters,
    /// First step or step count disagree with dataset length and batch size.
    StepRange,
    /// Epoch 0 does not start from the genesis link, or a later epoch lacks its predecessor.
    Genesis,
    /// The previous epoch's claim does not continue into this one.
    Lineage,
    /// A record belongs to another run or epoch, or is out of step order.
    RecordPlace,
    /// A record's previous record hash is not the hash of the record before it.
    Chain,
    /// A batch's indices are not the sampler's output.
    Batch,
    /// A hyperparameter digest does not follow the schedule.
    Hparams,
    /// The last record carries no state digest, or not the claimed end state digest.
    EndState,
    /// The last record hash or the records root differ from the claim.
    RecordsRoot,
    /// A re-executed step does not give its record (or its input is not the step's).
    Arithmetic,
    /// A re-executed step's sample is not under the dataset root.
    Dataset,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Encoding => "encoding",
            Self::Guarantees => "guarantees",
            Self::Parameters => "parameters",
            Self::StepRange => "step_range",
            Self::Genesis => "genesis",
            Self::Lineage => "lineage",
            Self::RecordPlace => "record_place",
            Self::Chain => "chain",
            Self::Batch => "batch",
            Self::Hparams => "hparams",
            Self::EndState => "end_state",
            Self::RecordsRoot => "records_root",
            Self::Arithmetic => "arithmetic",
            Self::Dataset => "dataset",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    pub kind: ErrorKind,
    /// The global step of the offending record, where there is one.
    pub step: Option<u64>,
    pub detail: &'static str,
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)?;
        if let Some(s) = self.step {
            write!(f, " (step {s})")?;
        }
        Ok(())
    }
}

fn fail<T>(kind: ErrorKind, step: Option<u64>, detail: &'static str) -> Result<T, CheckError> {
    Err(CheckError { kind, step, detail })
}

impl From<ClaimDecodeError> for CheckError {
    fn from(_: ClaimDecodeError) -> Self {
        CheckError {
            kind: ErrorKind::Encoding,
            step: None,
            detail: "claim is not a valid encoding",
        }
    }
}

impl EpochInput {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIM_LEN * 2 + 8 + SLOT_LEN * self.records.len());
        out.extend_from_slice(&self.claim.encode());
        match &self.prev {
            Some(p) => {
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&p.encode());
            }
            None => out.extend_from_slice(&0u32.to_le_bytes()),
        }
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for w in self.records.words() {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        if let Some(c) = &self.canonical {
            c.encode_into(&mut out);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CheckError> {
        Self::read_from(&mut ByteStream { bytes, pos: 0 }, bytes.len() / 4)
    }

    /// Decodes an input that ends after the records even if the claim is canonical (for
    /// [`check_records`]).
    pub fn decode_records(bytes: &[u8]) -> Result<Self, CheckError> {
        let stream = &mut ByteStream { bytes, pos: 0 };
        let input = Self::read(bytes.len() / 4, false, |w| match stream.read_words(w) {
            true => Ok(()),
            false => Err(encoding("input is truncated")),
        })?;
        if !stream.at_end() {
            return Err(encoding("trailing bytes after the records"));
        }
        Ok(input)
    }

    /// Reads the whole input from `stream` and checks that it ends where the records do; the
    /// guest reads its input this way and [`decode`](Self::decode) reads bytes this way, so both
    /// accept exactly the same inputs. A length that would make the input longer than
    /// `max_words` words is refused before anything is allocated for it.
    pub fn read_from(stream: &mut impl WordStream, max_words: usize) -> Result<Self, CheckError> {
        let input = Self::read(max_words, true, |words| match stream.read_words(words) {
            true => Ok(()),
            false => Err(encoding("input is truncated")),
        })?;
        if !stream.at_end() {
            return Err(encoding("trailing bytes after the records"));
        }
        Ok(input)
    }

    /// Reads the encoding from a stream of words: every part is a whole number of words, and the
    /// records land word-aligned with no copy. `read` fills its argument or fails.
    fn read(
        max_words: usize,
        with_section: bool,
        mut read: impl FnMut(&mut [u32]) -> Result<(), CheckError>,
    ) -> Result<Self, CheckError> {
        let read_claim = |read: &mut dyn FnMut(&mut [u32]) -> Result<(), CheckError>| {
            let mut words = [0u32; CLAIM_LEN / 4];
            read(&mut words)?;
            let mut bytes = [0u8; CLAIM_LEN];
            store_words(&mut bytes, &words);
            Ok::<_, CheckError>(EpochClaim::decode(&bytes)?)
        };
        let read_u32 = |read: &mut dyn FnMut(&mut [u32]) -> Result<(), CheckError>| {
            let mut w = [0u32];
            read(&mut w)?;
            Ok::<_, CheckError>(u32::from_le(w[0]))
        };
        let claim = read_claim(&mut read)?;
        let prev = match read_u32(&mut read)? {
            0 => None,
            1 => Some(read_claim(&mut read)?),
            _ => return Err(encoding("has_prev must be 0 or 1")),
        };
        let count = read_u32(&mut read)? as usize;
        if count > max_words / (SLOT_LEN / 4) {
            return Err(encoding("input is truncated"));
        }
        let records = Records::read(count, &mut read)?.map_err(|_k| {
            encoding("a record slot does not hold the record's hash prefix and padding")
        })?;
        let canonical = match claim.guarantees & Guarantees::ARITHMETIC {
            g if g == 0 || !with_section => None,
            _ => Some(CanonicalSection::read(max_words, &mut read)?),
        };
        Ok(EpochInput {
            claim,
            prev,
            records,
            canonical,
        })
    }
}

/// Where the input comes from, a whole number of words at a time (the guest's stdin, or bytes).
pub trait WordStream {
    /// Fills `words` (little-endian words of the encoding) from the stream; false if it ends
    /// first.
    fn read_words(&mut self, words: &mut [u32]) -> bool;
    /// True if the stream has nothing left.
    fn at_end(&mut self) -> bool;
}

struct ByteStream<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl WordStream for ByteStream<'_> {
    fn read_words(&mut self, words: &mut [u32]) -> bool {
        let n = 4 * words.len();
        match self.bytes.get(self.pos..self.pos + n) {
            Some(src) => {
                load_words(words, src);
                self.pos += n;
                true
            }
            None => false,
        }
    }

    fn at_end(&mut self) -> bool {
        self.pos == self.bytes.len()
    }
}

fn encoding(detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Encoding,
        step: None,
        detail,
    }
}

/// Checks that `claim` continues the previous epoch's claim `prev` (already proven).
pub fn check_link(prev: &EpochClaim, claim: &EpochClaim) -> Result<(), CheckError> {
    let same_run = prev.run_id == claim.run_id
        && prev.dataset_root == claim.dataset_root
        && prev.dataset_len == claim.dataset_len
        && prev.sampler_seed == claim.sampler_seed
        && prev.batch_size == claim.batch_size
        && prev.optimizer_digest == claim.optimizer_digest
        && prev.schedule == claim.schedule
        && prev.image_id == claim.image_id
        && prev.guarantees == claim.guarantees;
    if !same_run {
        return fail(
            ErrorKind::Lineage,
            None,
            "previous epoch belongs to another run or setup",
        );
    }
    if prev.epoch.checked_add(1) != Some(claim.epoch)
        || prev.first_step.checked_add(prev.step_count) != Some(claim.first_step)
    {
        return fail(
            ErrorKind::Lineage,
            None,
            "previous epoch is not the one right before",
        );
    }
    if prev.last_record_hash != claim.prev_record_hash {
        return fail(
            ErrorKind::Lineage,
            None,
            "epoch does not link to the previous last record",
        );
    }
    if prev.end_state_digest != claim.start_state_digest {
        return fail(
            ErrorKind::Lineage,
            None,
            "start state is not the previous end state",
        );
    }
    Ok(())
}

/// Checks every rule of one epoch. On success the claim is what the receipt's journal carries.
pub fn check_epoch<H: Sha256>(input: &EpochInput) -> Result<(), CheckError> {
    check::<H>(input, false)
}

/// Checks every rule but the re-execution of a canonical epoch's chosen steps (`arithmetic`,
/// `dataset`), so `input.canonical` may be absent: what the trainer and `veritrain verify` check
/// of the records alone, without the training states.
pub fn check_records<H: Sha256>(input: &EpochInput) -> Result<(), CheckError> {
    check::<H>(input, true)
}

fn check<H: Sha256>(input: &EpochInput, records_only: bool) -> Result<(), CheckError> {
    let c = &input.claim;
    let canonical = Guarantees::CANONICAL_MODE;
    if c.guarantees != Guarantees::TORCH_MODE && c.guarantees != canonical {
        return fail(
            ErrorKind::Guarantees,
            None,
            "guarantees must be the torch-mode set (15) or the canonical one (31)",
        );
    }
    if !records_only && input.canonical.is_some() != (c.guarantees == canonical) {
        return fail(
            ErrorKind::Encoding,
            None,
            "exactly canonical epochs carry the re-executed steps",
        );
    }
    // batch_size <= dataset_len <= u32::MAX keeps every index computation inside the guest's
    // 32-bit usize, so host and guest cut the same batches.
    if c.dataset_len == 0
        || c.dataset_len > u32::MAX as u64
        || c.batch_size == 0
        || c.batch_size > c.dataset_len
    {
        return fail(
            ErrorKind::Parameters,
            None,
            "dataset length or batch size out of range",
        );
    }
    let spe = sampler::steps_per_epoch(c.dataset_len, c.batch_size);
    if c.epoch.checked_mul(spe) != Some(c.first_step) {
        return fail(
            ErrorKind::StepRange,
            None,
            "first step is not epoch * steps per epoch",
        );
    }
    if c.step_count != spe || input.records.len() as u64 != spe {
        return fail(
            ErrorKind::StepRange,
            None,
            "an epoch must have exactly steps-per-epoch records",
        );
    }
    match (&input.prev, c.epoch) {
        (None, 0) => {
            let g = genesis_hash::<H>(
                &c.run_id,
                &c.start_state_digest,
                &c.dataset_root,
                c.sampler_seed,
            );
            if g != c.prev_record_hash {
                return fail(
                    ErrorKind::Genesis,
                    None,
                    "epoch 0 must link to the genesis hash",
                );
            }
        }
        (Some(prev), e) if e > 0 => check_link(prev, c)?,
        _ => {
            return fail(
                ErrorKind::Genesis,
                None,
                "exactly epochs after 0 carry a previous claim",
            )
        }
    }

    let perm = sampler::epoch_permutation::<H>(c.sampler_seed, c.epoch, c.dataset_len as u32);
    // Everything compared per record, as words: the loop reads fields in place and hashes with
    // reused buffers, because it runs once per training step in the guest.
    let run_id = digest_words(&c.run_id);
    let mut prev_hash = digest_words(&c.prev_record_hash);
    let mut batch_hasher = BatchHasher::new(c.batch_size as usize);
    let mut hashes: Vec<DigestWords> = Vec::with_capacity(input.records.len());
    let mut hparams = [0u32; 8];
    let mut hparams_from = u64::MAX; // steps [hparams_from, hparams_until) share `hparams`
    let mut hparams_until = 0;
    let mut hparams_lr = None; // the rate `hparams` digests (bits)
    for k in 0..input.records.len() {
        let r = input.records.get(k);
        let step = c.first_step + k as u64;
        check_words(r).map_err(|_: DecodeError| CheckError {
            kind: ErrorKind::Encoding,
            step: Some(step),
            detail: "record is not a valid encoding",
        })?;
        if !eq(digest_at(r, word::RUN_ID), &run_id)
            || u64_at(r, word::EPOCH) != c.epoch
            || u64_at(r, word::STEP) != step
        {
            return fail(
                ErrorKind::RecordPlace,
                Some(step),
                "record has the wrong run, epoch or step",
            );
        }
        if !eq(digest_at(r, word::PREV_RECORD_HASH), &prev_hash) {
            return fail(
                ErrorKind::Chain,
                Some(step),
                "previous record hash does not match",
            );
        }
        let indices = sampler::batch_indices(&perm, c.batch_size, k as u64);
        let batch = batch_hasher.digest::<H>(indices);
        if !eq(&batch, digest_at(r, word::BATCH_DIGEST)) {
            return fail(
                ErrorKind::Batch,
                Some(step),
                "batch is not the sampler's output",
            );
        }
        // Rates change rarely: recompute the rate only where the schedule may change it, and
        // the digest only where the rate did.
        if !(hparams_from..hparams_until).contains(&step) {
            let lr = c.schedule.lr_at(step);
            if hparams_lr != Some(lr.to_bits()) {
                hparams = digest_words(&hparams_digest::<H>(lr, &c.optimizer_digest));
                hparams_lr = Some(lr.to_bits());
            }
            hparams_from = step;
            hparams_until = c.schedule.constant_until(step);
        }
        if !eq(digest_at(r, word::HPARAMS_DIGEST), &hparams) {
            return fail(
                ErrorKind::Hparams,
                Some(step),
                "hyperparameters do not follow the schedule",
            );
        }
        prev_hash = input.records.hash::<H>(k);
        hashes.push(prev_hash);
    }
    let last = input.records.get(input.records.len() - 1);
    let last_step = c.first_step + c.step_count - 1;
    if u32_at(last, word::FLAGS) & FLAG_STATE_DIGEST == 0
        || *digest_at(last, word::STATE_DIGEST) != digest_words(&c.end_state_digest)
    {
        return fail(
            ErrorKind::EndState,
            Some(last_step),
            "last record's state digest is not the end state",
        );
    }
    if prev_hash != digest_words(&c.last_record_hash) {
        return fail(
            ErrorKind::RecordsRoot,
            None,
            "last record hash does not match the claim",
        );
    }
    if merkle::NodeHasher::new().root::<H>(&hashes) != digest_words(&c.records_root) {
        return fail(
            ErrorKind::RecordsRoot,
            None,
            "records root does not match the claim",
        );
    }
    match &input.canonical {
        Some(section) if !records_only => check_arithmetic::<H>(c, &input.records, &perm, section),
        _ => Ok(()),
    }
}
