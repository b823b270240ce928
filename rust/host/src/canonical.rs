//! The canonical MLP for Python: its settings as a frozen class, its initialization, and its
//! step run in place on the caller's numpy buffers with the GIL released. The arithmetic is
//! veritrain-core's `canonical` module, the same code the guest runs.
use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veritrain_core::canonical::{self, CanonicalSettings, OptState, OptimizerKind};
use veritrain_core::hash::Sha2;

use crate::errors::value_error;

/// A canonical run's settings (PROTOCOL.md §15); their digest is the run's optimizer digest.
#[pyclass(
    frozen,
    eq,
    name = "CanonicalSettings",
    module = "veritrain.prover._native"
)]
#[derive(Clone, PartialEq)]
pub struct PyCanonicalSettings(pub CanonicalSettings);

fn settings_error(e: canonical::CanonicalError) -> PyErr {
    value_error(format!("canonical settings: {e}"))
}

#[pymethods]
impl PyCanonicalSettings {
    #[staticmethod]
    #[pyo3(signature = (*, zk_steps_per_epoch, momentum, weight_decay))]
    fn sgd(zk_steps_per_epoch: u32, momentum: f64, weight_decay: f64) -> PyResult<Self> {
        CanonicalSettings::sgd(zk_steps_per_epoch, momentum, weight_decay)
            .map(Self)
            .map_err(settings_error)
    }

    #[staticmethod]
    #[pyo3(signature = (*, zk_steps_per_epoch, beta1, beta2, eps, weight_decay))]
    fn adam(
        zk_steps_per_epoch: u32,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> PyResult<Self> {
        CanonicalSettings::adam(zk_steps_per_epoch, beta1, beta2, eps, weight_decay)
            .map(Self)
            .map_err(settings_error)
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        CanonicalSettings::from_bytes(data)
            .map(Self)
            .map_err(|e| crate::errors::EncodingError::new_err(format!("canonical settings: {e}")))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.to_bytes())
    }

    /// The optimizer digest of a canonical run.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.digest::<Sha2>())
    }

    #[getter]
    fn optimizer(&self) -> &'static str {
        match self.0.kind {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }

    #[getter]
    fn zk_steps_per_epoch(&self) -> u32 {
        self.0.zk_steps_per_epoch
    }

    fn __repr__(&self) -> String {
        let s = &self.0;
        format!(
            "CanonicalSettings(optimizer={:?}, zk_steps_per_epoch={}, weight_decay={}, \
             momentum={}, beta1={}, beta2={}, eps={})",
            self.optimizer(),
            s.zk_steps_per_epoch,
            s.weight_decay,
            s.momentum,
            s.beta1,
            s.beta2,
            s.eps
        )
    }
}

/// The initial parameters of the canonical MLP of widths `dims`, in parameter order, each as the
/// little-endian bytes of its `i32` values.
#[pyfunction]
fn canonical_init<'py>(
    py: Python<'py>,
    seed: u64,
    dims: Vec<usize>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let params = canonical::mlp_init::<Sha2>(seed, &dims)
        .map_err(|e| value_error(format!("canonical init: {e}")))?;
    Ok(params
        .iter()
        .map(|p| {
            let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
            PyBytes::new(py, &bytes)
        })
        .collect())
}

/// A writable C-contiguous buffer of `T`, kept alive by its PyBuffer.
struct Slot {
    addr: usize,
    len: usize,
}

fn writable<T: Element>(buf: &PyBuffer<T>, what: &str) -> PyResult<Slot> {
    if buf.readonly() || !buf.is_c_contiguous() {
        return Err(value_error(format!(
            "{what}: need a writable C-contiguous array"
        )));
    }
    Ok(Slot {
        addr: buf.buf_ptr() as usize,
        len: buf.item_count(),
    })
}

/// Refuses buffers that share memory: each becomes a `&mut` slice.
fn disjoint(spans: &[(usize, usize)]) -> PyResult<()> {
    let mut s: Vec<(usize, usize)> = spans.iter().filter(|(_, n)| *n > 0).copied().collect();
    s.sort_unstable();
    if s.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err(value_error(
            "canonical step: the state's arrays and the rows must not share memory",
        ));
    }
    Ok(())
}

