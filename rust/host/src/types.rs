//! Step records, epoch claims and schedules as frozen Python classes, named as in veritrain-core.
//!
//! Each converts to and from the core's canonical bytes (`to_bytes`/`from_bytes`) and, for the
//! claim and its schedule, the JSON form the ledger holds (`to_json`/`from_json`: digests as
//! lowercase hex, every schedule field present). Validation is the core's; bytes or JSON that are
//! not a valid encoding raise `EncodingError`, bad constructor arguments `ValueError`.
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use veritrain_core::hash::Sha2;
use veritrain_core::record::{decode_run_id, encode_run_id, RUN_ID_LEN};
use veritrain_core::{Digest, EpochClaim, Guarantees, Schedule, StepRecord};

use crate::errors::{value_error, EncodingError};

/// The guarantee bits by name, in bit order (the names `journal.json` and policies use).
pub const GUARANTEE_NAMES: [(&str, u32); 5] = [
    ("structure", Guarantees::STRUCTURE),
    ("sampler", Guarantees::SAMPLER),
    ("schedule", Guarantees::SCHEDULE),
    ("lineage", Guarantees::LINEAGE),
    ("arithmetic", Guarantees::ARITHMETIC),
];

pub fn digest_arg(v: &[u8], what: &str) -> PyResult<Digest> {
    v.try_into()
        .map_err(|_| value_error(format!("{what}: a digest is 32 bytes, got {}", v.len())))
}

pub fn run_id_arg(s: &str) -> PyResult<[u8; RUN_ID_LEN]> {
    encode_run_id(s).map_err(|e| value_error(format!("run id {s:?}: {e}")))
}

fn run_id_str(raw: &[u8; RUN_ID_LEN]) -> &str {
    decode_run_id(raw).expect("run ids are checked when a record or claim is made")
}

fn hex_prefix(d: &Digest) -> String {
    hex::encode(&d[..4])
}

/// Reads the JSON form of a record-like value: a dict whose keys are exactly the fields named.
struct JsonFields<'a, 'py> {
    what: &'a str,
    d: &'a Bound<'py, PyDict>,
}

impl<'a, 'py> JsonFields<'a, 'py> {
    fn new(what: &'a str, v: &'a Bound<'py, PyAny>, allowed: &[&str]) -> PyResult<Self> {
        let d = v.cast::<PyDict>().map_err(|_| {
            EncodingError::new_err(format!(
                "{what}: expected a JSON object, got {}",
                type_name(v)
            ))
        })?;
        for key in d.keys() {
            let key: String = key.extract().unwrap_or_else(|_| key.to_string());
            if !allowed.contains(&key.as_str()) {
                return Err(EncodingError::new_err(format!(
                    "{what}: unknown field '{key}'"
                )));
            }
        }
        Ok(Self { what, d })
    }

    fn wrong(&self, key: &str, problem: impl std::fmt::Display) -> PyErr {
        EncodingError::new_err(format!("{}: field '{key}': {problem}", self.what))
    }

    fn get<T>(&self, key: &str) -> PyResult<T>
    where
        T: for<'b> FromPyObjectOwned<'b>,
    {
        let v = self.d.get_item(key)?.ok_or_else(|| {
            EncodingError::new_err(format!("{}: missing field '{key}'", self.what))
        })?;
        self.extract(key, &v)
    }

    /// An optional field: absent and `null` are both None.
    fn opt<T>(&self, key: &str) -> PyResult<Option<T>>
    where
        T: for<'b> FromPyObjectOwned<'b>,
    {
        match self.d.get_item(key)? {
            Some(v) if !v.is_none() => self.extract(key, &v).map(Some),
            _ => Ok(None),
        }
    }

