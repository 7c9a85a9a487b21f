//! A recursive-descent parser with errors that name the column and what was expected.
//!
//! ```text
//! query    := filter? ( "|" pipe )*
//! filter   := "*" | or
//! or       := and ( OR and )*
//! and      := unary ( AND? unary )*
//! unary    := ( NOT | "-" ) unary | "(" or ")" | leaf
//! leaf     := word | "\"phrase\"" | "i\"phrase\"" | "~\"substring\"" | "i~\"substring\""
//!           | "/regex/" | "/regex/i" | key "=" value | key "!=" value | key "=~" value
//!           | key "!~" value | key "=*" | "tag:" value | "app:" name | "app:(" name ( OR? name )* ")"
//!           | "_time:" duration | "_time:[" time "," time ")"
//! pipe     := "limit" N | "sort" ( "asc" | "desc" ) | "count" ( "by" "(" key ")" )?
//!           | "histogram" duration ( "by" "(" key ")" )? | "fields" name ( "," name )*
//! ```
//!
//! Keywords (`AND`, `OR`, `NOT`, and the pipe names) are case-insensitive; quote a word to
//! search for it.

use logpipe_model::{parse_duration, parse_time, AppName};

use crate::ast::{Expr, Order, Pipe, Plan};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Deepest nesting of parentheses and `NOT`s accepted (bounds the parser's stack).
const MAX_DEPTH: usize = 64;

/// Why a query did not parse, and where: `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

pub fn parse(query: &str) -> Result<Plan, ParseError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ParseError { column: 1, message: format!("query is longer than {MAX_QUERY_BYTES} bytes") });
    }
    let mut p = Parser { src: query, pos: 0, depth: 0 };
    let plan = p.plan()?;
    // The canonical form puts parentheses where precedence needs them, which the query may
    // have left out (`a b OR c` prints as `(a b) OR c`): what is accepted must print as a
    // query that is accepted too (found by the `query` fuzz target)
    if plan.filter.as_ref().is_some_and(|f| printed_depth(f) > MAX_DEPTH) {
        return Err(ParseError {
            column: 1,
            message: format!("nested more than {MAX_DEPTH} deep once written with its parentheses"),
        });
    }
    Ok(plan)
}

/// How deep the canonical form of `e` nests parentheses and `NOT`s, counted as the parser
/// counts them (see `Display for Expr`).
fn printed_depth(e: &Expr) -> usize {
    let grouped = |e: &Expr, parens: bool| usize::from(parens) + printed_depth(e);
    match e {
        Expr::And(parts) => parts.iter().map(|p| grouped(p, matches!(p, Expr::Or(_)))).max().unwrap_or(0),
        Expr::Or(parts) => parts.iter().map(|p| grouped(p, matches!(p, Expr::And(_)))).max().unwrap_or(0),
        Expr::Not(inner) => 1 + grouped(inner, matches!(**inner, Expr::And(_) | Expr::Or(_))),
        _ => 0,
    }
}

