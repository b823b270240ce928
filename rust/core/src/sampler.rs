//! The sampler: the batch order is a deterministic function of (seed, epoch), so the guest and any
//! verifier recompute exactly which samples each step used.
//!
//! Each epoch draws a Fisher-Yates permutation of `0..n` with xoshiro256** seeded by the four
//! little-endian u64 words of `H(SAMPLER, seed u64 || epoch u64)`, using Lemire's unbiased bounded
//! draw. Step `k` of the epoch takes `perm[k*B .. min((k+1)*B, n)]` (the last batch may be short).
//! `batch digest = H(BATCH, count u32 || indices u32...)`; the dataset root binds indices to samples.

use alloc::vec::Vec;

use crate::hash::{tag, Digest, Sha256};

pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    pub fn from_key(key: &Digest) -> Self {
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            *w = u64::from_le_bytes(key[i * 8..i * 8 + 8].try_into().unwrap());
        }
        if s == [0; 4] {
            // The all-zero state is xoshiro's one fixed point; SHA-256 never gives it in practice.
            s[0] = 1;
        }
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..bound` (bound > 0), Lemire's multiply-and-reject.
    pub fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = self.next_u64() as u128 * bound as u128;
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

pub fn epoch_permutation<H: Sha256>(seed: u64, epoch: u64, n: u32) -> Vec<u32> {
    let key = H::tagged(tag::SAMPLER, &[&seed.to_le_bytes(), &epoch.to_le_bytes()]);
    let mut rng = Xoshiro256::from_key(&key);
    let mut perm: Vec<u32> = (0..n).collect();
    for i in (1..n as usize).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// Number of steps in every epoch: `ceil(n / batch_size)`.
pub fn steps_per_epoch(n: u64, batch_size: u64) -> u64 {
    n.div_ceil(batch_size)
}

/// The indices used by step `k` (0-based within the epoch) given the epoch's permutation.
pub fn batch_indices(perm: &[u32], batch_size: u64, k: u64) -> &[u32] {
    let start = (k * batch_size) as usize;
    let end = core::cmp::min(start + batch_size as usize, perm.len());
    &perm[start..end]
}

pub fn batch_digest<H: Sha256>(indices: &[u32]) -> Digest {
    let mut buf = Vec::with_capacity(4 + 4 * indices.len());
    buf.extend_from_slice(&(indices.len() as u32).to_le_bytes());
    for i in indices {
        buf.extend_from_slice(&i.to_le_bytes());
    }
    H::tagged(tag::BATCH, &[&buf])
}

/// The leaf of one dataset sample: `H(SAMPLE, index u64 || canonical sample bytes)`. The dataset
/// root is the Merkle root of these leaves in index order.
pub fn sample_leaf<H: Sha256>(index: u64, sample: &[u8]) -> Digest {
    H::tagged(tag::SAMPLE, &[&index.to_le_bytes(), sample])
}
