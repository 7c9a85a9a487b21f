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

/// Deepest nesting of groups and repetitions a query's regex may have (native queries and
/// LogQL alike). Parsing, compiling and walking a regex recurse once per level; the regex crate
/// allows 250, deep enough for a forged `a*****…` to exhaust a debug build's thread stack (found
/// by the `params` fuzz target).
pub const REGEX_NEST_LIMIT: u32 = 32;

#[cfg(test)]
mod tests;
