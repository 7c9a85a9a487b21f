//! The oracle: every query's exact answer, by brute force over all the records (each query
//! checks every record against its filters, on all cores).

use std::collections::BTreeMap;

use rayon::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::gen::Record;
use crate::queries::{Kind, Query};

/// A record as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    pub app: String,
    pub ts: i64,
    pub message: String,
    /// Sorted.
    pub tags: Vec<String>,
}

/// A query's answer. Buckets are keyed by their start (ns since the epoch); tag values are
/// `None` for the records without the key, `""` for a bare tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// `count` is every match; `records` the page.
    Logs {
        count: u64,
        records: Vec<Rec>,
    },
    Count {
        count: u64,
    },
    Histogram {
        buckets: BTreeMap<i64, u64>,
    },
    CountBy {
        values: Vec<(Option<String>, u64)>,
    },
    HistogramBy {
        series: Vec<(Option<String>, BTreeMap<i64, u64>)>,
    },
}

/// A query's filters, compiled.
pub struct Filter<'q> {
    q: &'q Query,
    regex: Option<Regex>,
    icontains: Vec<String>,
}

impl<'q> Filter<'q> {
    pub fn new(q: &'q Query) -> Filter<'q> {
        Filter {
            q,
            regex: q.regex.map(|r| Regex::new(r).unwrap_or_else(|e| panic!("query {}: {e}", q.id))),
            icontains: q.icontains.iter().map(|s| s.to_lowercase()).collect(),
        }
    }

    pub fn matches(&self, r: &Record) -> bool {
        let q = self.q;
        (q.apps.is_empty() || q.apps.contains(&r.app))
            && q.from.is_none_or(|f| r.ts >= f)
            && q.to.is_none_or(|t| r.ts < t)
            && q.tags.iter().all(|t| r.tags.contains(t))
            && (q.any.is_empty() || q.any.iter().any(|t| r.tags.contains(t)))
            && !q.not.iter().any(|t| r.tags.contains(t))
            && q.contains.iter().all(|s| r.message.contains(s))
            && (self.icontains.is_empty() || {
                let lower = r.message.to_lowercase();
                self.icontains.iter().all(|s| lower.contains(s.as_str()))
            })
            && self.regex.as_ref().is_none_or(|re| re.is_match(&r.message))
    }
}

/// The value of tag key `key` among `tags`: `Some("")` for a bare tag, `None` without it.
pub fn tag_value<'a>(tags: &[&'a str], key: &str) -> Option<&'a str> {
    tags.iter().find_map(|t| match t.split_once('=') {
        Some((k, v)) if k == key => Some(v),
        None if *t == key => Some(""),
        _ => None,
    })
}

fn bucket(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

/// The answer to `q` over `records`.
pub fn answer(q: &Query, records: &[Record]) -> Answer {
    let f = Filter::new(q);
    let hits: Vec<&Record> = records.par_iter().filter(|r| f.matches(r)).collect();
    match q.kind {
        Kind::Count => Answer::Count { count: hits.len() as u64 },
        Kind::Logs { limit, asc } => {
            let mut page = hits.clone();
            let key = |a: &&Record, b: &&Record| {
                let o = (a.ts, &a.message).cmp(&(b.ts, &b.message));
                if asc {
                    o
                } else {
                    o.reverse()
                }
            };
            if page.len() > limit {
                page.select_nth_unstable_by(limit, key);
                page.truncate(limit);
            }
            page.sort_by(key);
            let records = page
                .iter()
                .map(|r| Rec {
                    app: r.app.to_string(),
                    ts: r.ts,
                    message: r.message.clone(),
                    tags: r.tags.iter().map(|t| t.to_string()).collect(),
                })
                .collect();
            Answer::Logs { count: hits.len() as u64, records }
        }
        Kind::Histogram { step } => {
            let mut buckets = BTreeMap::new();
            for r in &hits {
                *buckets.entry(bucket(r.ts, step)).or_insert(0) += 1;
            }
            Answer::Histogram { buckets }
        }
        Kind::CountBy { key } => {
            let mut values: BTreeMap<Option<String>, u64> = BTreeMap::new();
            for r in &hits {
                *values.entry(tag_value(&r.tags, key).map(str::to_owned)).or_insert(0) += 1;
            }
            Answer::CountBy { values: values.into_iter().collect() }
        }
        Kind::HistogramBy { step, key } => {
            let mut series: BTreeMap<Option<String>, BTreeMap<i64, u64>> = BTreeMap::new();
            for r in &hits {
                let s = series.entry(tag_value(&r.tags, key).map(str::to_owned)).or_default();
                *s.entry(bucket(r.ts, step)).or_insert(0) += 1;
            }
            Answer::HistogramBy { series: series.into_iter().collect() }
        }
    }
}

/// Every query's answer, by id.
pub fn answers(queries: &[Query], records: &[Record]) -> BTreeMap<String, Answer> {
    queries.iter().map(|q| (q.id.to_string(), answer(q, records))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{Dataset, Generator};
    use crate::queries;

    #[test]
    fn answers_agree_with_each_other() {
        let g = Generator::new(Dataset::new(50_000));
        let recs = g.records(0..50_000);
        let qs = queries::all(&g.ds);
        let a = answers(&qs, &recs);
        let count = |id: &str| match &a[id] {
            Answer::Count { count } => *count,
            other => panic!("{other:?}"),
        };
        assert_eq!(count("count_all"), 50_000);
        assert_eq!(count("needle_7_count"), 7);
        assert_eq!(count("never_matches_count"), 0);
        let Answer::CountBy { values } = &a["count_by_level"] else { panic!() };
        assert_eq!(values.iter().map(|v| v.1).sum::<u64>(), 50_000);
        assert!(values.iter().any(|v| v.0.is_none()), "some records have no level");
        let Answer::Histogram { buckets } = &a["volume_hist_1h"] else { panic!() };
        assert_eq!(buckets.len(), 24);
        assert_eq!(buckets.values().sum::<u64>(), 50_000);
        let Answer::Logs { count, records } = &a["newest_logs"] else { panic!() };
        assert_eq!(*count, 50_000);
        assert!(records.windows(2).all(|w| (w[0].ts, &w[0].message) >= (w[1].ts, &w[1].message)));
        let Answer::Logs { records, .. } = &a["midnight_logs_asc"] else { panic!() };
        let midnight = Dataset::DEFAULT_START + 12 * crate::gen::HOUR;
        assert!(records.first().unwrap().ts < midnight && records.last().unwrap().ts >= midnight);
        // every query finds something, but the one that must not
        for (id, ans) in &a {
            let empty = match ans {
                Answer::Logs { count, .. } | Answer::Count { count } => *count == 0,
                Answer::Histogram { buckets } => buckets.is_empty(),
                Answer::CountBy { values } => values.is_empty(),
                Answer::HistogramBy { series } => series.is_empty(),
            };
            assert_eq!(empty, id == "never_matches_count", "{id}: {ans:?}");
        }
    }

    #[test]
    fn tag_values() {
        let tags = ["canary", "env=prod", "level=ERROR"];
        assert_eq!(tag_value(&tags, "canary"), Some(""));
        assert_eq!(tag_value(&tags, "level"), Some("ERROR"));
        assert_eq!(tag_value(&tags, "host"), None);
    }
}
