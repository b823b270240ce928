//! The core's free functions across the boundary: hashing, the sampler, genesis links and the
//! guest's input. Records, claims and schedules are classes (`types.rs`).
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veritrain_core::record::{self, genesis_hash};
use veritrain_core::schedule::hparams_digest;
use veritrain_core::{check_epoch, hash::Sha2, merkle, sampler, EpochInput, RECORD_LEN};

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

/// Builds the guest's input bytes from a claim, the previous epoch's claim (or None) and the
/// epoch's encoded records.
#[pyfunction]
#[pyo3(signature = (claim, prev, records))]
fn encode_epoch_input<'py>(
    py: Python<'py>,
    claim: &PyEpochClaim,
    prev: Option<&PyEpochClaim>,
    records: Vec<Vec<u8>>,
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
    let input = EpochInput {
        claim: claim.0.clone(),
        prev: prev.map(|p| p.0.clone()),
        records,
    };
    Ok(PyBytes::new(py, &input.encode()))
}

/// Runs the epoch check natively (the same code the guest runs). Raises EpochCheckError, whose
/// `check` and `step` attributes name the rule and the global step (None when no step is at fault).
#[pyfunction]
#[pyo3(name = "check_epoch")]
fn py_check_epoch(py: Python<'_>, input: &[u8]) -> PyResult<()> {
    let e = match py.detach(|| {
        let input = EpochInput::decode(input)?;
        check_epoch::<Sha2>(&input)
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

#[pyfunction]
fn steps_per_epoch(dataset_len: u64, batch_size: u64) -> PyResult<u64> {
    if batch_size == 0 {
        return Err(value_error("batch size must be positive"));
    }
    Ok(sampler::steps_per_epoch(dataset_len, batch_size))
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
    m.add_function(wrap_pyfunction!(steps_per_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(batch_digest, m)?)?;
    Ok(())
}
