//! Not the guest: a measuring program for bench/zk_bench.py (DESIGN-NOTES.md "Re-executing
//! steps in the guest"). It runs one part of a canonical epoch's check, with core's own code,
//! between two cycle counts, and commits the count, so that reading the input and committing the
//! journal stay out of the figure.
//!
//! Input (words): mode u32, then
//! - mode 0, a tensor chunk: length u32 (bytes, a multiple of 4) || bytes. Measures the chunk
//!   leaf as the protocol has it (BLAKE3 in derive-key mode) and, for comparison, as SHA-256 would
//!   be through the accelerator (`H(CHUNK, chunk)` read in place, one call). Journal: BLAKE3
//!   cycles u64 || SHA-256 cycles u64.
//! - mode 1, samples: dataset length u64 || dataset root (32 bytes) || count u32 || row length
//!   u32 (words) || per sample: index u32 || row || path length u32 || path. Measures checking
//!   them against the root (`zk::SampleCheck`). Journal: cycles u64 || all passed u32.
//! - mode 2, one canonical training step: settings (32 bytes) || init seed u64 || layer widths
//!   count u32 || widths u32... || batch u32 || rows (canonical sample rows, words) || learning
//!   rate f64 bits u64 || t u64. Initializes the MLP (`canonical::mlp_init`) and a zero optimizer
//!   state, quantizes the batch, and measures `canonical::mlp_step` alone: the kernels of one
//!   step. Journal: cycles u64 || loss bits u32.
use risc0_zkvm::guest::env;
use risc0_zkvm::serde::WordRead as _;
use risc0_zkvm::sha::DIGEST_WORDS;
use risc0_zkvm_platform::syscall::sys_sha_buffer;
use veritrain_core::canonical::{self, CanonicalSettings, OptState, OptimizerKind};
use veritrain_core::hash::{store_words, tag, Block, DigestWords, Frame};
use veritrain_core::zk::{SampleCheck, ZkSample};
use veritrain_core::{tensor, Sha256};

struct Accelerated;

impl Sha256 for Accelerated {
    fn compress(state: &mut DigestWords, blocks: &[Block]) {
        let state: *mut [u32; DIGEST_WORDS] = state;
        // SAFETY: as in the guest's main.rs.
        unsafe { sys_sha_buffer(state, state, blocks.as_ptr().cast(), blocks.len() as u32) };
    }
}

fn words(n: usize) -> Vec<u32> {
    let mut w = vec![0u32; n];
    env::stdin().read_words(&mut w).expect("input");
    w
}

fn main() {
    match words(1)[0] {
        0 => {
            let data = words(words(1)[0] as usize / 4);
            let mut bytes = vec![0u8; 4 * data.len()];
            store_words(&mut bytes, &data);
            let c0 = env::cycle_count();
            let blake3 = tensor::chunk_leaf(&bytes);
            let c1 = env::cycle_count();
            let sha = Frame::new(tag::CHUNK, data.len()).hash::<Accelerated>(&[&data]);
            let c2 = env::cycle_count();
            env::commit_slice(&(c1 - c0).to_le_bytes());
            env::commit_slice(&(c2 - c1).to_le_bytes());
            // Both digests are used, so neither hash can be optimized away.
            env::commit_slice(&[blake3[0] ^ sha[0] as u8]);
        }
        2 => {
            let mut settings = [0u8; 32];
            store_words(&mut settings, &words(8));
            let s = CanonicalSettings::from_bytes(&settings).expect("settings");
            let seed = words(2);
            let seed = seed[0] as u64 | (seed[1] as u64) << 32;
            let dims: Vec<usize> = words(words(1)[0] as usize)
                .iter()
                .map(|d| *d as usize)
                .collect();
            let batch = words(1)[0] as usize;
            let row_words = dims[0] + 2;
            let rows = words(batch * row_words);
            let lr = words(2);
            let lr = f64::from_bits(lr[0] as u64 | (lr[1] as u64) << 32);
            let lr = canonical::lr_coef(lr).expect("learning rate");
            let t = words(2);
            let t = t[0] as u64 | (t[1] as u64) << 32;
            let mut bytes = vec![0u8; 4 * rows.len()];
            store_words(&mut bytes, &rows);
            let (x, labels) = canonical::quantize_batch(
                bytes.chunks_exact(4 * row_words),
                dims[0],
                dims[dims.len() - 1],
            )
            .expect("batch");
            let mut params = canonical::mlp_init::<Accelerated>(seed, &dims).expect("init");
            let mut a: Vec<Vec<i32>> = params.iter().map(|p| vec![0; p.len()]).collect();
            let mut v: Vec<Vec<u64>> = params.iter().map(|p| vec![0; p.len()]).collect();
            let mut p: Vec<&mut [i32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
            let mut a: Vec<&mut [i32]> = a.iter_mut().map(Vec::as_mut_slice).collect();
            let mut v: Vec<&mut [u64]> = v.iter_mut().map(Vec::as_mut_slice).collect();
            let opt = match s.kind {
                OptimizerKind::Sgd => OptState::Sgd { momentum: &mut a },
                OptimizerKind::Adam => OptState::Adam {
                    exp_avg: &mut a,
                    exp_avg_sq: &mut v,
                },
            };
            let c0 = env::cycle_count();
            let out =
                canonical::mlp_step(&dims, &mut p, opt, &s, lr, &x, &labels, t).expect("step");
            let c1 = env::cycle_count();
            env::commit_slice(&(c1 - c0).to_le_bytes());
            env::commit_slice(&out.loss_bits.to_le_bytes());
        }
        _ => {
            let n = words(2);
            let n = n[0] as u64 | (n[1] as u64) << 32;
            let root: DigestWords = words(8).try_into().unwrap();
            let count = words(1)[0];
            let row_words = words(1)[0] as usize;
            let samples: Vec<(u32, ZkSample)> = (0..count)
                .map(|_| {
                    let index = words(1)[0];
                    let row = words(row_words);
                    let depth = words(1)[0] as usize;
                    let path = (0..depth).map(|_| words(8).try_into().unwrap()).collect();
                    (index, ZkSample { row, path })
                })
                .collect();
            let c0 = env::cycle_count();
            let mut check = SampleCheck::new(row_words);
            let ok = samples
                .iter()
                .all(|(i, s)| check.check::<Accelerated>(*i, n, s, &root));
            let c1 = env::cycle_count();
            env::commit_slice(&(c1 - c0).to_le_bytes());
            env::commit_slice(&(ok as u32).to_le_bytes());
        }
    }
}