/// One canonical step in place: `params` (int32, parameter order), `exp_avg` (int32: the SGD
/// momentum buffers or Adam's first moments) and `exp_avg_sq` (uint64, Adam's second moments;
/// empty for SGD) are updated on the batch `rows` (the samples' canonical bytes, one row each).
/// Returns the record's loss and grad norm (exact f32 values).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn canonical_step(
    py: Python<'_>,
    settings: &PyCanonicalSettings,
    dims: Vec<usize>,
    params: Vec<PyBuffer<i32>>,
    exp_avg: Vec<PyBuffer<i32>>,
    exp_avg_sq: Vec<PyBuffer<u64>>,
    lr: f64,
    rows: PyBuffer<u8>,
    t: u64,
) -> PyResult<(f64, f64)> {
    let s = settings.0;
    let lr = canonical::lr_coef(lr).map_err(|e| value_error(format!("canonical step: {e}")))?;
    let p: Vec<Slot> = params
        .iter()
        .map(|b| writable(b, "parameter"))
        .collect::<PyResult<_>>()?;
    let m: Vec<Slot> = exp_avg
        .iter()
        .map(|b| writable(b, "optimizer state"))
        .collect::<PyResult<_>>()?;
    let v: Vec<Slot> = exp_avg_sq
        .iter()
        .map(|b| writable(b, "optimizer state"))
        .collect::<PyResult<_>>()?;
    let mut spans: Vec<(usize, usize)> = p.iter().chain(&m).map(|x| (x.addr, 4 * x.len)).collect();
    spans.extend(v.iter().map(|x| (x.addr, 8 * x.len)));
    if !rows.is_c_contiguous() {
        return Err(value_error("canonical step: rows must be C-contiguous"));
    }
    spans.push((rows.buf_ptr() as usize, rows.len_bytes()));
    disjoint(&spans)?;
    let (in_f, classes) = match (dims.first(), dims.last()) {
        (Some(i), Some(c)) => (*i, *c),
        _ => return Err(value_error("canonical step: dims are empty")),
    };
    let row_len = 4 * in_f + 8;
    let rows_addr = rows.buf_ptr() as usize;
    let rows_len = rows.len_bytes();
    if rows_len == 0 || !rows_len.is_multiple_of(row_len) {
        return Err(value_error(format!(
            "canonical step: {rows_len} bytes of rows is not a batch of {row_len}-byte rows"
        )));
    }
    let out = py.detach(|| -> Result<_, canonical::CanonicalError> {
        // SAFETY: every PyBuffer is alive for the whole call, the state's buffers are writable
        // and pairwise disjoint, and only this call touches them while it runs (the caller
        // passes arrays it owns; the GIL is released only around pure computation).
        let (mut ps, mut ms, mut vs) = unsafe {
            let i32s = |x: &Slot| std::slice::from_raw_parts_mut(x.addr as *mut i32, x.len);
            (
                p.iter().map(i32s).collect::<Vec<_>>(),
                m.iter().map(i32s).collect::<Vec<_>>(),
                v.iter()
                    .map(|x| std::slice::from_raw_parts_mut(x.addr as *mut u64, x.len))
                    .collect::<Vec<_>>(),
            )
        };
        // SAFETY: `rows` is alive for the whole call.
        let data = unsafe { std::slice::from_raw_parts(rows_addr as *const u8, rows_len) };
        let (x, labels) = canonical::quantize_batch(data.chunks_exact(row_len), in_f, classes)?;
        let opt = match s.kind {
            OptimizerKind::Sgd if vs.is_empty() => OptState::Sgd { momentum: &mut ms },
            OptimizerKind::Sgd => {
                return Err(canonical::CanonicalError(
                    "SGD has no second moments (pass an empty list)",
                ))
            }
            OptimizerKind::Adam => OptState::Adam {
                exp_avg: &mut ms,
                exp_avg_sq: &mut vs,
            },
        };
        canonical::mlp_step(&dims, &mut ps, opt, &s, lr, &x, &labels, t)
    });
    let out = out.map_err(|e| PyValueError::new_err(format!("canonical step: {e}")))?;
    Ok((
        f64::from(f32::from_bits(out.loss_bits)),
        f64::from(f32::from_bits(out.grad_norm_bits)),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCanonicalSettings>()?;
    m.add_function(wrap_pyfunction!(canonical_init, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_step, m)?)?;
    Ok(())
}
