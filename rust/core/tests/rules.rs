//! One test per rule of the epoch check, plus property tests of the encodings and the sampler.
mod common;

use common::{d, Run};
use proptest::prelude::*;
use veritrain_core::hash::Sha2;
use veritrain_core::schedule::powu;
use veritrain_core::{
    check_epoch, merkle, record, sampler, EpochClaim, EpochInput, ErrorKind, Schedule, StepRecord,
};

fn kind(input: &EpochInput) -> Option<ErrorKind> {
    check_epoch::<Sha2>(input).err().map(|e| e.kind)
}

/// Re-encodes record `k` after `f` changes it, and re-chains nothing: the tamper stays local.
fn tamper_record(input: &mut EpochInput, k: usize, f: impl FnOnce(&mut StepRecord)) {
    let mut r = StepRecord::decode(&record::from_words(input.records.get(k))).unwrap();
    f(&mut r);
    *input.records.get_mut(k) = record::to_words(&r.encode());
}

#[test]
fn honest_epochs_pass() {
    for input in Run::small().epochs(3) {
        assert_eq!(check_epoch::<Sha2>(&input), Ok(()));
        assert_eq!(EpochInput::decode(&input.encode()).unwrap(), input);
    }
}

/// Epochs 0 and 1 of the small honest run.
fn epochs() -> (EpochInput, EpochInput) {
    let mut epochs = Run::small().epochs(2);
    let e1 = epochs.pop().unwrap();
    (epochs.pop().unwrap(), e1)
}

#[test]
fn guarantees_this_guest_does_not_give_are_refused() {
    use veritrain_core::Guarantees as G;
    for g in [G::TORCH_MODE & !G::LINEAGE, G::STRUCTURE, G::ARITHMETIC, 0] {
        let (mut x, _) = epochs();
        x.claim.guarantees = g;
        assert_eq!(kind(&x), Some(ErrorKind::Guarantees), "{g}");
    }
    // 31 is a canonical epoch's, which must carry the re-executed steps (tests/zk.rs).
    let (mut x, _) = epochs();
    x.claim.guarantees = G::CANONICAL_MODE;
    assert_eq!(kind(&x), Some(ErrorKind::Encoding));
}

#[test]
fn batch_size_must_be_within_the_dataset() {
    let (e0, _) = epochs();
    let mut x = e0.clone();
    x.claim.batch_size = 0;
    assert_eq!(kind(&x), Some(ErrorKind::Parameters));
    let mut x = e0;
    x.claim.batch_size = x.claim.dataset_len + 1;
    assert_eq!(kind(&x), Some(ErrorKind::Parameters));
}

#[test]
fn an_epoch_has_exactly_its_steps() {
    let (mut x, mut y) = epochs();
    x.records.pop();
    assert_eq!(kind(&x), Some(ErrorKind::StepRange));
    y.claim.first_step += 1;
    assert_eq!(kind(&y), Some(ErrorKind::StepRange));
}

#[test]
fn epoch_zero_starts_at_genesis_and_later_epochs_have_a_predecessor() {
    let (mut x, mut y) = epochs();
    x.claim.start_state_digest = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::Genesis));
    y.prev = None;
    assert_eq!(kind(&y), Some(ErrorKind::Genesis));
}

#[test]
fn an_epoch_continues_its_predecessor() {
    let (_, e1) = epochs();
    let mut x = e1.clone();
    x.claim.start_state_digest = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::Lineage));
    let mut x = e1;
    x.prev.as_mut().unwrap().last_record_hash = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::Lineage));
}

#[test]
fn records_are_in_their_place() {
    let (mut x, _) = epochs();
    tamper_record(&mut x, 1, |r| r.step += 1);
    assert_eq!(kind(&x), Some(ErrorKind::RecordPlace));
}

#[test]
fn records_chain_by_hash() {
    let (e0, _) = epochs();
    let mut x = e0.clone();
    tamper_record(&mut x, 1, |r| r.prev_record_hash = d("other"));
    assert_eq!(kind(&x), Some(ErrorKind::Chain));
    // Changing a record breaks the link of the record after it.
    let mut x = e0;
    tamper_record(&mut x, 0, |r| r.loss_bits ^= 1);
    let err = check_epoch::<Sha2>(&x).unwrap_err();
    assert_eq!((err.kind, err.step), (ErrorKind::Chain, Some(1)));
}

