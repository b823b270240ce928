//! zk re-execution of training steps (guarantee `arithmetic`, docs/PROTOCOL.md §11): which steps
//! of an epoch the guest re-executes.
//!
//! The steps are chosen by Fiat–Shamir from the epoch's records root, which the trainer fixes by
//! training before it can know them: `k >= step count` re-executes every step; otherwise
//! xoshiro128** (§5), seeded with `H("veritrain/zk-steps/v1", records root)`, draws
//! `below(step count)` k times, and the distinct draws are re-executed in ascending order.

use alloc::vec::Vec;

use crate::hash::{tag, Digest, Sha256};
use crate::sampler::Xoshiro128;

/// The steps (0-based within the epoch, ascending, distinct) that an epoch of `step_count` steps
/// with records root `records_root` re-executes, for `k` re-executions per epoch.
/// `step_count` must fit in a u32 (it does for every valid claim: the dataset length does).
pub fn zk_steps<H: Sha256>(records_root: &Digest, step_count: u64, k: u32) -> Vec<u64> {
    if k as u64 >= step_count {
        return (0..step_count).collect();
    }
    let bound = u32::try_from(step_count).expect("step count fits in a u32");
    let mut rng = Xoshiro128::from_key(&H::tagged(tag::ZK_STEPS, &[records_root]));
    let mut steps: Vec<u64> = (0..k).map(|_| rng.below(bound) as u64).collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}
