//! The core's free functions across the boundary: hashing, the sampler, genesis links and the
//! guest's input. Records, claims and schedules are classes (`types.rs`).
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veritrain_core::canonical::SETTINGS_LEN;
use veritrain_core::hash::{digest_words, load_words};
use veritrain_core::record::{self, genesis_hash};
use veritrain_core::schedule::hparams_digest;
use veritrain_core::zk::{CanonicalSection, StateTensor, ZkSample, ZkStep};
use veritrain_core::{
    check_epoch, check_records, hash::Sha2, merkle, sampler, EpochInput, RECORD_LEN,
};

use crate::errors::{value_error, EncodingError, EpochCheckError};
use crate::types::{digest_arg, run_id_arg, PyEpochClaim};

#[pyfunction]
#[pyo3(name = "hparams_digest")]
fn py_hparams_digest<'py>(
    py: Python<'py>,
    lr: f64,
    optimizer_digest: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let od = digest_arg(optimizer_digest, "optimizer digest")?;
    Ok(PyBytes::new(py, &hparams_digest::<Sha2>(lr, &od)))
}

/// One state tensor as the prover passes it: (name, dtype, shape, raw little-endian bytes).
type TensorArg = (String, String, Vec<u64>, Vec<u8>);
/// One sample: (canonical row bytes, audit path from the leaf up).
type SampleArg = (Vec<u8>, Vec<Vec<u8>>);
/// One re-executed step: (global step, pre-step state, the batch's samples in batch order).
type ZkStepArg = (u64, Vec<TensorArg>, Vec<SampleArg>);

/// Builds the guest's input bytes from a claim, the previous epoch's claim (or None), the
/// epoch's encoded records and, for a canonical claim (guarantees 31), the canonical section:
/// (canonical settings bytes, the re-executed steps in ascending order).
#[pyfunction]
#[pyo3(signature = (claim, prev, records, canonical = None))]
fn encode_epoch_input<'py>(
    py: Python<'py>,
    claim: &PyEpochClaim,
    prev: Option<&PyEpochClaim>,
    records: Vec<Vec<u8>>,
    canonical: Option<(Vec<u8>, Vec<ZkStepArg>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let records = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            <[u8; RECORD_LEN]>::try_from(r.as_slice())
                .map(|r| record::to_words(&r))
                .map_err(|_| {
                    EncodingError::new_err(format!(
                        "record {i}: expected {RECORD_LEN} bytes, got {}",
                        r.len()
                    ))
                })
        })
        .collect::<PyResult<_>>()?;
    let canonical = canonical.map(canonical_section).transpose()?;
    let input = EpochInput {
        claim: claim.0.clone(),
        prev: prev.map(|p| p.0.clone()),
        records,
        canonical,
    };
    Ok(PyBytes::new(py, &input.encode()))
}

fn canonical_section((settings, steps): (Vec<u8>, Vec<ZkStepArg>)) -> PyResult<CanonicalSection> {
    let settings = <[u8; SETTINGS_LEN]>::try_from(settings.as_slice()).map_err(|_| {
        EncodingError::new_err(format!(
            "canonical settings: expected {SETTINGS_LEN} bytes, got {}",
            settings.len()
        ))
    })?;
    let steps = steps
        .into_iter()
        .map(|(step, state, samples)| {
            let samples = samples
                .into_iter()
                .enumerate()
                .map(|(i, (row, path))| {
                    if row.len() % 4 != 0 {
                        return Err(EncodingError::new_err(format!(
                            "step {step}, sample {i}: a row of {} bytes is not whole words",
                            row.len()
                        )));
                    }
                    let mut words = vec![0u32; row.len() / 4];
                    load_words(&mut words, &row);
                    let path = path
                        .iter()
                        .map(|d| digest_arg(d, "audit path").map(|d| digest_words(&d)))
                        .collect::<PyResult<_>>()?;
                    Ok(ZkSample { row: words, path })
                })
                .collect::<PyResult<_>>()?;
            let mut state: Vec<StateTensor> = state
                .into_iter()
                .map(|(name, dtype, shape, data)| StateTensor {
                    name,
                    dtype,
                    shape,
                    data,
                })
                .collect();
            // The encoding lists a state in name order, as its state digest is taken.
            state.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            Ok(ZkStep {
                step,
                state,
                samples,
            })
        })
        .collect::<PyResult<_>>()?;
    Ok(CanonicalSection { settings, steps })
}

