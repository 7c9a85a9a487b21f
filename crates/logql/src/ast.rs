//! The parsed form of a LogQL query.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of a stream or a series, sorted by name.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Log(LogExpr),
    Metric(MetricExpr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    Nre,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Re,
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue {
    Str(String),
    Num(f64),
}

/// One comparison of a label filter; several joined by `and`/`or` (`and` binds tighter).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelPred {
    Cmp { name: String, op: CmpOp, value: LabelValue },
    And(Box<LabelPred>, Box<LabelPred>),
    Or(Box<LabelPred>, Box<LabelPred>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Line { op: LineOp, value: String },
    Json,
    Logfmt,
    Label(LabelPred),
    LineFormat(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    Topk,
    Bottomk,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    Range { func: RangeFn, log: LogExpr, range: i64 },
    Agg { op: AggOp, param: Option<f64>, grouping: Option<Grouping>, inner: Box<MetricExpr> },
    Number(f64),
    Vector(f64),
    Binary { op: BinOp, lhs: Box<MetricExpr>, rhs: Box<MetricExpr> },
}

/// A parse error with the byte offset it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at column {}: {}", self.at + 1, self.msg)
    }
}
