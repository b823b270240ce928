//! The zkVM guest: read one epoch's input, check it with veritrain-core, verify the previous
//! epoch's receipt (the host supplies it as an assumption), commit the claim as the journal.
//! All rules live in veritrain-core; a failed check panics, so no receipt can exist for it.
use std::io::Read;

use risc0_zkvm::guest::env;
use risc0_zkvm::sha::{Impl, Sha256 as _};
use veritrain_core::{check_epoch, Digest, EpochInput, Sha256};

/// The zkVM's SHA-256 accelerator.
struct Accelerated;

impl Sha256 for Accelerated {
    fn sha256(data: &[u8]) -> Digest {
        Impl::hash_bytes(data).as_bytes().try_into().unwrap()
    }
}

fn main() {
    let mut bytes = Vec::new();
    env::stdin()
        .read_to_end(&mut bytes)
        .expect("reading the epoch input");
    let input = EpochInput::decode(&bytes).unwrap_or_else(|e| panic!("epoch check failed: {e}"));
    check_epoch::<Accelerated>(&input).unwrap_or_else(|e| panic!("epoch check failed: {e}"));
    if let Some(prev) = &input.prev {
        // Lineage: the previous epoch's journal must be proven by this same guest.
        env::verify(input.claim.image_id, &prev.encode()).expect("previous epoch's receipt");
    }
    env::commit_slice(&input.claim.encode());
}
