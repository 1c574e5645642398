//! Orders taken in Rust: the rows a commit writes.

pub mod rows;
