//! The epoch claim. It is what the trainer asserts about an epoch, the guest's input header and,
//! once the guest has checked it, the journal of the epoch's receipt, byte for byte.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0   | 4  | version (u32 = 1) |
//! | 4   | 4  | guarantees (u32 bit set, see [`Guarantees`]) |
//! | 8   | 32 | run id |
//! | 40  | 8  | epoch |
//! | 48  | 8  | first step |
//! | 56  | 8  | step count |
//! | 64  | 32 | previous record hash (the link into the epoch) |
//! | 96  | 32 | last record hash |
//! | 128 | 32 | records root (Merkle root of the epoch's record hashes) |
//! | 160 | 32 | start state digest |
//! | 192 | 32 | end state digest |
//! | 224 | 32 | dataset root |
//! | 256 | 8  | dataset length |
//! | 264 | 8  | sampler seed |
//! | 272 | 8  | batch size |
//! | 280 | 32 | optimizer digest |
//! | 312 | 40 | schedule (see [`crate::schedule`]) |
//! | 352 | 32 | image id (of the guest that proves this run) |

use crate::hash::{tag, Digest, Sha256};
use crate::record::{decode_run_id, DecodeError, Reader, Writer, RUN_ID_LEN};
use crate::schedule::{Schedule, ScheduleError, SCHEDULE_LEN};
use crate::PROTOCOL_VERSION;

pub const CLAIM_LEN: usize = 384;

/// What a receipt for this claim vouches for. Bits not listed are reserved and must be zero.
pub struct Guarantees;

impl Guarantees {
    /// Records are contiguous, chained, and their root, last hash and end digest match the claim.
    pub const STRUCTURE: u32 = 1 << 0;
    /// Every batch's indices are the sampler's output for (seed, epoch, step).
    pub const SAMPLER: u32 = 1 << 1;
    /// Every record's hyperparameter digest follows the declared schedule.
    pub const SCHEDULE: u32 = 1 << 2;
    /// The epoch links to the genesis state (epoch 0) or to a verified receipt of epoch - 1.
    pub const LINEAGE: u32 = 1 << 3;
    /// Per-step arithmetic was re-executed. Never set in torch mode: that part is optimistic.
    pub const ARITHMETIC: u32 = 1 << 4;
    /// What this version of the guest proves for a torch-mode epoch.
    pub const TORCH_MODE: u32 = Self::STRUCTURE | Self::SAMPLER | Self::SCHEDULE | Self::LINEAGE;
    /// What a canonical run's epoch claims (`arithmetic: canonical`, PROTOCOL.md §15).
    pub const CANONICAL_MODE: u32 = Self::TORCH_MODE | Self::ARITHMETIC;
    pub const KNOWN: u32 = Self::CANONICAL_MODE;
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochClaim {
    pub guarantees: u32,
    pub run_id: [u8; RUN_ID_LEN],
    pub epoch: u64,
    pub first_step: u64,
    pub step_count: u64,
    pub prev_record_hash: Digest,
    pub last_record_hash: Digest,
    pub records_root: Digest,
    pub start_state_digest: Digest,
    pub end_state_digest: Digest,
    pub dataset_root: Digest,
    pub dataset_len: u64,
    pub sampler_seed: u64,
    pub batch_size: u64,
    pub optimizer_digest: Digest,
    pub schedule: Schedule,
    pub image_id: Digest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimDecodeError {
    Decode(DecodeError),
    Schedule(ScheduleError),
    Guarantees(u32),
}

impl core::fmt::Display for ClaimDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "claim: {e}"),
            Self::Schedule(e) => write!(f, "claim: {e}"),
            Self::Guarantees(g) => write!(f, "claim: unknown guarantee bits {g:#x}"),
        }
    }
}

impl EpochClaim {
    pub fn encode(&self) -> [u8; CLAIM_LEN] {
        let mut w = Writer::<CLAIM_LEN>::new();
        w.u32(PROTOCOL_VERSION);
        w.u32(self.guarantees);
        w.bytes(&self.run_id);
        w.u64(self.epoch);
        w.u64(self.first_step);
        w.u64(self.step_count);
        w.bytes(&self.prev_record_hash);
        w.bytes(&self.last_record_hash);
        w.bytes(&self.records_root);
        w.bytes(&self.start_state_digest);
        w.bytes(&self.end_state_digest);
        w.bytes(&self.dataset_root);
        w.u64(self.dataset_len);
        w.u64(self.sampler_seed);
        w.u64(self.batch_size);
        w.bytes(&self.optimizer_digest);
        w.bytes(&self.schedule.encode());
        w.bytes(&self.image_id);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ClaimDecodeError> {
        let mut r = Reader::new(bytes, CLAIM_LEN).map_err(ClaimDecodeError::Decode)?;
        let version = r.u32();
        if version != PROTOCOL_VERSION {
            return Err(ClaimDecodeError::Decode(DecodeError::Version(version)));
        }
        let guarantees = r.u32();
        if guarantees & !Guarantees::KNOWN != 0 {
            return Err(ClaimDecodeError::Guarantees(guarantees));
        }
        let run_id = r.array();
        decode_run_id(&run_id).map_err(ClaimDecodeError::Decode)?;
        Ok(EpochClaim {
            guarantees,
            run_id,
            epoch: r.u64(),
            first_step: r.u64(),
            step_count: r.u64(),
            prev_record_hash: r.array(),
            last_record_hash: r.array(),
            records_root: r.array(),
            start_state_digest: r.array(),
            end_state_digest: r.array(),
            dataset_root: r.array(),
            dataset_len: r.u64(),
            sampler_seed: r.u64(),
            batch_size: r.u64(),
            optimizer_digest: r.array(),
            schedule: Schedule::decode(&r.array::<SCHEDULE_LEN>())
                .map_err(ClaimDecodeError::Schedule)?,
            image_id: r.array(),
        })
    }

    /// `H(CLAIM, claim bytes)`: how the ledger refers to a claim.
    pub fn digest<H: Sha256>(&self) -> Digest {
        H::tagged(tag::CLAIM, &[&self.encode()])
    }
}