#[test]
fn batches_are_the_samplers() {
    let (mut x, _) = epochs();
    tamper_record(&mut x, 2, |r| {
        r.batch_digest = sampler::batch_digest::<Sha2>(&[0, 1])
    });
    assert_eq!(kind(&x), Some(ErrorKind::Batch));
}

#[test]
fn hyperparameters_follow_the_schedule() {
    let (mut x, _) = epochs();
    x.claim.schedule = Schedule::Constant { base_lr: 0.1 };
    assert_eq!(kind(&x), Some(ErrorKind::Hparams));
}

#[test]
fn the_last_record_states_the_claimed_end_state() {
    let (mut x, _) = epochs();
    x.claim.end_state_digest = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::EndState));
}

#[test]
fn the_claim_names_the_records_root_and_last_record() {
    let (e0, _) = epochs();
    let mut x = e0.clone();
    x.claim.records_root = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::RecordsRoot));
    let mut x = e0;
    x.claim.last_record_hash = d("other");
    assert_eq!(kind(&x), Some(ErrorKind::RecordsRoot));
}

#[test]
fn truncated_and_padded_inputs_are_encoding_errors() {
    let bytes = Run::small().epochs(1)[0].encode();
    for cut in [0, 1, 383, 384, 387, bytes.len() - 1] {
        assert_eq!(
            EpochInput::decode(&bytes[..cut]).unwrap_err().kind,
            ErrorKind::Encoding
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(
        EpochInput::decode(&padded).unwrap_err().kind,
        ErrorKind::Encoding
    );
}

/// Records travel inside their hash messages; any byte of a slot outside the record is checked,
/// and the hash taken in place is the record hash.
#[test]
fn record_slots_hold_the_hash_message() {
    let input = Run::small().epochs(1).remove(0);
    for k in 0..input.records.len() {
        // Against the byte-wise definition, which builds and pads the message itself.
        let bytes = record::from_words(input.records.get(k));
        assert_eq!(
            veritrain_core::hash::digest_bytes(&input.records.hash::<Sha2>(k)),
            <Sha2 as veritrain_core::Sha256>::tagged(veritrain_core::hash::tag::RECORD, &[&bytes])
        );
    }
    let bytes = input.encode();
    let slots = bytes.len() - 256 * input.records.len();
    for k in 0..input.records.len() {
        for pos in (0..20).chain(244..256) {
            let mut bad = bytes.clone();
            bad[slots + 256 * k + pos] ^= 1;
            assert_eq!(
                EpochInput::decode(&bad).unwrap_err().kind,
                ErrorKind::Encoding,
                "slot {k} byte {pos}"
            );
        }
    }
}

#[test]
fn run_id_rule() {
    use veritrain_core::record::{decode_run_id, encode_run_id};
    for ok in ["a", "run-1", "A.b_c-9", "...", ".hidden", &"x".repeat(32)] {
        let raw = encode_run_id(ok).unwrap();
        assert_eq!(decode_run_id(&raw).unwrap(), ok);
    }
    for bad in ["", ".", "..", "a/b", "a b", "vectör", &"x".repeat(33)] {
        assert!(encode_run_id(bad).is_err(), "{bad:?}");
    }
    // Decoding applies the same rule: "." and ".." padded with NUL are refused.
    for bad in [&b"."[..], &b".."[..]] {
        let mut raw = [0u8; 32];
        raw[..bad.len()].copy_from_slice(bad);
        assert!(decode_run_id(&raw).is_err());
    }
}

#[test]
fn merkle_shapes() {
    let l: Vec<_> = (0..5u8).map(|i| d(&i.to_string())).collect();
    fn n(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        merkle::node::<Sha2>(a, b)
    }
    assert_eq!(merkle::root::<Sha2>(&l[..1]), l[0]);
    assert_eq!(merkle::root::<Sha2>(&l[..3]), n(&n(&l[0], &l[1]), &l[2]));
    assert_eq!(
        merkle::root::<Sha2>(&l[..5]),
        n(&n(&n(&l[0], &l[1]), &n(&l[2], &l[3])), &l[4])
    );
    // No duplication: [a, b, c] and [a, b, c, c] differ.
    let mut dup = l[..3].to_vec();
    dup.push(l[2]);
    assert_ne!(merkle::root::<Sha2>(&l[..3]), merkle::root::<Sha2>(&dup));
}

#[test]
fn powu_matches_repeated_multiplication_for_small_powers() {
    assert_eq!(powu(0.5, 0), 1.0);
    assert_eq!(powu(0.5, 3), 0.125);
    assert_eq!(powu(3.0, 5), 243.0);
}

fn arb_record() -> impl Strategy<Value = StepRecord> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(has_state, epoch, step, a, b, loss, gn)| StepRecord {
            run_id: veritrain_core::record::encode_run_id("prop").unwrap(),
            epoch,
            step,
            prev_record_hash: a,
            batch_digest: b,
            hparams_digest: a,
            loss_bits: loss,
            grad_norm_bits: gn,
            param_digest: b,
            state_digest: has_state.then_some(a),
        })
}

