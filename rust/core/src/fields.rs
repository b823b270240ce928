//! Fixed-size encodings as tables of fields: the one place where a field's offset and size are
//! written. The record's table ([`crate::record::RECORD_FIELDS`]) and the claim's
//! ([`crate::claim::CLAIM_FIELDS`]) are what the extension hands to Python and what the tables of
//! `docs/PROTOCOL.md` are checked against.

use core::ops::Range;

/// One field of a fixed-size encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name as Python, JSON and fraud proofs spell it.
    pub name: &'static str,
    pub offset: usize,
    pub len: usize,
}

impl Field {
    /// The fields `(name, size)` in encoding order, each placed right after the one before it.
    pub const fn table<const N: usize>(fields: [(&'static str, usize); N]) -> [Field; N] {
        let mut out = [Field {
            name: "",
            offset: 0,
            len: 0,
        }; N];
        let mut offset = 0;
        let mut i = 0;
        while i < N {
            out[i] = Field {
                name: fields[i].0,
                offset,
                len: fields[i].1,
            };
            offset += fields[i].1;
            i += 1;
        }
        out
    }

    /// Where the field ends (the next field's offset).
    pub const fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The field's bytes in an encoding.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.end()
    }
}

/// True if every field of a table starts and ends on a multiple of `align` and the last ends at
/// `len`.
pub const fn covers(fields: &[Field], len: usize, align: usize) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if !fields[i].offset.is_multiple_of(align) || !fields[i].len.is_multiple_of(align) {
            return false;
        }
        i += 1;
    }
    !fields.is_empty() && fields[fields.len() - 1].end() == len
}
