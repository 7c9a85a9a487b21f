//! Filters: what a query asks for, compiled once into matchers and bloom-filter keys.

use std::collections::HashSet;

use logpipe_model::{AppName, Record};
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

impl Matcher {
    fn new(pattern: &str, ci: bool, size_limit: usize) -> Result<Matcher> {
        let build = |unicode: bool| {
            RegexBuilder::new(pattern)
                .case_insensitive(ci)
                .unicode(unicode)
                .size_limit(size_limit)
                .dfa_size_limit(size_limit)
                .build()
        };
        let unicode = build(true).map_err(|e| StorageError::BadQuery(format!("regex {pattern:?}: {e}")))?;
        let ascii = if pattern.is_ascii() { build(false).ok() } else { None };
        let hir = regex_syntax::ParserBuilder::new().case_insensitive(ci).build().parse(pattern).ok();
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
}

impl MessageFilter {
    #[inline]
    pub fn is_match(&self, msg: &[u8]) -> bool {
        match self {
            MessageFilter::Contains(f) => f.find(msg).is_some(),
            MessageFilter::Regex(m) => m.is_match(msg),
        }
    }

    /// Whether [`MessageFilter::finder`] may run over a whole column of messages.
    pub fn column_safe(&self) -> bool {
        match self {
            MessageFilter::Contains(f) => !f.needle().is_empty(),
            MessageFilter::Regex(m) => m.column_safe,
        }
    }

    /// A searcher over `text` (a whole column): the first match at or after a position.
    pub fn finder<'a>(&'a self, text: &'a [u8]) -> impl FnMut(usize, usize) -> Option<(usize, usize)> + 'a {
        let re = match self {
            MessageFilter::Regex(m) => Some(m.for_text(text)),
            MessageFilter::Contains(_) => None,
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
        })
    }

    pub fn app_matches(&self, app: &AppName) -> bool {
        self.apps.as_ref().is_none_or(|a| a.contains(app))
    }

    pub fn has_tag_filter(&self) -> bool {
        !(self.tags_all.is_empty() && self.tags_any.is_empty() && self.tags_none.is_empty())
    }

    pub fn has_message_filter(&self) -> bool {
        !self.messages.is_empty()
    }

    pub fn is_time_only(&self) -> bool {
        !self.has_tag_filter() && !self.has_message_filter()
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
    /// over a whole column when it is [`MessageFilter::column_safe`].
    pub fn message_filters(&self) -> &[MessageFilter] {
        &self.messages
    }

    pub fn record_matches(&self, r: &Record) -> bool {
        r.ts >= self.from
            && r.ts < self.to
            && self.app_matches(&r.app)
            && self.tags_ok(|t| r.tags.binary_search_by(|x| x.as_str().cmp(t)).is_ok())
            && self.message_ok(r.message.as_bytes())
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
