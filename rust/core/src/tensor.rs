//! Tensor and state digests.
//!
//! A tensor's raw little-endian bytes are cut into 1 MiB chunks (the last may be shorter);
//! `chunk leaf = BLAKE3-derive-key("veritrain/chunk/v1", chunk)`, and the tensor digest binds the
//! chunks' Merkle root (SHA-256 nodes, as everywhere) to the tensor's name, dtype and shape:
//! `H(TENSOR, len u32 || name || len u32 || dtype || ndim u32 || dims u64... || nbytes u64 || root)`.
//! A state digest is the Merkle root of tensor digests sorted by name (bytewise), names unique.
//! Chunks are independent, so the host hashes them in parallel. The chunk hash is BLAKE3, not
//! SHA-256, by measurement (docs/PROTOCOL.md): the parameter digest of every step runs beside
//! training, and SHA-256 at 1.6 GB/s per core took too much of the second core to stay within the
//! 3% overhead goal. The guest hashes the states of the steps it re-executes with this same code.

use alloc::vec::Vec;

use crate::hash::{tag, Digest, Sha256};
use crate::merkle;

pub const CHUNK_LEN: usize = 1 << 20;

/// BLAKE3's context key of [`tag::CHUNK`] (`blake3::hazmat::hash_derive_key_context`), the first
/// half of every derive-key hash with that context. It is a constant, so a chunk leaf costs only
/// the chunk's own compressions: a state's small tensors (biases, the step counter) are one or
/// two blocks each, so in the guest this halves their hashing. A test checks it.
const CHUNK_CONTEXT_KEY: [u8; 32] = [
    0x80, 0x58, 0x47, 0xda, 0xde, 0xba, 0x4e, 0xbc, 0x46, 0x0b, 0x1d, 0xe7, 0xba, 0x65, 0x09, 0xfb,
    0x2b, 0x5d, 0x13, 0xe7, 0x3a, 0x48, 0xb4, 0x5e, 0x46, 0x44, 0xfb, 0xda, 0x20, 0xb9, 0xa4, 0x09,
];

/// `BLAKE3-derive-key(tag::CHUNK, chunk)`.
pub fn chunk_leaf(chunk: &[u8]) -> Digest {
    use blake3::hazmat::HasherExt as _;
    let mut h = blake3::Hasher::new_from_context_key(&CHUNK_CONTEXT_KEY);
    h.update(chunk);
    *h.finalize().as_bytes()
}

pub fn tensor_digest_from_chunks<H: Sha256>(
    name: &str,
    dtype: &str,
    shape: &[u64],
    nbytes: u64,
    chunk_leaves: &[Digest],
) -> Digest {
    let mut header = Vec::with_capacity(24 + name.len() + dtype.len() + 8 * shape.len());
    header.extend_from_slice(&(name.len() as u32).to_le_bytes());
    header.extend_from_slice(name.as_bytes());
    header.extend_from_slice(&(dtype.len() as u32).to_le_bytes());
    header.extend_from_slice(dtype.as_bytes());
    header.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for d in shape {
        header.extend_from_slice(&d.to_le_bytes());
    }
    header.extend_from_slice(&nbytes.to_le_bytes());
    let root = merkle::root::<H>(chunk_leaves);
    H::tagged(tag::TENSOR, &[&header, &root])
}

/// Sequential reference for one tensor; the host computes the same thing in parallel.
pub fn tensor_digest<H: Sha256>(name: &str, dtype: &str, shape: &[u64], data: &[u8]) -> Digest {
    let leaves: Vec<Digest> = data.chunks(CHUNK_LEN).map(chunk_leaf).collect();
    tensor_digest_from_chunks::<H>(name, dtype, shape, data.len() as u64, &leaves)
}

/// Merkle root over `(name, tensor digest)` pairs sorted by name. Returns `None` on a duplicate name.
pub fn state_digest<H: Sha256>(tensors: &mut [(&str, Digest)]) -> Option<Digest> {
    tensors.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if tensors.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let leaves: Vec<Digest> = tensors.iter().map(|t| t.1).collect();
    Some(merkle::root::<H>(&leaves))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunk_context_key_is_the_chunk_tags() {
        assert_eq!(
            CHUNK_CONTEXT_KEY,
            blake3::hazmat::hash_derive_key_context(tag::CHUNK)
        );
        for n in [0, 1, 63, 64, 65, 1024, 1025, 5000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut h = blake3::Hasher::new_derive_key(tag::CHUNK);
            h.update(&data);
            assert_eq!(chunk_leaf(&data), *h.finalize().as_bytes());
        }
    }
}