/// Characters that end a bare word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '|' | '"' | ',')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError { column: self.src[..pos].chars().count() + 1, message: message.into() }
    }

    /// "expected X, found Y" at the current position.
    fn expected(&self, what: &str) -> ParseError {
        let found = match self.peek() {
            None => "the end of the query".to_string(),
            Some(_) => {
                let w: String = self.rest().chars().take_while(|&c| !c.is_whitespace()).take(20).collect();
                format!("{w:?}")
            }
        };
        self.err_at(self.pos, format!("expected {what}, found {found}"))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str, what: &str) -> Result<(), ParseError> {
        self.skip_ws();
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// The bare word at the current position (not consumed): up to whitespace, a bracket, a
    /// pipe, a quote, a comma, or a tag operator (`=`, `!=`, `!~`).
    fn bare_len(&self) -> usize {
        let r = self.rest();
        let mut end = 0;
        let mut chars = r.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if ends_word(c) || c == '=' {
                break;
            }
            if c == '!' && matches!(chars.peek(), Some((_, '=' | '~'))) {
                break;
            }
            end = i + c.len_utf8();
        }
        end
    }

    /// True (and consumed) when the next word is the keyword `kw`, in any case.
    fn keyword(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let n = self.bare_len();
        let next = self.rest()[n..].chars().next();
        if self.rest()[..n].eq_ignore_ascii_case(kw) && !matches!(next, Some('=' | '!')) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn at_keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        let yes = self.keyword(kw);
        self.pos = save;
        yes
    }

    fn plan(&mut self) -> Result<Plan, ParseError> {
        self.skip_ws();
        let filter = match self.peek() {
            None | Some('|') => None,
            Some('*') if self.rest()[1..].trim_start().is_empty() || self.rest()[1..].trim_start().starts_with('|') => {
                self.pos += 1;
                None
            }
            _ => Some(self.or()?),
        };
        let mut pipes: Vec<Pipe> = Vec::new();
        loop {
            self.skip_ws();
            if self.peek().is_none() {
                break;
            }
            if !self.eat("|") {
                return Err(self.expected(if filter.is_some() || !pipes.is_empty() {
                    "`|`, `OR`, `)` or more filters"
                } else {
                    "a filter or `|`"
                }));
            }
            self.skip_ws();
            let at = self.pos;
            let pipe = self.pipe()?;
            let kind = std::mem::discriminant(&pipe);
            let aggregate = |p: &Pipe| matches!(p, Pipe::Count | Pipe::CountBy(_) | Pipe::Histogram { .. });
            if pipes.iter().any(|p| std::mem::discriminant(p) == kind) {
                return Err(self.err_at(at, "this pipe is already in the query"));
            }
            if aggregate(&pipe) && pipes.iter().any(aggregate) {
                return Err(self.err_at(at, "only one of count, count by and histogram per query"));
            }
            pipes.push(pipe);
        }
        Ok(Plan { filter, pipes })
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.pos, format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(Expr::or(parts))
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some(')' | '|') => break,
                _ if self.at_keyword("or") => break,
                _ => {
                    self.keyword("and");
                    parts.push(self.unary()?);
                }
            }
        }
        Ok(Expr::and(parts))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.keyword("not") || self.eat("-") {
            self.nest()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.eat("(") {
            self.nest()?;
            let inner = self.or()?;
            self.expect(")", "`)`")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.leaf()
    }

    fn leaf(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let r = self.rest();
        if r.starts_with('"') {
            return Ok(Expr::Word { text: self.quoted()?, case_insensitive: false });
        }
        if r.starts_with("i\"") {
            self.pos += 1;
            return Ok(Expr::Word { text: self.quoted()?, case_insensitive: true });
        }
        if r.starts_with("~\"") || r.starts_with("i~\"") {
            let ci = self.eat("i");
            self.pos += 1;
            return Ok(Expr::Substring { text: self.quoted()?, case_insensitive: ci });
        }
        if r.starts_with('~') {
            self.pos += 1;
            return Err(self.expected("a quoted substring after `~`"));
        }
        if r.starts_with('/') {
            return self.regex();
        }
        if self.eat("app:") {
            return self.apps();
        }
        if self.eat("tag:") {
            return Ok(Expr::Tag(self.value("a tag")?));
        }
        if self.eat("_time:") {
            return self.time();
        }
        let start = self.pos;
        let n = self.bare_len();
        if n == 0 {
            return Err(self.expected("a filter"));
        }
        let word = &self.rest()[..n];
        self.pos += n;
        let op = ["=~", "!~", "!=", "="].into_iter().find(|op| self.rest().starts_with(op));
        let Some(op) = op else {
            return Ok(Expr::Word { text: word.to_string(), case_insensitive: false });
        };
        if word.ends_with('!') {
            // `a!!=b` would be key `a!`, which prints back as `a!=b`: a different filter
            return Err(self.err_at(start, "a tag key cannot end with `!`"));
        }
        self.pos += op.len();
        let key = word.to_string();
        if op == "=" && self.eat("*") {
            if self.peek().is_some_and(|c| !ends_word(c)) {
                return Err(self.expected("the end of `=*`"));
            }
            return Ok(Expr::TagKey(key));
        }
        if key.contains(':')
            && self.src[start..].starts_with(&key)
            && (key.starts_with("app:") || key.starts_with("tag:"))
        {
            return Err(self.err_at(start, "a field name cannot be a tag key"));
        }
        let value = self.value("a tag value")?;
        if op.starts_with('!') && self.depth >= MAX_DEPTH {
            // a negated tag is a NOT around the tag, and prints as one
            return Err(self.err_at(start, format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(match op {
            "=" => Expr::Tag(format!("{key}={value}")),
            "!=" => Expr::Not(Box::new(Expr::Tag(format!("{key}={value}")))),
            "=~" => Expr::TagRegex { key, pattern: value },
            _ => Expr::Not(Box::new(Expr::TagRegex { key, pattern: value })),
        })
    }

    /// A quoted string or a bare value (which may hold `=`).
    fn value(&mut self, what: &str) -> Result<String, ParseError> {
        if self.rest().starts_with('"') {
            return self.quoted();
        }
        let n = self.rest().find(ends_word).unwrap_or(self.rest().len());
        if n == 0 {
            return Err(self.expected(what));
        }
        let v = self.rest()[..n].to_string();
        self.pos += n;
        Ok(v)
    }

    /// `"..."` with `\"`, `\\`, `\n`, `\t` and `\r` escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        if !self.eat("\"") {
            return Err(self.expected("`\"`"));
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let esc = match chars.next() {
                        Some((_, '"')) => '"',
                        Some((_, '\\')) => '\\',
                        Some((_, 'n')) => '\n',
                        Some((_, 't')) => '\t',
                        Some((_, 'r')) => '\r',
                        _ => {
                            return Err(self.err_at(
                                self.pos + i,
                                "unknown escape in a quoted string; use \\\" \\\\ \\n \\t or \\r",
                            ))
                        }
                    };
                    out.push(esc);
                }
                c => out.push(c),
            }
        }
        Err(self.err_at(open, "quoted string is not closed"))
    }

    /// `/pattern/` or `/pattern/i`; `\/` stands for `/`, other escapes are the regex's own.
    fn regex(&mut self) -> Result<Expr, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut pattern = String::new();
        let mut chars = self.rest().char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '/' => {
                    end = Some(i);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, '/')) => pattern.push('/'),
                    Some((_, e)) => {
                        pattern.push('\\');
                        pattern.push(e);
                    }
                    None => break,
                },
                c => pattern.push(c),
            }
        }
        let Some(end) = end else {
            return Err(self.err_at(open, "regex is not closed with `/`"));
        };
        self.pos += end + 1;
        if pattern.is_empty() {
            return Err(self.err_at(open, "empty regex"));
        }
        let ci = self.rest().starts_with('i') && self.rest()[1..].chars().next().is_none_or(ends_word);
        if ci {
            self.pos += 1;
        }
        if self.peek().is_some_and(|c| !ends_word(c)) {
            return Err(self.expected("a space or `)` after the regex (the only flag is `i`)"));
        }
        Ok(Expr::Regex { pattern, case_insensitive: ci })
    }

    fn app_name(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let at = self.pos;
        let name = self.value("an application name")?;
        AppName::parse(&name).map(Expr::App).map_err(|e| self.err_at(at, e.to_string()))
    }

    fn apps(&mut self) -> Result<Expr, ParseError> {
        if !self.eat("(") {
            return self.app_name();
        }
        let mut apps = vec![self.app_name()?];
        loop {
            self.skip_ws();
            if self.eat(")") {
                return Ok(Expr::or(apps));
            }
            self.keyword("or");
            if self.peek().is_none() {
                return Err(self.expected("`)`"));
            }
            apps.push(self.app_name()?);
        }
    }

    fn time(&mut self) -> Result<Expr, ParseError> {
        if !self.eat("[") {
            let at = self.pos;
            let d = self.value("a duration such as 1h, or [from, to)")?;
            let ns = parse_duration(&d).map_err(|e| self.err_at(at, e.to_string()))?;
            if ns <= 0 {
                return Err(self.err_at(at, "the duration must be positive"));
            }
            return Ok(Expr::TimeLast(ns));
        }
        let bound = |p: &mut Parser<'_>, what: &str| -> Result<Option<i64>, ParseError> {
            p.skip_ws();
            let at = p.pos;
            let n = p.rest().find(|c: char| c.is_whitespace() || c == ',' || c == ')').unwrap_or(p.rest().len());
            if n == 0 {
                return Err(p.expected(what));
            }
            let v = &p.rest()[..n];
            p.pos += n;
            if v == "*" {
                return Ok(None);
            }
            parse_time(v).map(Some).map_err(|e| p.err_at(at, e.to_string()))
        };
        self.skip_ws();
        let from_at = self.pos;
        let from = bound(self, "a start time (RFC 3339, ns, or *)")?;
        self.expect(",", "`,` between the start and the end time")?;
        let to = bound(self, "an end time (RFC 3339, ns, or *)")?;
        self.skip_ws();
        if !self.eat(")") {
            return Err(self.expected("`)`: time ranges are half-open, [from, to)"));
        }
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(self.err_at(from_at, "the start of the time range is after its end"));
            }
        }
        Ok(Expr::Time { from, to })
    }

    fn by_key(&mut self) -> Result<Option<String>, ParseError> {
        if !self.keyword("by") {
            return Ok(None);
        }
        self.expect("(", "`(` after by")?;
        self.skip_ws();
        let key = self.value("a tag key")?;
        self.expect(")", "`)`")?;
        Ok(Some(key))
    }

    fn pipe(&mut self) -> Result<Pipe, ParseError> {
        self.skip_ws();
        if self.keyword("limit") || self.keyword("head") {
            self.skip_ws();
            let at = self.pos;
            let n = self.value("a number")?;
            return n.parse().map(Pipe::Limit).map_err(|_| self.err_at(at, format!("{n:?} is not a number")));
        }
        if self.keyword("sort") {
            self.skip_ws();
            if self.keyword("asc") {
                return Ok(Pipe::Sort(Order::Asc));
            }
            if self.keyword("desc") {
                return Ok(Pipe::Sort(Order::Desc));
            }
            return Err(self.expected("asc or desc"));
        }
        if self.keyword("count") {
            return Ok(match self.by_key()? {
                Some(k) => Pipe::CountBy(k),
                None => Pipe::Count,
            });
        }
        if self.keyword("histogram") {
            self.skip_ws();
            let at = self.pos;
            let d = self.value("a step such as 5m")?;
            let step = parse_duration(&d).map_err(|e| self.err_at(at, e.to_string()))?;
            if step < 1_000_000 {
                return Err(self.err_at(at, "the step must be at least 1ms"));
            }
            return Ok(Pipe::Histogram { step, by: self.by_key()? });
        }
        if self.keyword("fields") {
            let mut names = Vec::new();
            loop {
                self.skip_ws();
                names.push(self.value("a field name")?);
                self.skip_ws();
                if !self.eat(",") {
                    return Ok(Pipe::Fields(names));
                }
            }
        }
        Err(self.expected("a pipe: limit, sort, count, histogram or fields"))
    }
}
