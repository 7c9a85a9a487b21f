//! The query set: what each query asks, in the terms of logpipe's native query API (`app`,
//! `from`/`to`, `tag`, `any`, `not`, `contains`, `icontains`, `regex`), and what kind of answer
//! it wants. Times are offsets from the data set's start, so the set fits any `--start`; the
//! comments assume the default (2025-01-01T12:00Z for 24 h, midnight at +12 h).
//!
//! The set covers needles over all the data (3, 7 and `records x 1e-6` hits), a substring
//! inside a token (`rid=000`), the rare tag, the rarest and the busiest host, one app over one
//! hour, a common word over everything, the newest records and the count of everything, tag
//! AND / OR / NOT and all three together, a filter of negations only, regexes on IPv4 and
//! ip:port, a case-insensitive alternation, case-insensitive substrings, substring + tag, a
//! phrase found nowhere, two apps at once, histograms (one app, the errors of 6 h, the volume
//! per hour, a burst per minute), one-minute windows, the minutes around midnight (two day
//! partitions), a large page, and `count by` / `histogram by` over tag keys.

use crate::gen::{Dataset, HOUR, MINUTE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The first `limit` records ordered by (timestamp, message), oldest or newest first.
    Logs {
        limit: usize,
        asc: bool,
    },
    Count,
    /// Non-empty buckets of `step` ns, aligned to multiples of it since the epoch.
    Histogram {
        step: i64,
    },
    /// The number of records per value of the tag key (`null`: records without it).
    CountBy {
        key: &'static str,
    },
    /// Buckets per value of the tag key.
    HistogramBy {
        step: i64,
        key: &'static str,
    },
}

/// One query. Every filter that is set must match.
#[derive(Debug, Clone)]
pub struct Query {
    pub id: &'static str,
    pub kind: Kind,
    pub apps: Vec<&'static str>,
    /// `[from, to)`, ns since the epoch.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub tags: Vec<&'static str>,
    pub any: Vec<&'static str>,
    pub not: Vec<&'static str>,
    pub contains: Vec<&'static str>,
    pub icontains: Vec<&'static str>,
    pub regex: Option<&'static str>,
}

impl Query {
    fn new(id: &'static str, kind: Kind) -> Query {
        Query {
            id,
            kind,
            apps: vec![],
            from: None,
            to: None,
            tags: vec![],
            any: vec![],
            not: vec![],
            contains: vec![],
            icontains: vec![],
            regex: None,
        }
    }
}

fn logs(limit: usize, asc: bool) -> Kind {
    Kind::Logs { limit, asc }
}

