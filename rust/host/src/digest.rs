//! Parallel, zero-copy digests of tensors and datasets. The rules are veritrain-core's; this file
//! only spreads the chunk hashing over all cores with the GIL released.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rayon::prelude::*;
use veritrain_core::hash::{digest_bytes, digest_words, Sha2};
use veritrain_core::{merkle, sampler, shards, tensor, Digest};

use crate::errors::value_error;
use crate::types::digest_arg;

/// A read-only view of a C-contiguous buffer, kept alive by the PyBuffer it came from.
struct View {
    addr: usize,
    len: usize,
}

impl View {
    fn of(buf: &PyBuffer<u8>, what: &str) -> PyResult<Self> {
        if !buf.is_c_contiguous() {
            return Err(value_error(format!("{what}: buffer must be C-contiguous")));
        }
        Ok(View {
            addr: buf.buf_ptr() as usize,
            len: buf.len_bytes(),
        })
    }

    /// Safety: the PyBuffer this view came from must be alive and its memory unchanged.
    unsafe fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(self.addr as *const u8, self.len)
    }
}

/// A rayon pool of `n` threads, built once per size. The training loop hashes parameters while
/// torch computes the next step; letting the hashing take every core would slow torch down.
fn pool(n: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = pools.get(&n) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("veritrain-digest-{i}"))
            .build()
            .map_err(|e| value_error(format!("digest thread pool: {e}")))?,
    );
    pools.insert(n, p.clone());
    Ok(p)
}

/// Digests of many tensors at once: `[(name, dtype, shape, buffer)] -> [digest]`. All chunks of all
/// tensors are hashed in one parallel pass (on `threads` threads, default all cores), without
/// copying and without the GIL. The caller must not write to the tensors until this returns.
#[pyfunction]
#[pyo3(signature = (tensors, threads = None))]
fn tensor_digests<'py>(
    py: Python<'py>,
    tensors: Vec<(String, String, Vec<u64>, PyBuffer<u8>)>,
    threads: Option<usize>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let pool = match threads {
        Some(0) => return Err(value_error("threads must be at least 1")),
        Some(n) => Some(pool(n)?),
        None => None,
    };
    let views = tensors
        .iter()
        .map(|(name, _, _, buf)| View::of(buf, name))
        .collect::<PyResult<Vec<_>>>()?;
    let digests: Vec<Digest> = py.detach(|| {
        let run = || hash_all(&tensors, &views);
        match &pool {
            Some(p) => p.install(run),
            None => run(),
        }
    });
    Ok(digests.iter().map(|d| PyBytes::new(py, d)).collect())
}

type TensorArg = (String, String, Vec<u64>, PyBuffer<u8>);

fn hash_all(tensors: &[TensorArg], views: &[View]) -> Vec<Digest> {
    // SAFETY: the caller holds every PyBuffer for the whole call.
    let datas: Vec<&[u8]> = views.iter().map(|v| unsafe { v.bytes() }).collect();
    let jobs: Vec<(usize, &[u8])> = datas
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.chunks(tensor::CHUNK_LEN).map(move |c| (i, c)))
        .collect();
    let leaves: Vec<(usize, Digest)> = jobs
        .par_iter()
        .map(|(i, c)| (*i, tensor::chunk_leaf(c)))
        .collect();
    let mut per_tensor: Vec<Vec<Digest>> = vec![Vec::new(); datas.len()];
    for (i, leaf) in leaves {
        per_tensor[i].push(leaf);
    }
    tensors
        .iter()
        .zip(per_tensor)
        .zip(&datas)
        .map(|(((name, dtype, shape, _), chunks), data)| {
            tensor::tensor_digest_from_chunks::<Sha2>(
                name,
                dtype,
                shape,
                data.len() as u64,
                &chunks,
            )
        })
        .collect()
}

