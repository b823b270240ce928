//! The epoch claim. It is what the trainer asserts about an epoch, the guest's input header and,
//! once the guest has checked it, the journal of the epoch's receipt, byte for byte: the version
//! (u32 = 1), then the fields that [`claim_fields!`](crate::claim_fields) lists, in its order,
//! little-endian. [`CLAIM_FIELDS`] is its table (PROTOCOL.md §9 is the prose, checked against the
//! table by `tests/test_vectors.py`).

use crate::fields::{covers, Field};
use crate::hash::{tag, Digest, Sha256};
use crate::record::{decode_run_id, DecodeError, Reader, Writer, RUN_ID_LEN};
use crate::schedule::{Schedule, ScheduleError, SCHEDULE_LEN};
use crate::PROTOCOL_VERSION;

pub const CLAIM_LEN: usize = 384;

/// The claim's fields after the version, in encoding order, each with its kind: the one list of
/// them. `claim_fields!(m, args...)` calls `m! { [args...] list }`, so that [`EpochClaim`], its
/// encoding and [`CLAIM_FIELDS`] here, and the extension's Python class (rust/host), are all
/// written from it. Kinds: `guarantees` (u32, bits of [`Guarantees`]), `run_id` (32 bytes, as in
/// records), `u64`, `digest` (32 bytes) and `schedule` ([`crate::schedule`], 40 bytes).
#[macro_export]
macro_rules! claim_fields {
    ($m:ident $(, $arg:tt)*) => {
        $m! {
            [$($arg)*]
            guarantees: guarantees,
            run_id: run_id,
            epoch: u64,
            first_step: u64,
            step_count: u64,
            /// The link into the epoch.
            prev_record_hash: digest,
            last_record_hash: digest,
            /// Merkle root of the epoch's record hashes.
            records_root: digest,
            start_state_digest: digest,
            end_state_digest: digest,
            dataset_root: digest,
            dataset_len: u64,
            sampler_seed: u64,
            batch_size: u64,
            optimizer_digest: digest,
            schedule: schedule,
            /// Of the guest that proves this run.
            image_id: digest,
        }
    };
}

/// What each kind of claim field is: its Rust `type`, its `size` in bytes, how a [`Writer`] puts
/// it and how a [`Reader`] gets it, checked.
macro_rules! kind {
    (type, guarantees) => {
        u32
    };
    (type, run_id) => {
        [u8; RUN_ID_LEN]
    };
    (type, u64) => {
        u64
    };
    (type, digest) => {
        Digest
    };
    (type, schedule) => {
        Schedule
    };

    (size, guarantees) => {
        4
    };
    (size, run_id) => {
        RUN_ID_LEN
    };
    (size, u64) => {
        8
    };
    (size, digest) => {
        32
    };
    (size, schedule) => {
        SCHEDULE_LEN
    };

    (put, guarantees, $w:ident, $v:expr) => {
        $w.u32($v)
    };
    (put, run_id, $w:ident, $v:expr) => {
        $w.bytes(&$v)
    };
    (put, u64, $w:ident, $v:expr) => {
        $w.u64($v)
    };
    (put, digest, $w:ident, $v:expr) => {
        $w.bytes(&$v)
    };
    (put, schedule, $w:ident, $v:expr) => {
        $w.bytes(&$v.encode())
    };

    (get, guarantees, $r:ident) => {{
        let guarantees = $r.u32();
        if guarantees & !Guarantees::KNOWN != 0 {
            return Err(ClaimDecodeError::Guarantees(guarantees));
        }
        guarantees
    }};
    (get, run_id, $r:ident) => {{
        let run_id = $r.array();
        decode_run_id(&run_id).map_err(ClaimDecodeError::Decode)?;
        run_id
    }};
    (get, u64, $r:ident) => {
        $r.u64()
    };
    (get, digest, $r:ident) => {
        $r.array()
    };
    (get, schedule, $r:ident) => {
        Schedule::decode(&$r.array::<SCHEDULE_LEN>()).map_err(ClaimDecodeError::Schedule)?
    };
}

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

macro_rules! claim_struct {
    ([] $($(#[$doc:meta])* $name:ident: $kind:ident,)*) => {
        /// What the trainer asserts about one epoch.
        #[derive(Clone, Debug, PartialEq)]
        pub struct EpochClaim {
            $($(#[$doc])* pub $name: kind!(type, $kind),)*
        }

        /// The claim's fields in encoding order: name, offset and size in bytes.
        pub const CLAIM_FIELDS: &[Field] =
            &Field::table([("version", 4), $((stringify!($name), kind!(size, $kind))),*]);
    };
}

/// Statements that write every field of `claim` with `w`.
macro_rules! put_fields {
    ([$claim:tt $w:ident] $($(#[$doc:meta])* $name:ident: $kind:ident,)*) => {
        $(kind!(put, $kind, $w, $claim.$name);)*
    };
}

/// The claim that `r` reads, each field checked.
macro_rules! get_fields {
    ([$r:ident] $($(#[$doc:meta])* $name:ident: $kind:ident,)*) => {{
        $(let $name = kind!(get, $kind, $r);)*
        EpochClaim { $($name),* }
    }};
}

claim_fields!(claim_struct);

const _: () = assert!(covers(CLAIM_FIELDS, CLAIM_LEN, 4));

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

// Written by hand around the generated bodies: the guest's symbol names number the impl blocks of
// a module, and generated blocks are numbered after written ones, which would move the guest's
// functions and change its image id.
impl EpochClaim {
    pub fn encode(&self) -> [u8; CLAIM_LEN] {
        let mut w = Writer::<CLAIM_LEN>::new();
        w.u32(PROTOCOL_VERSION);
        claim_fields!(put_fields, self, w);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ClaimDecodeError> {
        let mut r = Reader::new(bytes, CLAIM_LEN).map_err(ClaimDecodeError::Decode)?;
        let version = r.u32();
        if version != PROTOCOL_VERSION {
            return Err(ClaimDecodeError::Decode(DecodeError::Version(version)));
        }
        Ok(claim_fields!(get_fields, r))
    }

    /// `H(CLAIM, claim bytes)`: how the ledger refers to a claim.
    pub fn digest<H: Sha256>(&self) -> Digest {
        H::tagged(tag::CLAIM, &[&self.encode()])
    }
}
