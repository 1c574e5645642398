//! Bindings of `crate::storage`: `SqliteWriter` (the embedded store's writing connection),
//! `pg_copy_binary` (new orders as PostgreSQL binary COPY streams), `sqlite_library`, and the
//! `PLACED_*_COLUMNS` column orders.
//!
//! `SqliteWriter.commit` converts the Python-built statement groups to owned values while it
//! holds the GIL, then releases the GIL for the whole transaction, including the rows of an
//! `OrderRows`, which it reads under that object's own lock.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rusqlite::types::Value;

use super::rows::OrderRows;
use crate::storage::sqlite::{self, Group, WriteError, Writer, DEFAULT_BUSY_TIMEOUT_MS};
use crate::storage::{pgarray, pgcopy, DECISION_COLUMNS, LINE_COLUMNS, ORDER_COLUMNS};

create_exception!(_core, SqliteWriteError, PyRuntimeError);
create_exception!(_core, RowCountError, SqliteWriteError);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<SqliteWriter>()?;
    m.add_function(wrap_pyfunction!(pg_copy_binary, m)?)?;
    m.add_function(wrap_pyfunction!(pg_array_text, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite_library, m)?)?;
    m.add("PLACED_ORDER_COLUMNS", PyTuple::new(py, ORDER_COLUMNS)?)?;
    m.add("PLACED_LINE_COLUMNS", PyTuple::new(py, LINE_COLUMNS)?)?;
    m.add(
        "PLACED_DECISION_COLUMNS",
        PyTuple::new(py, DECISION_COLUMNS)?,
    )?;
    m.add("SqliteWriteError", py.get_type::<SqliteWriteError>())?;
    m.add("RowCountError", py.get_type::<RowCountError>())?;
    for name in ["SqliteWriteError", "RowCountError"] {
        m.getattr(name)?.setattr("__module__", "pyorder._core")?;
    }
    Ok(())
}

/// `SqliteWriteError` (or `RowCountError`) with the failure's details as attributes.
pub(crate) fn write_err(py: Python<'_>, e: WriteError) -> PyErr {
    let code = e.sqlite_code();
    let (err, attrs): (PyErr, Vec<(&str, Py<PyAny>)>) = match &e {
        WriteError::RowCount {
            group,
            sql,
            expected,
            actual,
        } => (
            RowCountError::new_err(e.to_string()),
            vec![
                (
                    "group",
                    group.into_pyobject(py).unwrap().into_any().unbind(),
                ),
                ("sql", sql.into_pyobject(py).unwrap().into_any().unbind()),
                (
                    "expected",
                    expected.into_pyobject(py).unwrap().into_any().unbind(),
                ),
                (
                    "actual",
                    actual.into_pyobject(py).unwrap().into_any().unbind(),
                ),
            ],
        ),
        _ => (SqliteWriteError::new_err(e.to_string()), Vec::new()),
    };
    let value = err.value(py);
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
    // the message still says everything.
    let _ = value.setattr("sqlite_errorcode", code);
    for (name, v) in attrs {
        let _ = value.setattr(name, v.bind(py));
    }
    err
}

fn closed() -> WriteError {
    WriteError::Usage("the SQLite writer is closed".to_owned())
}

/// One Python value as an SQL parameter, as `sqlite3` binds it: None, int (64-bit), float,
/// str, bytes.
fn sql_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        Ok(Value::Null)
    } else if let Ok(i) = obj.cast::<PyInt>() {
        Ok(Value::Integer(i.extract()?))
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(Value::Text(s.to_str()?.to_owned()))
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        Ok(Value::Blob(b.as_bytes().to_vec()))
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        Ok(Value::Real(f.value()))
    } else {
        Err(PyTypeError::new_err(format!(
            "cannot bind a {} as an SQL parameter (None, int, float, str or bytes)",
            obj.get_type().name()?
        )))
    }
}

/// A parameter row: a tuple or a list of values.
fn sql_row(row: &Bound<'_, PyAny>) -> PyResult<Vec<Value>> {
    if let Ok(t) = row.cast::<PyTuple>() {
        t.iter().map(|v| sql_value(&v)).collect()
    } else if let Ok(l) = row.cast::<PyList>() {
        l.iter().map(|v| sql_value(&v)).collect()
    } else {
        Err(PyTypeError::new_err(format!(
            "a parameter row must be a tuple or a list, not {}",
            row.get_type().name()?
        )))
    }
}