proptest! {
    /// `below` skips computing the threshold when it cannot matter; it must draw exactly what
    /// the plain multiply-and-reject draws.
    #[test]
    fn below_is_plain_lemire(seed in any::<u64>(), bound in 1u32..=u32::MAX, small in 1u32..50) {
        let key = <Sha2 as veritrain_core::Sha256>::sha256(&seed.to_le_bytes());
        for b in [bound, small, u32::MAX / 2 + 2] {
            let mut fast = sampler::Xoshiro128::from_key(&key);
            let mut plain = sampler::Xoshiro128::from_key(&key);
            for _ in 0..20 {
                let threshold = b.wrapping_neg() % b;
                let want = loop {
                    let m = plain.next_u32() as u64 * b as u64;
                    if (m as u32) >= threshold {
                        break (m >> 32) as u32;
                    }
                };
                prop_assert_eq!(fast.below(b), want);
            }
        }
    }

    /// The epoch check recomputes the rate only at `constant_until`; that is sound only if the
    /// rate really is constant up to there.
    #[test]
    fn rate_is_constant_until_the_schedule_says(
        kind in 0u32..5, step in 0u64..10_000, len in 1u64..40, base in 0.001f64..1.0,
    ) {
        let s = match kind {
            0 => Schedule::Constant { base_lr: base },
            1 => Schedule::StepDecay { base_lr: base, step_size: len, gamma: 0.9 },
            2 => Schedule::LinearWarmup { base_lr: base, warmup_steps: len * 50 },
            3 => Schedule::Cosine {
                base_lr: base, warmup_steps: len, min_lr: base / 10.0, total_steps: len * 150,
            },
            _ => Schedule::InverseSqrt { base_lr: base, warmup_steps: len * 50 },
        };
        let until = s.constant_until(step);
        prop_assert!(until > step);
        for t in step..until.min(step + 200) {
            prop_assert_eq!(s.lr_at(t).to_bits(), s.lr_at(step).to_bits());
        }
        if let Schedule::StepDecay { step_size, .. } = s {
            prop_assert_eq!(until % step_size, 0);
        }
    }

    #[test]
    fn record_roundtrips(r in arb_record()) {
        let bytes = r.encode();
        prop_assert_eq!(StepRecord::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn record_rejects_any_flipped_header_bit(r in arb_record(), bit in 0usize..64) {
        // The version and flags words admit exactly one valid value each per record.
        let mut bytes = r.encode();
        bytes[bit / 8] ^= 1 << (bit % 8);
        // Setting the flag of a record without a state digest claims the all-zero digest: valid.
        prop_assume!(!(bit == 32 && r.state_digest.is_none()));
        prop_assert!(StepRecord::decode(&bytes).is_err());
    }

    #[test]
    fn permutation_is_a_permutation(seed in any::<u64>(), epoch in 0u64..1000, n in 1u32..2000) {
        let mut p = sampler::epoch_permutation::<Sha2>(seed, epoch, n);
        p.sort_unstable();
        prop_assert_eq!(p, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn batches_cover_the_epoch_once(n in 1u64..500, b in 1u64..64) {
        let perm = sampler::epoch_permutation::<Sha2>(1, 0, n as u32);
        let spe = sampler::steps_per_epoch(n, b);
        let mut all: Vec<u32> = (0..spe).flat_map(|k| sampler::batch_indices(&perm, b, k).to_vec()).collect();
        prop_assert_eq!(all.len() as u64, n);
        all.sort_unstable();
        prop_assert_eq!(all, (0..n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn any_single_byte_change_in_a_record_is_caught(k in 0usize..3, pos in 0usize..224, x in 1u8..=255) {
        let mut input = Run::small().epochs(1).remove(0);
        let mut bytes = record::from_words(input.records.get(k));
        bytes[pos] ^= x;
        *input.records.get_mut(k) = record::to_words(&bytes);
        prop_assert!(check_epoch::<Sha2>(&input).is_err());
    }

    #[test]
    fn claim_roundtrips_and_any_byte_change_is_caught(pos in 0usize..384, x in 1u8..=255) {
        let input = Run::small().epochs(1).remove(0);
        let bytes = input.claim.encode();
        prop_assert_eq!(EpochClaim::decode(&bytes).unwrap(), input.claim.clone());
        let mut bad = bytes;
        bad[pos] ^= x;
        // image_id (last 32 bytes) is not checked by the guest against anything: the verifier
        // compares it with the receipt's image id. Everything else must fail to decode or to check.
        prop_assume!(pos < 352);
        let outcome = EpochClaim::decode(&bad).map(|claim| {
            let mut y = input.clone();
            y.claim = claim;
            check_epoch::<Sha2>(&y)
        });
        prop_assert!(!matches!(outcome, Ok(Ok(()))));
    }
}

#[test]
fn audit_paths_lead_every_leaf_to_the_root() {
    for n in 1..=17usize {
        let l: Vec<_> = (0..n).map(|i| d(&format!("leaf {i}"))).collect();
        let root = merkle::root::<Sha2>(&l);
        for (i, leaf) in l.iter().enumerate() {
            let p = merkle::path::<Sha2>(&l, i);
            let (n, i) = (n as u64, i as u64);
            assert_eq!(
                merkle::root_from_path::<Sha2>(leaf, i, n, &p),
                Some(root),
                "{i} of {n}"
            );
            // Another leaf, another index, a path one too short or too long: not this root.
            let other = d("not a leaf");
            assert_ne!(merkle::root_from_path::<Sha2>(&other, i, n, &p), Some(root));
            if n > 1 {
                let j = (i + 1) % n;
                assert_ne!(
                    merkle::root_from_path::<Sha2>(leaf, j, n, &p),
                    Some(root),
                    "{j}"
                );
                assert_eq!(merkle::root_from_path::<Sha2>(leaf, i, n, &p[1..]), None);
            }
            let mut long = p.clone();
            long.push(other);
            assert_eq!(merkle::root_from_path::<Sha2>(leaf, i, n, &long), None);
            assert_eq!(merkle::root_from_path::<Sha2>(leaf, n, n, &p), None);
        }
    }
}

#[test]
fn audit_path_of_three_leaves_is_rfc6962s() {
    let l: Vec<_> = (0..3u8).map(|i| d(&i.to_string())).collect();
    let n01 = merkle::node::<Sha2>(&l[0], &l[1]);
    assert_eq!(merkle::path::<Sha2>(&l, 0), vec![l[1], l[2]]);
    assert_eq!(merkle::path::<Sha2>(&l, 1), vec![l[0], l[2]]);
    assert_eq!(merkle::path::<Sha2>(&l, 2), vec![n01]);
}

#[test]
fn zk_steps_are_every_step_or_k_distinct_draws_in_order() {
    use veritrain_core::zk::zk_steps;
    let root = d("records root");
    assert_eq!(zk_steps::<Sha2>(&root, 3, 3), vec![0, 1, 2]);
    assert_eq!(zk_steps::<Sha2>(&root, 3, 7), vec![0, 1, 2]);
    for k in 1..10 {
        let s = zk_steps::<Sha2>(&root, 50, k);
        assert!(!s.is_empty() && s.len() <= k as usize);
        assert!(s.windows(2).all(|w| w[0] < w[1]) && s.iter().all(|x| *x < 50));
        // The first k draws are a prefix of the first k + 1 draws.
        let more = zk_steps::<Sha2>(&root, 50, k + 1);
        assert!(s.iter().all(|x| more.contains(x)));
    }
    // Another records root, another choice (for some k: single draws may collide).
    let other = d("another records root");
    assert_ne!(
        zk_steps::<Sha2>(&root, 1000, 4),
        zk_steps::<Sha2>(&other, 1000, 4)
    );
}