    fn extract<T>(&self, key: &str, v: &Bound<'py, PyAny>) -> PyResult<T>
    where
        T: for<'b> FromPyObjectOwned<'b>,
    {
        // A JSON bool is not a number, although Python's bool is an int.
        if v.is_instance_of::<pyo3::types::PyBool>() {
            return Err(self.wrong(key, "expected a number, got a boolean"));
        }
        v.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            self.wrong(key, e)
        })
    }

    fn digest(&self, key: &str) -> PyResult<Digest> {
        let s: String = self.get(key)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| self.wrong(key, "a digest is 64 hex characters"))?;
        Ok(out)
    }

    fn run_id(&self) -> PyResult<[u8; RUN_ID_LEN]> {
        let s: String = self.get("run_id")?;
        encode_run_id(&s).map_err(|e| self.wrong("run_id", e))
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn hex_of(d: &Digest) -> String {
    hex::encode(d)
}

// --- schedule ---------------------------------------------------------------------------------

/// A learning-rate schedule: only kinds the guest recomputes bit for bit (PROTOCOL.md).
#[pyclass(frozen, eq, name = "Schedule", module = "veritrain.prover._native")]
#[derive(Clone, PartialEq)]
pub struct PySchedule(pub Schedule);

const SCHEDULE_FIELDS: [&str; 5] = ["kind", "base_lr", "step_size", "gamma", "warmup_steps"];

impl PySchedule {
    /// The schedule of a kind with its fields; each kind takes exactly its own extra fields.
    fn build(
        kind: &str,
        base_lr: f64,
        step_size: Option<u64>,
        gamma: Option<f64>,
        warmup_steps: Option<u64>,
    ) -> Result<Schedule, String> {
        let s = match (kind, step_size, gamma, warmup_steps) {
            ("constant", None, None, None) => Schedule::Constant { base_lr },
            ("step_decay", Some(step_size), Some(gamma), None) => Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            },
            ("linear_warmup", None, None, Some(warmup_steps)) => Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            },
            ("constant", ..) => return Err("schedule kind 'constant' takes no extra fields".into()),
            ("step_decay", ..) => {
                return Err(
                    "schedule kind 'step_decay' takes exactly the extra fields step_size and gamma"
                        .into(),
                )
            }
            ("linear_warmup", ..) => {
                return Err(
                    "schedule kind 'linear_warmup' takes exactly the extra field warmup_steps"
                        .into(),
                )
            }
            (other, ..) => {
                return Err(format!(
                    "schedule: unknown kind '{other}' (constant, step_decay or linear_warmup)"
                ))
            }
        };
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    fn parts(&self) -> (&'static str, f64, Option<u64>, Option<f64>, Option<u64>) {
        match self.0 {
            Schedule::Constant { base_lr } => ("constant", base_lr, None, None, None),
            Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => ("step_decay", base_lr, Some(step_size), Some(gamma), None),
            Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            } => ("linear_warmup", base_lr, None, None, Some(warmup_steps)),
        }
    }

    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (kind, base_lr, step_size, gamma, warmup_steps) = self.parts();
        let d = PyDict::new(py);
        d.set_item("kind", kind)?;
        d.set_item("base_lr", base_lr)?;
        d.set_item("step_size", step_size)?;
        d.set_item("gamma", gamma)?;
        d.set_item("warmup_steps", warmup_steps)?;
        Ok(d)
    }

    fn parse(what: &str, v: &Bound<'_, PyAny>) -> PyResult<Self> {
        let f = JsonFields::new(what, v, &SCHEDULE_FIELDS)?;
        let kind: String = f.get("kind")?;
        Self::build(
            &kind,
            f.get("base_lr")?,
            f.opt("step_size")?,
            f.opt("gamma")?,
            f.opt("warmup_steps")?,
        )
        .map(Self)
        .map_err(|e| EncodingError::new_err(format!("{what}: {e}")))
    }
}

#[pymethods]
impl PySchedule {
    #[new]
    #[pyo3(signature = (*, base_lr, kind = "constant", step_size = None, gamma = None, warmup_steps = None))]
    fn new(
        base_lr: f64,
        kind: &str,
        step_size: Option<u64>,
        gamma: Option<f64>,
        warmup_steps: Option<u64>,
    ) -> PyResult<Self> {
        Self::build(kind, base_lr, step_size, gamma, warmup_steps)
            .map(Self)
            .map_err(value_error)
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.parts().0
    }

    #[getter]
    fn base_lr(&self) -> f64 {
        self.parts().1
    }

    #[getter]
    fn step_size(&self) -> Option<u64> {
        self.parts().2
    }

    #[getter]
    fn gamma(&self) -> Option<f64> {
        self.parts().3
    }

    #[getter]
    fn warmup_steps(&self) -> Option<u64> {
        self.parts().4
    }

    /// The learning rate at a global step.
    fn lr_at(&self, step: u64) -> f64 {
        self.0.lr_at(step)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Schedule::decode(data)
            .map(Self)
            .map_err(|e| EncodingError::new_err(e.to_string()))
    }

