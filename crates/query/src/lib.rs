//! The logpipe query language: what people type to search logs.
//!
//! ```text
//! timeout "connection reset" ~"req-00" /t(ime)?out \d+ms/ level=ERROR -level=DEBUG
//!     app:(hdfs OR spark) _time:1h | sort asc | limit 20
//! ```
//!
//! [`parse`] turns a query into a [`Plan`]: a filter [`Expr`] and a list of [`Pipe`]s;
//! `Plan`'s `Display` prints it back in canonical form, which parses to the same plan. This
//! crate only describes queries; `logpipe-storage` compiles and runs them. The grammar, with
//! examples, is in `docs/QUERY.md`.

mod ast;
#[doc(hidden)]
pub mod fuzzing;
mod parse;
mod print;

pub use ast::{Expr, Order, Pipe, Plan};
pub use parse::{parse, ParseError, MAX_QUERY_BYTES};

#[cfg(test)]
mod tests;
