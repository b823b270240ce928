//! Domain-separated SHA-256.
//!
//! `H(tag, data) = SHA-256(tag || 0x00 || data)`. Tags are ASCII without NUL, so the NUL makes the
//! tag prefix-free: no object of one kind can be read as an object of another.

use alloc::vec::Vec;

pub type Digest = [u8; 32];

/// A SHA-256 implementation. The host passes a software/SHA-NI one, the guest the zkVM accelerator.
pub trait Sha256 {
    fn sha256(data: &[u8]) -> Digest;

    /// Hashes `tag || 0x00 || parts...`.
    fn tagged(tag: &str, parts: &[&[u8]]) -> Digest {
        let len = tag.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(0);
        for p in parts {
            buf.extend_from_slice(p);
        }
        Self::sha256(&buf)
    }
}

/// The domain tags, one per kind of hashed object.
pub mod tag {
    pub const RECORD: &str = "veritrain/record/v1";
    pub const NODE: &str = "veritrain/node/v1";
    pub const EMPTY: &str = "veritrain/empty/v1";
    pub const GENESIS: &str = "veritrain/genesis/v1";
    pub const BATCH: &str = "veritrain/batch/v1";
    pub const HPARAMS: &str = "veritrain/hparams/v1";
    pub const SAMPLER: &str = "veritrain/sampler/v1";
    pub const SAMPLE: &str = "veritrain/sample/v1";
    pub const CHUNK: &str = "veritrain/chunk/v1";
    pub const TENSOR: &str = "veritrain/tensor/v1";
    pub const CLAIM: &str = "veritrain/claim/v1";
}

/// SHA-256 from the `sha2` crate (uses SHA-NI where the CPU has it).
pub struct Sha2;

impl Sha256 for Sha2 {
    fn sha256(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).into()
    }
}
