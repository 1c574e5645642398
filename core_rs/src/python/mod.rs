//! The `pyorder._core` extension module: registration only; each binding lives in its own file.

use pyo3::prelude::*;

mod commit_queue;
mod engine;
mod errors;
mod ids;
mod inventory;
mod model;
mod orders;
mod risk;
mod rows;
mod storage;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // First, before anything here can initialise SQLite.
    m.add("SQLITE_TUNED", crate::storage::sqlite::configure_library())?;
    errors::register(m)?;
    inventory::register(m)?;
    ids::register(m)?;
    rows::register(m)?;
    orders::register(m)?;
    storage::register(m)?;
    commit_queue::register(m)?;
    model::register(m)?;
    risk::register(m)?;
    engine::register(m)?;
    Ok(())
}