    /// The JSON form: every field, `None` where the kind has none.
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.json(py)
    }

    #[staticmethod]
    fn from_json(doc: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::parse("schedule", doc)
    }

    /// Copies and pickles travel as the canonical bytes (`copy.deepcopy` of a pydantic default).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        Ok((
            slf.get_type().getattr("from_bytes")?,
            (PyBytes::new(py, &slf.get().0.encode()),),
        ))
    }

    fn __repr__(&self) -> String {
        let (kind, base_lr, step_size, gamma, warmup_steps) = self.parts();
        let mut s = format!("Schedule(kind='{kind}', base_lr={base_lr:?}");
        if let Some(v) = step_size {
            s += &format!(", step_size={v}");
        }
        if let Some(v) = gamma {
            s += &format!(", gamma={v:?}");
        }
        if let Some(v) = warmup_steps {
            s += &format!(", warmup_steps={v}");
        }
        s + ")"
    }
}

// --- step record ------------------------------------------------------------------------------

/// One training step's record (224 bytes in its canonical encoding).
#[pyclass(frozen, eq, name = "StepRecord", module = "veritrain.prover._native")]
#[derive(Clone, PartialEq)]
pub struct PyStepRecord(pub StepRecord);

#[pymethods]
impl PyStepRecord {
    #[new]
    #[pyo3(signature = (
        *, run_id, epoch, step, prev_record_hash, batch_digest, hparams_digest, loss, grad_norm,
        param_digest, state_digest = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        run_id: &str,
        epoch: u64,
        step: u64,
        prev_record_hash: &[u8],
        batch_digest: &[u8],
        hparams_digest: &[u8],
        loss: f32,
        grad_norm: f32,
        param_digest: &[u8],
        state_digest: Option<&[u8]>,
    ) -> PyResult<Self> {
        Ok(Self(StepRecord {
            run_id: run_id_arg(run_id)?,
            epoch,
            step,
            prev_record_hash: digest_arg(prev_record_hash, "record: prev_record_hash")?,
            batch_digest: digest_arg(batch_digest, "record: batch_digest")?,
            hparams_digest: digest_arg(hparams_digest, "record: hparams_digest")?,
            loss_bits: loss.to_bits(),
            grad_norm_bits: grad_norm.to_bits(),
            param_digest: digest_arg(param_digest, "record: param_digest")?,
            state_digest: state_digest
                .map(|s| digest_arg(s, "record: state_digest"))
                .transpose()?,
        }))
    }

    #[getter]
    fn run_id(&self) -> &str {
        run_id_str(&self.0.run_id)
    }

    #[getter]
    fn epoch(&self) -> u64 {
        self.0.epoch
    }

    #[getter]
    fn step(&self) -> u64 {
        self.0.step
    }

    #[getter]
    fn prev_record_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.prev_record_hash)
    }

    #[getter]
    fn batch_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.batch_digest)
    }

    #[getter]
    fn hparams_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.hparams_digest)
    }

    /// The f32 loss, exactly, as a Python float.
    #[getter]
    fn loss(&self) -> f32 {
        f32::from_bits(self.0.loss_bits)
    }

    #[getter]
    fn grad_norm(&self) -> f32 {
        f32::from_bits(self.0.grad_norm_bits)
    }

    #[getter]
    fn param_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.param_digest)
    }

    /// The post-step state digest, at steps that took one; None elsewhere.
    #[getter]
    fn state_digest<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.0.state_digest.map(|d| PyBytes::new(py, &d))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        StepRecord::decode(data)
            .map(Self)
            .map_err(|e| EncodingError::new_err(format!("record: {e}")))
    }

    /// `H(RECORD, record bytes)`: what the next record links to.
    fn hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.hash::<Sha2>())
    }

    /// Copies and pickles travel as the canonical bytes (`copy.deepcopy` of a pydantic default).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        Ok((
            slf.get_type().getattr("from_bytes")?,
            (PyBytes::new(py, &slf.get().0.encode()),),
        ))
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "StepRecord(run_id='{}', epoch={}, step={}, loss={:?}, grad_norm={:?}, \
             prev_record_hash={}…, param_digest={}…, state_digest={})",
            run_id_str(&r.run_id),
            r.epoch,
            r.step,
            f32::from_bits(r.loss_bits),
            f32::from_bits(r.grad_norm_bits),
            hex_prefix(&r.prev_record_hash),
            hex_prefix(&r.param_digest),
            r.state_digest
                .map_or("None".into(), |d| format!("{}…", hex_prefix(&d))),
        )
    }
}

// --- epoch claim ------------------------------------------------------------------------------

