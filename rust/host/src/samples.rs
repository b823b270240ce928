//! Each task's canonical sample rows (PROTOCOL.md §4) from a dataset's arrays, in parallel with
//! the GIL released: the bytes are veritrain-core's `sample` module's, row `i` being sample `i`,
//! ready for `dataset_root`.
use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rayon::prelude::*;
use veritrain_core::sample;

use crate::errors::value_error;

/// A C-contiguous buffer's elements, copied out (one pass; the rows are a copy anyway).
fn elements<T: Element + Copy>(py: Python<'_>, buf: &PyBuffer<T>, what: &str) -> PyResult<Vec<T>> {
    if !buf.is_c_contiguous() {
        return Err(value_error(format!("{what}: buffer must be C-contiguous")));
    }
    buf.to_vec(py)
}

/// `n` rows of `row_len` bytes, row `i` written by `fill(i, row)`, straight into the Python
/// bytes object (one buffer per worker thread, no copy of the whole).
fn rows<'py>(
    py: Python<'py>,
    n: usize,
    row_len: usize,
    fill: impl Fn(usize, &mut Vec<u8>) + Sync,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, n * row_len, |out| {
        if row_len > 0 {
            py.detach(|| {
                out.par_chunks_mut(row_len).enumerate().for_each_init(
                    || Vec::with_capacity(row_len),
                    |row, (i, dst)| {
                        row.clear();
                        fill(i, row);
                        dst.copy_from_slice(row);
                    },
                )
            });
        }
        Ok(())
    })
}

/// Per-sample widths of `len` values over `n` samples.
fn width(len: usize, n: usize, what: &str) -> PyResult<usize> {
    if n == 0 || !len.is_multiple_of(n) {
        return Err(value_error(format!(
            "{what}: {len} values are not a whole number per sample of {n}"
        )));
    }
    Ok(len / n)
}

/// Classification rows: sample `i` is `features[i]` (f32) and `labels[i]` (i64).
#[pyfunction]
fn classification_rows<'py>(
    py: Python<'py>,
    features: PyBuffer<f32>,
    labels: PyBuffer<i64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let x = elements(py, &features, "features")?;
    let y = elements(py, &labels, "labels")?;
    let f = width(x.len(), y.len(), "features")?;
    rows(py, y.len(), 4 * f + 8, |i, row| {
        sample::classification(row, &x[i * f..(i + 1) * f], y[i])
    })
}

/// Regression rows: sample `i` is `features[i]` and `targets[i]` (both f32), `samples` of them.
#[pyfunction]
fn regression_rows<'py>(
    py: Python<'py>,
    features: PyBuffer<f32>,
    targets: PyBuffer<f32>,
    samples: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let x = elements(py, &features, "features")?;
    let y = elements(py, &targets, "targets")?;
    let f = width(x.len(), samples, "features")?;
    let k = width(y.len(), samples, "targets")?;
    if k == 0 {
        return Err(value_error(
            "targets: a regression sample has at least one target",
        ));
    }
    rows(py, samples, 4 * (f + k), |i, row| {
        sample::regression(row, &x[i * f..(i + 1) * f], &y[i * k..(i + 1) * k])
    })
}

/// Language-model rows: `windows` holds whole windows of `context + 1` tokens (u32), one per
/// sample.
#[pyfunction]
fn language_model_rows<'py>(
    py: Python<'py>,
    windows: PyBuffer<u32>,
    context: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let tokens = elements(py, &windows, "windows")?;
    let w = context + 1;
    if context == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(w) {
        return Err(value_error(format!(
            "windows: {} tokens are not a whole number of windows of {w} tokens (context {context})",
            tokens.len()
        )));
    }
    rows(py, tokens.len() / w, 4 * w, |i, row| {
        sample::language_model(row, &tokens[i * w..(i + 1) * w])
    })
}

/// How many windows of `context + 1` tokens a text corpus of `tokens` tokens holds (§4).
#[pyfunction]
fn text_windows(tokens: u64, context: u64) -> u64 {
    sample::text_windows(tokens, context)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(classification_rows, m)?)?;
    m.add_function(wrap_pyfunction!(regression_rows, m)?)?;
    m.add_function(wrap_pyfunction!(language_model_rows, m)?)?;
    m.add_function(wrap_pyfunction!(text_windows, m)?)?;
    Ok(())
}
