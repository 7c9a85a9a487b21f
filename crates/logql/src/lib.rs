//! LogQL, the part Grafana and logcli use: stream selectors, line filters, `| json`,
//! `| logfmt`, label filters, `| line_format`, the range functions over log streams
//! (`count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`), the aggregations (`sum`,
//! `count`, `min`, `max`, `avg`, `topk`, `bottomk`, with `by`/`without`), `vector(n)`,
//! numbers and arithmetic and comparisons between them.
//!
//! The parser is recursive descent over the query text; [`Display`](std::fmt::Display)
//! prints a parsed query back in canonical form (what `/format_query` answers).
//! [`Pipeline`] applies the log stages to one line and its labels.

mod ast;
mod eval;
mod parse;
mod pipeline;
mod print;
mod pushdown;

pub use ast::*;
pub use eval::{aggregate, binary, collect_ranges, combine, windows, Val};
pub use parse::{anchored, parse, parse_duration, MAX_QUERY_BYTES};
pub use pipeline::{sanitize_label, Pipeline, Template};
pub use print::fmt_duration;
pub use pushdown::pushdown;

#[cfg(test)]
mod tests;
