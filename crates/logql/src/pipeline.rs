//! The log stages applied to one line and its labels.

use regex::Regex;

use crate::ast::*;
use crate::parse::{anchored, line_regex};

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
pub(crate) fn parse_number_or_duration(s: &str) -> Option<f64> {
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