/// Runs the epoch check natively (the same code the guest runs). Raises EpochCheckError, whose
/// `check` and `step` attributes name the rule and the global step (None when no step is at fault).
/// With `records_only`, the input ends after the records and a canonical epoch's re-execution is
/// not checked (core's `check_records`).
#[pyfunction]
#[pyo3(name = "check_epoch", signature = (input, records_only = false))]
fn py_check_epoch(py: Python<'_>, input: &[u8], records_only: bool) -> PyResult<()> {
    let e = match py.detach(|| match records_only {
        false => check_epoch::<Sha2>(&EpochInput::decode(input)?),
        true => check_records::<Sha2>(&EpochInput::decode_records(input)?),
    }) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let err = EpochCheckError::new_err(e.to_string());
    let value = err.value(py);
    value.setattr("check", e.kind.name())?;
    value.setattr("step", e.step)?;
    Err(err)
}

#[pyfunction]
#[pyo3(name = "genesis_hash")]
fn py_genesis_hash<'py>(
    py: Python<'py>,
    run_id: &str,
    start_state_digest: &[u8],
    dataset_root: &[u8],
    sampler_seed: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    let h = genesis_hash::<Sha2>(
        &run_id_arg(run_id)?,
        &digest_arg(start_state_digest, "start state digest")?,
        &digest_arg(dataset_root, "dataset root")?,
        sampler_seed,
    );
    Ok(PyBytes::new(py, &h))
}

/// Validates a run id with the core's rule (1-32 of [A-Za-z0-9._-]); returns it unchanged.
#[pyfunction]
fn check_run_id(run_id: &str) -> PyResult<String> {
    run_id_arg(run_id)?;
    Ok(run_id.to_string())
}

#[pyfunction]
fn merkle_root<'py>(py: Python<'py>, leaves: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
    let leaves = leaves
        .iter()
        .map(|l| digest_arg(l, "merkle leaf"))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyBytes::new(py, &merkle::root::<Sha2>(&leaves)))
}

#[pyfunction]
fn epoch_permutation(seed: u64, epoch: u64, n: u32) -> Vec<u32> {
    sampler::epoch_permutation::<Sha2>(seed, epoch, n)
}

/// Every step's batch of an epoch, in step order: the sampler's permutation cut by the core's
/// `batch_indices`, so that no Python code cuts it again.
#[pyfunction]
fn epoch_batches(seed: u64, epoch: u64, n: u32, batch_size: u64) -> PyResult<Vec<Vec<u32>>> {
    if batch_size == 0 {
        return Err(value_error("batch size must be positive"));
    }
    let perm = sampler::epoch_permutation::<Sha2>(seed, epoch, n);
    Ok((0..sampler::steps_per_epoch(n.into(), batch_size))
        .map(|k| sampler::batch_indices(&perm, batch_size, k).to_vec())
        .collect())
}

#[pyfunction]
fn steps_per_epoch(dataset_len: u64, batch_size: u64) -> PyResult<u64> {
    if batch_size == 0 {
        return Err(value_error("batch size must be positive"));
    }
    Ok(sampler::steps_per_epoch(dataset_len, batch_size))
}

/// The steps (0-based within the epoch, ascending) an epoch's guest re-executes (PROTOCOL §11).
#[pyfunction]
fn zk_steps(records_root: &[u8], step_count: u64, k: u32) -> PyResult<Vec<u64>> {
    if step_count > u32::MAX as u64 {
        return Err(value_error("step count must fit in a u32"));
    }
    Ok(veritrain_core::zk::zk_steps::<Sha2>(
        &digest_arg(records_root, "records root")?,
        step_count,
        k,
    ))
}

#[pyfunction]
fn batch_digest<'py>(py: Python<'py>, indices: Vec<u32>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &sampler::batch_digest::<Sha2>(&indices))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_hparams_digest, m)?)?;
    m.add_function(wrap_pyfunction!(encode_epoch_input, m)?)?;
    m.add_function(wrap_pyfunction!(py_check_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(py_genesis_hash, m)?)?;
    m.add_function(wrap_pyfunction!(check_run_id, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_root, m)?)?;
    m.add_function(wrap_pyfunction!(epoch_permutation, m)?)?;
    m.add_function(wrap_pyfunction!(epoch_batches, m)?)?;
    m.add_function(wrap_pyfunction!(steps_per_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(batch_digest, m)?)?;
    m.add_function(wrap_pyfunction!(zk_steps, m)?)?;
    Ok(())
}
