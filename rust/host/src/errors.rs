//! One Python exception type per failure kind (all under `VeritrainError`).
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _native,
    VeritrainError,
    PyException,
    "Base class of veritrain's errors."
);
create_exception!(
    _native,
    EncodingError,
    VeritrainError,
    "Bytes are not a valid record, claim or input."
);
create_exception!(
    _native,
    EpochCheckError,
    VeritrainError,
    "An epoch breaks a rule of the protocol; the guest refuses it."
);
create_exception!(
    _native,
    GuestError,
    VeritrainError,
    "The guest did not finish (it refused its input or faulted); no receipt exists."
);
create_exception!(
    _native,
    ReceiptFormatError,
    VeritrainError,
    "The bytes are not a RISC Zero receipt (truncated, corrupt, or another format)."
);
create_exception!(
    _native,
    ImageIdMismatchError,
    VeritrainError,
    "The receipt is for another guest program (image id)."
);
create_exception!(
    _native,
    FakeReceiptError,
    VeritrainError,
    "A dev-mode (fake) receipt: it carries no proof and never verifies."
);
create_exception!(
    _native,
    ReceiptVerificationError,
    VeritrainError,
    "The receipt's proof does not verify (tampered or forged)."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VeritrainError", py.get_type::<VeritrainError>())?;
    m.add("EncodingError", py.get_type::<EncodingError>())?;
    m.add("EpochCheckError", py.get_type::<EpochCheckError>())?;
    m.add("GuestError", py.get_type::<GuestError>())?;
    m.add("ReceiptFormatError", py.get_type::<ReceiptFormatError>())?;
    m.add(
        "ImageIdMismatchError",
        py.get_type::<ImageIdMismatchError>(),
    )?;
    m.add("FakeReceiptError", py.get_type::<FakeReceiptError>())?;
    m.add(
        "ReceiptVerificationError",
        py.get_type::<ReceiptVerificationError>(),
    )?;
    Ok(())
}

pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
