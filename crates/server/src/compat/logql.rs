//! LogQL, the part Grafana and logcli use: stream selectors, line filters, `| json`,
//! `| logfmt`, label filters, `| line_format`, the range functions over log streams
//! (`count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`), the aggregations (`sum`,
//! `count`, `min`, `max`, `avg`, `topk`, `bottomk`, with `by`/`without`), `vector(n)`,
//! numbers and arithmetic and comparisons between them.
//!
//! The parser is recursive descent over the query text; [`Display`](std::fmt::Display)
//! prints a parsed query back in canonical form (what `/format_query` answers).
//! [`Pipeline`] applies the log stages to one line and its labels.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

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

/// Longest query accepted, bytes; deepest nesting of parentheses and aggregations.
pub const MAX_QUERY_BYTES: usize = 64 << 10;
const MAX_DEPTH: usize = 32;

pub fn parse(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError { at: 0, msg: format!("query longer than {MAX_QUERY_BYTES} bytes") });
    }
    let mut p = Parser { s: text, i: 0, depth: 0 };
    p.ws();
    let q = if p.peek() == Some(b'{') { Query::Log(p.log_expr()?) } else { Query::Metric(p.metric(0)?) };
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err("unexpected text after the query"));
    }
    Ok(q)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError { at: self.i, msg: msg.into() }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'#' {
                // a comment runs to the end of the line
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    /// Consumes `tok` (after whitespace) if it comes next.
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.rest().starts_with(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{tok}`")))
        }
    }

    /// Consumes keyword `kw` if it comes next as a whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let r = self.rest();
        if r.starts_with(kw) && !r[kw.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.i += kw.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        self.ws();
        let r = self.rest();
        let n = r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(r.len());
        if n == 0 || r.as_bytes()[0].is_ascii_digit() {
            return Err(self.err("expected a label name"));
        }
        self.i += n;
        Ok(r[..n].to_string())
    }

    /// A double-quoted string with Go escapes, or a backquoted raw string.
    fn string(&mut self) -> Result<String, ParseError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            Some(b'`') => {
                let r = &self.rest()[1..];
                let end = r.find('`').ok_or_else(|| self.err("unterminated raw string"))?;
                self.i += end + 2;
                Ok(r[..end].to_string())
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let Some(c) = self.rest().chars().next() else {
                        return Err(ParseError { at: start, msg: "unterminated string".into() });
                    };
                    self.i += c.len_utf8();
                    match c {
                        '"' => return Ok(out),
                        '\\' => {
                            let Some(e) = self.rest().chars().next() else {
                                return Err(ParseError { at: start, msg: "unterminated string".into() });
                            };
                            self.i += e.len_utf8();
                            out.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                'a' => '\u{7}',
                                'b' => '\u{8}',
                                'f' => '\u{c}',
                                'v' => '\u{b}',
                                '/' => '/',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                'u' => {
                                    let hex = self.rest().get(..4).ok_or_else(|| self.err("bad \\u escape"))?;
                                    let c = u32::from_str_radix(hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| self.err("bad \\u escape"))?;
                                    self.i += 4;
                                    c
                                }
                                other => return Err(self.err(format!("unknown escape \\{other}"))),
                            });
                        }
                        c => out.push(c),
                    }
                }
            }
            _ => Err(self.err("expected a string")),
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        self.ws();
        let r = self.rest();
        // Inf and NaN, as Prometheus spells them (what `fmt_num` prints)
        let (sign, body) = match r.as_bytes().first() {
            Some(b'+') => (1.0, &r[1..]),
            Some(b'-') => (-1.0, &r[1..]),
            _ => (1.0, r),
        };
        for (word, v) in [("Inf", f64::INFINITY), ("NaN", f64::NAN)] {
            if body.get(..3).is_some_and(|w| w.eq_ignore_ascii_case(word))
                && !body[3..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            {
                self.i += r.len() - body.len() + 3;
                return Ok(sign * v);
            }
        }
        let n = r
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')) || c == 'e' || c == 'E')
            })
            .map_or(r.len(), |(i, _)| i);
        let v: f64 = r[..n].parse().map_err(|_| self.err("expected a number"))?;
        self.i += n;
        Ok(v)
    }

    /// A duration such as `5m`, `1h30m`, `250ms`.
    fn duration(&mut self) -> Result<i64, ParseError> {
        self.ws();
        let r = self.rest();
        let n = r.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(r.len());
        let d = parse_duration(&r[..n]).ok_or_else(|| self.err("expected a duration such as 5m"))?;
        self.i += n;
        Ok(d)
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        self.expect("{")?;
        let mut matchers = Vec::new();
        if !self.eat("}") {
            loop {
                let name = self.ident()?;
                self.ws();
                let op = if self.eat("=~") {
                    MatchOp::Re
                } else if self.eat("!~") {
                    MatchOp::Nre
                } else if self.eat("!=") {
                    MatchOp::Ne
                } else if self.eat("=") {
                    MatchOp::Eq
                } else {
                    return Err(self.err("expected =, !=, =~ or !~"));
                };
                self.ws();
                let at = self.i;
                let value = self.string()?;
                if matches!(op, MatchOp::Re | MatchOp::Nre) {
                    anchored(&value).map_err(|e| ParseError { at, msg: e })?;
                }
                matchers.push(Matcher { name, op, value });
                if self.eat("}") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if matchers.is_empty() {
            return Err(self.err("a stream selector needs at least one matcher"));
        }
        let mut stages = Vec::new();
        loop {
            self.ws();
            let op = if self.eat("|=") {
                LineOp::Contains
            } else if self.eat("!=") {
                LineOp::NotContains
            } else if self.eat("|~") {
                LineOp::Re
            } else if self.eat("!~") {
                LineOp::NotRe
            } else if self.eat("|") {
                stages.push(self.pipe()?);
                continue;
            } else {
                break;
            };
            self.ws();
            let at = self.i;
            let value = self.string()?;
            if matches!(op, LineOp::Re | LineOp::NotRe) {
                line_regex(&value).map_err(|msg| ParseError { at, msg })?;
            }
            stages.push(Stage::Line { op, value });
        }
        Ok(LogExpr { matchers, stages })
    }

    fn pipe(&mut self) -> Result<Stage, ParseError> {
        if self.keyword("json") {
            return Ok(Stage::Json);
        }
        if self.keyword("logfmt") {
            return Ok(Stage::Logfmt);
        }
        if self.keyword("line_format") {
            self.ws();
            let at = self.i;
            let t = self.string()?;
            Template::parse(&t).map_err(|msg| ParseError { at, msg })?;
            return Ok(Stage::LineFormat(t));
        }
        Ok(Stage::Label(self.label_or()?))
    }

    fn label_or(&mut self) -> Result<LabelPred, ParseError> {
        let mut lhs = self.label_and()?;
        while self.keyword("or") {
            lhs = LabelPred::Or(Box::new(lhs), Box::new(self.label_and()?));
        }
        Ok(lhs)
    }

    fn label_and(&mut self) -> Result<LabelPred, ParseError> {
        let mut lhs = self.label_cmp()?;
        loop {
            if self.keyword("and") || self.eat(",") {
                lhs = LabelPred::And(Box::new(lhs), Box::new(self.label_cmp()?));
            } else {
                return Ok(lhs);
            }
        }
    }

    fn label_cmp(&mut self) -> Result<LabelPred, ParseError> {
        if self.eat("(") {
            self.enter()?;
            let p = self.label_or()?;
            self.expect(")")?;
            self.depth -= 1;
            return Ok(p);
        }
        let name = self.ident()?;
        let op = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("=~", CmpOp::Re),
            ("!~", CmpOp::Nre),
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
            ("=", CmpOp::Eq),
        ]
        .into_iter()
        .find(|(t, _)| self.eat(t))
        .map(|(_, op)| op)
        .ok_or_else(|| self.err("expected a comparison (=, !=, =~, !~, >, >=, <, <=)"))?;
        self.ws();
        let at = self.i;
        let value = if matches!(self.peek(), Some(b'"' | b'`')) {
            LabelValue::Str(self.string()?)
        } else {
            // a number, or a duration such as 250ms or 1.5s, which compares as seconds
            let r = self.rest();
            let n = r.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))).unwrap_or(r.len());
            let v = parse_number_or_duration(&r[..n])
                .ok_or_else(|| self.err("expected a string, a number or a duration"))?;
            self.i += n;
            LabelValue::Num(v)
        };
        match (&value, op) {
            (LabelValue::Str(s), CmpOp::Re | CmpOp::Nre) => {
                anchored(s).map_err(|e| ParseError { at, msg: e })?;
            }
            (LabelValue::Str(_), CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) => {
                return Err(ParseError { at, msg: "order comparisons take a number".into() })
            }
            (LabelValue::Num(_), CmpOp::Re | CmpOp::Nre) => {
                return Err(ParseError { at, msg: "a regex match takes a string".into() })
            }
            _ => {}
        }
        Ok(LabelPred::Cmp { name, op, value })
    }

    /// Binary expressions by precedence: comparisons, then `+ -`, then `* /`.
    fn metric(&mut self, level: u8) -> Result<MetricExpr, ParseError> {
        const LEVELS: [&[(&str, BinOp)]; 3] = [
            &[
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
                (">=", BinOp::Ge),
                ("<=", BinOp::Le),
                (">", BinOp::Gt),
                ("<", BinOp::Lt),
            ],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div)],
        ];
        if level as usize == LEVELS.len() {
            return self.metric_term();
        }
        let mut lhs = self.metric(level + 1)?;
        'outer: loop {
            for &(tok, op) in LEVELS[level as usize] {
                if self.eat(tok) {
                    let rhs = self.metric(level + 1)?;
                    lhs = MetricExpr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn metric_term(&mut self) -> Result<MetricExpr, ParseError> {
        self.enter()?;
        let e = self.metric_term_inner()?;
        self.depth -= 1;
        Ok(e)
    }

    fn metric_term_inner(&mut self) -> Result<MetricExpr, ParseError> {
        self.ws();
        if self.eat("(") {
            let e = self.metric(0)?;
            self.expect(")")?;
            return Ok(e);
        }
        let special = |w: &str| self.rest().get(..3).is_some_and(|p| p.eq_ignore_ascii_case(w));
        if matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'-' | b'+')) || special("inf") || special("nan") {
            return Ok(MetricExpr::Number(self.number()?));
        }
        if self.keyword("vector") {
            self.expect("(")?;
            let v = self.number()?;
            self.expect(")")?;
            return Ok(MetricExpr::Vector(v));
        }
        for (kw, func) in [
            ("count_over_time", RangeFn::CountOverTime),
            ("bytes_over_time", RangeFn::BytesOverTime),
            ("bytes_rate", RangeFn::BytesRate),
            ("rate", RangeFn::Rate),
        ] {
            if self.keyword(kw) {
                self.expect("(")?;
                let log = self.log_expr()?;
                self.expect("[")?;
                let range = self.duration()?;
                if range <= 0 {
                    return Err(self.err("the range must be positive"));
                }
                self.expect("]")?;
                self.expect(")")?;
                return Ok(MetricExpr::Range { func, log, range });
            }
        }
        for (kw, op) in [
            ("sum", AggOp::Sum),
            ("count", AggOp::Count),
            ("min", AggOp::Min),
            ("max", AggOp::Max),
            ("avg", AggOp::Avg),
            ("topk", AggOp::Topk),
            ("bottomk", AggOp::Bottomk),
        ] {
            if self.keyword(kw) {
                let mut grouping = self.grouping()?;
                self.expect("(")?;
                let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
                    let at = self.i;
                    let k = self.number()?;
                    if k < 1.0 || k.fract() != 0.0 {
                        return Err(ParseError { at, msg: format!("{kw} takes a whole number of at least 1") });
                    }
                    self.expect(",")?;
                    Some(k)
                } else {
                    None
                };
                let inner = self.metric(0)?;
                self.expect(")")?;
                if grouping.is_none() {
                    grouping = self.grouping()?;
                }
                return Ok(MetricExpr::Agg { op, param, grouping, inner: Box::new(inner) });
            }
        }
        Err(self.err("expected a metric expression (count_over_time, rate, sum, vector, a number, ...)"))
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let by = if self.keyword("by") {
            true
        } else if self.keyword("without") {
            false
        } else {
            return Ok(None);
        };
        self.expect("(")?;
        let mut names = Vec::new();
        if !self.eat(")") {
            loop {
                names.push(self.ident()?);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(Some(if by { Grouping::By(names) } else { Grouping::Without(names) }))
    }
}

