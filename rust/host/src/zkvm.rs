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
    default_prover, get_prover_server, ExecutorEnv, ExecutorImpl, FakeReceipt, InnerReceipt,
    MaybePruned, NullSegmentRef, ProverOpts, Receipt, ReceiptClaim, Segment, SuccinctReceipt,
    VerifierContext,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use veritrain_core::EpochInput;

use crate::errors::{
    EncodingError, FakeReceiptError, GuestError, ImageIdMismatchError, ReceiptFormatError,
    ReceiptVerificationError, VeritrainError,
};
use crate::types::digest_arg;

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

/// The previous epoch's receipt claim, which the guest's `env::verify` asks for: the same guest
/// (this epoch's image id) with the previous claim as its journal. Execution records it as an
/// unresolved assumption, so an epoch executes and proves without its predecessor's receipt; only
/// `finish` needs that receipt, to resolve the assumption.
fn lineage_assumption(input: &[u8]) -> Option<ReceiptClaim> {
    // Input the core cannot decode gets no assumption: the guest then refuses it itself, so
    // execution reports the guest's own verdict on every input.
    let input = EpochInput::decode(input).ok()?;
    input.prev.map(|prev| {
        ReceiptClaim::ok(
            R0Digest::from(input.claim.image_id),
            MaybePruned::Value(prev.encode().to_vec()),
        )
    })
}

/// The executor environment is not Send, so it is built on the thread that runs the guest.
fn build_env<'a>(
    input: &[u8],
    assumption: Option<ReceiptClaim>,
    po2: Option<u32>,
) -> anyhow::Result<ExecutorEnv<'a>> {
    let mut builder = ExecutorEnv::builder();
    builder.write_slice(input);
    if let Some(claim) = assumption {
        builder.add_assumption(claim);
    }
    if let Some(po2) = po2 {
        builder.segment_limit_po2(po2);
    }
    builder.build()
}

fn encode<T: Serialize>(value: &T, what: &str) -> PyResult<Vec<u8>> {
    receipt_codec()
        .serialize(value)
        .map_err(|e| VeritrainError::new_err(format!("serializing the {what}: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> PyResult<T> {
    receipt_codec().deserialize::<T>(bytes).map_err(|e| {
        ReceiptFormatError::new_err(format!(
            "not a RISC Zero {what} ({} bytes): {e}",
            bytes.len()
        ))
    })
}

fn decode_receipt(bytes: &[u8]) -> PyResult<Receipt> {
    decode(bytes, "receipt")
}

fn guest_failure(e: anyhow::Error) -> PyErr {
    GuestError::new_err(format!("{e:#}"))
}

fn prover_failure(what: &str) -> impl Fn(anyhow::Error) -> PyErr + '_ {
    move |e| ReceiptVerificationError::new_err(format!("{what}: {e:#}"))
}

/// A lifted or joined receipt must be valid before more recursion is spent on it; the
/// recursion programs would refuse it too, with a less helpful message.
fn check_succinct(receipt: &SuccinctReceipt<ReceiptClaim>, what: &str) -> PyResult<()> {
    receipt
        .verify_integrity_with_context(&VerifierContext::default())
        .map_err(|e| ReceiptVerificationError::new_err(format!("{what} does not verify: {e}")))
}

/// The guest's image id (32 bytes).
#[pyfunction]
fn image_id<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, program().image_id.as_bytes())
}

/// The image id of a guest ELF, computed as for the embedded guest (wrapped with the v1compat
/// kernel): an auditor rebuilds the guest from source and compares ids.
#[pyfunction]
fn image_id_of<'py>(py: Python<'py>, elf: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let id = ProgramBinary::new(elf, V1COMPAT_ELF)
        .compute_image_id()
        .map_err(|e| EncodingError::new_err(format!("not a guest ELF: {e:#}")))?;
    Ok(PyBytes::new(py, id.as_bytes()))
}

/// The embedded guest ELF, for auditors who rebuild the guest and compare.
#[pyfunction]
fn guest_elf<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, GUEST_ELF)
}

