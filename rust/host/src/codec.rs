//! Records, claims, schedules and epoch inputs across the boundary, as plain dicts of ints, floats,
//! strs and 32-byte `bytes`. Encoding and validation are veritrain-core's.
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use veritrain_core::record::{self, decode_run_id, encode_run_id, genesis_hash};
use veritrain_core::schedule::hparams_digest;
use veritrain_core::{
    check_epoch, hash::Sha2, merkle, sampler, Digest, EpochClaim, EpochInput, Schedule, StepRecord,
    RECORD_LEN,
};

use crate::errors::{value_error, EncodingError, EpochCheckError};

fn field<'py>(d: &Bound<'py, PyDict>, what: &str, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| value_error(format!("{what}: missing field '{key}'")))
}

fn get<T>(d: &Bound<'_, PyDict>, what: &str, key: &str) -> PyResult<T>
where
    T: for<'py> FromPyObjectOwned<'py>,
{
    field(d, what, key)?.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        value_error(format!("{what}: field '{key}': {e}"))
    })
}

pub fn digest_arg(v: &[u8], what: &str) -> PyResult<Digest> {
    v.try_into()
        .map_err(|_| value_error(format!("{what}: a digest is 32 bytes, got {}", v.len())))
}

fn get_digest(d: &Bound<'_, PyDict>, what: &str, key: &str) -> PyResult<Digest> {
    let v: Vec<u8> = get(d, what, key)?;
    digest_arg(&v, &format!("{what}: field '{key}'"))
}

fn run_id_arg(s: &str) -> PyResult<[u8; 32]> {
    encode_run_id(s).map_err(|e| value_error(format!("run id {s:?}: {e}")))
}

fn schedule_from(d: &Bound<'_, PyDict>) -> PyResult<Schedule> {
    let what = "schedule";
    let kind: String = get(d, what, "kind")?;
    let base_lr: f64 = get(d, what, "base_lr")?;
    let s = match kind.as_str() {
        "constant" => Schedule::Constant { base_lr },
        "step_decay" => Schedule::StepDecay {
            base_lr,
            step_size: get(d, what, "step_size")?,
            gamma: get(d, what, "gamma")?,
        },
        "linear_warmup" => Schedule::LinearWarmup {
            base_lr,
            warmup_steps: get(d, what, "warmup_steps")?,
        },
        other => return Err(value_error(format!("schedule: unknown kind {other:?}"))),
    };
    s.validate().map_err(|e| value_error(e.to_string()))?;
    Ok(s)
}

fn schedule_to<'py>(py: Python<'py>, s: &Schedule) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match *s {
        Schedule::Constant { base_lr } => {
            d.set_item("kind", "constant")?;
            d.set_item("base_lr", base_lr)?;
        }
        Schedule::StepDecay {
            base_lr,
            step_size,
            gamma,
        } => {
            d.set_item("kind", "step_decay")?;
            d.set_item("base_lr", base_lr)?;
            d.set_item("step_size", step_size)?;
            d.set_item("gamma", gamma)?;
        }
        Schedule::LinearWarmup {
            base_lr,
            warmup_steps,
        } => {
            d.set_item("kind", "linear_warmup")?;
            d.set_item("base_lr", base_lr)?;
            d.set_item("warmup_steps", warmup_steps)?;
        }
    }
    Ok(d)
}

/// The learning rate the schedule gives at a global step.
#[pyfunction]
fn schedule_lr(schedule: &Bound<'_, PyDict>, step: u64) -> PyResult<f64> {
    Ok(schedule_from(schedule)?.lr_at(step))
}

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

fn record_from(d: &Bound<'_, PyDict>) -> PyResult<StepRecord> {
    let what = "record";
    let run_id: String = get(d, what, "run_id")?;
    let state: Option<Vec<u8>> = get(d, what, "state_digest")?;
    let loss: f32 = get(d, what, "loss")?;
    let grad_norm: f32 = get(d, what, "grad_norm")?;
    Ok(StepRecord {
        run_id: run_id_arg(&run_id)?,
        epoch: get(d, what, "epoch")?,
        step: get(d, what, "step")?,
        prev_record_hash: get_digest(d, what, "prev_record_hash")?,
        batch_digest: get_digest(d, what, "batch_digest")?,
        hparams_digest: get_digest(d, what, "hparams_digest")?,
        loss_bits: loss.to_bits(),
        grad_norm_bits: grad_norm.to_bits(),
        param_digest: get_digest(d, what, "param_digest")?,
        state_digest: state
            .map(|s| digest_arg(&s, "record: field 'state_digest'"))
            .transpose()?,
    })
}

#[pyfunction]
fn encode_record<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &record_from(record)?.encode()))
}