/// A Prometheus-style duration (`1h30m`, `250ms`, `2d`, `1w`, `1y`), in ns.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let (mut total, mut rest) = (0i64, s);
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: i64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult: i64 = match &rest[..u] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "y" => 365 * 86_400_000_000_000,
            _ => return None,
        };
        rest = &rest[u..];
        total = total.checked_add(v.checked_mul(mult)?)?;
    }
    Some(total)
}

/// A label regex as Loki matches it: the whole value.
pub fn anchored(re: &str) -> Result<Regex, String> {
    bounded_regex(&format!("^(?:{re})$"))
}

/// A line filter's regex (`|~`, `!~`): anywhere in the line.
fn line_regex(re: &str) -> Result<Regex, String> {
    bounded_regex(re)
}

/// Every LogQL regex has the native query's bounds: nesting (parsing and compiling recurse once
/// per level, so a forged `w+++…` could exhaust a thread's stack; found by the `logql` fuzz
/// target) and compiled size.
fn bounded_regex(re: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .nest_limit(logpipe_storage::REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| format!("bad regex: {e}"))
}

// ---- printing (`/format_query`) ----

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

// ---- evaluation of the log stages ----

/// A `line_format` template: literal text and `{{.label}}` references (`{{ .label }}` too).
#[derive(Debug, Clone)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Label(String),
    Line,
}

