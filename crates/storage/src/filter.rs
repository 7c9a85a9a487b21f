//! Filters: what a query asks for, compiled once into matchers and bloom-filter keys.

use std::collections::HashSet;

use logpipe_model::{AppName, AppPattern, Record};
use logpipe_query::Expr;
use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::block::{BlockMeta, TagSets};
use crate::bloom;
use crate::{Result, StorageError};

/// Default cap on a compiled regex (bytes of program); bigger patterns are refused.
pub const DEFAULT_REGEX_SIZE_LIMIT: usize = 4 << 20;

/// The filters of DESIGN.md's native API. Every listed condition must hold (AND); `tags_any`
/// holds when at least one of its tags is present (or when it is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Empty means every application.
    pub apps: Vec<AppName>,
    /// Inclusive lower bound, ns.
    pub from: Option<i64>,
    /// Exclusive upper bound, ns.
    pub to: Option<i64>,
    pub tags_all: Vec<String>,
    pub tags_any: Vec<String>,
    pub tags_none: Vec<String>,
    /// Case-sensitive substrings of the message.
    pub contains: Vec<String>,
    /// Case-insensitive substrings of the message.
    pub icontains: Vec<String>,
    /// Regexes (RE2 syntax) searched anywhere in the message.
    pub regex: Vec<String>,
    /// What is left of a query-language filter after [`Query::and_expr`] moved the conditions
    /// above into their fields: ORs, NOTs, words, tag keys and tag regexes.
    pub expr: Option<Expr>,
    /// If not empty, only apps matching one of these patterns (what the caller may read),
    /// ANDed with everything else.
    pub app_scope: Vec<AppPattern>,
}

impl Query {
    /// ANDs a query-language filter into this query. Top-level conditions that the fields
    /// above express move into them, so `q=level=ERROR ~"timeout"` and
    /// `tag=level=ERROR&contains=timeout` are one plan; `now` resolves `_time:1h`.
    pub fn and_expr(&mut self, e: Expr, now: i64) -> Result<()> {
        let parts = match e {
            Expr::And(parts) => parts,
            e => vec![e],
        };
        let mut rest = Vec::new();
        for p in parts {
            match p {
                Expr::Tag(t) => self.tags_all.push(t),
                Expr::Not(inner) if matches!(*inner, Expr::Tag(_)) => {
                    let Expr::Tag(t) = *inner else { unreachable!("matched above") };
                    self.tags_none.push(t);
                }
                Expr::Or(v) if self.tags_any.is_empty() && v.iter().all(|x| matches!(x, Expr::Tag(_))) => {
                    self.tags_any =
                        v.into_iter().map(|x| if let Expr::Tag(t) = x { t } else { unreachable!() }).collect();
                }
                Expr::Substring { text, case_insensitive: false } => self.contains.push(text),
                Expr::Substring { text, case_insensitive: true } => self.icontains.push(text),
                Expr::Regex { pattern, case_insensitive } => {
                    self.regex.push(if case_insensitive { format!("(?i:{pattern})") } else { pattern })
                }
                Expr::App(a) if self.apps.is_empty() => self.apps.push(a),
                Expr::Or(v) if self.apps.is_empty() && v.iter().all(|x| matches!(x, Expr::App(_))) => {
                    self.apps = v.into_iter().map(|x| if let Expr::App(a) = x { a } else { unreachable!() }).collect();
                    self.apps.sort();
                    self.apps.dedup();
                }
                Expr::Time { from, to } => {
                    if let Some(f) = from {
                        self.from = Some(self.from.map_or(f, |x| x.max(f)));
                    }
                    if let Some(t) = to {
                        self.to = Some(self.to.map_or(t, |x| x.min(t)));
                    }
                }
                Expr::TimeLast(d) => {
                    let f = now.saturating_sub(d);
                    self.from = Some(self.from.map_or(f, |x| x.max(f)));
                }
                p => {
                    if has_time(&p) {
                        return Err(StorageError::BadQuery(
                            "_time must apply to the whole query: AND it at the top level, outside OR and NOT".into(),
                        ));
                    }
                    rest.push(p);
                }
            }
        }
        if !rest.is_empty() {
            let prev = self.expr.take();
            self.expr = Some(Expr::and(prev.into_iter().chain(rest).collect()));
        }
        Ok(())
    }
}

