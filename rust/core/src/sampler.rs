//! The sampler: the batch order is a deterministic function of (seed, epoch), so the guest and any
//! verifier recompute exactly which samples each step used.
//!
//! Each epoch draws a Fisher-Yates permutation of `0..n` with xoshiro128** seeded by the first four
//! little-endian u32 words of `H(SAMPLER, seed u64 || epoch u64)`, using Lemire's unbiased bounded
//! draw. Step `k` of the epoch takes `perm[k*B .. min((k+1)*B, n)]` (the last batch may be short).
//! `batch digest = H(BATCH, count u32 || indices u32...)`; the dataset root binds indices to samples.
//!
//! Everything is 32-bit on purpose: the guest is rv32im, where 64-bit arithmetic costs several
//! instructions and a 64-bit modulo a library call; the per-sample cost of the sampler check is
//! most of an epoch proof's cycles on real datasets.

use alloc::vec::Vec;

use crate::hash::{digest_bytes, tag, Digest, DigestWords, Frame, Sha256};

pub struct Xoshiro128 {
    s: [u32; 4],
}

impl Xoshiro128 {
    pub fn from_key(key: &Digest) -> Self {
        let mut s = [0u32; 4];
        for (i, w) in s.iter_mut().enumerate() {
            *w = u32::from_le_bytes(key[i * 4..i * 4 + 4].try_into().unwrap());
        }
        if s == [0; 4] {
            // The all-zero state is xoshiro's one fixed point; SHA-256 never gives it in practice.
            s[0] = 1;
        }
        Self { s }
    }

    /// xoshiro128** (Blackman and Vigna).
    pub fn next_u32(&mut self) -> u32 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 9;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(11);
        result
    }

    /// Uniform in `0..bound` (bound > 0), Lemire's multiply-and-reject: draw until the low half
    /// of `draw * bound` is at least `2^32 mod bound`, return the high half. The threshold is below
    /// `bound`, so a low half of at least `bound` is accepted without computing it (the modulo is
    /// the costly part in the guest); the draws and the result are exactly those of the plain form.
    pub fn below(&mut self, bound: u32) -> u32 {
        let mut m = self.next_u32() as u64 * bound as u64;
        if (m as u32) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (m as u32) < threshold {
                m = self.next_u32() as u64 * bound as u64;
            }
        }
        (m >> 32) as u32
    }
}

pub fn epoch_permutation<H: Sha256>(seed: u64, epoch: u64, n: u32) -> Vec<u32> {
    let key = H::tagged(tag::SAMPLER, &[&seed.to_le_bytes(), &epoch.to_le_bytes()]);
    let mut rng = Xoshiro128::from_key(&key);
    let mut perm: Vec<u32> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        perm.swap(i as usize, j as usize);
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
    digest_bytes(&BatchHasher::new(indices.len()).digest::<H>(indices))
}

/// [`batch_digest`] as words, reusing one buffer, which holds the count and is laid out again
/// when the batch size changes (once an epoch, for a short last batch).
pub struct BatchHasher(Frame);

impl BatchHasher {
    pub fn new(batch_size: usize) -> Self {
        Self(Self::frame(batch_size))
    }

    fn frame(batch_size: usize) -> Frame {
        Frame::with_prefix(tag::BATCH, &(batch_size as u32).to_le_bytes(), batch_size)
    }

    pub fn digest<H: Sha256>(&mut self, indices: &[u32]) -> DigestWords {
        if self.0.data_words() != indices.len() {
            self.0 = Self::frame(indices.len());
        }
        if cfg!(target_endian = "little") {
            self.0.hash::<H>(&[indices])
        } else {
            let le: Vec<u32> = indices.iter().map(|i| i.to_le()).collect();
            self.0.hash::<H>(&[&le])
        }
    }
}

/// The leaf of one dataset sample: `H(SAMPLE, index u64 || canonical sample bytes)`. The dataset
/// root is the Merkle root of these leaves in index order.
pub fn sample_leaf<H: Sha256>(index: u64, sample: &[u8]) -> Digest {
    H::tagged(tag::SAMPLE, &[&index.to_le_bytes(), sample])
}
