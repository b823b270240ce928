//! Canonical epochs (guarantees 31): the guest re-executes the chosen steps of a real canonical
//! MLP run built here with core's own step, and catches a falsified step or a foreign sample.
mod common;

use common::d;
use veritrain_core::canonical::{self, CanonicalSettings, OptState};
use veritrain_core::hash::Sha2;
use veritrain_core::record::{self, encode_run_id, genesis_hash, Records};
use veritrain_core::schedule::hparams_digest;
use veritrain_core::zk::{zk_steps, CanonicalSection, StateTensor, ZkSample, ZkStep};
use veritrain_core::{
    check_epoch, merkle, sampler, EpochClaim, EpochInput, ErrorKind, Guarantees, Schedule,
    StepRecord,
};

const DIMS: [usize; 3] = [3, 4, 3];
const N: u64 = 10;
const BATCH: u64 = 4;

fn rows() -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let mut row = Vec::new();
            for f in 0..DIMS[0] {
                let v = ((i * 7 + f as u64 * 3) % 11) as f32 / 4.0 - 1.2;
                row.extend_from_slice(&v.to_le_bytes());
            }
            row.extend_from_slice(&((i % 3) as i64).to_le_bytes());
            row
        })
        .collect()
}

fn tensor(name: &str, dtype: &str, shape: &[u64], data: Vec<u8>) -> StateTensor {
    StateTensor {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.into(),
        data,
    }
}