fn has_time(e: &Expr) -> bool {
    match e {
        Expr::Time { .. } | Expr::TimeLast(_) => true,
        Expr::And(v) | Expr::Or(v) => v.iter().any(has_time),
        Expr::Not(inner) => has_time(inner),
        _ => false,
    }
}

/// A compiled regex, with an ASCII-only twin for ASCII messages.
///
/// Unicode classes (`\d`, `\w`, `\s`, `\b`) make the regex engine's automata much bigger and
/// slower. On an ASCII message a pattern written in ASCII means exactly the same with Unicode
/// off, so such messages (most logs) go through the ASCII twin.
pub struct Matcher {
    unicode: Regex,
    ascii: Option<Regex>,
    /// Whether a match found in a whole column of messages laid end to end is a match of the
    /// message it lies in: true without look-around assertions (`^`, `$`, `\b`), whose meaning
    /// depends on the neighbouring bytes, and when the empty string cannot match.
    column_safe: bool,
    /// Bloom keys of the tokens every match contains whole (from the pattern's literals).
    tokens: Vec<u64>,
}

pub use logpipe_query::REGEX_NEST_LIMIT;

impl Matcher {
    fn new(pattern: &str, ci: bool, size_limit: usize) -> Result<Matcher> {
        let build = |unicode: bool| {
            RegexBuilder::new(pattern)
                .nest_limit(REGEX_NEST_LIMIT)
                .case_insensitive(ci)
                .unicode(unicode)
                .size_limit(size_limit)
                .dfa_size_limit(size_limit)
                .build()
        };
        let unicode = build(true).map_err(|e| StorageError::BadQuery(format!("regex {pattern:?}: {e}")))?;
        let ascii = if pattern.is_ascii() { build(false).ok() } else { None };
        let hir = regex_syntax::ParserBuilder::new()
            .nest_limit(REGEX_NEST_LIMIT)
            .case_insensitive(ci)
            .build()
            .parse(pattern)
            .ok();
        let column_safe = hir.as_ref().is_some_and(|h| {
            h.properties().look_set().is_empty() && h.properties().minimum_len().is_some_and(|n| n > 0)
        });
        let tokens = hir.map(|h| required_tokens(&h)).unwrap_or_default();
        Ok(Matcher { unicode, ascii, column_safe, tokens })
    }

    #[inline]
    pub fn is_match(&self, msg: &[u8]) -> bool {
        match &self.ascii {
            Some(a) if msg.is_ascii() => a.is_match(msg),
            _ => self.unicode.is_match(msg),
        }
    }

    /// The regex to run over `text`, which may be a whole column.
    fn for_text(&self, text: &[u8]) -> &Regex {
        match &self.ascii {
            Some(a) if text.is_ascii() => a,
            _ => &self.unicode,
        }
    }
}

