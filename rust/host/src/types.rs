//! Step records, epoch claims and schedules as frozen Python classes, named as in veritrain-core.
//!
//! Each converts to and from the core's canonical bytes (`to_bytes`/`from_bytes`) and, for the
//! claim and its schedule, the JSON form the ledger holds (`to_json`/`from_json`: digests as
//! lowercase hex; a schedule's step_size, gamma and warmup_steps always, null where unused, and
//! min_lr and total_steps in a cosine schedule only). Validation is the core's; bytes or JSON that are
//! not a valid encoding raise `EncodingError`, bad constructor arguments `ValueError`.
//!
//! [`core_class!`] writes what every such class has; the claim's class is written from the core's
//! list of its fields (`veritrain_core::claim_fields!`), so a field added there appears here, in
//! the constructor, the attributes and the JSON form, without being spelled again.
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use veritrain_core::claim::ClaimDecodeError;
use veritrain_core::hash::Sha2;
use veritrain_core::record::{decode_run_id, encode_run_id, DecodeError, RUN_ID_LEN};
use veritrain_core::schedule::ScheduleError;
use veritrain_core::{
    Digest, EpochClaim, Field, Guarantees, Schedule, StepRecord, CLAIM_FIELDS, RECORD_FIELDS,
};

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

    /// A required field's value, as it is.
    fn item(&self, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.d
            .get_item(key)?
            .ok_or_else(|| EncodingError::new_err(format!("{}: missing field '{key}'", self.what)))
    }

    fn get<T>(&self, key: &str) -> PyResult<T>
    where
        T: for<'b> FromPyObjectOwned<'b>,
    {
        self.extract(key, &self.item(key)?)
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

/// A core type as a frozen Python class: one `#[pymethods]` block (pyo3 allows one per class) of
/// the class's own methods, a getter for each field listed in `get` (by its kind, see [`kind!`]),
/// and what every such class has: `to_bytes`/`from_bytes` in the canonical encoding (bytes that
/// are not one raise `EncodingError` with the message `$error` makes of the core's error) and
/// `__reduce__` over them, so copies and pickles travel as the canonical bytes (`copy.deepcopy` of
/// a pydantic default).
macro_rules! core_class {
    (
        $class:ident($core:ident), $error:expr;
        get { $($field:ident: $kind:ident),* $(,)? }
        $($methods:tt)*
    ) => {
        #[pymethods]
        impl $class {
            $($methods)*

            $(
                #[getter]
                fn $field<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    Ok(kind!(to_py, $kind, py, self.0.$field))
                }
            )*

            fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.0.encode())
            }

            #[staticmethod]
            fn from_bytes(data: &[u8]) -> PyResult<Self> {
                $core::decode(data)
                    .map(Self)
                    .map_err(|e| EncodingError::new_err(($error)(e)))
            }

            fn __reduce__<'py>(
                slf: &Bound<'py, Self>,
            ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
                let py = slf.py();
                Ok((
                    slf.get_type().getattr("from_bytes")?,
                    (PyBytes::new(py, &slf.get().0.encode()),),
                ))
            }
        }
    };
}

/// What each kind of field (the kinds of `veritrain_core::claim_fields!`) is in Python: the
/// constructor's argument type (`arg`) and its check (`from_arg`, a `ValueError` naming `$what`),
/// the attribute (`to_py`) and the JSON form (`to_json`, `from_json`: digests as lowercase hex).
macro_rules! kind {
    (arg, guarantees) => {
        u32
    };
    (arg, run_id) => {
        &str
    };
    (arg, u64) => {
        u64
    };
    (arg, digest) => {
        &[u8]
    };
    (arg, schedule) => {
        PySchedule
    };

    (from_arg, guarantees, $what:expr, $v:expr) => {
        check_guarantees($v).map_err(value_error)?
    };
    (from_arg, run_id, $what:expr, $v:expr) => {
        run_id_arg($v)?
    };
    (from_arg, u64, $what:expr, $v:expr) => {
        $v
    };
    (from_arg, digest, $what:expr, $v:expr) => {
        digest_arg($v, $what)?
    };
    (from_arg, schedule, $what:expr, $v:expr) => {
        $v.0
    };

    (to_py, run_id, $py:ident, $v:expr) => {
        PyString::new($py, run_id_str(&$v)).into_any()
    };
    (to_py, digest, $py:ident, $v:expr) => {
        PyBytes::new($py, &$v).into_any()
    };
    (to_py, schedule, $py:ident, $v:expr) => {
        PySchedule($v).into_bound_py_any($py)?
    };
    (to_py, $int:ident, $py:ident, $v:expr) => {
        $v.into_bound_py_any($py)?
    };

    (to_json, digest, $py:ident, $v:expr) => {
        PyString::new($py, &hex::encode($v)).into_any()
    };
    (to_json, schedule, $py:ident, $v:expr) => {
        PySchedule($v).json($py)?.into_any()
    };
    (to_json, $kind:ident, $py:ident, $v:expr) => {
        kind!(to_py, $kind, $py, $v)
    };

    (from_json, guarantees, $f:ident, $key:expr) => {
        check_guarantees($f.get($key)?).map_err(EncodingError::new_err)?
    };
    (from_json, run_id, $f:ident, $key:expr) => {
        $f.run_id()?
    };
    (from_json, u64, $f:ident, $key:expr) => {
        $f.get($key)?
    };
    (from_json, digest, $f:ident, $key:expr) => {
        $f.digest($key)?
    };
    (from_json, schedule, $f:ident, $key:expr) => {
        PySchedule::parse(&format!("{}: field '{}'", $f.what, $key), &$f.item($key)?)?.0
    };
}

