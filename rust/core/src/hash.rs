//! Domain-separated SHA-256.
//!
//! `H(tag, data) = SHA-256(tag || 0x00 || data)`. Tags are ASCII without NUL, so the NUL makes the
//! tag prefix-free: no object of one kind can be read as an object of another.
//!
//! Messages are built and padded here, in whole 32-bit words, and handed to one primitive, the
//! SHA-256 compression function ([`Sha256::compress`]). That is the shape of the zkVM's
//! accelerator: one call hashes a whole padded message from word-aligned memory, with no copy, no
//! allocation and no byte-at-a-time work in the guest. The host passes the `sha2` crate's
//! compression function (SHA-NI where the CPU has it); both compute the same function, and the
//! test vectors pin it.
//!
//! Words hold bytes in memory order: word `i` of a message or digest is
//! `u32::from_ne_bytes(bytes[4i..4i + 4])`. That is how the accelerator reads message blocks and
//! reads and writes the chaining state, so the guest compares digests a word at a time.

use alloc::vec::Vec;

pub type Digest = [u8; 32];
/// A digest as eight words in memory order.
pub type DigestWords = [u32; 8];
/// One 64-byte SHA-256 message block as sixteen words in memory order.
pub type Block = [u32; 16];

/// SHA-256, given by its compression function.
pub trait Sha256 {
    /// FIPS 180-4's compression function over whole blocks, chaining from `state` (both in memory
    /// order).
    fn compress(state: &mut DigestWords, blocks: &[Block]);

    /// SHA-256 of `data`.
    fn sha256(data: &[u8]) -> Digest {
        let mut m = Message::with_capacity(data.len());
        m.push_bytes(data);
        digest_bytes(&m.finish::<Self>())
    }

    /// `H(tag, parts...) = SHA-256(tag || 0x00 || parts...)`.
    fn tagged(tag: &str, parts: &[&[u8]]) -> Digest {
        let len = tag.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut m = Message::with_capacity(len);
        m.push_bytes(tag.as_bytes());
        m.push_bytes(&[0]);
        for p in parts {
            m.push_bytes(p);
        }
        digest_bytes(&m.finish::<Self>())
    }
}

/// SHA-256's initial chaining value, in memory order.
pub const IV: DigestWords = {
    const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut out = [0u32; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = u32::from_ne_bytes(H0[i].to_be_bytes());
        i += 1;
    }
    out
};

/// Fills `words` with `bytes` in memory order (`bytes` is `4 * words.len()` long).
pub fn load_words(words: &mut [u32], bytes: &[u8]) {
    assert_eq!(bytes.len(), 4 * words.len());
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_ne_bytes(c.try_into().unwrap());
    }
}

/// Fills `bytes` with `words` in memory order (`bytes` is `4 * words.len()` long).
pub fn store_words(bytes: &mut [u8], words: &[u32]) {
    assert_eq!(bytes.len(), 4 * words.len());
    for (c, w) in bytes.chunks_exact_mut(4).zip(words) {
        c.copy_from_slice(&w.to_ne_bytes());
    }
}

pub fn digest_words(d: &Digest) -> DigestWords {
    let mut out = [0u32; 8];
    load_words(&mut out, d);
    out
}

pub fn digest_bytes(w: &DigestWords) -> Digest {
    let mut out = [0u8; 32];
    store_words(&mut out, w);
    out
}

/// A SHA-256 message built from bytes, kept in whole words so that [`Message::finish`] pads it in
/// place and hashes it with one call of the compression function. For data that is already words,
/// [`Frame`] does the same without copying byte by byte.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// `ceil(len / 4)` words; the bytes past `len` in the last word are zero.
    words: Vec<u32>,
    len: usize,
}

impl Message {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            words: Vec::with_capacity(bytes / 4 + 18),
            len: 0,
        }
    }

    /// Byte `len` of the message is byte `len % 4` of word `len / 4`, in memory order.
    fn shift(byte_in_word: usize) -> u32 {
        if cfg!(target_endian = "little") {
            8 * byte_in_word as u32
        } else {
            8 * (3 - byte_in_word as u32)
        }
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len.is_multiple_of(4) {
                self.words.push(0);
            }
            *self.words.last_mut().unwrap() |= (b as u32) << Self::shift(self.len % 4);
            self.len += 1;
        }
    }

    /// Pads the message (FIPS 180-4 §5.1.1) and hashes it; the message is left empty.
    pub fn finish<H: Sha256 + ?Sized>(&mut self) -> DigestWords {
        self.words.resize(padded_words(self.len), 0);
        pad(&mut self.words, self.len);
        let (blocks, _) = self.words.as_chunks::<16>();
        let mut state = IV;
        H::compress(&mut state, blocks);
        self.words.clear();
        self.len = 0;
        state
    }
}

