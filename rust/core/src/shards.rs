//! The dataset root of a sharded dataset (PROTOCOL.md §4, "Sharded datasets"): a Merkle root over
//! its shards, each shard's root being the dataset root of its own samples.
//!
//! A shard's leaf commits its root with its place among the dataset's samples (the global index
//! of its first sample and its sample count), so the root alone says which shard holds sample `i`
//! and at which index inside it. Behind the `samples` feature, like `sample`: the guest does not
//! read sharded datasets yet, so its image id does not move with this module.
use alloc::vec::Vec;

use crate::hash::{tag, Digest, Sha256};
use crate::merkle;

/// `H("veritrain/shard/v1", first u64 || count u64 || root)`: the shard whose `count` samples
/// are the dataset's samples `first .. first + count`, with `root` the dataset root (§4) of
/// those samples as indices `0 .. count`.
pub fn shard_leaf<H: Sha256>(first: u64, count: u64, root: &Digest) -> Digest {
    H::tagged(
        tag::SHARD,
        &[&first.to_le_bytes(), &count.to_le_bytes(), root],
    )
}

/// The dataset root of shards given as `(sample count, shard root)` in their order (sorted by
/// key): the Merkle root (§2) of their leaves, each shard's first sample following the previous
/// shard's last.
pub fn sharded_root<H: Sha256>(shards: &[(u64, Digest)]) -> Digest {
    let mut first = 0u64;
    let leaves: Vec<Digest> = shards
        .iter()
        .map(|(count, root)| {
            let leaf = shard_leaf::<H>(first, *count, root);
            first += count;
            leaf
        })
        .collect();
    merkle::root::<H>(&leaves)
}
