//! A small honest run, built with core's own rules, for tests and test vectors.
#![allow(dead_code)]
use veritrain_core::hash::{Sha2, Sha256};
use veritrain_core::record::{self, encode_run_id, genesis_hash, Records};
use veritrain_core::schedule::hparams_digest;
use veritrain_core::{
    merkle, sampler, Digest, EpochClaim, EpochInput, Guarantees, Schedule, StepRecord,
};

pub fn d(tag: &str) -> Digest {
    Sha2::sha256(tag.as_bytes())
}

pub struct Run {
    pub run_id: [u8; 32],
    pub dataset_len: u64,
    pub batch_size: u64,
    pub seed: u64,
    pub schedule: Schedule,
    pub optimizer_digest: Digest,
    pub image_id: Digest,
    pub genesis_state: Digest,
    pub dataset_root: Digest,
}

impl Run {
    pub fn small() -> Self {
        Run {
            run_id: encode_run_id("vector-run").unwrap(),
            dataset_len: 10,
            batch_size: 4,
            seed: 7,
            schedule: Schedule::StepDecay {
                base_lr: 0.1,
                step_size: 2,
                gamma: 0.5,
            },
            optimizer_digest: d("optimizer"),
            image_id: d("image"),
            genesis_state: d("genesis state"),
            dataset_root: d("dataset"),
        }
    }

    /// Honest inputs for epochs 0..n, each linked to the one before.
    pub fn epochs(&self, n: u64) -> Vec<EpochInput> {
        let spe = sampler::steps_per_epoch(self.dataset_len, self.batch_size);
        let mut prev_hash = genesis_hash::<Sha2>(
            &self.run_id,
            &self.genesis_state,
            &self.dataset_root,
            self.seed,
        );
        let mut state = self.genesis_state;
        let mut prev_claim: Option<EpochClaim> = None;
        let mut out = Vec::new();
        for epoch in 0..n {
            let perm =
                sampler::epoch_permutation::<Sha2>(self.seed, epoch, self.dataset_len as u32);
            let start_state = state;
            let link = prev_hash;
            let mut records = Records::new();
            let mut hashes = Vec::new();
            for k in 0..spe {
                let step = epoch * spe + k;
                let last = k + 1 == spe;
                let param = Sha2::tagged("test/param", &[&step.to_le_bytes()]);
                if last {
                    state = Sha2::tagged("test/state", &[&step.to_le_bytes()]);
                }
                let r = StepRecord {
                    run_id: self.run_id,
                    epoch,
                    step,
                    prev_record_hash: prev_hash,
                    batch_digest: sampler::batch_digest::<Sha2>(sampler::batch_indices(
                        &perm,
                        self.batch_size,
                        k,
                    )),
                    hparams_digest: hparams_digest::<Sha2>(
                        self.schedule.lr_at(step),
                        &self.optimizer_digest,
                    ),
                    loss_bits: (2.5f32 / (step + 1) as f32).to_bits(),
                    grad_norm_bits: 1.25f32.to_bits(),
                    param_digest: param,
                    state_digest: last.then_some(state),
                };
                prev_hash = r.hash::<Sha2>();
                hashes.push(prev_hash);
                records.push(&record::to_words(&r.encode()));
            }
            let claim = EpochClaim {
                guarantees: Guarantees::TORCH_MODE,
                run_id: self.run_id,
                epoch,
                first_step: epoch * spe,
                step_count: spe,
                prev_record_hash: link,
                last_record_hash: prev_hash,
                records_root: merkle::root::<Sha2>(&hashes),
                start_state_digest: start_state,
                end_state_digest: state,
                dataset_root: self.dataset_root,
                dataset_len: self.dataset_len,
                sampler_seed: self.seed,
                batch_size: self.batch_size,
                optimizer_digest: self.optimizer_digest,
                schedule: self.schedule,
                image_id: self.image_id,
            };
            out.push(EpochInput {
                claim: claim.clone(),
                prev: prev_claim.take(),
                records,
                canonical: None,
            });
            prev_claim = Some(claim);
        }
        out
    }
}
