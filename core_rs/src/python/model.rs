//! Bindings of the risk model (`crate::model`): `RiskModel`, loaded from LightGBM's text dump,
//! scoring rows of features (float64, NaN = missing) into probabilities and 0-99 scores.

use std::borrow::Cow;

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::model::{self as core, score_of, ModelError};
use crate::python::errors::model_err;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RiskModel>()?;
    Ok(())
}

/// A LightGBM binary classifier scored by the core (immutable, thread-safe).
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct RiskModel {
    pub(crate) inner: core::RiskModel,
}

/// One row: a 1-D numpy array of float64 (borrowed when contiguous) or a sequence of floats.
fn row_arg<'py>(row: &Bound<'py, PyAny>) -> PyResult<Vec<f64>> {
    if let Ok(arr) = row.cast::<PyArray1<f64>>() {
        let arr: PyReadonlyArray1<'py, f64> = arr.readonly();
        return Ok(match arr.as_slice() {
            Ok(items) => items.to_vec(),
            Err(_) => arr.as_array().iter().copied().collect(),
        });
    }
    row.extract::<Vec<f64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "row must be a 1-D numpy array of float64 or a sequence of floats, got {}",
            row.get_type()
        ))
    })
}

impl RiskModel {
    /// Apply `each` to every row of a 2-D float64 matrix, with the GIL released.
    fn over_rows<T: numpy::Element + Send>(
        &self,
        matrix: &Bound<'_, PyAny>,
        each: impl Fn(&core::RiskModel, &[f64]) -> T + Send + Sync,
    ) -> PyResult<Vec<T>> {
        let arr = matrix.cast::<PyArray2<f64>>().map_err(|_| {
            let got = matrix
                .getattr("dtype")
                .map(|d| d.to_string())
                .unwrap_or_else(|_| matrix.get_type().to_string());
            PyTypeError::new_err(format!(
                "matrix must be a 2-D numpy array of float64, got {got}"
            ))
        })?;
        let arr = arr.readonly();
        let [rows, cols] = [arr.shape()[0], arr.shape()[1]];
        let expected = self.inner.num_features();
        if cols != expected {
            return Err(model_err(ModelError::RowLength {
                expected,
                got: cols,
            }));
        }
        // `as_slice` also takes a Fortran-ordered matrix, in column-major order: only a C-ordered
        // one is borrowed; any other is copied once into row-major order.
        let cells: Cow<'_, [f64]> = match arr.as_slice() {
            Ok(cells) if arr.is_c_contiguous() => Cow::Borrowed(cells),
            _ => Cow::Owned(arr.as_array().iter().copied().collect()),
        };
        let model = &self.inner;
        let out = matrix.py().detach(|| {
            if cols == 0 {
                // No features: every row is the empty row.
                return (0..rows).map(|_| each(model, &[])).collect();
            }
            cells
                .chunks_exact(cols)
                .map(|row| each(model, row))
                .collect()
        });
        Ok(out)
    }
}

#[pymethods]
impl RiskModel {
    #[staticmethod]
    fn from_text(py: Python<'_>, text: &str) -> PyResult<Self> {
        py.detach(|| core::RiskModel::from_text(text))
            .map(|inner| RiskModel { inner })
            .map_err(model_err)
    }

    #[getter]
    fn version(&self) -> &str {
        self.inner.version()
    }

    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.inner.feature_names().to_vec()
    }

    #[getter]
    fn num_features(&self) -> usize {
        self.inner.num_features()
    }

    #[getter]
    fn num_trees(&self) -> usize {
        self.inner.num_trees()
    }

    fn probability(&self, row: &Bound<'_, PyAny>) -> PyResult<f64> {
        self.inner.probability(&row_arg(row)?).map_err(model_err)
    }

    fn score(&self, row: &Bound<'_, PyAny>) -> PyResult<u8> {
        self.inner.score(&row_arg(row)?).map_err(model_err)
    }

    fn contributions(&self, row: &Bound<'_, PyAny>) -> PyResult<(f64, Vec<f64>)> {
        self.inner.contributions(&row_arg(row)?).map_err(model_err)
    }

    fn predict_proba<'py>(
        &self,
        matrix: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let out = self.over_rows(matrix, |m, row| {
            m.probability(row).expect("rows have the model's width")
        })?;
        Ok(PyArray1::from_vec(matrix.py(), out))
    }

    fn scores<'py>(&self, matrix: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let out = self.over_rows(matrix, |m, row| {
            score_of(m.probability(row).expect("rows have the model's width"))
        })?;
        Ok(PyArray1::from_vec(matrix.py(), out))
    }

    fn __repr__(&self) -> String {
        format!(
            "RiskModel(version={:?}, trees={}, features={})",
            self.inner.version(),
            self.inner.num_trees(),
            self.inner.num_features()
        )
    }
}