// --- schedule ---------------------------------------------------------------------------------

/// A learning-rate schedule: only kinds the guest recomputes bit for bit (PROTOCOL.md).
#[pyclass(frozen, eq, name = "Schedule", module = "veritrain.prover._native")]
#[derive(Clone, PartialEq)]
pub struct PySchedule(pub Schedule);

const SCHEDULE_FIELDS: [&str; 7] = [
    "kind",
    "base_lr",
    "step_size",
    "gamma",
    "warmup_steps",
    "min_lr",
    "total_steps",
];

/// A schedule's fields beyond its kind and `base_lr`, each `None` where the kind has none.
#[derive(Clone, Copy, Default)]
struct Extra {
    step_size: Option<u64>,
    gamma: Option<f64>,
    warmup_steps: Option<u64>,
    min_lr: Option<f64>,
    total_steps: Option<u64>,
}

impl PySchedule {
    /// The schedule of a kind with its fields; each kind takes exactly its own extra fields.
    fn build(kind: &str, base_lr: f64, x: Extra) -> Result<Schedule, String> {
        let takes = |fields: &str| format!("schedule kind '{kind}' takes exactly {fields}");
        let s = match (
            kind,
            x.step_size,
            x.gamma,
            x.warmup_steps,
            x.min_lr,
            x.total_steps,
        ) {
            ("constant", None, None, None, None, None) => Schedule::Constant { base_lr },
            ("step_decay", Some(step_size), Some(gamma), None, None, None) => Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            },
            ("linear_warmup", None, None, Some(warmup_steps), None, None) => {
                Schedule::LinearWarmup {
                    base_lr,
                    warmup_steps,
                }
            }
            ("cosine", None, None, Some(warmup_steps), Some(min_lr), Some(total_steps)) => {
                Schedule::Cosine {
                    base_lr,
                    warmup_steps,
                    min_lr,
                    total_steps,
                }
            }
            ("inverse_sqrt", None, None, Some(warmup_steps), None, None) => Schedule::InverseSqrt {
                base_lr,
                warmup_steps,
            },
            ("constant", ..) => return Err("schedule kind 'constant' takes no extra fields".into()),
            ("step_decay", ..) => return Err(takes("the extra fields step_size and gamma")),
            ("linear_warmup" | "inverse_sqrt", ..) => {
                return Err(takes("the extra field warmup_steps"))
            }
            ("cosine", ..) => {
                return Err(takes(
                    "the extra fields warmup_steps, min_lr and total_steps",
                ))
            }
            (other, ..) => {
                return Err(format!(
                    "schedule: unknown kind '{other}' (constant, step_decay, linear_warmup, \
                     cosine or inverse_sqrt)"
                ))
            }
        };
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    fn parts(&self) -> (&'static str, f64, Extra) {
        let none = Extra::default();
        match self.0 {
            Schedule::Constant { base_lr } => ("constant", base_lr, none),
            Schedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => (
                "step_decay",
                base_lr,
                Extra {
                    step_size: Some(step_size),
                    gamma: Some(gamma),
                    ..none
                },
            ),
            Schedule::LinearWarmup {
                base_lr,
                warmup_steps,
            } => (
                "linear_warmup",
                base_lr,
                Extra {
                    warmup_steps: Some(warmup_steps),
                    ..none
                },
            ),
            Schedule::Cosine {
                base_lr,
                warmup_steps,
                min_lr,
                total_steps,
            } => (
                "cosine",
                base_lr,
                Extra {
                    warmup_steps: Some(warmup_steps),
                    min_lr: Some(min_lr),
                    total_steps: Some(total_steps),
                    ..none
                },
            ),
            Schedule::InverseSqrt {
                base_lr,
                warmup_steps,
            } => (
                "inverse_sqrt",
                base_lr,
                Extra {
                    warmup_steps: Some(warmup_steps),
                    ..none
                },
            ),
        }
    }

    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (kind, base_lr, x) = self.parts();
        let d = PyDict::new(py);
        d.set_item("kind", kind)?;
        d.set_item("base_lr", base_lr)?;
        d.set_item("step_size", x.step_size)?;
        d.set_item("gamma", x.gamma)?;
        d.set_item("warmup_steps", x.warmup_steps)?;
        // Only cosine has these, and only its JSON names them: a claim of another kind reads as
        // it always has (ledger entries sign this form).
        if let Some(v) = x.min_lr {
            d.set_item("min_lr", v)?;
        }
        if let Some(v) = x.total_steps {
            d.set_item("total_steps", v)?;
        }
        Ok(d)
    }

    fn parse(what: &str, v: &Bound<'_, PyAny>) -> PyResult<Self> {
        let f = JsonFields::new(what, v, &SCHEDULE_FIELDS)?;
        let kind: String = f.get("kind")?;
        // min_lr and total_steps are written only for cosine; absent reads as null.
        let extra = Extra {
            step_size: f.opt("step_size")?,
            gamma: f.opt("gamma")?,
            warmup_steps: f.opt("warmup_steps")?,
            min_lr: f.opt("min_lr")?,
            total_steps: f.opt("total_steps")?,
        };
        Self::build(&kind, f.get("base_lr")?, extra)
            .map(Self)
            .map_err(|e| EncodingError::new_err(format!("{what}: {e}")))
    }
}

