//! The canonical text of a plan: what `Display` prints parses back to the same plan.

use std::fmt::{self, Display, Formatter, Write};

use logpipe_model::format_time;

use crate::ast::{Expr, Order, Pipe, Plan};

const KEYWORDS: &[&str] = &["and", "or", "not"];

/// Whether `s` can be written without quotes as a word (or tag value).
fn bare(s: &str, value: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return false };
    let ok_char = |c: char| !(c.is_whitespace() || matches!(c, '(' | ')' | '|' | '"' | ',' | '=' | '!' | '\\'));
    if value {
        // a value ends at whitespace, brackets, pipes, quotes and commas only
        return s.chars().all(|c| !(c.is_whitespace() || matches!(c, '(' | ')' | '|' | '"' | ',')));
    }
    ok_char(first)
        && !matches!(first, '-' | '~' | '/' | '*')
        && chars.all(ok_char)
        && !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k))
        && !(s.starts_with("i~") || s.starts_with("app:") || s.starts_with("tag:") || s.starts_with("_time:"))
}

fn quote(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

fn value(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    // after `=`, a leading `~` or `*` would read as the `=~` or `=*` operator
    if bare(s, true) && !s.starts_with(['~', '*']) {
        f.write_str(s)
    } else {
        quote(f, s)
    }
}

/// A duration in the largest unit that divides it exactly.
pub(crate) fn duration(ns: i64) -> String {
    const UNITS: &[(i64, &str)] = &[
        (7 * 86_400_000_000_000, "w"),
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let &(unit, name) = UNITS.iter().find(|(u, _)| ns % u == 0).expect("1 divides everything");
    format!("{}{name}", ns / unit)
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // children that bind looser than their parent get parentheses
        let child = |f: &mut Formatter<'_>, e: &Expr, parent_and: bool| match e {
            Expr::Or(_) if parent_and => write!(f, "({e})"),
            Expr::And(_) | Expr::Or(_) if !parent_and => write!(f, "({e})"),
            e => write!(f, "{e}"),
        };
        match self {
            Expr::And(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    child(f, p, true)?;
                }
                Ok(())
            }
            Expr::Or(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    match p {
                        Expr::And(_) => write!(f, "({p})")?,
                        p => write!(f, "{p}")?,
                    }
                }
                Ok(())
            }
            Expr::Not(inner) => match &**inner {
                Expr::And(_) | Expr::Or(_) => write!(f, "NOT ({inner})"),
                inner => write!(f, "NOT {inner}"),
            },
            Expr::Word { text, case_insensitive } => {
                if *case_insensitive {
                    f.write_char('i')?;
                    quote(f, text)
                } else if bare(text, false) {
                    f.write_str(text)
                } else {
                    quote(f, text)
                }
            }
            Expr::Substring { text, case_insensitive } => {
                f.write_str(if *case_insensitive { "i~" } else { "~" })?;
                quote(f, text)
            }
            Expr::Regex { pattern, case_insensitive } => {
                f.write_char('/')?;
                f.write_str(&pattern.replace('/', "\\/"))?;
                f.write_str(if *case_insensitive { "/i" } else { "/" })
            }
            Expr::App(a) => write!(f, "app:{a}"),
            Expr::Tag(t) => match t.split_once('=') {
                Some((k, v)) if bare(k, false) && !k.contains(':') && !k.contains('~') => {
                    f.write_str(k)?;
                    f.write_char('=')?;
                    value(f, v)
                }
                _ => {
                    f.write_str("tag:")?;
                    value(f, t)
                }
            },
            Expr::TagKey(k) => write!(f, "{k}=*"),
            Expr::TagRegex { key, pattern } => {
                f.write_str(key)?;
                f.write_str("=~")?;
                quote(f, pattern)
            }
            Expr::Time { from, to } => {
                let t = |x: &Option<i64>| x.map_or_else(|| "*".to_string(), format_time);
                write!(f, "_time:[{}, {})", t(from), t(to))
            }
            Expr::TimeLast(ns) => write!(f, "_time:{}", duration(*ns)),
        }
    }
}

impl Display for Pipe {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Pipe::Limit(n) => write!(f, "limit {n}"),
            Pipe::Sort(Order::Asc) => f.write_str("sort asc"),
            Pipe::Sort(Order::Desc) => f.write_str("sort desc"),
            Pipe::Count => f.write_str("count"),
            Pipe::CountBy(k) => {
                f.write_str("count by (")?;
                value(f, k)?;
                f.write_char(')')
            }
            Pipe::Histogram { step, by } => {
                write!(f, "histogram {}", duration(*step))?;
                if let Some(k) = by {
                    f.write_str(" by (")?;
                    value(f, k)?;
                    f.write_char(')')?;
                }
                Ok(())
            }
            Pipe::Fields(names) => {
                f.write_str("fields ")?;
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    value(f, n)?;
                }
                Ok(())
            }
        }
    }
}

impl Display for Plan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Some(e) => write!(f, "{e}")?,
            None => f.write_char('*')?,
        }
        for p in &self.pipes {
            write!(f, " | {p}")?;
        }
        Ok(())
    }
}