/// Words in a padded message of `len` bytes.
fn padded_words(len: usize) -> usize {
    (len + 9).next_multiple_of(64) / 4
}

/// SHA-256's padding (FIPS 180-4 §5.1.1) of a `len`-byte message held in `words`, which are
/// [`padded_words`] long and zero past `len`: 0x80, zeros up to 56 mod 64, the length in bits as
/// a big-endian u64.
fn pad(words: &mut [u32], len: usize) {
    words[len / 4] |= 0x80 << Message::shift(len % 4);
    let n = words.len();
    load_words(&mut words[n - 2..], &(len as u64 * 8).to_be_bytes());
}

/// `a == b`, a word at a time. (`==` on arrays becomes a call to the byte-wise `bcmp` in the
/// guest, several times slower.)
#[inline]
pub fn eq(a: &DigestWords, b: &DigestWords) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `H(tag, data)` for data of a fixed number of words, with `tag || 0x00` and the padding laid
/// out once in a buffer that is reused: what the epoch check uses for the hashes it computes every
/// step. Each hash only writes the data and makes one call of the compression function.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The whole padded message.
    words: Vec<u32>,
    /// Bytes of `tag || 0x00`.
    prefix_len: usize,
    /// The prefix's last, partial word (its low `prefix_len % 4` bytes, little-endian), or 0.
    prefix_tail: u32,
    data_words: usize,
}

impl Frame {
    /// A frame for `tag` and data of `data_words` words.
    pub fn new(tag: &str, data_words: usize) -> Self {
        Self::with_prefix(tag, &[], data_words)
    }

    /// A frame for `H(tag, head || data)`, with `head` fixed and laid out once with the tag.
    pub fn with_prefix(tag: &str, head: &[u8], data_words: usize) -> Self {
        let mut m = Message::with_capacity(tag.len() + 1 + head.len());
        m.push_bytes(tag.as_bytes());
        m.push_bytes(&[0]);
        m.push_bytes(head);
        let prefix_len = m.len;
        let prefix_tail = if prefix_len.is_multiple_of(4) {
            0
        } else {
            u32::from_le(m.words[prefix_len / 4])
        };
        let mut f = Self {
            words: m.words,
            prefix_len,
            prefix_tail,
            data_words: 0,
        };
        f.set_len(data_words);
        f
    }

    pub fn data_words(&self) -> usize {
        self.data_words
    }

    /// Lays the padding out for data of `data_words` words.
    pub fn set_len(&mut self, data_words: usize) {
        // Zero from the data on (`hash` writes the data words, and the prefix's partial word).
        let len = self.prefix_len + 4 * data_words;
        self.words.truncate(self.prefix_len / 4);
        self.words.resize(padded_words(len), 0);
        pad(&mut self.words, len);
        self.data_words = data_words;
    }

