//! Orders taken in Rust: the rows a commit writes.

pub mod rows;
pub mod parse;
pub mod book;
pub mod render;