fn le(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The state before `step` completed steps, sorted by name: SGD's momentum buffers (`second`
/// empty) or Adam's moments.
fn state(
    params: &[Vec<i32>],
    first: &[Vec<i32>],
    second: &[Vec<u64>],
    step: u64,
) -> Vec<StateTensor> {
    let mut t = vec![
        tensor("manifest", "U8", &[32], d("manifest").to_vec()),
        tensor("step", "I64", &[1], step.to_le_bytes().to_vec()),
    ];
    for j in 0..params.len() {
        let l = j / 2;
        let shape = if j % 2 == 0 {
            vec![DIMS[l + 1] as u64, DIMS[l] as u64]
        } else {
            vec![DIMS[l + 1] as u64]
        };
        let kind = if j % 2 == 0 { "weight" } else { "bias" };
        t.push(tensor(
            &format!("param/{}.{kind}", 2 * l + 1),
            "I32",
            &shape,
            le(&params[j]),
        ));
        if second.is_empty() {
            t.push(tensor(
                &format!("optim/{j}/momentum_buffer"),
                "I32",
                &shape,
                le(&first[j]),
            ));
        } else {
            t.push(tensor(
                &format!("optim/{j}/exp_avg"),
                "I32",
                &shape,
                le(&first[j]),
            ));
            let v = second[j].iter().flat_map(|x| x.to_le_bytes()).collect();
            t.push(tensor(&format!("optim/{j}/exp_avg_sq"), "U64", &shape, v));
        }
    }
    t.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    t
}

fn digests(t: &[StateTensor]) -> ([u8; 32], [u8; 32]) {
    let all: Vec<_> = t.iter().map(|x| x.digest::<Sha2>()).collect();
    let params: Vec<_> = t
        .iter()
        .zip(&all)
        .filter(|(x, _)| x.name.starts_with("param/"))
        .map(|(_, d)| *d)
        .collect();
    (merkle::root::<Sha2>(&all), merkle::root::<Sha2>(&params))
}

struct Epoch {
    input: EpochInput,
    /// Every step's pre-step state (to build the section for any k).
    states: Vec<Vec<StateTensor>>,
}

/// Epoch 0 of an honest canonical SGD run, with `falsify` adding 1 to one weight after that step.
fn epoch0(k: u32, falsify: Option<u64>) -> Epoch {
    epoch0_with(CanonicalSettings::sgd(k, 0.9, 0.01).unwrap(), falsify)
}

fn epoch0_with(settings: CanonicalSettings, falsify: Option<u64>) -> Epoch {
    let k = settings.zk_steps_per_epoch;
    let adam = settings.kind == canonical::OptimizerKind::Adam;
    let schedule = Schedule::Constant { base_lr: 0.25 };
    let run_id = encode_run_id("zk-run").unwrap();
    let rows = rows();
    let leaves: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| sampler::sample_leaf::<Sha2>(i as u64, r))
        .collect();
    let dataset_root = merkle::root::<Sha2>(&leaves);
    let mut params = canonical::mlp_init::<Sha2>(5, &DIMS).unwrap();
    let mut first: Vec<Vec<i32>> = params.iter().map(|p| vec![0; p.len()]).collect();
    let mut second: Vec<Vec<u64>> = match adam {
        true => params.iter().map(|p| vec![0; p.len()]).collect(),
        false => Vec::new(),
    };
    let start = state(&params, &first, &second, 0);
    let start_digest = digests(&start).0;
    let opt_digest = settings.digest::<Sha2>();
    let perm = sampler::epoch_permutation::<Sha2>(1, 0, N as u32);
    let spe = sampler::steps_per_epoch(N, BATCH);
    let link = genesis_hash::<Sha2>(&run_id, &start_digest, &dataset_root, 1);
    let mut prev = link;
    let (mut records, mut hashes, mut states) = (Records::new(), Vec::new(), vec![start]);
    for s in 0..spe {
        let idx = sampler::batch_indices(&perm, BATCH, s);
        let batch: Vec<&[u8]> = idx.iter().map(|i| rows[*i as usize].as_slice()).collect();
        let (x, labels) = canonical::quantize_batch(batch, DIMS[0], DIMS[2]).unwrap();
        let lr = canonical::lr_coef(schedule.lr_at(s)).unwrap();
        let mut p: Vec<&mut [i32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut m: Vec<&mut [i32]> = first.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut v: Vec<&mut [u64]> = second.iter_mut().map(|v| v.as_mut_slice()).collect();
        let opt = match adam {
            true => OptState::Adam {
                exp_avg: &mut m,
                exp_avg_sq: &mut v,
            },
            false => OptState::Sgd { momentum: &mut m },
        };
        let out =
            canonical::mlp_step(&DIMS, &mut p, opt, &settings, lr, &x, &labels, s + 1).unwrap();
        if falsify == Some(s) {
            params[0][0] += 1;
        }
        let after = state(&params, &first, &second, s + 1);
        let (state_digest, param_digest) = digests(&after);
        let r = StepRecord {
            run_id,
            epoch: 0,
            step: s,
            prev_record_hash: prev,
            batch_digest: sampler::batch_digest::<Sha2>(idx),
            hparams_digest: hparams_digest::<Sha2>(schedule.lr_at(s), &opt_digest),
            loss_bits: out.loss_bits,
            grad_norm_bits: out.grad_norm_bits,
            param_digest,
            state_digest: Some(state_digest),
        };
        prev = r.hash::<Sha2>();
        hashes.push(prev);
        records.push(&record::to_words(&r.encode()));
        states.push(after);
    }
    let end = digests(states.last().unwrap()).0;
    let claim = EpochClaim {
        guarantees: Guarantees::TORCH_MODE | Guarantees::ARITHMETIC,
        run_id,
        epoch: 0,
        first_step: 0,
        step_count: spe,
        prev_record_hash: link,
        last_record_hash: prev,
        records_root: merkle::root::<Sha2>(&hashes),
        start_state_digest: start_digest,
        end_state_digest: end,
        dataset_root,
        dataset_len: N,
        sampler_seed: 1,
        batch_size: BATCH,
        optimizer_digest: opt_digest,
        schedule,
        image_id: d("image"),
    };
    let steps = zk_steps::<Sha2>(&claim.records_root, spe, k)
        .into_iter()
        .map(|s| ZkStep {
            step: s,
            state: states[s as usize].clone(),
            samples: sampler::batch_indices(&perm, BATCH, s)
                .iter()
                .map(|i| {
                    let row = &rows[*i as usize];
                    let mut words = vec![0u32; row.len() / 4];
                    veritrain_core::hash::load_words(&mut words, row);
                    ZkSample {
                        row: words,
                        path: merkle::path::<Sha2>(&leaves, *i as usize)
                            .iter()
                            .map(veritrain_core::hash::digest_words)
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    let input = EpochInput {
        claim,
        prev: None,
        records,
        canonical: Some(CanonicalSection {
            settings: settings.to_bytes(),
            steps,
        }),
    };
    Epoch { input, states }
}

fn check(input: &EpochInput) -> Result<(), (ErrorKind, Option<u64>)> {
    check_epoch::<Sha2>(input).map_err(|e| (e.kind, e.step))
}

#[test]
fn an_honest_canonical_epoch_passes_and_roundtrips() {
    for k in [1, 2, 3] {
        let e = epoch0(k, None);
        assert_eq!(check(&e.input), Ok(()), "k = {k}");
        assert_eq!(EpochInput::decode(&e.input.encode()).unwrap(), e.input);
    }
}

#[test]
fn an_honest_adam_epoch_passes_and_a_falsified_one_does_not() {
    let adam = |falsify| {
        let s = CanonicalSettings::adam(3, 0.9, 0.999, 1e-6, 0.0).unwrap();
        check(&epoch0_with(s, falsify).input)
    };
    assert_eq!(adam(None), Ok(()));
    assert_eq!(adam(Some(2)), Err((ErrorKind::Arithmetic, Some(2))));
}

#[test]
fn a_falsified_step_is_arithmetic_when_it_is_re_executed() {
    for s in 0..3 {
        let e = epoch0(3, Some(s));
        assert_eq!(check(&e.input), Err((ErrorKind::Arithmetic, Some(s))));
    }
    // k = 1: caught exactly when the records root chooses the falsified step.
    let e = epoch0(1, Some(1));
    let chosen = e.input.canonical.as_ref().unwrap().steps[0].step;
    let expect = if chosen == 1 {
        Err((ErrorKind::Arithmetic, Some(1)))
    } else {
        Ok(())
    };
    assert_eq!(check(&e.input), expect);
}

#[test]
fn a_sample_outside_the_dataset_is_dataset() {
    let mut e = epoch0(3, None);
    let sample = &mut e.input.canonical.as_mut().unwrap().steps[1].samples[2];
    sample.row[0] ^= 1;
    assert_eq!(check(&e.input), Err((ErrorKind::Dataset, Some(1))));
    let mut e = epoch0(3, None);
    e.input.canonical.as_mut().unwrap().steps[0].samples[0]
        .path
        .pop();
    assert_eq!(check(&e.input), Err((ErrorKind::Dataset, Some(0))));
}

#[test]
fn the_section_must_be_the_claims() {
    // Another pre-step state (a later one), other settings, another choice of steps.
    let mut e = epoch0(3, None);
    e.input.canonical.as_mut().unwrap().steps[0].state = e.states[1].clone();
    assert_eq!(check(&e.input), Err((ErrorKind::Arithmetic, Some(0))));
    let mut e = epoch0(3, None);
    e.input.canonical.as_mut().unwrap().settings =
        CanonicalSettings::sgd(3, 0.5, 0.01).unwrap().to_bytes();
    assert_eq!(check(&e.input), Err((ErrorKind::Arithmetic, None)));
    let mut e = epoch0(3, None);
    e.input.canonical.as_mut().unwrap().steps.pop();
    assert_eq!(check(&e.input), Err((ErrorKind::Arithmetic, None)));
    // A torch-mode claim carries no section, a canonical one must.
    let mut e = epoch0(3, None);
    e.input.canonical = None;
    assert_eq!(check(&e.input), Err((ErrorKind::Encoding, None)));
    let mut e = epoch0(3, None);
    e.input.claim.guarantees = 63;
    assert!(EpochInput::decode(&e.input.encode()).is_err());
}

#[test]
fn truncated_canonical_inputs_are_encoding_errors() {
    let bytes = epoch0(2, None).input.encode();
    for cut in [4, 100, 1000, bytes.len() / 2] {
        let e = EpochInput::decode(&bytes[..bytes.len() - cut]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Encoding, "cut {cut}");
    }
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 4]);
    assert_eq!(
        EpochInput::decode(&padded).unwrap_err().kind,
        ErrorKind::Encoding
    );
}

#[test]
fn the_records_alone_check_without_the_section() {
    use veritrain_core::check_records;
    let mut e = epoch0(2, Some(1));
    e.input.canonical = None;
    // A falsified step is invisible to the records alone; a broken chain is not.
    assert_eq!(check_records::<Sha2>(&e.input), Ok(()));
    let bytes = e.input.encode();
    assert_eq!(EpochInput::decode_records(&bytes).unwrap(), e.input);
    assert_eq!(
        EpochInput::decode(&bytes).unwrap_err().kind,
        ErrorKind::Encoding
    );
    e.input.claim.records_root = d("another root");
    assert_eq!(
        check_records::<Sha2>(&e.input).unwrap_err().kind,
        ErrorKind::RecordsRoot
    );
}
