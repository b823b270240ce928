//! The guest program, its image id, execution, proving and receipt verification.
use std::sync::OnceLock;
use std::time::Instant;

use bincode::Options;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use risc0_binfmt::ProgramBinary;
use risc0_zkos_v1compat::V1COMPAT_ELF;
use risc0_zkvm::sha::{Digest as R0Digest, Digestible};
use risc0_zkvm::{
    ExecutorEnv, ExecutorImpl, FakeReceipt, InnerReceipt, LocalProver, MaybePruned, Prover,
    ProverOpts, Receipt, ReceiptClaim, VerifierContext,
};

use crate::codec::digest_arg;
use crate::errors::{
    FakeReceiptError, GuestError, ImageIdMismatchError, ReceiptFormatError,
    ReceiptVerificationError, VeritrainError,
};

/// The guest ELF, built by scripts/build-guest.sh and embedded at build time.
static GUEST_ELF: &[u8] = include_bytes!(env!("VERITRAIN_GUEST_ELF_PATH"));

/// Receipts larger than this are refused before decoding (a corrupt length must not exhaust memory).
const MAX_RECEIPT_BYTES: u64 = 1 << 30;

struct Program {
    blob: Vec<u8>,
    image_id: R0Digest,
}

/// The guest wrapped with risc0's v1compat kernel; the image id is computed from that blob.
fn program() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let binary = ProgramBinary::new(GUEST_ELF, V1COMPAT_ELF);
        let image_id = binary
            .compute_image_id()
            .expect("the embedded guest is a valid ELF");
        Program {
            blob: binary.encode(),
            image_id,
        }
    })
}

/// veritrain never uses risc0's dev mode (fake receipts); say so instead of letting risc0 panic.
fn refuse_dev_mode() -> PyResult<()> {
    match std::env::var("RISC0_DEV_MODE") {
        Ok(v) if matches!(v.to_lowercase().as_str(), "1" | "true" | "yes") => Err(VeritrainError::new_err(
            "RISC0_DEV_MODE is set, but veritrain only makes and accepts real proofs: unset RISC0_DEV_MODE",
        )),
        _ => Ok(()),
    }
}

fn receipt_codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(MAX_RECEIPT_BYTES)
}

fn decode_assumptions(assumptions: &[Vec<u8>]) -> PyResult<Vec<Receipt>> {
    assumptions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            decode_receipt_raw(a)
                .map_err(|e| ReceiptFormatError::new_err(format!("assumption {i}: {e}")))
        })
        .collect()
}

/// The executor environment is not Send, so it is built on the thread that runs the guest.
fn build_env<'a>(input: &[u8], assumptions: Vec<Receipt>) -> anyhow::Result<ExecutorEnv<'a>> {
    let mut builder = ExecutorEnv::builder();
    builder.write_slice(input);
    for receipt in assumptions {
        builder.add_assumption(receipt);
    }
    builder.build()
}

fn decode_receipt_raw(bytes: &[u8]) -> Result<Receipt, String> {
    receipt_codec()
        .deserialize::<Receipt>(bytes)
        .map_err(|e| format!("not a RISC Zero receipt ({} bytes): {e}", bytes.len()))
}

fn decode_receipt(bytes: &[u8]) -> PyResult<Receipt> {
    decode_receipt_raw(bytes).map_err(ReceiptFormatError::new_err)
}

fn guest_failure(e: anyhow::Error) -> PyErr {
    GuestError::new_err(format!("{e:#}"))
}

/// The guest's image id (32 bytes).
#[pyfunction]
fn image_id<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, program().image_id.as_bytes())
}

/// The embedded guest ELF, for auditors who rebuild the guest and compare.
#[pyfunction]
fn guest_elf<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, GUEST_ELF)
}

/// Runs the guest in the executor only (no proof): journal, cycle counts and segment count.
#[pyfunction]
#[pyo3(signature = (input, assumptions = Vec::new()))]
fn execute<'py>(
    py: Python<'py>,
    input: &[u8],
    assumptions: Vec<Vec<u8>>,
) -> PyResult<Bound<'py, PyDict>> {
    refuse_dev_mode()?;
    let assumptions = decode_assumptions(&assumptions)?;
    let started = Instant::now();
    let (journal, user_cycles, paging_cycles, total_cycles, segments) = py
        .detach(|| -> anyhow::Result<_> {
            let env = build_env(input, assumptions)?;
            let mut exec = ExecutorImpl::from_elf(env, &program().blob)?;
            let session = exec.run()?;
            let journal = session
                .journal
                .as_ref()
                .map(|j| j.bytes.clone())
                .unwrap_or_default();
            Ok((
                journal,
                session.user_cycles,
                session.paging_cycles,
                session.total_cycles,
                session.segments.len(),
            ))
        })
        .map_err(guest_failure)?;
    let d = PyDict::new(py);
    d.set_item("journal", PyBytes::new(py, &journal))?;
    d.set_item("user_cycles", user_cycles)?;
    d.set_item("paging_cycles", paging_cycles)?;
    d.set_item("total_cycles", total_cycles)?;
    d.set_item("segments", segments)?;
    d.set_item("seconds", started.elapsed().as_secs_f64())?;
    Ok(d)
}