    /// `H(tag, parts...)`: the parts are words in memory order, `data_words` of them in all.
    /// Inlined: each caller has its own few parts, and the digest lands where the caller wants it.
    #[inline(always)]
    pub fn hash<H: Sha256 + ?Sized>(&mut self, parts: &[&[u32]]) -> DigestWords {
        let start = self.prefix_len / 4;
        let mut at = start;
        let s = 8 * (self.prefix_len % 4) as u32;
        if s == 0 {
            for p in parts {
                self.words[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        } else {
            // Each data word straddles two buffer words (read little-endian: byte 0 lowest). The
            // last one shares its word with the 0x80 marker.
            let mut carry = self.prefix_tail;
            for p in parts {
                let dst = &mut self.words[at..at + p.len()];
                match s {
                    8 => funnel::<8>(dst, p, &mut carry),
                    16 => funnel::<16>(dst, p, &mut carry),
                    _ => funnel::<24>(dst, p, &mut carry),
                }
                at += p.len();
            }
            self.words[at] = (carry | (0x80 << s)).to_le();
        }
        assert_eq!(
            at - start,
            self.data_words,
            "data of the wrong length for the frame"
        );
        let (blocks, _) = self.words.as_chunks::<16>();
        let mut state = IV;
        H::compress(&mut state, blocks);
        state
    }
}

/// Writes `src` shifted up by `S` bits (little-endian reading), `carry` holding the bits shifted
/// out of the previous word. Eight words at a time, unrolled: the Merkle node's data is two digests.
#[inline(always)]
fn funnel<const S: u32>(dst: &mut [u32], src: &[u32], carry: &mut u32) {
    let mut c = *carry;
    let mut step = |d: &mut u32, w: u32| {
        let v = u32::from_le(w);
        *d = (c | (v << S)).to_le();
        c = v >> (32 - S);
    };
    let (d8, d_rest) = dst.as_chunks_mut::<8>();
    let (s8, s_rest) = src.as_chunks::<8>();
    for (d, w) in d8.iter_mut().zip(s8) {
        for i in 0..8 {
            step(&mut d[i], w[i]);
        }
    }
    for (d, &w) in d_rest.iter_mut().zip(s_rest) {
        step(d, w);
    }
    *carry = c;
}

/// The domain tags, one per kind of hashed object.
pub mod tag {
    pub const RECORD: &str = "veritrain/record/v1";
    pub const NODE: &str = "veritrain/node/v1";
    pub const EMPTY: &str = "veritrain/empty/v1";
    pub const GENESIS: &str = "veritrain/genesis/v1";
    pub const BATCH: &str = "veritrain/batch/v1";
    pub const HPARAMS: &str = "veritrain/hparams/v1";
    pub const SAMPLER: &str = "veritrain/sampler/v1";
    pub const SAMPLE: &str = "veritrain/sample/v1";
    /// A shard of a sharded dataset (behind `samples`, which the guest does not enable).
    #[cfg(feature = "samples")]
    pub const SHARD: &str = "veritrain/shard/v1";
    pub const CHUNK: &str = "veritrain/chunk/v1";
    pub const TENSOR: &str = "veritrain/tensor/v1";
    pub const CLAIM: &str = "veritrain/claim/v1";
    pub const CANONICAL_SETTINGS: &str = "veritrain/canonical-settings/v1";
    pub const INIT: &str = "veritrain/init/v1";
    pub const ZK_STEPS: &str = "veritrain/zk-steps/v1";
}

/// The `sha2` crate's compression function (SHA-NI where the CPU has it).
pub struct Sha2;

impl Sha256 for Sha2 {
    fn compress(state: &mut DigestWords, blocks: &[Block]) {
        use sha2::digest::generic_array::GenericArray;
        let mut s = state.map(|w| u32::from_be_bytes(w.to_ne_bytes()));
        for b in blocks {
            let mut bytes = [0u8; 64];
            store_words(&mut bytes, b);
            sha2::compress256(&mut s, &[GenericArray::from(bytes)]);
        }
        *state = s.map(|w| u32::from_ne_bytes(w.to_be_bytes()));
    }

    fn sha256(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message builder, padding and compression against the `sha2` crate's whole-message
    /// SHA-256, for every length around the block boundaries.
    #[test]
    fn message_matches_sha2() {
        use sha2::Digest as _;
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            let want: Digest = sha2::Sha256::digest(&data[..n]).into();
            let mut m = Message::default();
            m.push_bytes(&data[..n]);
            assert_eq!(digest_bytes(&m.finish::<Sha2>()), want, "length {n}");
        }
    }

    /// Frames against the byte-wise definition, for tags of every length mod 4 and data of
    /// every length across the block boundaries, split into parts.
    #[test]
    fn frame_matches_tagged() {
        let words: Vec<u32> = (0..80u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        for tag in [
            "t",
            "ta",
            "tag",
            "tag/",
            "veritrain/node/v1",
            "veritrain/record/v1",
        ] {
            let mut f = Frame::new(tag, 0);
            for n in 0..=80 {
                f.set_len(n);
                let want = Sha2::tagged(tag, &[&bytes[..4 * n]]);
                let (a, b) = words[..n].split_at(n / 3);
                assert_eq!(digest_bytes(&f.hash::<Sha2>(&[a, b])), want, "{tag} {n}");
                assert_eq!(
                    digest_bytes(&f.hash::<Sha2>(&[&words[..n]])),
                    want,
                    "{tag} {n}"
                );
            }
        }
    }
}