/// Merkle root over `(name, tensor digest)` pairs sorted by name; names must be unique.
#[pyfunction]
fn state_digest<'py>(
    py: Python<'py>,
    tensors: Vec<(String, Vec<u8>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let digests = tensors
        .iter()
        .map(|(n, d)| digest_arg(d, n))
        .collect::<PyResult<Vec<_>>>()?;
    let mut pairs: Vec<(&str, Digest)> = tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .zip(digests)
        .collect();
    let root = tensor::state_digest::<Sha2>(&mut pairs)
        .ok_or_else(|| value_error("state digest: tensor names must be unique"))?;
    Ok(PyBytes::new(py, &root))
}

/// Dataset root over fixed-size canonical sample rows: `rows` holds `n * row_len` bytes, row `i`
/// being sample `i`. Leaves are hashed in parallel.
#[pyfunction]
fn dataset_root<'py>(
    py: Python<'py>,
    rows: PyBuffer<u8>,
    row_len: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let view = View::of(&rows, "dataset rows")?;
    if row_len == 0 || view.len % row_len != 0 {
        return Err(value_error(format!(
            "dataset rows: {} bytes is not a whole number of {row_len}-byte rows",
            view.len
        )));
    }
    let root = py.detach(|| {
        // SAFETY: `rows` is alive for the whole call.
        let data = unsafe { view.bytes() };
        let leaves: Vec<Digest> = data
            .par_chunks(row_len)
            .enumerate()
            .map(|(i, row)| sampler::sample_leaf::<Sha2>(i as u64, row))
            .collect();
        merkle::root::<Sha2>(&leaves)
    });
    Ok(PyBytes::new(py, &root))
}

/// Audit paths (RFC 6962, from the leaf up) of the samples `indices` in the dataset root over
/// fixed-size canonical rows (as `dataset_root`): what the prover gives the guest with each
/// sample of a re-executed step.
#[pyfunction]
fn dataset_paths<'py>(
    py: Python<'py>,
    rows: PyBuffer<u8>,
    row_len: usize,
    indices: Vec<u64>,
) -> PyResult<Vec<Vec<Bound<'py, PyBytes>>>> {
    let view = View::of(&rows, "dataset rows")?;
    if row_len == 0 || view.len % row_len != 0 {
        return Err(value_error(format!(
            "dataset rows: {} bytes is not a whole number of {row_len}-byte rows",
            view.len
        )));
    }
    let n = view.len / row_len;
    if let Some(i) = indices.iter().find(|i| **i >= n as u64) {
        return Err(value_error(format!(
            "sample {i}: the dataset has {n} samples"
        )));
    }
    let paths: Vec<Vec<Digest>> = py.detach(|| {
        // SAFETY: `rows` is alive for the whole call.
        let data = unsafe { view.bytes() };
        let leaves: Vec<_> = data
            .par_chunks(row_len)
            .enumerate()
            .map(|(i, row)| digest_words(&sampler::sample_leaf::<Sha2>(i as u64, row)))
            .collect();
        indices
            .par_iter()
            .map(|i| {
                let path = merkle::NodeHasher::new().path::<Sha2>(&leaves, *i as usize);
                path.iter().map(digest_bytes).collect()
            })
            .collect()
    });
    Ok(paths
        .iter()
        .map(|p| p.iter().map(|d| PyBytes::new(py, d)).collect())
        .collect())
}

/// The dataset root of a sharded dataset (PROTOCOL.md §4): `shards` are `(sample count, shard
/// root)` in key order, each shard root being `dataset_root` of that shard's own rows.
#[pyfunction]
fn sharded_root<'py>(
    py: Python<'py>,
    shards: Vec<(u64, Vec<u8>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut pairs = Vec::with_capacity(shards.len());
    let mut total = 0u64;
    for (i, (count, root)) in shards.iter().enumerate() {
        total = total
            .checked_add(*count)
            .ok_or_else(|| value_error("sharded root: more than 2^64 samples"))?;
        pairs.push((*count, digest_arg(root, &format!("shard {i}'s root"))?));
    }
    Ok(PyBytes::new(py, &shards::sharded_root::<Sha2>(&pairs)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dataset_paths, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_digests, m)?)?;
    m.add_function(wrap_pyfunction!(state_digest, m)?)?;
    m.add_function(wrap_pyfunction!(dataset_root, m)?)?;
    m.add_function(wrap_pyfunction!(sharded_root, m)?)?;
    Ok(())
}