/// What the trainer asserts about one epoch; a receipt's journal is exactly this claim.
#[pyclass(frozen, eq, name = "EpochClaim", module = "veritrain.prover._native")]
#[derive(Clone, PartialEq)]
pub struct PyEpochClaim(pub EpochClaim);

const CLAIM_FIELDS: [&str; 17] = [
    "guarantees",
    "run_id",
    "epoch",
    "first_step",
    "step_count",
    "prev_record_hash",
    "last_record_hash",
    "records_root",
    "start_state_digest",
    "end_state_digest",
    "dataset_root",
    "dataset_len",
    "sampler_seed",
    "batch_size",
    "optimizer_digest",
    "schedule",
    "image_id",
];

fn check_guarantees(g: u32) -> Result<u32, String> {
    if g & !Guarantees::KNOWN != 0 {
        return Err(format!("claim: unknown guarantee bits {g:#x}"));
    }
    Ok(g)
}

impl PyEpochClaim {
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.0;
        let d = PyDict::new(py);
        d.set_item("guarantees", c.guarantees)?;
        d.set_item("run_id", run_id_str(&c.run_id))?;
        d.set_item("epoch", c.epoch)?;
        d.set_item("first_step", c.first_step)?;
        d.set_item("step_count", c.step_count)?;
        d.set_item("prev_record_hash", hex_of(&c.prev_record_hash))?;
        d.set_item("last_record_hash", hex_of(&c.last_record_hash))?;
        d.set_item("records_root", hex_of(&c.records_root))?;
        d.set_item("start_state_digest", hex_of(&c.start_state_digest))?;
        d.set_item("end_state_digest", hex_of(&c.end_state_digest))?;
        d.set_item("dataset_root", hex_of(&c.dataset_root))?;
        d.set_item("dataset_len", c.dataset_len)?;
        d.set_item("sampler_seed", c.sampler_seed)?;
        d.set_item("batch_size", c.batch_size)?;
        d.set_item("optimizer_digest", hex_of(&c.optimizer_digest))?;
        d.set_item("schedule", PySchedule(c.schedule).json(py)?)?;
        d.set_item("image_id", hex_of(&c.image_id))?;
        Ok(d)
    }

    fn names(&self) -> Vec<&'static str> {
        GUARANTEE_NAMES
            .iter()
            .filter(|(_, bit)| self.0.guarantees & bit != 0)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[pymethods]