/// Proves one epoch: a composite receipt (risc0's recursion circuit is not used; see docs).
#[pyfunction]
#[pyo3(signature = (input, assumptions = Vec::new()))]
fn prove<'py>(
    py: Python<'py>,
    input: &[u8],
    assumptions: Vec<Vec<u8>>,
) -> PyResult<Bound<'py, PyDict>> {
    refuse_dev_mode()?;
    let assumptions = decode_assumptions(&assumptions)?;
    let started = Instant::now();
    let info = py
        .detach(|| {
            let env = build_env(input, assumptions)?;
            LocalProver::new("veritrain").prove_with_ctx(
                env,
                &VerifierContext::default(),
                &program().blob,
                &ProverOpts::composite(),
            )
        })
        .map_err(guest_failure)?;
    let receipt = receipt_codec()
        .serialize(&info.receipt)
        .map_err(|e| VeritrainError::new_err(format!("serializing the receipt: {e}")))?;
    let d = PyDict::new(py);
    d.set_item("receipt", PyBytes::new(py, &receipt))?;
    d.set_item("journal", PyBytes::new(py, &info.receipt.journal.bytes))?;
    d.set_item("user_cycles", info.stats.user_cycles)?;
    d.set_item("paging_cycles", info.stats.paging_cycles)?;
    d.set_item("total_cycles", info.stats.total_cycles)?;
    d.set_item("segments", info.stats.segments)?;
    d.set_item("seconds", started.elapsed().as_secs_f64())?;
    Ok(d)
}

/// Verifies a receipt against an image id and returns its journal. Each failure kind raises its
/// own exception: ReceiptFormatError, FakeReceiptError, ReceiptVerificationError, ImageIdMismatchError.
#[pyfunction]
fn verify_receipt<'py>(
    py: Python<'py>,
    receipt: &[u8],
    image_id: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    refuse_dev_mode()?;
    let expected = R0Digest::from(digest_arg(image_id, "image id")?);
    let receipt = decode_receipt(receipt)?;
    if matches!(receipt.inner, InnerReceipt::Fake(_)) {
        return Err(FakeReceiptError::new_err(
            "dev-mode (fake) receipt: it carries no proof and is never accepted",
        ));
    }
    enum Failure {
        Proof(String),
        Pruned,
        Image(R0Digest),
        Journal(String),
    }
    // risc0's verifier context holds Rc's, so it lives on the thread that verifies.
    let outcome = py.detach(|| -> Result<(), Failure> {
        let ctx = VerifierContext::default();
        receipt
            .inner
            .verify_integrity_with_context(&ctx)
            .map_err(|e| Failure::Proof(e.to_string()))?;
        let claim = receipt
            .inner
            .claim()
            .ok()
            .and_then(|c| c.as_value().ok().cloned())
            .ok_or(Failure::Pruned)?;
        let actual = claim.pre.digest();
        if actual != expected {
            return Err(Failure::Image(actual));
        }
        receipt
            .verify_with_context(&ctx, expected)
            .map_err(|e| Failure::Journal(e.to_string()))
    });
    match outcome {
        Ok(()) => {}
        Err(Failure::Proof(e)) => {
            return Err(ReceiptVerificationError::new_err(format!(
                "the proof does not verify: {e}"
            )))
        }
        Err(Failure::Pruned) => {
            return Err(ReceiptVerificationError::new_err(
                "the receipt's claim is pruned",
            ))
        }
        Err(Failure::Image(actual)) => {
            return Err(ImageIdMismatchError::new_err(format!(
                "receipt is for image id {actual}, expected {expected}"
            )))
        }
        Err(Failure::Journal(e)) => {
            return Err(ReceiptVerificationError::new_err(format!(
                "journal or exit code do not match the proof: {e}"
            )))
        }
    }
    Ok(PyBytes::new(py, &receipt.journal.bytes))
}

/// A dev-mode (fake) receipt for a journal and image id: what an attacker running risc0 in dev mode
/// would send. Only tests use it, to show it is rejected.
#[pyfunction]
fn _fake_receipt<'py>(
    py: Python<'py>,
    journal: Vec<u8>,
    image_id: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let id = R0Digest::from(digest_arg(image_id, "image id")?);
    let claim = ReceiptClaim::ok(id, MaybePruned::Value(journal.clone()));
    let receipt = Receipt::new(InnerReceipt::Fake(FakeReceipt::new(claim)), journal);
    let bytes = receipt_codec()
        .serialize(&receipt)
        .map_err(|e| VeritrainError::new_err(format!("serializing: {e}")))?;
    Ok(PyBytes::new(py, &bytes))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(image_id, m)?)?;
    m.add_function(wrap_pyfunction!(guest_elf, m)?)?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(prove, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(_fake_receipt, m)?)?;
    Ok(())
}
