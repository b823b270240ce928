//! Merkle roots over 32-byte leaves (already domain-tagged digests).
//!
//! The shape is RFC 6962's: the left subtree holds the largest power of two strictly below `n`
//! leaves. No leaf is duplicated, so no two leaf lists share a root (unlike Bitcoin's tree).
//! `root([]) = H(EMPTY, "")`, `root([a]) = a`, `node(l, r) = H(NODE, l || r)`.
//!
//! The rule is written once, over digests as words ([`NodeHasher`], what the epoch check uses);
//! [`root`] and [`node`] are the same function over bytes.

use alloc::vec::Vec;

use crate::hash::{digest_bytes, digest_words, tag, Digest, DigestWords, Frame, Sha256};

/// `node(l, r) = H(NODE, l || r)` and roots over digests as words, reusing one buffer.
pub struct NodeHasher(Frame);

impl NodeHasher {
    pub fn new() -> Self {
        Self(Frame::new(tag::NODE, 16))
    }

    pub fn node<H: Sha256>(&mut self, left: &DigestWords, right: &DigestWords) -> DigestWords {
        self.0.hash::<H>(&[left, right])
    }

    pub fn root<H: Sha256>(&mut self, leaves: &[DigestWords]) -> DigestWords {
        match leaves.len() {
            0 => digest_words(&H::tagged(tag::EMPTY, &[])),
            1 => leaves[0],
            n => {
                let k = split_point(n);
                let l = self.root::<H>(&leaves[..k]);
                let r = self.root::<H>(&leaves[k..]);
                self.node::<H>(&l, &r)
            }
        }
    }
}

impl Default for NodeHasher {
    fn default() -> Self {
        Self::new()
    }
}

pub fn node<H: Sha256>(left: &Digest, right: &Digest) -> Digest {
    digest_bytes(&NodeHasher::new().node::<H>(&digest_words(left), &digest_words(right)))
}

pub fn root<H: Sha256>(leaves: &[Digest]) -> Digest {
    let words: Vec<DigestWords> = leaves.iter().map(digest_words).collect();
    digest_bytes(&NodeHasher::new().root::<H>(&words))
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}
