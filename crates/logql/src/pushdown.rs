//! The push-down of a log expression to the native filter: the conditions the store can
//! check (and use its blooms for) before the LogQL pipeline sees a record.

use logpipe_model::AppName;
use logpipe_query::Expr;

use crate::ast::*;

/// What of a log expression the native query can do: the conditions are exact or wider than
/// the LogQL ones (the selector is checked again on every record). `None`: nothing can match.
pub fn pushdown(log: &LogExpr) -> Option<Vec<Expr>> {
    let mut parts = Vec::new();
    for m in &log.matchers {
        // a label name with `_` may stand for a tag key with another character there (`a.b`)
        let valid_key = !m.name.is_empty() && m.name.chars().all(|c| c.is_ascii_alphanumeric());
        match (m.name.as_str(), m.op) {
            ("app", MatchOp::Eq) => parts.push(Expr::App(AppName::parse(&m.value).ok()?)),
            ("app", MatchOp::Ne) => {
                if let Ok(a) = AppName::parse(&m.value) {
                    parts.push(Expr::Not(Box::new(Expr::App(a))))
                }
            }
            ("app", _) => {}
            // such a label is checked per record only
            _ if !valid_key => {}
            (_, MatchOp::Eq) if !m.value.is_empty() => parts.push(Expr::Tag(format!("{}={}", m.name, m.value))),
            (_, MatchOp::Ne) if !m.value.is_empty() => {
                parts.push(Expr::Not(Box::new(Expr::Tag(format!("{}={}", m.name, m.value)))))
            }
            (_, MatchOp::Re) if !crate::anchored(&m.value).is_ok_and(|re| re.is_match("")) => {
                parts.push(Expr::TagRegex { key: m.name.clone(), pattern: m.value.clone() })
            }
            _ => {}
        }
    }
    for s in &log.stages {
        match s {
            Stage::Line { op, value } => parts.push(match op {
                LineOp::Contains => Expr::Substring { text: value.clone(), case_insensitive: false },
                LineOp::NotContains => {
                    Expr::Not(Box::new(Expr::Substring { text: value.clone(), case_insensitive: false }))
                }
                LineOp::Re => Expr::Regex { pattern: value.clone(), case_insensitive: false },
                LineOp::NotRe => Expr::Not(Box::new(Expr::Regex { pattern: value.clone(), case_insensitive: false })),
            }),
            // the line changes from here on
            Stage::LineFormat(_) => break,
            _ => {}
        }
    }
    Some(parts)
}
