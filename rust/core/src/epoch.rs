//! The epoch check: the statement the guest proves, and that any verifier can run natively.
//!
//! Guest input (`EpochInput`), little-endian: claim (384 bytes) || has_prev u32 (0 or 1) ||
//! previous epoch's claim (384 bytes, only if has_prev) || record count u32 || records (224 each).

use alloc::vec::Vec;

use crate::claim::{ClaimDecodeError, EpochClaim, Guarantees, CLAIM_LEN};
use crate::hash::{tag, Digest, Sha256};
use crate::merkle;
use crate::record::{genesis_hash, DecodeError, StepRecord, RECORD_LEN};
use crate::sampler;
use crate::schedule::hparams_digest;

#[derive(Clone, Debug, PartialEq)]
pub struct EpochInput {
    pub claim: EpochClaim,
    /// The previous epoch's claim (its receipt's journal); `None` for epoch 0.
    pub prev: Option<EpochClaim>,
    /// The epoch's records, in step order, as raw bytes (224 each).
    pub records: Vec<[u8; RECORD_LEN]>,
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
        let mut out = Vec::with_capacity(CLAIM_LEN * 2 + 8 + RECORD_LEN * self.records.len());
        out.extend_from_slice(&self.claim.encode());
        match &self.prev {
            Some(p) => {
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&p.encode());
            }
            None => out.extend_from_slice(&0u32.to_le_bytes()),
        }
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for r in &self.records {
            out.extend_from_slice(r);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CheckError> {
        let bad = |d| CheckError {
            kind: ErrorKind::Encoding,
            step: None,
            detail: d,
        };
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], CheckError> {
            let s = bytes.get(*pos..*pos + n).ok_or(bad("input is truncated"))?;
            *pos += n;
            Ok(s)
        };
        let mut pos = 0;
        let claim = EpochClaim::decode(take(&mut pos, CLAIM_LEN)?)?;
        let prev = match u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap()) {
            0 => None,
            1 => Some(EpochClaim::decode(take(&mut pos, CLAIM_LEN)?)?),
            _ => return Err(bad("has_prev must be 0 or 1")),
        };
        let count = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap()) as usize;
        let body = take(
            &mut pos,
            count
                .checked_mul(RECORD_LEN)
                .ok_or(bad("too many records"))?,
        )?;
        if pos != bytes.len() {
            return Err(bad("trailing bytes after the records"));
        }
        let records = body
            .chunks_exact(RECORD_LEN)
            .map(|c| c.try_into().unwrap())
            .collect();
        Ok(EpochInput {
            claim,
            prev,
            records,
        })
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
    let c = &input.claim;
    if c.guarantees != Guarantees::TORCH_MODE {
        return fail(
            ErrorKind::Guarantees,
            None,
            "guarantees must be exactly the torch-mode set",
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
    let mut prev_hash = c.prev_record_hash;
    let mut hashes: Vec<Digest> = Vec::with_capacity(input.records.len());
    let mut last: Option<StepRecord> = None;
    let mut hparams: (Option<u64>, Digest) = (None, [0; 32]);
    for (k, raw) in input.records.iter().enumerate() {
        let step = c.first_step + k as u64;
        let r = StepRecord::decode(raw).map_err(|_: DecodeError| CheckError {
            kind: ErrorKind::Encoding,
            step: Some(step),
            detail: "record is not a valid encoding",
        })?;
        if r.run_id != c.run_id || r.epoch != c.epoch || r.step != step {
            return fail(
                ErrorKind::RecordPlace,
                Some(step),
                "record has the wrong run, epoch or step",
            );
        }
        if r.prev_record_hash != prev_hash {
            return fail(
                ErrorKind::Chain,
                Some(step),
                "previous record hash does not match",
            );
        }
        let indices = sampler::batch_indices(&perm, c.batch_size, k as u64);
        if sampler::batch_digest::<H>(indices) != r.batch_digest {
            return fail(
                ErrorKind::Batch,
                Some(step),
                "batch is not the sampler's output",
            );
        }
        // Schedules change the rate rarely; a SHA-256 block costs hundreds of guest cycles.
        let lr_bits = c.schedule.lr_at(step).to_bits();
        if hparams.0 != Some(lr_bits) {
            hparams = (
                Some(lr_bits),
                hparams_digest::<H>(f64::from_bits(lr_bits), &c.optimizer_digest),
            );
        }
        if hparams.1 != r.hparams_digest {
            return fail(
                ErrorKind::Hparams,
                Some(step),
                "hyperparameters do not follow the schedule",
            );
        }
        prev_hash = H::tagged(tag::RECORD, &[raw]);
        hashes.push(prev_hash);
        last = Some(r);
    }
    let last = last.expect("an epoch has at least one step");
    if !last.has_state_digest() || last.state_digest != c.end_state_digest {
        return fail(
            ErrorKind::EndState,
            Some(last.step),
            "last record's state digest is not the end state",
        );
    }
    if prev_hash != c.last_record_hash {
        return fail(
            ErrorKind::RecordsRoot,
            None,
            "last record hash does not match the claim",
        );
    }
    if merkle::root::<H>(&hashes) != c.records_root {
        return fail(
            ErrorKind::RecordsRoot,
            None,
            "records root does not match the claim",
        );
    }
    Ok(())
}