/// Bloom keys of the tokens that every match of `hir` contains whole: the literal runs the
/// pattern requires (concatenated literals, single-case classes, ASCII case pairs), cut into
/// tokens, keeping only tokens with a separator on both sides inside a run.
fn required_tokens(hir: &Hir) -> Vec<u64> {
    fn flush(run: &mut Vec<u8>, out: &mut Vec<u64>) {
        out.extend(bloom::needle_tokens(run, false));
        out.extend(bloom::needle_grams(run, false));
        run.clear();
    }
    /// One character a class stands for, up to ASCII case (hashing lowercases ASCII anyway).
    fn class_char(c: &Class) -> Option<Vec<u8>> {
        match c {
            Class::Unicode(u) => {
                let chars: Vec<char> = u.iter().flat_map(|r| r.start()..=r.end()).take(3).collect();
                match chars[..] {
                    [a] => Some(a.to_string().into_bytes()),
                    [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(&b) => {
                        Some(vec![a.to_ascii_lowercase() as u8])
                    }
                    _ => None,
                }
            }
            Class::Bytes(b) => {
                let bytes: Vec<u8> = b.iter().flat_map(|r| r.start()..=r.end()).take(3).collect();
                match bytes[..] {
                    [a] if a.is_ascii() => Some(vec![a]),
                    [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(&b) => {
                        Some(vec![a.to_ascii_lowercase()])
                    }
                    _ => None,
                }
            }
        }
    }
    fn walk(h: &Hir, run: &mut Vec<u8>, out: &mut Vec<u64>) {
        match h.kind() {
            HirKind::Empty => {}
            HirKind::Literal(lit) => run.extend_from_slice(&lit.0),
            HirKind::Class(c) => match class_char(c) {
                Some(ch) => run.extend_from_slice(&ch),
                None => flush(run, out),
            },
            HirKind::Capture(c) => walk(&c.sub, run, out),
            HirKind::Concat(parts) => parts.iter().for_each(|p| walk(p, run, out)),
            HirKind::Repetition(r) if r.min == 1 && r.max == Some(1) => walk(&r.sub, run, out),
            HirKind::Repetition(r) if r.min >= 1 => {
                // the sub-pattern occurs, but its neighbours are not known
                flush(run, out);
                walk(&r.sub, run, out);
                flush(run, out);
            }
            HirKind::Repetition(_) | HirKind::Alternation(_) | HirKind::Look(_) => flush(run, out),
        }
    }
    let (mut run, mut out) = (Vec::new(), Vec::new());
    walk(hir, &mut run, &mut out);
    flush(&mut run, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// One condition on the message.
pub enum MessageFilter {
    /// Case-sensitive substring.
    Contains(memmem::Finder<'static>),
    /// Regex (also case-insensitive substrings, compiled to one).
    Regex(Matcher),
    /// Text with token boundaries at its ends (see [`Word`]).
    Word(Word),
}

/// A word or phrase: the text occurs with no token byte (ASCII letter or digit, non-ASCII
/// byte) right before it or right after it, where the text itself starts or ends with one.
pub struct Word {
    text: Vec<u8>,
    finder: memmem::Finder<'static>,
    /// Case-insensitive words are found by regex, then checked at the same boundaries.
    ci: Option<Regex>,
}

impl Word {
    fn new(text: &str, case_insensitive: bool, size_limit: usize) -> Result<Word> {
        let ci = if case_insensitive {
            let re = RegexBuilder::new(&regex::escape(text))
                .case_insensitive(true)
                .size_limit(size_limit)
                .build()
                .map_err(|e| StorageError::BadQuery(format!("word {text:?}: {e}")))?;
            Some(re)
        } else {
            None
        };
        Ok(Word { text: text.as_bytes().to_vec(), finder: memmem::Finder::new(text.as_bytes()).into_owned(), ci })
    }

    fn bounded(&self, msg: &[u8], start: usize, end: usize) -> bool {
        let tok = |b: u8| bloom::is_token_byte(b);
        let (first, last) = (self.text.first().copied(), self.text.last().copied());
        (start == 0 || !first.is_some_and(tok) || !tok(msg[start - 1]))
            && (end == msg.len() || !last.is_some_and(tok) || !tok(msg[end]))
    }

    pub fn is_match(&self, msg: &[u8]) -> bool {
        let mut from = 0;
        while from <= msg.len() {
            let hit = match &self.ci {
                Some(re) => re.find_at(msg, from).map(|m| (m.start(), m.end())),
                None => self.finder.find(&msg[from..]).map(|at| (from + at, from + at + self.text.len())),
            };
            let Some((start, end)) = hit else { return false };
            if self.bounded(msg, start, end) {
                return true;
            }
            // the next occurrence may overlap this one; step past its first character
            from = start + msg[start..].iter().skip(1).position(|&b| b & 0xc0 != 0x80).map_or(1, |p| p + 1);
        }
        false
    }

    /// Bloom keys: every token of the text is whole (the boundaries are part of the match).
    fn keys(&self) -> Vec<u64> {
        let ci = self.ci.is_some();
        let mut padded = Vec::with_capacity(self.text.len() + 2);
        padded.push(b' ');
        padded.extend_from_slice(&self.text);
        padded.push(b' ');
        let mut keys = bloom::needle_tokens(&padded, ci);
        keys.extend(bloom::needle_grams(&self.text, ci));
        keys
    }
}

impl MessageFilter {
    #[inline]
    pub fn is_match(&self, msg: &[u8]) -> bool {
        match self {
            MessageFilter::Contains(f) => f.find(msg).is_some(),
            MessageFilter::Regex(m) => m.is_match(msg),
            MessageFilter::Word(w) => w.is_match(msg),
        }
    }

    /// Whether [`MessageFilter::finder`] may run over a whole column of messages.
    pub fn column_safe(&self) -> bool {
        match self {
            MessageFilter::Contains(f) => !f.needle().is_empty(),
            MessageFilter::Regex(m) => m.column_safe,
            // boundaries at a message's edges are not visible in a whole column
            MessageFilter::Word(_) => false,
        }
    }

    /// A searcher over `text` (a whole column): the first match at or after a position.
    pub fn finder<'a>(&'a self, text: &'a [u8]) -> impl FnMut(usize, usize) -> Option<(usize, usize)> + 'a {
        let re = match self {
            MessageFilter::Regex(m) => Some(m.for_text(text)),
            MessageFilter::Contains(_) | MessageFilter::Word(_) => None,
        };
        move |from: usize, to: usize| match (self, re) {
            (MessageFilter::Contains(f), _) => {
                f.find(&text[from..to]).map(|at| (from + at, from + at + f.needle().len()))
            }
            (_, Some(re)) => re.find_at(&text[..to], from).map(|m| (m.start(), m.end())),
            _ => None,
        }
    }
}

/// A compiled query-language expression (what [`Query::and_expr`] left in `expr`).
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Msg {
        cond: Box<MessageFilter>,
        keys: Vec<u64>,
    },
    App(AppName),
    Tag {
        tag: String,
        key: u64,
    },
    /// The bare tag `key`, or any tag `key=...`.
    TagKey {
        key: String,
        prefix: String,
    },
    /// A tag `key=value` whose value matches.
    TagRegex {
        prefix: String,
        re: Regex,
    },
}

impl Node {
    fn compile(e: &Expr, size_limit: usize) -> Result<Node> {
        let all = |v: &[Expr]| v.iter().map(|x| Node::compile(x, size_limit)).collect::<Result<Vec<_>>>();
        Ok(match e {
            Expr::And(v) => Node::And(all(v)?),
            Expr::Or(v) => Node::Or(all(v)?),
            Expr::Not(inner) => Node::Not(Box::new(Node::compile(inner, size_limit)?)),
            Expr::Word { text, case_insensitive } => {
                let w = Word::new(text, *case_insensitive, size_limit)?;
                Node::Msg { keys: w.keys(), cond: Box::new(MessageFilter::Word(w)) }
            }
            Expr::Substring { text, case_insensitive: false } => {
                let mut keys = bloom::needle_tokens(text.as_bytes(), false);
                keys.extend(bloom::needle_grams(text.as_bytes(), false));
                Node::Msg {
                    cond: Box::new(MessageFilter::Contains(memmem::Finder::new(text.as_bytes()).into_owned())),
                    keys,
                }
            }
            Expr::Substring { text, case_insensitive: true } => {
                let mut keys = bloom::needle_tokens(text.as_bytes(), true);
                keys.extend(bloom::needle_grams(text.as_bytes(), true));
                Node::Msg {
                    cond: Box::new(MessageFilter::Regex(Matcher::new(&regex::escape(text), true, size_limit)?)),
                    keys,
                }
            }
            Expr::Regex { pattern, case_insensitive } => {
                let m = Matcher::new(pattern, *case_insensitive, size_limit)?;
                Node::Msg { keys: m.tokens.clone(), cond: Box::new(MessageFilter::Regex(m)) }
            }
            Expr::App(a) => Node::App(a.clone()),
            Expr::Tag(t) => Node::Tag { tag: t.clone(), key: bloom::tag_hash(t) },
            Expr::TagKey(k) => Node::TagKey { key: k.clone(), prefix: format!("{k}=") },
            Expr::TagRegex { key, pattern } => {
                let re = RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .nest_limit(REGEX_NEST_LIMIT + 1)
                    .size_limit(size_limit)
                    .build()
                    .map_err(|e| StorageError::BadQuery(format!("regex {pattern:?}: {e}")))?;
                Node::TagRegex { prefix: format!("{key}="), re }
            }
            Expr::Time { .. } | Expr::TimeLast(_) => {
                return Err(StorageError::BadQuery("_time must apply to the whole query".into()))
            }
        })
    }

    /// False when the block's bloom filter proves no row matches.
    fn may_block(&self, meta: &BlockMeta) -> bool {
        match self {
            Node::And(v) => v.iter().all(|n| n.may_block(meta)),
            Node::Or(v) => v.iter().any(|n| n.may_block(meta)),
            Node::Msg { keys, .. } => keys.iter().all(|&k| meta.bloom.may_contain(k)),
            Node::Tag { key, .. } => meta.bloom.may_contain(*key),
            Node::Not(_) | Node::App(_) | Node::TagKey { .. } | Node::TagRegex { .. } => true,
        }
    }

    /// False when no record of `app` can match.
    fn may_app(&self, app: &AppName) -> bool {
        match self {
            Node::And(v) => v.iter().all(|n| n.may_app(app)),
            Node::Or(v) => v.iter().any(|n| n.may_app(app)),
            Node::App(a) => a == app,
            Node::Not(inner) => match &**inner {
                Node::App(a) => a != app,
                _ => true,
            },
            _ => true,
        }
    }

    fn eval<T: AsRef<str>>(&self, app: &AppName, msg: &[u8], tags: &[T]) -> bool {
        match self {
            Node::And(v) => v.iter().all(|n| n.eval(app, msg, tags)),
            Node::Or(v) => v.iter().any(|n| n.eval(app, msg, tags)),
            Node::Not(inner) => !inner.eval(app, msg, tags),
            Node::Msg { cond, .. } => cond.is_match(msg),
            Node::App(a) => a == app,
            Node::Tag { tag, .. } => tags.iter().any(|t| t.as_ref() == tag),
            Node::TagKey { key, prefix } => tags.iter().any(|t| t.as_ref() == key || t.as_ref().starts_with(prefix)),
            Node::TagRegex { prefix, re } => {
                tags.iter().any(|t| t.as_ref().strip_prefix(prefix.as_str()).is_some_and(|v| re.is_match(v.as_bytes())))
            }
        }
    }

    fn needs_tags(&self) -> bool {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().any(Node::needs_tags),
            Node::Not(inner) => inner.needs_tags(),
            Node::Tag { .. } | Node::TagKey { .. } | Node::TagRegex { .. } => true,
            Node::Msg { .. } | Node::App(_) => false,
        }
    }

    fn needs_messages(&self) -> bool {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().any(Node::needs_messages),
            Node::Not(inner) => inner.needs_messages(),
            Node::Msg { .. } => true,
            _ => false,
        }
    }
}

/// A compiled [`Query`].
pub struct Filter {
    pub apps: Option<HashSet<AppName>>,
    pub from: i64,
    pub to: i64,
    tags_all: Vec<String>,
    tags_any: Vec<String>,
    tags_none: Vec<String>,
    /// Message conditions, cheapest first: substrings, then case-insensitive substrings, then
    /// regexes.
    messages: Vec<MessageFilter>,
    /// Bloom keys that a matching block must hold, all of them.
    must_keys: Vec<u64>,
    /// Bloom keys of which a matching block must hold at least one (empty: no condition).
    any_keys: Vec<u64>,
    /// The query-language expression, if any, ANDed with the rest.
    expr: Option<Node>,
    app_scope: Vec<AppPattern>,
}

impl Filter {
    pub fn compile(q: &Query, regex_size_limit: usize) -> Result<Filter> {
        let from = q.from.unwrap_or(i64::MIN);
        let to = q.to.unwrap_or(i64::MAX);
        let build = |pattern: &str, ci: bool| Matcher::new(pattern, ci, regex_size_limit);
        let mut must_keys: Vec<u64> = q.tags_all.iter().map(|t| bloom::tag_hash(t)).collect();
        for c in &q.contains {
            must_keys.extend(bloom::needle_tokens(c.as_bytes(), false));
            must_keys.extend(bloom::needle_grams(c.as_bytes(), false));
        }
        for c in &q.icontains {
            must_keys.extend(bloom::needle_tokens(c.as_bytes(), true));
            must_keys.extend(bloom::needle_grams(c.as_bytes(), true));
        }
        let mut messages: Vec<MessageFilter> = q
            .contains
            .iter()
            .map(|c| MessageFilter::Contains(memmem::Finder::new(c.as_bytes()).into_owned()))
            .collect();
        for c in &q.icontains {
            messages.push(MessageFilter::Regex(build(&regex::escape(c), true)?));
        }
        for r in &q.regex {
            let m = build(r, false)?;
            must_keys.extend_from_slice(&m.tokens);
            messages.push(MessageFilter::Regex(m));
        }
        Ok(Filter {
            apps: (!q.apps.is_empty()).then(|| q.apps.iter().cloned().collect()),
            from,
            to,
            tags_all: q.tags_all.clone(),
            tags_any: q.tags_any.clone(),
            tags_none: q.tags_none.clone(),
            messages,
            must_keys,
            any_keys: q.tags_any.iter().map(|t| bloom::tag_hash(t)).collect(),
            expr: q.expr.as_ref().map(|e| Node::compile(e, regex_size_limit)).transpose()?,
            app_scope: if q.app_scope.iter().any(AppPattern::is_any) { Vec::new() } else { q.app_scope.clone() },
        })
    }

    pub fn app_matches(&self, app: &AppName) -> bool {
        self.apps.as_ref().is_none_or(|a| a.contains(app))
            && (self.app_scope.is_empty() || self.app_scope.iter().any(|p| p.matches(app.as_str())))
            && self.expr.as_ref().is_none_or(|n| n.may_app(app))
    }

    pub fn has_tag_filter(&self) -> bool {
        !(self.tags_all.is_empty() && self.tags_any.is_empty() && self.tags_none.is_empty())
    }

    pub fn has_message_filter(&self) -> bool {
        !self.messages.is_empty()
    }

    pub fn is_time_only(&self) -> bool {
        !self.has_tag_filter() && !self.has_message_filter() && self.expr.is_none()
    }

    /// Whether a query-language expression is left to evaluate row by row (after the rest).
    pub fn has_expr(&self) -> bool {
        self.expr.is_some()
    }

    pub fn expr_needs(&self) -> (bool, bool) {
        self.expr.as_ref().map_or((false, false), |n| (n.needs_messages(), n.needs_tags()))
    }

    /// The query-language expression on one row (true without one).
    pub fn expr_ok<T: AsRef<str>>(&self, app: &AppName, msg: &[u8], tags: &[T]) -> bool {
        self.expr.as_ref().is_none_or(|n| n.eval(app, msg, tags))
    }

    pub fn overlaps(&self, min_ts: i64, max_ts: i64) -> bool {
        max_ts >= self.from && min_ts < self.to
    }

    pub fn covers(&self, min_ts: i64, max_ts: i64) -> bool {
        min_ts >= self.from && max_ts < self.to
    }

    /// False when the block's time range or bloom filter proves no row can match.
    pub fn block_may_match(&self, meta: &BlockMeta) -> bool {
        self.overlaps(meta.min_ts, meta.max_ts)
            && self.must_keys.iter().all(|&k| meta.bloom.may_contain(k))
            && (self.any_keys.is_empty() || self.any_keys.iter().any(|&k| meta.bloom.may_contain(k)))
            && self.expr.as_ref().is_none_or(|n| n.may_block(meta))
    }

    /// Tag conditions against a tag set given as a membership test.
    fn tags_ok(&self, has: impl Fn(&str) -> bool) -> bool {
        self.tags_all.iter().all(|t| has(t))
            && (self.tags_any.is_empty() || self.tags_any.iter().any(|t| has(t)))
            && !self.tags_none.iter().any(|t| has(t))
    }

    /// For each distinct tag set of a block, whether it passes the tag conditions. Each tag the
    /// filter names is looked up once in the block's strings and given a bit; a set passes by
    /// the bits its ids carry.
    pub fn tag_sets_ok(&self, tags: &TagSets) -> Vec<bool> {
        // bit 0: some tags_any tag; bit 1: some tags_none tag; bits 2..: each tags_all tag
        let mut bits = vec![0u64; tags.strings.len()];
        let mark = |list: &[String], bit: &dyn Fn(usize) -> u64, bits: &mut [u64]| {
            for (j, t) in list.iter().enumerate() {
                if let Some(id) = tags.id_of(t) {
                    bits[id as usize] |= bit(j);
                }
            }
        };
        mark(&self.tags_any, &|_| 1, &mut bits);
        mark(&self.tags_none, &|_| 2, &mut bits);
        // more than 62 required tags share bits: the set is then checked tag by tag
        let many = self.tags_all.len() > 62;
        mark(&self.tags_all, &|j| 4 << (j % 62), &mut bits);
        let want_all: u64 = (0..self.tags_all.len().min(62)).map(|j| 4u64 << j).sum();
        (0..tags.sets())
            .map(|i| {
                let set = tags.set(i);
                let have = set.iter().fold(0u64, |acc, &id| acc | bits[id as usize]);
                let ok = have & want_all == want_all && (self.tags_any.is_empty() || have & 1 != 0) && have & 2 == 0;
                ok && (!many || self.tags_ok(|t| set.iter().any(|&id| tags.strings[id as usize] == t)))
            })
            .collect()
    }

    pub fn message_ok(&self, msg: &[u8]) -> bool {
        self.messages.iter().all(|m| m.is_match(msg))
    }

    /// The message conditions in the order they should run; the first may be run as one scan
    /// over a whole column when it is `MessageFilter::column_safe`.
    pub fn message_filters(&self) -> &[MessageFilter] {
        &self.messages
    }

    pub fn record_matches(&self, r: &Record) -> bool {
        self.row_matches(&crate::memtable::Row { app: &r.app, ts: r.ts, message: &r.message, tags: &r.tags })
    }

    pub fn row_matches(&self, r: &crate::memtable::Row<'_>) -> bool {
        r.ts >= self.from
            && r.ts < self.to
            && self.app_matches(r.app)
            && self.tags_ok(|t| r.tags.binary_search_by(|x| x.as_str().cmp(t)).is_ok())
            && self.message_ok(r.message.as_bytes())
            && self.expr_ok(r.app, r.message.as_bytes(), r.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_twin_agrees_with_unicode_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            (r"\d{1,3}\.\d{1,3}", "from 10.0.1.1", true),
            (r"\d", "arabic-indic digit \u{0663}", true),
            (r"\w+é", "café", true),
            (r"(?i)FAIL(ed|ure)", "Connection failed", true),
            (r"(?i)k", "kelvin \u{212a}", true),
            (r"^\s*x$", "  x", true),
            (r"\bword\b", "a word here", true),
            (r"\bword\b", "swordfish", false),
        ];
        for &(pattern, msg, want) in cases {
            let m = Matcher::new(pattern, false, DEFAULT_REGEX_SIZE_LIMIT).unwrap();
            assert_eq!(m.is_match(msg.as_bytes()), want, "{pattern:?} on {msg:?}");
            let reference = regex::Regex::new(pattern).unwrap().is_match(msg);
            assert_eq!(reference, want, "reference for {pattern:?} on {msg:?}");
        }
    }

    #[test]
    fn regexes_nested_past_the_limit_are_refused() {
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        let stars = format!("(a{})user", "*".repeat(150));
        for p in [deep.as_str(), stars.as_str()] {
            let e = Matcher::new(p, false, DEFAULT_REGEX_SIZE_LIMIT).err().expect("refused");
            assert!(e.to_string().contains("nest"), "{e}");
        }
        assert!(
            Matcher::new(&format!("{}a{}", "(".repeat(20), ")".repeat(20)), false, DEFAULT_REGEX_SIZE_LIMIT).is_ok()
        );
    }

    /// The keys a regex demands of a block come from its literals; any message the regex
    /// matches must hold every one of them (no false negatives), and some patterns must
    /// actually yield keys.
    #[test]
    fn regex_keys_are_held_by_every_matching_message() {
        use proptest::prelude::*;
        let patterns = [
            r"connection (reset|refused) by peer",
            r"(?i)fail(ed|ure) to open",
            r"beta delta-\d+",
            r"orchid-sentinel",
            r"user\w* logged",
            r"(?i)Kelvin scale",
            r"x+ y{2,} zeta",
            r"\bword\b",
            r"a.b c",
        ];
        let matchers: Vec<Matcher> =
            patterns.iter().map(|p| Matcher::new(p, false, DEFAULT_REGEX_SIZE_LIMIT).unwrap()).collect();
        assert!(!matchers[0].tokens.is_empty(), "'by' is a whole token of the first pattern");
        assert!(!matchers[3].tokens.is_empty(), "letter 4-grams of orchid-sentinel");
        let words = prop_oneof![
            Just("connection"),
            Just("reset"),
            Just("refused"),
            Just("by"),
            Just("peer"),
            Just("FAILED"),
            Just("failure"),
            Just("to"),
            Just("open"),
            Just("beta"),
            Just("delta-42"),
            Just("orchid-sentinel"),
            Just("superuser"),
            Just("logged"),
            Just("\u{212a}elvin"),
            Just("SCALE"),
            Just("xx"),
            Just("yyy"),
            Just("zeta"),
            Just("word"),
            Just("a-b"),
            Just("c"),
            Just("-"),
            Just("é"),
            // whole phrases, so that every pattern matches now and then
            Just("connection refused by peer"),
            Just("Failure to open"),
            Just("beta delta-7"),
            Just("\u{212a}elvin scale"),
            Just("superuser logged"),
            Just("xx yyy zeta"),
            Just("a-b c")
        ];
        let seps = prop_oneof![Just(" "), Just(""), Just(":"), Just("  ")];
        let msg = proptest::collection::vec((words, seps), 0..12)
            .prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect::<String>());
        let hits: Vec<std::cell::Cell<u32>> = patterns.iter().map(|_| std::cell::Cell::new(0)).collect();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
        runner
            .run(&msg, |m| {
                let mut have = HashSet::new();
                bloom::for_each_token_hash(m.as_bytes(), |h| {
                    have.insert(h);
                });
                bloom::for_each_gram(m.as_bytes(), |c| {
                    have.insert(bloom::gram_hash(c));
                });
                for (p, mt) in patterns.iter().zip(&matchers) {
                    if mt.is_match(m.as_bytes()) {
                        hits[patterns.iter().position(|x| x == p).unwrap()].set(1);
                        for k in &mt.tokens {
                            prop_assert!(have.contains(k), "{p:?} matches {m:?} but its key {k:x} is missing");
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        for (p, h) in patterns.iter().zip(&hits) {
            assert!(h.get() > 0, "{p:?} never matched: the property was not exercised");
        }
    }
}
