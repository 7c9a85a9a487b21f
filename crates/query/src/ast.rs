//! What a parsed query is: a filter expression and the pipes applied to its matches.

use logpipe_model::AppName;

/// A filter over records. Messages are matched on bytes; tags are whole strings
/// (`key=value` by convention, or bare such as `canary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every child holds (at least two children, none of them an `And`).
    And(Vec<Expr>),
    /// At least one child holds (at least two children, none of them an `Or`).
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// The text occurs in the message with token boundaries at its ends: `timeout` matches
    /// `a timeout.` but not `timeouts`; a phrase such as `"connection reset"` is one word here.
    Word {
        text: String,
        case_insensitive: bool,
    },
    /// The text occurs anywhere in the message: `~"req-00"`.
    Substring {
        text: String,
        case_insensitive: bool,
    },
    /// A regex (RE2 syntax) found anywhere in the message: `/t(ime)?out/`, `/error/i`.
    Regex {
        pattern: String,
        case_insensitive: bool,
    },
    /// The record's application.
    App(AppName),
    /// The record has exactly this tag: `level=ERROR`, `tag:canary`.
    Tag(String),
    /// The record has a tag `key=...` with any value, or the bare tag `key`: `host=*`.
    TagKey(String),
    /// The record has a tag `key=value` whose value matches the regex: `level=~"ERR|FATAL"`.
    TagRegex {
        key: String,
        pattern: String,
    },
    /// Records in `[from, to)`, ns; either end may be open. Only at the top level of a query.
    Time {
        from: Option<i64>,
        to: Option<i64>,
    },
    /// Records of the last `ns` nanoseconds before the query runs: `_time:1h`.
    TimeLast(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// What to do with the matching records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pipe {
    /// At most this many records.
    Limit(usize),
    /// Records by time, oldest or newest first.
    Sort(Order),
    /// The number of matches.
    Count,
    /// The most frequent values of a tag key among the matches, with their counts.
    CountBy(String),
    /// Matches per time bucket of `step` ns (aligned to the epoch), optionally per tag value.
    Histogram { step: i64, by: Option<String> },
    /// Only these fields of each record: `_time`, `app`, `message`, `tags`, or tag keys.
    Fields(Vec<String>),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// `None` matches everything.
    pub filter: Option<Expr>,
    pub pipes: Vec<Pipe>,
}

impl Expr {
    /// `And` of `parts`, flattened; a single part stands alone.
    pub fn and(parts: Vec<Expr>) -> Expr {
        Self::join(parts, true)
    }

    /// `Or` of `parts`, flattened; a single part stands alone.
    pub fn or(parts: Vec<Expr>) -> Expr {
        Self::join(parts, false)
    }

    fn join(parts: Vec<Expr>, and: bool) -> Expr {
        let mut flat = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Expr::And(v) if and => flat.extend(v),
                Expr::Or(v) if !and => flat.extend(v),
                p => flat.push(p),
            }
        }
        if flat.len() == 1 {
            return flat.pop().expect("one part");
        }
        if and {
            Expr::And(flat)
        } else {
            Expr::Or(flat)
        }
    }
}