core_class! {
    PySchedule(Schedule), |e: ScheduleError| e.to_string();
    get {}

    #[new]
    #[pyo3(signature = (
        *, base_lr, kind = "constant", step_size = None, gamma = None, warmup_steps = None,
        min_lr = None, total_steps = None
    ))]
    fn new(
        base_lr: f64,
        kind: &str,
        step_size: Option<u64>,
        gamma: Option<f64>,
        warmup_steps: Option<u64>,
        min_lr: Option<f64>,
        total_steps: Option<u64>,
    ) -> PyResult<Self> {
        let extra = Extra {
            step_size,
            gamma,
            warmup_steps,
            min_lr,
            total_steps,
        };
        Self::build(kind, base_lr, extra)
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
        self.parts().2.step_size
    }

    #[getter]
    fn gamma(&self) -> Option<f64> {
        self.parts().2.gamma
    }

    #[getter]
    fn warmup_steps(&self) -> Option<u64> {
        self.parts().2.warmup_steps
    }

    #[getter]
    fn min_lr(&self) -> Option<f64> {
        self.parts().2.min_lr
    }

    #[getter]
    fn total_steps(&self) -> Option<u64> {
        self.parts().2.total_steps
    }

    /// The learning rate at a global step.
    fn lr_at(&self, step: u64) -> f64 {
        self.0.lr_at(step)
    }

    /// The JSON form: kind, base_lr, step_size, gamma and warmup_steps (`None` where the kind has
    /// none), and min_lr and total_steps where the kind has them (cosine).
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.json(py)
    }

    #[staticmethod]
    fn from_json(doc: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::parse("schedule", doc)
    }

    fn __repr__(&self) -> String {
        let (kind, base_lr, x) = self.parts();
        let mut s = format!("Schedule(kind='{kind}', base_lr={base_lr:?}");
        if let Some(v) = x.step_size {
            s += &format!(", step_size={v}");
        }
        if let Some(v) = x.gamma {
            s += &format!(", gamma={v:?}");
        }
        if let Some(v) = x.warmup_steps {
            s += &format!(", warmup_steps={v}");
        }
        if let Some(v) = x.min_lr {
            s += &format!(", min_lr={v:?}");
        }
        if let Some(v) = x.total_steps {
            s += &format!(", total_steps={v}");
        }
        s + ")"
    }
}

// --- step record ------------------------------------------------------------------------------

/// One training step's record (224 bytes in its canonical encoding).
#[pyclass(frozen, eq, name = "StepRecord", module = "veritrain.prover._native")]
#[derive(Clone, PartialEq)]
pub struct PyStepRecord(pub StepRecord);