/// Runs the guest once in the executor: journal, cycle counts and, with `segments`, every
/// segment serialized so that it can be proven anywhere (`prove_segment`). `po2` is the segment
/// size (log2 of cycles); risc0's default when None.
#[pyfunction]
#[pyo3(signature = (input, po2 = None, segments = false))]
fn execute<'py>(
    py: Python<'py>,
    input: &[u8],
    po2: Option<u32>,
    segments: bool,
) -> PyResult<Bound<'py, PyDict>> {
    refuse_dev_mode()?;
    let assumption = lineage_assumption(input);
    let started = Instant::now();
    // The session is not Send: only what is reported leaves the executing thread.
    let (journal, user_cycles, paging_cycles, total_cycles, count, blobs) = py
        .detach(|| -> anyhow::Result<_> {
            let env = build_env(input, assumption, po2)?;
            let mut exec = ExecutorImpl::from_elf(env, &program().blob)?;
            let mut blobs = Vec::new();
            let session = exec.run_with_callback(|segment: Segment| {
                if segments {
                    blobs.push(receipt_codec().serialize(&segment)?);
                }
                Ok(Box::new(NullSegmentRef))
            })?;
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
                blobs,
            ))
        })
        .map_err(guest_failure)?;
    let d = PyDict::new(py);
    d.set_item("journal", PyBytes::new(py, &journal))?;
    d.set_item("user_cycles", user_cycles)?;
    d.set_item("paging_cycles", paging_cycles)?;
    d.set_item("total_cycles", total_cycles)?;
    d.set_item("segments", count)?;
    d.set_item("seconds", started.elapsed().as_secs_f64())?;
    if segments {
        let blobs: Vec<_> = blobs.iter().map(|b| PyBytes::new(py, b)).collect();
        d.set_item("segment_blobs", blobs)?;
    }
    Ok(d)
}

/// Runs another guest ELF (wrapped with the v1compat kernel as the embedded guest is) in the
/// executor: (journal, user cycles). Only measurements use it (bench/zk_bench.py); it
/// proves nothing.
#[pyfunction]
fn _execute_elf<'py>(
    py: Python<'py>,
    elf: &[u8],
    input: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, u64)> {
    refuse_dev_mode()?;
    let blob = ProgramBinary::new(elf, V1COMPAT_ELF).encode();
    let (journal, cycles) = py
        .detach(|| -> anyhow::Result<_> {
            let env = build_env(input, None, None)?;
            let session = ExecutorImpl::from_elf(env, &blob)?.run()?;
            let journal = session.journal.map(|j| j.bytes).unwrap_or_default();
            Ok((journal, session.user_cycles))
        })
        .map_err(guest_failure)?;
    Ok((PyBytes::new(py, &journal), cycles))
}

/// Proves one segment and lifts it into a succinct receipt (risc0's recursion circuit): the
/// unit of parallel proving. The result is conditional on the segment's assumptions, if any.
#[pyfunction]
fn prove_segment<'py>(py: Python<'py>, segment: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    refuse_dev_mode()?;
    let segment: Segment = decode(segment, "segment")?;
    let lifted = py
        .detach(|| -> anyhow::Result<_> {
            let prover = get_prover_server(&ProverOpts::succinct())?;
            let receipt = prover.prove_segment(&VerifierContext::default(), &segment)?;
            prover.lift(&receipt)
        })
        .map_err(prover_failure("proving the segment"))?;
    Ok(PyBytes::new(py, &encode(&lifted, "segment receipt")?))
}

/// Joins two succinct receipts of consecutive parts of one execution (left first).
#[pyfunction]
fn join<'py>(py: Python<'py>, left: &[u8], right: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    refuse_dev_mode()?;
    let left: SuccinctReceipt<ReceiptClaim> = decode(left, "succinct receipt")?;
    let right: SuccinctReceipt<ReceiptClaim> = decode(right, "succinct receipt")?;
    check_succinct(&left, "the left receipt")?;
    check_succinct(&right, "the right receipt")?;
    // The join program would refuse them too, but only after a recursion proof's worth of work.
    let consecutive = match (left.claim.as_value(), right.claim.as_value()) {
        (Ok(l), Ok(r)) => l.post.digest() == r.pre.digest(),
        _ => false,
    };
    if !consecutive {
        return Err(ReceiptVerificationError::new_err(
            "the receipts are not consecutive parts of one execution \
             (the left one does not end where the right one starts)",
        ));
    }
    let joined = py
        .detach(|| -> anyhow::Result<_> {
            get_prover_server(&ProverOpts::succinct())?.join(&left, &right)
        })
        .map_err(prover_failure("joining the receipts"))?;
    Ok(PyBytes::new(py, &encode(&joined, "succinct receipt")?))
}

