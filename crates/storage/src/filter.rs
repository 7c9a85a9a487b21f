//! Filters: what a query asks for, compiled once into matchers and bloom-filter keys.

use std::collections::HashSet;

use logpipe_model::{AppName, Record};
use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

use crate::block::{BlockMeta, Tags};
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
        Ok(Matcher { unicode, ascii })
    }

    #[inline]
    pub fn is_match(&self, msg: &[u8]) -> bool {
        match &self.ascii {
            Some(a) if msg.is_ascii() => a.is_match(msg),
            _ => self.unicode.is_match(msg),
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
    contains: Vec<memmem::Finder<'static>>,
    icontains: Vec<Matcher>,
    regex: Vec<Matcher>,
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
        }
        for c in &q.icontains {
            must_keys.extend(bloom::needle_tokens(c.as_bytes(), true));
        }
        Ok(Filter {
            apps: (!q.apps.is_empty()).then(|| q.apps.iter().cloned().collect()),
            from,
            to,
            tags_all: q.tags_all.clone(),
            tags_any: q.tags_any.clone(),
            tags_none: q.tags_none.clone(),
            contains: q.contains.iter().map(|c| memmem::Finder::new(c.as_bytes()).into_owned()).collect(),
            icontains: q.icontains.iter().map(|c| build(&regex::escape(c), true)).collect::<Result<_>>()?,
            regex: q.regex.iter().map(|r| build(r, false)).collect::<Result<_>>()?,
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
        !(self.contains.is_empty() && self.icontains.is_empty() && self.regex.is_empty())
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

    /// For each distinct tag set of a block, whether it passes the tag conditions.
    pub fn tag_sets_ok(&self, tags: &Tags) -> Vec<bool> {
        tags.sets.iter().map(|set| self.tags_ok(|t| set.iter().any(|&id| tags.strings[id as usize] == t))).collect()
    }

    pub fn message_ok(&self, msg: &[u8]) -> bool {
        self.contains.iter().all(|f| f.find(msg).is_some())
            && self.icontains.iter().all(|r| r.is_match(msg))
            && self.regex.iter().all(|r| r.is_match(msg))
    }

    /// Message conditions other than the first `contains`, which [`Filter::first_contains`]
    /// lets the caller run as one scan over a whole column.
    pub fn message_ok_after_first(&self, msg: &[u8]) -> bool {
        self.contains.iter().skip(1).all(|f| f.find(msg).is_some())
            && self.icontains.iter().all(|r| r.is_match(msg))
            && self.regex.iter().all(|r| r.is_match(msg))
    }

    pub fn first_contains(&self) -> Option<&memmem::Finder<'static>> {
        self.contains.first()
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
}
