//! Not the guest: a measurement (DESIGN-NOTES.md "Chunk hash: BLAKE3 by measurement"). It hashes
//! one chunk of tensor bytes as the protocol does (BLAKE3 in derive-key mode, `tensor.rs`) and,
//! for comparison, as SHA-256 would through the zkVM's accelerator (`H(CHUNK, chunk)` read in
//! place, one call), and commits the cycles each took.
//!
//! Input: length u32 (bytes, a multiple of 4) || the bytes. Journal: BLAKE3 cycles u64, SHA-256
//! cycles u64, both leaves.
use risc0_zkvm::guest::env;
use risc0_zkvm::serde::WordRead as _;
use risc0_zkvm::sha::DIGEST_WORDS;
use risc0_zkvm_platform::syscall::sys_sha_buffer;
use veritrain_core::hash::{store_words, tag, Block, DigestWords, Frame};
use veritrain_core::{tensor, Sha256};

struct Accelerated;

impl Sha256 for Accelerated {
    fn compress(state: &mut DigestWords, blocks: &[Block]) {
        let state: *mut [u32; DIGEST_WORDS] = state;
        // SAFETY: as in the guest's main.rs.
        unsafe { sys_sha_buffer(state, state, blocks.as_ptr().cast(), blocks.len() as u32) };
    }
}

fn main() {
    let mut stdin = env::stdin();
    let mut len = [0u32];
    stdin.read_words(&mut len).expect("length");
    let mut words = vec![0u32; len[0] as usize / 4];
    stdin.read_words(&mut words).expect("bytes");
    let mut bytes = vec![0u8; 4 * words.len()];
    store_words(&mut bytes, &words);

    let c0 = env::cycle_count();
    let blake3 = tensor::chunk_leaf(&bytes);
    let c1 = env::cycle_count();
    let sha = Frame::new(tag::CHUNK, words.len()).hash::<Accelerated>(&[&words]);
    let c2 = env::cycle_count();

    env::commit_slice(&(c1 - c0).to_le_bytes());
    env::commit_slice(&(c2 - c1).to_le_bytes());
    env::commit_slice(&blake3);
    let mut sha_bytes = [0u8; 32];
    store_words(&mut sha_bytes, &sha);
    env::commit_slice(&sha_bytes);
}