/// Completes an epoch's receipt: resolves the lineage assumption with the previous epoch's
/// receipt (which must itself be succinct and unconditional), wraps the result with its journal
/// and verifies it against the image id. Returns the stored receipt's bytes.
#[pyfunction]
#[pyo3(signature = (conditional, journal, image_id, prev_receipt = None))]
fn finish<'py>(
    py: Python<'py>,
    conditional: &[u8],
    journal: Vec<u8>,
    image_id: &[u8],
    prev_receipt: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    refuse_dev_mode()?;
    let image_id = R0Digest::from(digest_arg(image_id, "image id")?);
    let conditional: SuccinctReceipt<ReceiptClaim> = decode(conditional, "succinct receipt")?;
    check_succinct(&conditional, "the epoch's joined receipt")?;
    let prev = match prev_receipt {
        None => None,
        Some(bytes) => match decode_receipt(bytes)?.inner {
            InnerReceipt::Succinct(prev) => Some(prev),
            _ => return Err(ReceiptFormatError::new_err(
                "the previous epoch's receipt is not succinct (a protocol 1 composite receipt?): \
                     only a succinct receipt can resolve the lineage assumption",
            )),
        },
    };
    if prev.is_none() {
        // Otherwise risc0's verification below would only say that the claim differs.
        let unresolved = conditional
            .claim
            .as_value()
            .ok()
            .and_then(|c| c.output.as_value().ok().cloned().flatten())
            .and_then(|o| o.assumptions.as_value().ok().map(|a| !a.0.is_empty()))
            .unwrap_or(false);
        if unresolved {
            return Err(ReceiptVerificationError::new_err(
                "the epoch's receipt has an unresolved assumption (the previous epoch's claim): \
                 finish it with the previous epoch's receipt",
            ));
        }
    }
    if let Some(prev) = &prev {
        // Checked before proving: the resolve program would refuse it after a whole proof.
        let claim = conditional.claim.as_value().map_err(|_| {
            ReceiptVerificationError::new_err("the epoch's joined receipt has a pruned claim")
        })?;
        claim.resolve(&prev.claim).map_err(|e| {
            ReceiptVerificationError::new_err(format!(
                "the previous epoch's receipt is not the one this epoch assumes: {e:#}"
            ))
        })?;
    }
    let receipt = py
        .detach(|| -> anyhow::Result<_> {
            let resolved = match prev {
                Some(prev) => get_prover_server(&ProverOpts::succinct())?
                    .resolve(&conditional, &prev.into_unknown())?,
                None => conditional,
            };
            let receipt = Receipt::new(InnerReceipt::Succinct(resolved), journal);
            receipt.verify_with_context(&VerifierContext::default(), image_id)?;
            Ok(receipt)
        })
        .map_err(prover_failure("completing the epoch's receipt"))?;
    Ok(PyBytes::new(py, &encode(&receipt, "receipt")?))
}

/// risc0's own prove of the embedded guest, in one call: `default_prover()` with succinct
/// options executes, proves every segment, lifts, joins and resolves the lineage assumption with
/// `prev_receipt` (added to the environment as a proven assumption). Only measurements use it
/// (bench/prove_path_bench.py times veritrain's proof in parts against it); it returns the
/// receipt's bytes.
#[pyfunction]
#[pyo3(signature = (input, po2 = None, prev_receipt = None))]
fn _prove_risc0<'py>(
    py: Python<'py>,
    input: &[u8],
    po2: Option<u32>,
    prev_receipt: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    refuse_dev_mode()?;
    let prev = prev_receipt.map(decode_receipt).transpose()?;
    let receipt = py
        .detach(|| -> anyhow::Result<_> {
            let mut builder = ExecutorEnv::builder();
            builder.write_slice(input);
            if let Some(prev) = prev {
                builder.add_assumption(prev);
            }
            if let Some(po2) = po2 {
                builder.segment_limit_po2(po2);
            }
            let info = default_prover().prove_with_opts(
                builder.build()?,
                &program().blob,
                &ProverOpts::succinct(),
            )?;
            Ok(info.receipt)
        })
        .map_err(prover_failure("risc0's prove"))?;
    Ok(PyBytes::new(py, &encode(&receipt, "receipt")?))
}

/// The kind of a receipt: "succinct" (one recursion proof, constant size) or "composite"
/// (protocol 1: segment proofs plus the embedded receipts of its assumptions).
#[pyfunction]
fn receipt_kind(receipt: &[u8]) -> PyResult<&'static str> {
    Ok(match decode_receipt(receipt)?.inner {
        InnerReceipt::Composite(_) => "composite",
        InnerReceipt::Succinct(_) => "succinct",
        InnerReceipt::Groth16(_) => "groth16",
        InnerReceipt::Fake(_) => "fake",
        _ => "unknown",
    })
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
    Ok(PyBytes::new(py, &encode(&receipt, "receipt")?))
}