impl PyEpochClaim {
    #[new]
    #[pyo3(signature = (
        *, run_id, epoch, first_step, step_count, prev_record_hash, last_record_hash,
        records_root, start_state_digest, end_state_digest, dataset_root, dataset_len,
        sampler_seed, batch_size, optimizer_digest, schedule, image_id,
        guarantees = Guarantees::TORCH_MODE
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        run_id: &str,
        epoch: u64,
        first_step: u64,
        step_count: u64,
        prev_record_hash: &[u8],
        last_record_hash: &[u8],
        records_root: &[u8],
        start_state_digest: &[u8],
        end_state_digest: &[u8],
        dataset_root: &[u8],
        dataset_len: u64,
        sampler_seed: u64,
        batch_size: u64,
        optimizer_digest: &[u8],
        schedule: PySchedule,
        image_id: &[u8],
        guarantees: u32,
    ) -> PyResult<Self> {
        let d = |v: &[u8], what: &str| digest_arg(v, &format!("claim: {what}"));
        Ok(Self(EpochClaim {
            guarantees: check_guarantees(guarantees).map_err(value_error)?,
            run_id: run_id_arg(run_id)?,
            epoch,
            first_step,
            step_count,
            prev_record_hash: d(prev_record_hash, "prev_record_hash")?,
            last_record_hash: d(last_record_hash, "last_record_hash")?,
            records_root: d(records_root, "records_root")?,
            start_state_digest: d(start_state_digest, "start_state_digest")?,
            end_state_digest: d(end_state_digest, "end_state_digest")?,
            dataset_root: d(dataset_root, "dataset_root")?,
            dataset_len,
            sampler_seed,
            batch_size,
            optimizer_digest: d(optimizer_digest, "optimizer_digest")?,
            schedule: schedule.0,
            image_id: d(image_id, "image_id")?,
        }))
    }

    #[getter]
    fn guarantees(&self) -> u32 {
        self.0.guarantees
    }

    /// The guarantee bits by name, in bit order.
    #[getter]
    fn guarantee_names(&self) -> Vec<&'static str> {
        self.names()
    }

    #[getter]
    fn run_id(&self) -> &str {
        run_id_str(&self.0.run_id)
    }

    #[getter]
    fn epoch(&self) -> u64 {
        self.0.epoch
    }

    #[getter]
    fn first_step(&self) -> u64 {
        self.0.first_step
    }

    #[getter]
    fn step_count(&self) -> u64 {
        self.0.step_count
    }

    #[getter]
    fn prev_record_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.prev_record_hash)
    }

    #[getter]
    fn last_record_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.last_record_hash)
    }

    #[getter]
    fn records_root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.records_root)
    }

    #[getter]
    fn start_state_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.start_state_digest)
    }

    #[getter]
    fn end_state_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.end_state_digest)
    }

    #[getter]
    fn dataset_root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.dataset_root)
    }

    #[getter]
    fn dataset_len(&self) -> u64 {
        self.0.dataset_len
    }

    #[getter]
    fn sampler_seed(&self) -> u64 {
        self.0.sampler_seed
    }

    #[getter]
    fn batch_size(&self) -> u64 {
        self.0.batch_size
    }

    #[getter]
    fn optimizer_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.optimizer_digest)
    }

    #[getter]
    fn schedule(&self) -> PySchedule {
        PySchedule(self.0.schedule)
    }

    #[getter]
    fn image_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.image_id)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        EpochClaim::decode(data)
            .map(Self)
            .map_err(|e| EncodingError::new_err(e.to_string()))
    }

    /// `H(CLAIM, claim bytes)`: how a receipt's ledger entry names its claim.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.digest::<Sha2>())
    }

    /// The JSON form an epoch's ledger entry holds.
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.json(py)
    }

    #[staticmethod]
    fn from_json(doc: &Bound<'_, PyAny>) -> PyResult<Self> {
        let f = JsonFields::new("claim", doc, &CLAIM_FIELDS)?;
        let schedule =
            f.d.get_item("schedule")?
                .ok_or_else(|| EncodingError::new_err("claim: missing field 'schedule'"))?;
        Ok(Self(EpochClaim {
            guarantees: check_guarantees(f.get("guarantees")?).map_err(EncodingError::new_err)?,
            run_id: f.run_id()?,
            epoch: f.get("epoch")?,
            first_step: f.get("first_step")?,
            step_count: f.get("step_count")?,
            prev_record_hash: f.digest("prev_record_hash")?,
            last_record_hash: f.digest("last_record_hash")?,
            records_root: f.digest("records_root")?,
            start_state_digest: f.digest("start_state_digest")?,
            end_state_digest: f.digest("end_state_digest")?,
            dataset_root: f.digest("dataset_root")?,
            dataset_len: f.get("dataset_len")?,
            sampler_seed: f.get("sampler_seed")?,
            batch_size: f.get("batch_size")?,
            optimizer_digest: f.digest("optimizer_digest")?,
            schedule: PySchedule::parse("claim: field 'schedule'", &schedule)?.0,
            image_id: f.digest("image_id")?,
        }))
    }

    /// The `.journal.json` document: the JSON form with the guarantees spelled out.
    fn journal_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.json(py)?;
        d.set_item("guarantee_names", PyList::new(py, self.names())?)?;
        Ok(d)
    }

    /// Copies and pickles travel as the canonical bytes (`copy.deepcopy` of a pydantic default).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        Ok((
            slf.get_type().getattr("from_bytes")?,
            (PyBytes::new(py, &slf.get().0.encode()),),
        ))
    }

    fn __repr__(&self) -> String {
        let c = &self.0;
        format!(
            "EpochClaim(run_id='{}', epoch={}, first_step={}, step_count={}, guarantees={:#x}, \
             last_record_hash={}…, end_state_digest={}…, image_id={}…)",
            run_id_str(&c.run_id),
            c.epoch,
            c.first_step,
            c.step_count,
            c.guarantees,
            hex_prefix(&c.last_record_hash),
            hex_prefix(&c.end_state_digest),
            hex_prefix(&c.image_id),
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySchedule>()?;
    m.add_class::<PyStepRecord>()?;
    m.add_class::<PyEpochClaim>()?;
    let names = PyDict::new(m.py());
    for (name, bit) in GUARANTEE_NAMES {
        names.set_item(name, bit)?;
    }
    m.add("GUARANTEES", names)?;
    m.add("TORCH_MODE", Guarantees::TORCH_MODE)?;
    Ok(())
}
