//! Merkle roots over 32-byte leaves (already domain-tagged digests).
//!
//! The shape is RFC 6962's: the left subtree holds the largest power of two strictly below `n`
//! leaves. No leaf is duplicated, so no two leaf lists share a root (unlike Bitcoin's tree).
//! `root([]) = H(EMPTY, "")`, `root([a]) = a`, `node(l, r) = H(NODE, l || r)`.
//!
//! The rule is written once, over digests as words ([`NodeHasher`], what the epoch check uses);
//! [`root`] and [`node`] are the same function over bytes.
//!
//! An audit path (RFC 6962 §2.1.1) of leaf `m` in a tree of `n` leaves lists the roots of the
//! sibling subtrees from the leaf up: for `n >= 2`, with `k` the split point, the path of `m < k`
//! is the path of `m` in the left `k` leaves followed by the root of the right ones, and the path
//! of `m >= k` is the path of `m - k` in the right leaves followed by the root of the left ones.

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

impl NodeHasher {
    /// The root that leaf `index` of an `n`-leaf tree and its audit path `path` imply; `None` if
    /// `index >= n` or the path has not exactly the length that `index` and `n` give.
    pub fn root_from_path<H: Sha256>(
        &mut self,
        leaf: &DigestWords,
        index: u64,
        n: u64,
        path: &[DigestWords],
    ) -> Option<DigestWords> {
        if index >= n {
            return None;
        }
        // The subtree sizes and sides from the top down, then hashed from the leaf up.
        let (mut index, mut n, mut depth) = (index, n, 0);
        let mut left_of_sibling = 0u64; // bit d: at depth d the leaf's subtree is the left one
        while n > 1 {
            let k = split_point_u64(n);
            if depth >= 64 {
                return None;
            }
            if index < k {
                left_of_sibling |= 1 << depth;
                n = k;
            } else {
                index -= k;
                n -= k;
            }
            depth += 1;
        }
        if path.len() != depth {
            return None;
        }
        let mut acc = *leaf;
        for (d, sibling) in path.iter().enumerate() {
            let level = depth - 1 - d;
            acc = if left_of_sibling >> level & 1 == 1 {
                self.node::<H>(&acc, sibling)
            } else {
                self.node::<H>(sibling, &acc)
            };
        }
        Some(acc)
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

/// The audit path of leaf `index` (< `leaves.len()`), from the leaf up.
pub fn path<H: Sha256>(leaves: &[Digest], index: usize) -> Vec<Digest> {
    let words: Vec<DigestWords> = leaves.iter().map(digest_words).collect();
    NodeHasher::new()
        .path::<H>(&words, index)
        .iter()
        .map(digest_bytes)
        .collect()
}

impl NodeHasher {
    /// The audit path of leaf `index` (< `leaves.len()`), from the leaf up.
    pub fn path<H: Sha256>(&mut self, leaves: &[DigestWords], index: usize) -> Vec<DigestWords> {
        assert!(index < leaves.len(), "leaf index out of range");
        let mut out = Vec::new();
        let (mut lo, mut hi, mut m) = (0, leaves.len(), index);
        // Collected from the top down, returned from the leaf up.
        while hi - lo > 1 {
            let k = split_point(hi - lo);
            if m < k {
                out.push(self.root::<H>(&leaves[lo + k..hi]));
                hi = lo + k;
            } else {
                out.push(self.root::<H>(&leaves[lo..lo + k]));
                lo += k;
                m -= k;
            }
        }
        out.reverse();
        out
    }
}

/// [`NodeHasher::root_from_path`] over bytes.
pub fn root_from_path<H: Sha256>(
    leaf: &Digest,
    index: u64,
    n: u64,
    path: &[Digest],
) -> Option<Digest> {
    let path: Vec<DigestWords> = path.iter().map(digest_words).collect();
    NodeHasher::new()
        .root_from_path::<H>(&digest_words(leaf), index, n, &path)
        .map(|d| digest_bytes(&d))
}

fn split_point_u64(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}