/// A recursion program's name, its recomputed control id and risc0's constant for it.
type ProgramId = (String, Vec<u8>, Vec<u8>);

/// Recomputes, from the bytes bundled with risc0 (the crates risc0-circuit-recursion-zkrs and
/// -control-zkrs, which replace a download), the control id of every recursion program that
/// succinct verification allows, and the root of that set. Returns (name, recomputed id, risc0's
/// constant id) per program, the recomputed root and risc0's `ALLOWED_CONTROL_ROOT`: a succinct
/// receipt is only as good as the programs that made it, and these came in a release candidate.
#[pyfunction]
fn recursion_control_ids(py: Python<'_>) -> PyResult<(Vec<ProgramId>, Vec<u8>, Vec<u8>)> {
    use risc0_circuit_recursion::control_id::{MIN_LIFT_PO2, POSEIDON2_CONTROL_IDS};
    use risc0_circuit_recursion::prove::{zkr::get_all_zkrs, Program};
    use risc0_zkp::core::hash::poseidon2::Poseidon2HashSuite;
    use risc0_zkvm::recursion::{MerkleGroup, RECURSION_PO2};

    // The allowed set as risc0 builds it (receipt/succinct.rs, allowed_control_ids): every
    // program but the test circuit, lifts only for segments of 2^14 to 2^DEFAULT_MAX_PO2 cycles.
    let allowed = |name: &str| {
        let lift_po2 = name
            .trim_end_matches(".zkr")
            .rsplit('_')
            .next()
            .and_then(|p| p.parse::<usize>().ok());
        match (name.starts_with("lift_"), lift_po2) {
            (true, Some(po2)) => (MIN_LIFT_PO2..=risc0_zkvm::DEFAULT_MAX_PO2).contains(&po2),
            (true, None) => false,
            (false, _) => !name.starts_with("test_"),
        }
    };
    py.detach(|| -> anyhow::Result<_> {
        let suite = Poseidon2HashSuite::new_suite();
        // Sorted by name (get_all_zkrs sorts), which is the order of the set's Merkle leaves.
        let zkrs: Vec<_> = get_all_zkrs()?
            .into_iter()
            .filter(|(n, _)| allowed(n))
            .collect();
        // Each program hashes on one core (seconds each): share them among the cores, in order.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = zkrs.len().div_ceil(workers).max(1);
        let ids = std::thread::scope(|scope| {
            let handles: Vec<_> = zkrs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let suite = Poseidon2HashSuite::new_suite();
                        part.iter()
                            .map(|(_, code)| {
                                Program::from_encoded(code, RECURSION_PO2)
                                    .compute_control_id(suite.clone())
                            })
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a control-id thread panicked"))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let mut programs = Vec::new();
        let mut leaves = Vec::new();
        for ((name, _), id) in zkrs.into_iter().zip(ids.into_iter().flatten()) {
            let constant = POSEIDON2_CONTROL_IDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| d.as_bytes().to_vec())
                .unwrap_or_default();
            leaves.push(id);
            programs.push((name, id.as_bytes().to_vec(), constant));
        }
        let root = MerkleGroup::new(leaves)?.calc_root(suite.hashfn.as_ref());
        Ok((
            programs,
            root.as_bytes().to_vec(),
            risc0_zkvm::ALLOWED_CONTROL_ROOT.as_bytes().to_vec(),
        ))
    })
    .map_err(|e| VeritrainError::new_err(format!("recomputing control ids: {e:#}")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(recursion_control_ids, m)?)?;
    m.add_function(wrap_pyfunction!(image_id, m)?)?;
    m.add_function(wrap_pyfunction!(guest_elf, m)?)?;
    m.add_function(wrap_pyfunction!(image_id_of, m)?)?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(prove_segment, m)?)?;
    m.add_function(wrap_pyfunction!(join, m)?)?;
    m.add_function(wrap_pyfunction!(finish, m)?)?;
    m.add_function(wrap_pyfunction!(receipt_kind, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(_fake_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(_execute_elf, m)?)?;
    m.add_function(wrap_pyfunction!(_prove_risc0, m)?)?;
    Ok(())
}