core_class! {
    PyStepRecord(StepRecord), |e: DecodeError| format!("record: {e}");
    get {
        run_id: run_id,
        epoch: u64,
        step: u64,
        prev_record_hash: digest,
        batch_digest: digest,
        hparams_digest: digest,
        param_digest: digest,
    }

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

    /// The f32 loss, exactly, as a Python float.
    #[getter]
    fn loss(&self) -> f32 {
        f32::from_bits(self.0.loss_bits)
    }

    #[getter]
    fn grad_norm(&self) -> f32 {
        f32::from_bits(self.0.grad_norm_bits)
    }

    /// The post-step state digest, at steps that took one; None elsewhere.
    #[getter]
    fn state_digest<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.0.state_digest.map(|d| PyBytes::new(py, &d))
    }

    /// `H(RECORD, record bytes)`: what the next record links to.
    fn hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.hash::<Sha2>())
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

fn check_guarantees(g: u32) -> Result<u32, String> {
    if g & !Guarantees::KNOWN != 0 {
        return Err(format!("claim: unknown guarantee bits {g:#x}"));
    }
    Ok(g)
}

impl PyEpochClaim {
    fn names(&self) -> Vec<&'static str> {
        GUARANTEE_NAMES
            .iter()
            .filter(|(_, bit)| self.0.guarantees & bit != 0)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// The class from the core's list of the claim's fields. `guarantees` comes first in the list and
/// last among the constructor's arguments, where it defaults to torch mode.
macro_rules! py_epoch_claim {
    ([] guarantees: guarantees, $($(#[$doc:meta])* $name:ident: $kind:ident,)*) => {
        impl PyEpochClaim {
            /// The JSON form: every field by name but the version.
            fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                d.set_item("guarantees", self.0.guarantees)?;
                $(d.set_item(stringify!($name), kind!(to_json, $kind, py, self.0.$name))?;)*
                Ok(d)
            }
        }

        core_class! {
            PyEpochClaim(EpochClaim), |e: ClaimDecodeError| e.to_string();
            get { guarantees: guarantees, $($name: $kind),* }

            #[new]
            #[pyo3(signature = (*, $($name,)* guarantees = Guarantees::TORCH_MODE))]
            #[allow(clippy::too_many_arguments)]
            fn new($($name: kind!(arg, $kind),)* guarantees: u32) -> PyResult<Self> {
                Ok(Self(EpochClaim {
                    guarantees: kind!(from_arg, guarantees, "claim: guarantees", guarantees),
                    $($name: kind!(from_arg, $kind, concat!("claim: ", stringify!($name)), $name),)*
                }))
            }

            /// The JSON form an epoch's ledger entry holds.
            fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                self.json(py)
            }

            #[staticmethod]
            fn from_json(doc: &Bound<'_, PyAny>) -> PyResult<Self> {
                let keys = ["guarantees", $(stringify!($name)),*];
                let f = JsonFields::new("claim", doc, &keys)?;
                Ok(Self(EpochClaim {
                    guarantees: kind!(from_json, guarantees, f, "guarantees"),
                    $($name: kind!(from_json, $kind, f, stringify!($name)),)*
                }))
            }

            /// The guarantee bits by name, in bit order.
            #[getter]
            fn guarantee_names(&self) -> Vec<&'static str> {
                self.names()
            }

            /// `H(CLAIM, claim bytes)`: how a receipt's ledger entry names its claim.
            fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.0.digest::<Sha2>())
            }

            /// The `.journal.json` document: the JSON form with the guarantees spelled out.
            fn journal_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = self.json(py)?;
                d.set_item("guarantee_names", PyList::new(py, self.names())?)?;
                Ok(d)
            }

            fn __repr__(&self) -> String {
                let c = &self.0;
                format!(
                    "EpochClaim(run_id='{}', epoch={}, first_step={}, step_count={}, \
                     guarantees={:#x}, last_record_hash={}…, end_state_digest={}…, image_id={}…)",
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
    };
}

veritrain_core::claim_fields!(py_epoch_claim);

/// A field table as Python tuples `(name, offset, length)`.
fn field_table<'py>(py: Python<'py>, fields: &[Field]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, fields.iter().map(|f| (f.name, f.offset, f.len)))
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
    m.add("RECORD_FIELDS", field_table(m.py(), RECORD_FIELDS)?)?;
    m.add("CLAIM_FIELDS", field_table(m.py(), CLAIM_FIELDS)?)?;
    Ok(())
}