/// `(sql, rows, expected)` groups as owned values; `expected` < 0 means unchecked.
pub(crate) fn groups(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Group>> {
    let mut out = Vec::new();
    for (i, item) in obj.try_iter()?.enumerate() {
        let (sql, rows, expected): (String, Bound<'_, PyAny>, i64) =
            item?.extract().map_err(|e| {
                PyTypeError::new_err(format!("{what}[{i}] is not (sql, rows, expected): {e}"))
            })?;
        let rows = rows
            .try_iter()?
            .map(|row| sql_row(&row?))
            .collect::<PyResult<Vec<_>>>()
            .map_err(|e| {
                let msg = format!("{what}[{i}] ({sql}): {}", e.value(obj.py()));
                PyErr::from_type(e.get_type(obj.py()), msg)
            })?;
        out.push(Group {
            sql,
            rows,
            expected: u64::try_from(expected).ok(),
        });
    }
    Ok(out)
}

/// Parameters of `execute` / `query_one`: a tuple or a list, or none.
fn params(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Value>> {
    match obj {
        Some(row) if !row.is_none() => sql_row(row),
        _ => Ok(Vec::new()),
    }
}

fn to_py(py: Python<'_>, v: Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Real(f) => f.into_pyobject(py)?.into_any().unbind(),
        Value::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Blob(b) => PyBytes::new(py, &b).into_any().unbind(),
    })
}

/// The embedded store's single writing connection to one SQLite file (WAL, synchronous=FULL,
/// foreign_keys=ON, busy timeout). Use it from one thread at a time: every call waits for the
/// previous one.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct SqliteWriter {
    pub(crate) inner: Arc<Mutex<Option<Writer>>>,
}

impl SqliteWriter {
    /// Run `f` on the open writer with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Writer) -> Result<T, WriteError> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.inner.lock().as_mut() {
            Some(w) => f(w),
            None => Err(closed()),
        })
        .map_err(|e| write_err(py, e))
    }
}

#[pymethods]
impl SqliteWriter {
    #[new]
    #[pyo3(signature = (path, busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS))]
    fn new(py: Python<'_>, path: PathBuf, busy_timeout_ms: u32) -> PyResult<Self> {
        let writer = py
            .detach(|| Writer::open(&path, busy_timeout_ms))
            .map_err(|e| write_err(py, e))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Write one batch in one BEGIN IMMEDIATE ... COMMIT, without the GIL: the `before`
    /// groups, then the orders and lines of `rows`, then the `after` groups. A group is
    /// `(sql, parameter rows, expected)`: the statement runs once per row, and when `expected`
    /// is 0 or more the rows it changed in all must add up to it. Returns the rows each group
    /// changed. On any error everything rolls back and SqliteWriteError (RowCountError for a
    /// count) is raised.
    #[pyo3(signature = (before, rows, after))]
    fn commit(
        &self,
        py: Python<'_>,
        before: &Bound<'_, PyAny>,
        rows: Option<&Bound<'_, OrderRows>>,
        after: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<u64>> {
        let before = groups(before, "before")?;
        let after = groups(after, "after")?;
        let rows: Option<&OrderRows> = rows.map(Bound::get);
        self.with(py, |w| {
            let placed = rows.map(OrderRows::lock);
            w.commit(&before, placed.as_deref(), &after)
        })
    }

    /// Run one statement (no implicit transaction); returns the rows it changed.
    #[pyo3(signature = (sql, params = None))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let values = self::params(params)?;
        self.with(py, |w| w.execute(sql, &values))
    }

    /// The first row of a query as a tuple, or None.
    #[pyo3(signature = (sql, params = None))]
    fn query_one<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let values = self::params(params)?;
        let Some(row) = self.with(py, |w| w.query_one(sql, &values))? else {
            return Ok(None);
        };
        let items = row
            .into_iter()
            .map(|v| to_py(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, items).map(Some)
    }

    /// Roll back the open transaction, if any.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, Writer::rollback)
    }

    /// Whether a transaction is open.
    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            self.inner
                .lock()
                .as_ref()
                .is_some_and(Writer::in_transaction)
        })
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().is_none())
    }

    /// Close the connection; safe to call twice.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.inner.lock().take() {
            Some(w) => w.close(),
            None => Ok(()),
        })
        .map_err(|e| write_err(py, e))
    }
}

/// The orders, the order lines and the risk decisions of `rows` as three PostgreSQL binary
/// COPY streams, columns in `ORDER_COLUMNS`, `LINE_COLUMNS` and `DECISION_COLUMNS` order.
#[pyfunction]
fn pg_copy_binary<'py>(
    py: Python<'py>,
    rows: &Bound<'py, OrderRows>,
) -> (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
) {
    let rows = rows.get();
    let (orders, lines, decisions) = py.detach(|| {
        let r = rows.lock();
        (pgcopy::orders(&r), pgcopy::lines(&r), pgcopy::decisions(&r))
    });
    (
        PyBytes::new(py, &orders),
        PyBytes::new(py, &lines),
        PyBytes::new(py, &decisions),
    )
}

/// The orders and the order lines of `rows` as PostgreSQL array literals, one per column in
/// `ORDER_COLUMNS` and `LINE_COLUMNS` order, for a statement that unnests them.
#[pyfunction]
fn pg_array_text(py: Python<'_>, rows: &Bound<'_, OrderRows>) -> (Vec<String>, Vec<String>) {
    let rows = rows.get();
    py.detach(|| {
        let r = rows.lock();
        (pgarray::orders(&r), pgarray::lines(&r))
    })
}

/// The file that provides the SQLite `SqliteWriter` calls (the system's libsqlite3), or None.
#[pyfunction]
fn sqlite_library() -> Option<String> {
    sqlite::library_path()
}
