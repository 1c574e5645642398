//! Bindings of the order-ID generator (`crate::ids`): `OrderIdGenerator`, `decode_order_id`
//! and the `ORDER_ID_*` layout constants.

use std::sync::Arc;

use numpy::{PyArray1, PyReadonlyArray1};
use parking_lot::Mutex;
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};

use crate::ids::{self, Clock, IdError, IdGenerator, SystemClock};
use crate::python::errors::id_err;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderIdGenerator>()?;
    m.add_function(wrap_pyfunction!(decode_order_id, m)?)?;
    m.add("ORDER_ID_EPOCH_MS", ids::EPOCH_MS)?;
    m.add("ORDER_ID_TIME_BITS", ids::TIME_BITS)?;
    m.add("ORDER_ID_NODE_BITS", ids::NODE_BITS)?;
    m.add("ORDER_ID_SEQUENCE_BITS", ids::SEQUENCE_BITS)?;
    Ok(())
}

/// A Python callable returning ms since the Unix epoch, called with the GIL re-attached.
struct PyClock {
    func: Py<PyAny>,
    /// The exception of a failed call, raised in place of the core's error.
    error: Mutex<Option<PyErr>>,
}

impl Clock for PyClock {
    fn now_ms(&self) -> u64 {
        Python::attach(|py| {
            let read = self.func.bind(py).call0().and_then(|v| v.extract::<u64>());
            read.unwrap_or_else(|e| {
                *self.error.lock() = Some(e);
                0 // before the epoch: the core stops with no ID produced
            })
        })
    }
}

/// An argument that must fit `T`; anything else is an InvalidConfig (ValueError).
fn arg<T: TryFrom<i64>>(py: Python<'_>, name: &str, value: i64) -> PyResult<T> {
    T::try_from(value).map_err(|_| {
        let message = format!("{name} out of range: {value}");
        id_err(py, IdError::InvalidConfig { message })
    })
}

/// Snowflake-style 64-bit order IDs (see `pyorder.ids`); thread-safe, unique, increasing.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct OrderIdGenerator {
    pub(crate) inner: IdGenerator,
    py_clock: Option<Arc<PyClock>>,
}

impl OrderIdGenerator {
    pub(crate) fn err(&self, py: Python<'_>, e: IdError) -> PyErr {
        let raised = self.py_clock.as_ref().and_then(|c| c.error.lock().take());
        raised.unwrap_or_else(|| id_err(py, e))
    }
}

#[pymethods]
impl OrderIdGenerator {
    #[new]
    #[pyo3(signature = (node, *, gene_bits=0, max_backward_ms=100, clock=None))]
    fn new(
        py: Python<'_>,
        node: i64,
        gene_bits: i64,
        max_backward_ms: i64,
        clock: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let node: u64 = arg(py, "node", node)?;
        let gene_bits: u32 = arg(py, "gene_bits", gene_bits)?;
        let max_backward_ms: u64 = arg(py, "max_backward_ms", max_backward_ms)?;
        let py_clock = clock.map(|func| {
            let error = Mutex::new(None);
            Arc::new(PyClock { func, error })
        });
        let inner = match &py_clock {
            Some(c) => IdGenerator::new(node, gene_bits, max_backward_ms, Arc::clone(c)),
            None => IdGenerator::new(node, gene_bits, max_backward_ms, SystemClock),
        }
        .map_err(|e| id_err(py, e))?;
        Ok(Self { inner, py_clock })
    }

    #[getter]
    fn node(&self) -> u32 {
        self.inner.node()
    }

    #[getter]
    fn gene_bits(&self) -> u32 {
        self.inner.gene_bits()
    }

    #[pyo3(signature = (gene=0))]
    fn next_id(&self, py: Python<'_>, gene: u64) -> PyResult<u64> {
        // Detached while waiting for the lock: a thread in a long batch may hold it, and a
        // Python clock re-attaches to be read.
        py.detach(|| self.inner.next_id(gene))
            .map_err(|e| self.err(py, e))
    }

    /// `n` IDs in increasing order as a uint64 array; `genes[i] % 2**gene_bits` per ID.
    #[pyo3(signature = (n, *, genes=None))]
    fn next_ids<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        genes: Option<PyReadonlyArray1<'py, u64>>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        // Copied, so Python code cannot change them while the GIL is released.
        let genes: Option<Vec<u64>> = genes.map(|g| g.as_array().to_vec());
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {n} order IDs")))?;
        out.resize(n, 0);
        py.detach(|| self.inner.fill(&mut out, genes.as_deref()))
            .map_err(|e| self.err(py, e))?;
        Ok(PyArray1::from_vec(py, out))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self.py_clock.as_ref().map(|c| &c.func))
    }
}

/// Split an ID into (unix_ms, node, sequence, gene).
#[pyfunction]
#[pyo3(signature = (order_id, gene_bits=0))]
fn decode_order_id(
    py: Python<'_>,
    order_id: u64,
    gene_bits: i64,
) -> PyResult<(u64, u32, u32, u32)> {
    let gene_bits: u32 = arg(py, "gene_bits", gene_bits)?;
    let d = ids::decode(order_id, gene_bits).map_err(|e| id_err(py, e))?;
    Ok((d.unix_ms, d.node, d.sequence, d.gene))
}
