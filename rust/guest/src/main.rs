//! The zkVM guest: read one epoch's input, check it with veritrain-core, verify the previous
//! epoch's receipt (the host supplies it as an assumption), commit the claim as the journal.
//! All rules live in veritrain-core; a failed check panics, so no receipt can exist for it.
use std::io::Read as _;

use risc0_zkvm::guest::env;
use risc0_zkvm::serde::WordRead as _;
use risc0_zkvm::sha::DIGEST_WORDS;
use risc0_zkvm_platform::syscall::sys_sha_buffer;
use veritrain_core::hash::{Block, DigestWords};
use veritrain_core::{check_epoch, CheckError, EpochInput, ErrorKind, Sha256};

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

fn encoding(detail: &'static str) -> CheckError {
    CheckError {
        kind: ErrorKind::Encoding,
        step: None,
        detail,
    }
}

fn main() {
    // The input arrives as words (every part is a whole number of them), straight into place,
    // and must end where the records do: the guest accepts what `EpochInput::decode` accepts.
    let mut stdin = env::stdin();
    let input = EpochInput::read(usize::MAX, |words| {
        stdin
            .read_words(words)
            .map_err(|_| encoding("input is truncated"))
    })
    .and_then(|input| match stdin.read(&mut [0u8]) {
        Ok(0) => Ok(input),
        _ => Err(encoding("trailing bytes after the records")),
    })
    .unwrap_or_else(|e| panic!("epoch check failed: {e}"));
    check_epoch::<Accelerated>(&input).unwrap_or_else(|e| panic!("epoch check failed: {e}"));
    if let Some(prev) = &input.prev {
        // Lineage: the previous epoch's journal must be proven by this same guest.
        env::verify(input.claim.image_id, &prev.encode()).expect("previous epoch's receipt");
    }
    env::commit_slice(&input.claim.encode());
}