impl Template {
    pub fn parse(t: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut rest = t;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                out.push(Piece::Text(rest[..start].to_string()));
            }
            let end = rest[start..].find("}}").ok_or("line_format: unclosed {{")? + start;
            let inner = rest[start + 2..end].trim();
            if inner == "__line__" {
                out.push(Piece::Line);
            } else {
                let name = inner
                    .strip_prefix('.')
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                match name {
                    Some(n) => out.push(Piece::Label(n.to_string())),
                    None => {
                        return Err(format!(
                            "line_format: only {{{{.label}}}} and {{{{__line__}}}} are supported, not {{{{{inner}}}}}"
                        ))
                    }
                }
            }
            rest = &rest[end + 2..];
        }
        if !rest.is_empty() {
            out.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(out))
    }

    fn render(&self, line: &str, labels: &Labels) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Label(l) => s.push_str(labels.get(l).map_or("", String::as_str)),
                Piece::Line => s.push_str(line),
            }
        }
        s
    }
}

/// The compiled stages of a log expression.
pub struct Pipeline {
    stages: Vec<Compiled>,
}

enum Compiled {
    Contains(Box<memchr::memmem::Finder<'static>>, bool),
    Re(Regex, bool),
    Json,
    Logfmt,
    Label(CompiledPred),
    LineFormat(Template),
}

enum CompiledPred {
    Str { name: String, want: String, eq: bool },
    Re { name: String, re: Regex, matches: bool },
    Num { name: String, op: CmpOp, v: f64 },
    And(Box<CompiledPred>, Box<CompiledPred>),
    Or(Box<CompiledPred>, Box<CompiledPred>),
}

impl CompiledPred {
    fn new(p: &LabelPred) -> Result<CompiledPred, String> {
        Ok(match p {
            LabelPred::Cmp { name, op, value: LabelValue::Str(s) } => match op {
                CmpOp::Eq | CmpOp::Ne => {
                    CompiledPred::Str { name: name.clone(), want: s.clone(), eq: *op == CmpOp::Eq }
                }
                CmpOp::Re | CmpOp::Nre => {
                    CompiledPred::Re { name: name.clone(), re: anchored(s)?, matches: *op == CmpOp::Re }
                }
                _ => return Err("order comparisons take a number".into()),
            },
            LabelPred::Cmp { name, op, value: LabelValue::Num(v) } => {
                CompiledPred::Num { name: name.clone(), op: *op, v: *v }
            }
            LabelPred::And(a, b) => CompiledPred::And(Box::new(Self::new(a)?), Box::new(Self::new(b)?)),
            LabelPred::Or(a, b) => CompiledPred::Or(Box::new(Self::new(a)?), Box::new(Self::new(b)?)),
        })
    }