/// The query set for data set `ds`.
pub fn all(ds: &Dataset) -> Vec<Query> {
    let at = |offset: i64| Some(ds.start + offset);
    let whole = |mut q: Query| {
        q.from = Some(ds.start);
        q.to = Some(ds.start + ds.span);
        q
    };
    let window = |mut q: Query, from: i64, len: i64| {
        q.from = at(from);
        q.to = at(from + len);
        q
    };
    let mut qs = Vec::new();
    let mut add = |q: Query| qs.push(q);

    // needles
    add(whole(Query { contains: vec!["vault seal integrity"], ..Query::new("needle_3_logs", logs(100, false)) }));
    add(whole(Query { contains: vec!["hard LOCKUP on cpu#7"], ..Query::new("needle_7_count", Kind::Count) }));
    add(Query { contains: vec!["double free detected"], ..Query::new("needle_1e-6_logs_asc", logs(10, true)) });
    add(window(
        Query { contains: vec!["lock wait timeout"], ..Query::new("needle_1e-4_1h_logs", logs(100, false)) },
        10 * HOUR,
        HOUR,
    ));
    add(Query {
        contains: vec!["slow request: op=scan"],
        ..Query::new("needle_1e-3_hist_1h", Kind::Histogram { step: HOUR })
    });
    add(Query {
        contains: vec!["pinned key mismatch"],
        tags: vec!["level=ERROR"],
        ..Query::new("needle_1e-5_tag_count", Kind::Count)
    });
    add(Query { contains: vec!["rid=000"], ..Query::new("rid_prefix_count", Kind::Count) });
    // tags, rare and common
    add(Query { tags: vec!["canary"], ..Query::new("rare_tag_logs", logs(50, false)) });
    add(Query { tags: vec!["host=host-240"], ..Query::new("rarest_host_logs", logs(100, false)) });
    add(Query { tags: vec!["host=host-001"], ..Query::new("busiest_host_count", Kind::Count) });
    add(window(Query { apps: vec!["checkout"], ..Query::new("app_1h_logs", logs(100, false)) }, 3 * HOUR, HOUR));
    add(whole(Query { contains: vec!["failed"], ..Query::new("common_word_logs", logs(100, false)) }));
    add(Query::new("newest_logs", logs(100, false)));
    add(Query::new("count_all", Kind::Count));
    add(Query { tags: vec!["env=prod", "level=ERROR"], ..Query::new("tag_and_count", Kind::Count) });
    add(window(
        Query { any: vec!["level=ERROR", "level=FATAL"], ..Query::new("tag_or_6h_logs", logs(100, false)) },
        2 * HOUR,
        6 * HOUR,
    ));
    add(Query { not: vec!["env=prod"], ..Query::new("tag_not_count", Kind::Count) });
    add(Query {
        tags: vec!["env=prod"],
        any: vec!["level=WARN", "level=ERROR"],
        not: vec!["region=eu-west-1"],
        ..Query::new("tag_and_or_not_logs", logs(100, false))
    });
    add(Query {
        not: vec!["level=INFO", "level=DEBUG", "env=prod"],
        ..Query::new("negations_only_logs_asc", logs(20, true))
    });
    // regexes and substrings
    add(Query { regex: Some(r"\b10\.2\.\d{1,3}\.\d{1,3}\b"), ..Query::new("regex_ipv4_count", Kind::Count) });
    add(Query {
        apps: vec!["kafka"],
        regex: Some(r"\d+\.\d+\.\d+\.\d+:\d{5}"),
        ..Query::new("regex_ip_port_logs", logs(20, false))
    });
    add(Query { regex: Some(r"(?i)(refused|reset by peer)"), ..Query::new("regex_ci_count", Kind::Count) });
    add(Query { icontains: vec!["ERROR:"], ..Query::new("icontains_count", Kind::Count) });
    add(Query {
        contains: vec!["checkpoint complete"],
        tags: vec!["host=host-002"],
        ..Query::new("contains_tag_logs", logs(100, false))
    });
    add(Query { contains: vec!["zzqx never written"], ..Query::new("never_matches_count", Kind::Count) });
    add(Query { apps: vec!["auth", "mail"], contains: vec!["from"], ..Query::new("two_apps_count", Kind::Count) });
    // histograms
    add(Query { apps: vec!["api"], ..Query::new("app_hist_5m", Kind::Histogram { step: 5 * MINUTE }) });
    add(window(
        Query {
            any: vec!["level=ERROR", "level=FATAL"],
            ..Query::new("errors_hist_5m_6h", Kind::Histogram { step: 5 * MINUTE })
        },
        2 * HOUR,
        6 * HOUR,
    ));
    add(Query::new("volume_hist_1h", Kind::Histogram { step: HOUR }));
    add(window(
        Query {
            apps: vec!["checkout"],
            tags: vec!["level=ERROR"],
            ..Query::new("burst_hist_1m", Kind::Histogram { step: MINUTE })
        },
        4 * HOUR,
        HOUR,
    ));
    // narrow windows and large pages
    add(window(Query::new("narrow_1m_logs_asc", logs(1000, true)), 7 * HOUR + 17 * MINUTE, MINUTE));
    add(window(
        Query { apps: vec!["nginx"], tags: vec!["env=prod"], ..Query::new("narrow_1m_app_tag_logs", logs(100, false)) },
        15 * HOUR + 3 * MINUTE,
        MINUTE,
    ));
    add(window(Query::new("midnight_logs_asc", logs(500, true)), 12 * HOUR - 5 * MINUTE, 10 * MINUTE));
    add(Query { tags: vec!["env=prod"], ..Query::new("large_page_logs", logs(10_000, false)) });
    // aggregations by tag key
    add(Query::new("count_by_level", Kind::CountBy { key: "level" }));
    add(Query { not: vec!["env=prod"], ..Query::new("count_by_host_not_prod", Kind::CountBy { key: "host" }) });
    add(Query { apps: vec!["api"], ..Query::new("count_by_canary", Kind::CountBy { key: "canary" }) });
    add(Query {
        apps: vec!["checkout"],
        ..Query::new("hist_by_level_1h", Kind::HistogramBy { step: HOUR, key: "level" })
    });
    add(window(
        Query {
            contains: vec!["failed"],
            ..Query::new("hist_by_env_5m", Kind::HistogramBy { step: 5 * MINUTE, key: "env" })
        },
        10 * HOUR,
        2 * HOUR,
    ));
    qs
}

/// A duration in the largest unit that divides it (`1h`, `5m`, `30s`, `250ms`).
pub fn duration(ns: i64) -> String {
    for (unit, n) in [("h", HOUR), ("m", MINUTE), ("s", 1_000_000_000), ("ms", 1_000_000)] {
        if ns % n == 0 {
            return format!("{}{unit}", ns / n);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let qs = all(&Dataset::new(1));
        let mut ids: Vec<_> = qs.iter().map(|q| q.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), qs.len());
        assert_eq!(duration(5 * MINUTE), "5m");
        assert_eq!(duration(HOUR), "1h");
    }
}