#[pyfunction]
fn decode_record<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let r = StepRecord::decode(data).map_err(|e| EncodingError::new_err(format!("record: {e}")))?;
    let d = PyDict::new(py);
    d.set_item("run_id", decode_run_id(&r.run_id).unwrap())?;
    d.set_item("epoch", r.epoch)?;
    d.set_item("step", r.step)?;
    d.set_item("prev_record_hash", PyBytes::new(py, &r.prev_record_hash))?;
    d.set_item("batch_digest", PyBytes::new(py, &r.batch_digest))?;
    d.set_item("hparams_digest", PyBytes::new(py, &r.hparams_digest))?;
    d.set_item("loss", f32::from_bits(r.loss_bits))?;
    d.set_item("grad_norm", f32::from_bits(r.grad_norm_bits))?;
    d.set_item("param_digest", PyBytes::new(py, &r.param_digest))?;
    d.set_item("state_digest", r.state_digest.map(|s| PyBytes::new(py, &s)))?;
    Ok(d)
}

/// `H(RECORD, record bytes)`; the bytes must be a valid record.
#[pyfunction]
fn record_hash<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let r = StepRecord::decode(data).map_err(|e| EncodingError::new_err(format!("record: {e}")))?;
    Ok(PyBytes::new(py, &r.hash::<Sha2>()))
}

pub fn claim_from(d: &Bound<'_, PyDict>) -> PyResult<EpochClaim> {
    let what = "claim";
    let run_id: String = get(d, what, "run_id")?;
    let schedule = field(d, what, "schedule")?;
    Ok(EpochClaim {
        guarantees: get(d, what, "guarantees")?,
        run_id: run_id_arg(&run_id)?,
        epoch: get(d, what, "epoch")?,
        first_step: get(d, what, "first_step")?,
        step_count: get(d, what, "step_count")?,
        prev_record_hash: get_digest(d, what, "prev_record_hash")?,
        last_record_hash: get_digest(d, what, "last_record_hash")?,
        records_root: get_digest(d, what, "records_root")?,
        start_state_digest: get_digest(d, what, "start_state_digest")?,
        end_state_digest: get_digest(d, what, "end_state_digest")?,
        dataset_root: get_digest(d, what, "dataset_root")?,
        dataset_len: get(d, what, "dataset_len")?,
        sampler_seed: get(d, what, "sampler_seed")?,
        batch_size: get(d, what, "batch_size")?,
        optimizer_digest: get_digest(d, what, "optimizer_digest")?,
        schedule: schedule_from(schedule.cast::<PyDict>()?)?,
        image_id: get_digest(d, what, "image_id")?,
    })
}

pub fn claim_to<'py>(py: Python<'py>, c: &EpochClaim) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("guarantees", c.guarantees)?;
    d.set_item("run_id", decode_run_id(&c.run_id).unwrap())?;
    d.set_item("epoch", c.epoch)?;
    d.set_item("first_step", c.first_step)?;
    d.set_item("step_count", c.step_count)?;
    d.set_item("prev_record_hash", PyBytes::new(py, &c.prev_record_hash))?;
    d.set_item("last_record_hash", PyBytes::new(py, &c.last_record_hash))?;
    d.set_item("records_root", PyBytes::new(py, &c.records_root))?;
    d.set_item(
        "start_state_digest",
        PyBytes::new(py, &c.start_state_digest),
    )?;
    d.set_item("end_state_digest", PyBytes::new(py, &c.end_state_digest))?;
    d.set_item("dataset_root", PyBytes::new(py, &c.dataset_root))?;
    d.set_item("dataset_len", c.dataset_len)?;
    d.set_item("sampler_seed", c.sampler_seed)?;
    d.set_item("batch_size", c.batch_size)?;
    d.set_item("optimizer_digest", PyBytes::new(py, &c.optimizer_digest))?;
    d.set_item("schedule", schedule_to(py, &c.schedule)?)?;
    d.set_item("image_id", PyBytes::new(py, &c.image_id))?;
    Ok(d)
}

#[pyfunction]
fn encode_claim<'py>(py: Python<'py>, claim: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &claim_from(claim)?.encode()))
}

#[pyfunction]
fn decode_claim<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let c = EpochClaim::decode(data).map_err(|e| EncodingError::new_err(e.to_string()))?;
    claim_to(py, &c)
}

/// `H("veritrain/claim/v1", claim bytes)`: how a receipt's ledger entry names its claim.
#[pyfunction]
fn claim_digest<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let c = EpochClaim::decode(data).map_err(|e| EncodingError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &c.digest::<Sha2>()))
}

/// Builds the guest's input bytes from a claim, the previous epoch's claim (or None) and the
/// epoch's encoded records.
#[pyfunction]
#[pyo3(signature = (claim, prev, records))]
fn encode_epoch_input<'py>(
    py: Python<'py>,
    claim: &Bound<'py, PyDict>,
    prev: Option<&Bound<'py, PyDict>>,
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
        claim: claim_from(claim)?,
        prev: prev.map(claim_from).transpose()?,
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
    m.add_function(wrap_pyfunction!(schedule_lr, m)?)?;
    m.add_function(wrap_pyfunction!(py_hparams_digest, m)?)?;
    m.add_function(wrap_pyfunction!(encode_record, m)?)?;
    m.add_function(wrap_pyfunction!(claim_digest, m)?)?;
    m.add_function(wrap_pyfunction!(decode_record, m)?)?;
    m.add_function(wrap_pyfunction!(record_hash, m)?)?;
    m.add_function(wrap_pyfunction!(encode_claim, m)?)?;
    m.add_function(wrap_pyfunction!(decode_claim, m)?)?;
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