    fn holds(&self, l: &Labels) -> bool {
        let get = |n: &str| l.get(n).map_or("", String::as_str);
        match self {
            CompiledPred::Str { name, want, eq } => (get(name) == want) == *eq,
            CompiledPred::Re { name, re, matches } => re.is_match(get(name)) == *matches,
            CompiledPred::Num { name, op, v } => {
                // a value that is not a number (or a duration) does not match
                let Some(x) = parse_number_or_duration(get(name)) else { return false };
                match op {
                    CmpOp::Eq => x == *v,
                    CmpOp::Ne => x != *v,
                    CmpOp::Gt => x > *v,
                    CmpOp::Ge => x >= *v,
                    CmpOp::Lt => x < *v,
                    CmpOp::Le => x <= *v,
                    CmpOp::Re | CmpOp::Nre => false,
                }
            }
            CompiledPred::And(a, b) => a.holds(l) && b.holds(l),
            CompiledPred::Or(a, b) => a.holds(l) || b.holds(l),
        }
    }
}

/// A number, or a Go duration (`1.5s`, `250ms`, `1h2m`) in seconds.
fn parse_number_or_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * secs;
    }
    Some(if neg { -total } else { total })
}

impl Pipeline {
    pub fn new(stages: &[Stage]) -> Result<Pipeline, String> {
        let stages = stages
            .iter()
            .map(|s| {
                Ok(match s {
                    Stage::Line { op: LineOp::Contains, value } => {
                        Compiled::Contains(Box::new(memchr::memmem::Finder::new(value.as_bytes()).into_owned()), true)
                    }
                    Stage::Line { op: LineOp::NotContains, value } => {
                        Compiled::Contains(Box::new(memchr::memmem::Finder::new(value.as_bytes()).into_owned()), false)
                    }
                    Stage::Line { op: LineOp::Re, value } => Compiled::Re(line_regex(value)?, true),
                    Stage::Line { op: LineOp::NotRe, value } => Compiled::Re(line_regex(value)?, false),
                    Stage::Json => Compiled::Json,
                    Stage::Logfmt => Compiled::Logfmt,
                    Stage::Label(p) => Compiled::Label(CompiledPred::new(p)?),
                    Stage::LineFormat(t) => Compiled::LineFormat(Template::parse(t)?),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Pipeline { stages })
    }

    /// Runs `line` and `labels` through the stages: `None` if a filter drops it, else the
    /// line as the stages left it (labels are updated in place).
    pub fn run(&self, line: &str, labels: &mut Labels) -> Option<String> {
        let mut line = std::borrow::Cow::Borrowed(line);
        for s in &self.stages {
            match s {
                Compiled::Contains(f, want) => {
                    if f.find(line.as_bytes()).is_some() != *want {
                        return None;
                    }
                }
                Compiled::Re(re, want) => {
                    if re.is_match(&line) != *want {
                        return None;
                    }
                }
                Compiled::Json => extract_json(&line, labels),
                Compiled::Logfmt => extract_logfmt(&line, labels),
                Compiled::Label(p) => {
                    if !p.holds(labels) {
                        return None;
                    }
                }
                Compiled::LineFormat(t) => line = std::borrow::Cow::Owned(t.render(&line, labels)),
            }
        }
        Some(line.into_owned())
    }
}

/// A label name as Loki and Prometheus accept it: `[a-zA-Z_][a-zA-Z0-9_]*`, anything else
/// replaced by `_`.
pub fn sanitize_label(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

/// Sets an extracted label; a name already taken gets `_extracted` appended, as in Loki.
fn put(labels: &mut Labels, k: String, v: String) {
    match labels.entry(k) {
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(v);
        }
        std::collections::btree_map::Entry::Occupied(e) => {
            let name = format!("{}_extracted", e.key());
            labels.entry(name).or_insert(v);
        }
    }
}

/// `| json`: every scalar field of a JSON object line becomes a label, nested keys joined by
/// `_`; a line that is not a JSON object gets `__error__="JSONParserErr"`. Labels already set
/// keep their value; the extracted one is named `<name>_extracted`, as in Loki.
fn extract_json(line: &str, labels: &mut Labels) {
    fn walk(prefix: &str, v: &serde_json::Value, labels: &mut Labels, depth: usize) {
        let set = |labels: &mut Labels, v: String| put(labels, sanitize_label(prefix), v);
        match v {
            serde_json::Value::Object(m) if depth < 16 => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
                    walk(&key, v, labels, depth + 1);
                }
            }
            serde_json::Value::String(s) => set(labels, s.clone()),
            serde_json::Value::Number(n) => set(labels, n.to_string()),
            serde_json::Value::Bool(b) => set(labels, b.to_string()),
            // arrays, nulls and objects past the depth are skipped, as Loki does
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v @ serde_json::Value::Object(_)) => walk("", &v, labels, 0),
        _ => {
            labels.insert("__error__".into(), "JSONParserErr".into());
        }
    }
}

/// `| logfmt`: `key=value` pairs (values bare or double-quoted with escapes) become labels.
fn extract_logfmt(line: &str, labels: &mut Labels) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                        value.push(match b[i] {
                            b'n' => '\n',
                            b't' => '\t',
                            c => c as char,
                        });
                        i += 1;
                    } else {
                        let c = line[i..].chars().next().expect("inside the line");
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                value.push_str(&line[vs..i]);
            }
        }
        if !key.is_empty() {
            put(labels, sanitize_label(key), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_nested_past_the_limit_are_refused() {
        // `w++…+` nests one repetition per `+` (found by the `logql` fuzz target: 200 of them
        // overflowed a debug build's stack while compiling)
        let deep = format!("w{}", "+".repeat(200));
        for q in [format!(r#"{{a="b"}} |~ "{deep}""#), format!(r#"{{a=~"{deep}"}}"#)] {
            let e = parse(&q).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("nest"), "{q}: {e}");
        }
        assert!(parse(&format!(r#"{{a="b"}} |~ "w{}""#, "+".repeat(20))).is_ok());
    }

    #[test]
    fn parses_and_prints_back_the_same_query() {
        for q in [
            r#"{app="web"}"#,
            r#"{app="web", level=~"err.*", env!="dev", x!~"a|b"} |= "timeout" != "retry" |~ "t(ime)?out" !~ `\d+`"#,
            r#"{app="web"} | json | status >= 500 and method="GET" or level="error" | line_format "{{.method}} {{ .path }}""#,
            r#"{app="web"} | logfmt | duration > 250ms"#,
            r#"count_over_time({app="web"}[5m])"#,
            r#"sum by (level) (count_over_time({app="web"} |= "x" [1m]))"#,
            r#"sum(rate({app="web"}[30s])) without (host)"#,
            r#"topk(3, sum by (host) (bytes_over_time({app="web"}[1h])))"#,
            "vector(1)+vector(1)",
            r#"sum(count_over_time({app="a"}[1m])) / 2 > 1"#,
            "Inf - -inf * 1e300 * 1e300 < 4",
            "(1 + 2) * (3 - (4 - 5)) / (6 / 7)",
            "1 > 2 > 3 == (4 < 5)",
            r#"{app="web"} | json | (a="1" or b="2") and c="3""#,
            r#"{app="web"} | json | a="1" and (b="2" and c="3") or (d="4" or e="5")"#,
        ] {
            let a = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let printed = a.to_string();
            let b = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
            assert_eq!(a, b, "{q} → {printed}");
        }
        // by before or after the arguments is the same query
        assert_eq!(
            parse(r#"sum by (a) (rate({x="y"}[1m]))"#).unwrap(),
            parse(r#"sum(rate({x="y"}[1m])) by (a)"#).unwrap()
        );
        // * binds tighter than +
        let Query::Metric(MetricExpr::Binary { op: BinOp::Add, .. }) = parse("1 + 2 * 3").unwrap() else {
            panic!("precedence")
        };
        // printed with the parentheses it needs and no more: a chain of 40 operators (one
        // level deep) prints as one level, not forty (found by the `logql` fuzz target)
        let chain = vec!["1"; 41].join(" > ");
        assert_eq!(parse(&chain).unwrap().to_string(), chain);
        assert_eq!(parse("((1 + 2)) * 3").unwrap().to_string(), "(1 + 2) * 3");
    }

    #[test]
    fn refuses_bad_queries_with_a_position() {
        for (q, at) in [
            ("{app=\"web\"", 10),
            ("{}", 2),
            ("{app=web}", 5),
            (r#"{app=~"("}"#, 6),
            (r#"count_over_time({app="a"})"#, 25),
            (r#"{a="b"} | x > "s""#, 14),
            (r#"{a="b"} | line_format "{{ upper .x }}""#, 22),
            ("sum(", 4),
        ] {
            let e = parse(q).expect_err(q);
            assert_eq!(e.at, at, "{q}: {e}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().msg.contains("nested"));
    }

    #[test]
    fn pipeline_extracts_filters_and_formats() {
        let Query::Log(l) = parse(
            r#"{app="web"} |= "GET" | json | status >= 500 | req_path=~"/api/.*" | line_format "{{.status}} {{.req_path}}""#,
        )
        .unwrap() else {
            panic!()
        };
        let p = Pipeline::new(&l.stages).unwrap();
        let mut labels = Labels::from([("app".to_string(), "web".to_string())]);
        let out = p.run(r#"{"method":"GET","status":503,"req":{"path":"/api/x"}}"#, &mut labels);
        assert_eq!(out.as_deref(), Some("503 /api/x"));
        assert_eq!(labels["method"], "GET");
        let mut labels = Labels::new();
        assert_eq!(p.run(r#"{"method":"GET","status":200,"req":{"path":"/api/x"}}"#, &mut labels), None);
        let mut labels = Labels::new();
        assert_eq!(p.run("GET not json", &mut labels), None, "no status label: the number filter drops it");

        let Query::Log(l) = parse(r#"{a="b"} | logfmt | level="warn", took > 1.5s"#).unwrap() else { panic!() };
        let p = Pipeline::new(&l.stages).unwrap();
        let mut labels = Labels::new();
        assert!(p.run(r#"level=warn took=2s msg="a \"quoted\" one""#, &mut labels).is_some());
        assert_eq!(labels["msg"], "a \"quoted\" one");
        assert!(p.run("level=warn took=1s", &mut Labels::new()).is_none());
    }
}
