//! The recursive-descent parser, and the durations and regexes LogQL takes.

use regex::Regex;

use crate::ast::*;
use crate::pipeline::{parse_number_or_duration, Template};

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
pub(crate) fn line_regex(re: &str) -> Result<Regex, String> {
    bounded_regex(re)
}

/// Every LogQL regex has the native query's bounds: nesting (parsing and compiling recurse once
/// per level, so a forged `w+++…` could exhaust a thread's stack; found by the `logql` fuzz
/// target) and compiled size.
fn bounded_regex(re: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .nest_limit(logpipe_query::REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| format!("bad regex: {e}"))
}
