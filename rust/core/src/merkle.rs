//! Merkle roots over 32-byte leaves (already domain-tagged digests).
//!
//! The shape is RFC 6962's: the left subtree holds the largest power of two strictly below `n`
//! leaves. No leaf is duplicated, so no two leaf lists share a root (unlike Bitcoin's tree).
//! `root([]) = H(EMPTY, "")`, `root([a]) = a`, `node(l, r) = H(NODE, l || r)`.

use crate::hash::{tag, Digest, Sha256};

pub fn node<H: Sha256>(left: &Digest, right: &Digest) -> Digest {
    H::tagged(tag::NODE, &[left, right])
}

pub fn root<H: Sha256>(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => H::tagged(tag::EMPTY, &[]),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node::<H>(&root::<H>(&leaves[..k]), &root::<H>(&leaves[k..]))
        }
    }
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}
