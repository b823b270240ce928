//! `veritrain.prover._native`: veritrain's Rust core and the RISC Zero prover, for Python.
//!
//! Encodings and rules come from veritrain-core (the same crate the guest runs); this module only
//! wraps core types as Python classes (`types`), hashes in parallel, and drives risc0.
use pyo3::prelude::*;

mod canonical;
mod codec;
mod digest;
mod errors;
mod samples;
mod types;
mod zkvm;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    types::register(m)?;
    canonical::register(m)?;
    codec::register(m)?;
    digest::register(m)?;
    samples::register(m)?;
    zkvm::register(m)?;
    m.add("PROTOCOL_VERSION", veritrain_core::PROTOCOL_VERSION)?;
    m.add("RECORD_LEN", veritrain_core::RECORD_LEN)?;
    m.add("CLAIM_LEN", veritrain_core::CLAIM_LEN)?;
    Ok(())
}
