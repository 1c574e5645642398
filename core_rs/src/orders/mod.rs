//! Orders taken in Rust: the rows a commit writes.

pub mod book;
pub mod parse;
pub mod pending;
pub mod render;
pub mod rows;
