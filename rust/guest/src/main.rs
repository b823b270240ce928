//! The zkVM guest: read one epoch's input, check it with veritrain-core, verify the previous
//! epoch's receipt (the host supplies it as an assumption), commit the claim as the journal.
//! All rules live in veritrain-core; a failed check panics, so no receipt can exist for it.
use std::io::Read as _;

use risc0_zkvm::guest::env::{self, FdReader};
use risc0_zkvm::serde::WordRead as _;
use risc0_zkvm::sha::DIGEST_WORDS;
use risc0_zkvm_platform::syscall::sys_sha_buffer;
use veritrain_core::hash::{Block, DigestWords};
use veritrain_core::{check_epoch, EpochInput, Sha256, WordStream};

/// The zkVM's SHA-256 accelerator: one call compresses every block of a padded message, reading
/// the words in place.
struct Accelerated;

impl Sha256 for Accelerated {
    fn compress(state: &mut DigestWords, blocks: &[Block]) {
        let state: *mut [u32; DIGEST_WORDS] = state;
        // SAFETY: `state` and `blocks` are live, word-aligned and sized as the call requires; the
        // accelerator may read and write the state in place.
        unsafe { sys_sha_buffer(state, state, blocks.as_ptr().cast(), blocks.len() as u32) };
    }
}

/// The input arrives as words, straight into place.
struct Stdin(FdReader);

impl WordStream for Stdin {
    fn read_words(&mut self, words: &mut [u32]) -> bool {
        self.0.read_words(words).is_ok()
    }

    fn at_end(&mut self) -> bool {
        matches!(self.0.read(&mut [0u8]), Ok(0))
    }
}

fn main() {
    let input = EpochInput::read_from(&mut Stdin(env::stdin()), usize::MAX)
        .and_then(|input| check_epoch::<Accelerated>(&input).map(|()| input))
        .unwrap_or_else(|e| panic!("epoch check failed: {e}"));
    if let Some(prev) = &input.prev {
        // Lineage: the previous epoch's journal must be proven by this same guest.
        env::verify(input.claim.image_id, &prev.encode()).expect("previous epoch's receipt");
    }
    env::commit_slice(&input.claim.encode());
}
