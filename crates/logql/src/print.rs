//! Printing a parsed query back in canonical form (what `/format_query` answers).

use std::fmt;

use crate::ast::*;

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub fn fmt_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (604_800_000_000_000, "w"),
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1, "ns"),
    ];
    let mut out = String::new();
    let mut rest = ns;
    for (u, name) in UNITS {
        if rest >= u {
            out.push_str(&format!("{}{name}", rest / u));
            rest %= u;
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Log(l) => write!(f, "{l}"),
            Query::Metric(m) => write!(f, "{m}"),
        }
    }
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m: Vec<String> = self
            .matchers
            .iter()
            .map(|m| {
                let op = match m.op {
                    MatchOp::Eq => "=",
                    MatchOp::Ne => "!=",
                    MatchOp::Re => "=~",
                    MatchOp::Nre => "!~",
                };
                format!("{}{op}{}", m.name, quote(&m.value))
            })
            .collect();
        write!(f, "{{{}}}", m.join(", "))?;
        for s in &self.stages {
            match s {
                Stage::Line { op, value } => {
                    let op = match op {
                        LineOp::Contains => "|=",
                        LineOp::NotContains => "!=",
                        LineOp::Re => "|~",
                        LineOp::NotRe => "!~",
                    };
                    write!(f, " {op} {}", quote(value))?;
                }
                Stage::Json => write!(f, " | json")?,
                Stage::Logfmt => write!(f, " | logfmt")?,
                Stage::Label(p) => write!(f, " | {p}")?,
                Stage::LineFormat(t) => write!(f, " | line_format {}", quote(t))?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for LabelPred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelPred::Cmp { name, op, value } => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Ne => "!=",
                    CmpOp::Re => "=~",
                    CmpOp::Nre => "!~",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                };
                match value {
                    LabelValue::Str(s) => write!(f, "{name}{op}{}", quote(s)),
                    LabelValue::Num(v) => write!(f, "{name}{op}{}", fmt_num(*v)),
                }
            }
            // `and` binds tighter than `or`, and both group from the left: parenthesised
            // where the tree differs from that
            LabelPred::And(a, b) => {
                let left = if matches!(**a, LabelPred::Or(..)) { format!("({a})") } else { a.to_string() };
                let right = if matches!(**b, LabelPred::Cmp { .. }) { b.to_string() } else { format!("({b})") };
                write!(f, "{left} and {right}")
            }
            LabelPred::Or(a, b) => {
                let right = if matches!(**b, LabelPred::Or(..)) { format!("({b})") } else { b.to_string() };
                write!(f, "{a} or {right}")
            }
        }
    }
}

impl fmt::Display for MetricExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Range { func, log, range } => {
                let name = match func {
                    RangeFn::CountOverTime => "count_over_time",
                    RangeFn::Rate => "rate",
                    RangeFn::BytesOverTime => "bytes_over_time",
                    RangeFn::BytesRate => "bytes_rate",
                };
                write!(f, "{name}({log} [{}])", fmt_duration(*range))
            }
            MetricExpr::Agg { op, param, grouping, inner } => {
                let name = match op {
                    AggOp::Sum => "sum",
                    AggOp::Count => "count",
                    AggOp::Min => "min",
                    AggOp::Max => "max",
                    AggOp::Avg => "avg",
                    AggOp::Topk => "topk",
                    AggOp::Bottomk => "bottomk",
                };
                write!(f, "{name}")?;
                match grouping {
                    Some(Grouping::By(l)) => write!(f, " by ({})", l.join(", "))?,
                    Some(Grouping::Without(l)) => write!(f, " without ({})", l.join(", "))?,
                    None => {}
                }
                match param {
                    Some(k) => write!(f, " ({}, {inner})", fmt_num(*k)),
                    None => write!(f, " ({inner})"),
                }
            }
            MetricExpr::Number(v) => write!(f, "{}", fmt_num(*v)),
            MetricExpr::Vector(v) => write!(f, "vector({})", fmt_num(*v)),
            MetricExpr::Binary { op, lhs, rhs } => {
                let sym = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                    BinOp::Eq => "==",
                    BinOp::Ne => "!=",
                    BinOp::Gt => ">",
                    BinOp::Ge => ">=",
                    BinOp::Lt => "<",
                    BinOp::Le => "<=",
                };
                // parenthesised only where precedence or left associativity needs it, so the
                // printed form parses back to the same tree and is nested no deeper than the
                // text it came from (which passed the depth limit)
                let level = |e: &MetricExpr| match e {
                    MetricExpr::Binary { op, .. } => Some(op_level(*op)),
                    _ => None,
                };
                let own = op_level(*op);
                match level(lhs) {
                    Some(l) if l < own => write!(f, "({lhs})")?,
                    _ => write!(f, "{lhs}")?,
                }
                write!(f, " {sym} ")?;
                match level(rhs) {
                    Some(l) if l <= own => write!(f, "({rhs})"),
                    _ => write!(f, "{rhs}"),
                }
            }
        }
    }
}

/// How tightly a binary operator binds: comparisons, then `+ -`, then `* /` (as `metric` parses).
fn op_level(op: BinOp) -> u8 {
    match op {
        BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 0,
        BinOp::Add | BinOp::Sub => 1,
        BinOp::Mul | BinOp::Div => 2,
    }
}
