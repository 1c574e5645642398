//! pyorder's hot path: sharded inventory reservation across warehouses and order-ID generation.
//!
//! The core is plain Rust (`inventory`, `ids`) and is tested with `cargo test`; the Python
//! bindings (`python`) are compiled only with the `python` feature, which maturin turns on.

pub mod ids;
pub mod inventory;
pub mod model;
pub mod orders;
pub mod risk;
pub mod storage;

#[cfg(feature = "python")]
mod python;
