//! veritrain's rules, in one place.
//!
//! Everything that decides "what is valid" lives here: the byte encodings of step records and epoch
//! claims, the domain-separated SHA-256 hashing, Merkle roots, the sampler, the learning-rate
//! schedule and the epoch check. The host (`veritrain.prover._native`) and the zkVM guest compile
//! this same crate, so the prover and every verifier agree by construction. `docs/PROTOCOL.md` is
//! the prose version; `tests/vectors/protocol-v1.json` pins the bytes for Rust and Python alike.
//!
//! SHA-256 is a parameter ([`Sha256`]) so that the guest can use the zkVM's accelerator while the
//! host uses SHA-NI; both compute the same function.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod canonical;
pub mod claim;
pub mod epoch;
pub mod fields;
pub mod hash;
pub mod kernels;
pub mod merkle;
pub mod record;
#[cfg(feature = "samples")]
pub mod sample;
pub mod sampler;
pub mod schedule;
#[cfg(feature = "samples")]
pub mod shards;
pub mod tensor;
pub mod zk;

pub use canonical::{CanonicalSettings, OptState, StepOut};
pub use claim::{EpochClaim, Guarantees, CLAIM_FIELDS, CLAIM_LEN};
pub use epoch::{
    check_epoch, check_link, check_records, CheckError, EpochInput, ErrorKind, WordStream,
};
pub use fields::Field;
pub use hash::{Digest, Sha256};
pub use record::{StepRecord, RECORD_FIELDS, RECORD_LEN};
pub use schedule::Schedule;

/// Version of the protocol this crate implements; it is the first field of records and claims.
pub const PROTOCOL_VERSION: u32 = 1;
