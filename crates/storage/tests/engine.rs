//! The engine against a plain in-memory model: the same answers from the memtable, after a
//! flush, after merges and after reopening the data directory.

use std::time::Duration;

use logpipe_model::{AppName, Record};
use logpipe_query::Expr;
use logpipe_storage::{Answer, Cursor, Engine, EngineConfig, Order, Query, Request};
use proptest::prelude::*;

const WORDS: &[&str] =
    &["alpha", "beta", "Gamma", "delta-9", "req-00ff", "x", "héllo", "10.0.0.1:80", "superuser", "orchid-sentinel"];
const TAGS: &[&str] = &["level=ERROR", "level=INFO", "env=prod", "canary", "host=node-1"];

fn record_strategy() -> impl Strategy<Value = Record> {
    (
        0usize..3,
        0i64..(3 * 86_400),
        proptest::collection::vec(0usize..WORDS.len(), 0..5),
        proptest::collection::vec(0usize..TAGS.len(), 0..3),
    )
        .prop_map(|(app, sec, words, tags)| Record {
            app: AppName::parse(["a", "b", "c"][app]).unwrap(),
            // a coarse grid so equal timestamps happen
            ts: 1_735_689_600_000_000_000 + sec * 1_000_000_000 / 7 * 7,
            message: words.iter().map(|&w| WORDS[w]).collect::<Vec<_>>().join(" "),
            tags: {
                let mut t: Vec<String> = tags.iter().map(|&i| TAGS[i].to_string()).collect();
                t.sort();
                t.dedup();
                t
            },
        })
}

/// Query-language filters, ANDed to the generated parameters: they exercise hoisting into the
/// parameters (tags, substrings, apps, time) and the expression left over (OR, NOT, words...).
const EXPRS: &[&str] = &[
    "alpha OR tag:canary",
    r#"-~"req" beta"#,
    r#""delta-9""#,
    "host=*",
    r#"level=~"ERR.*""#,
    "app:a OR NOT gamma",
    r#"i"GAMMA" level!=INFO"#,
    "x",
    "user",
    r#""alpha beta""#,
    "app:(a b) _time:[1735689600000000000, 1735776000000000000)",
    "(alpha OR beta) NOT (tag:canary OR level=ERROR)",
    "/9 [a-z]/ OR env=prod",
    "level=ERROR OR level=INFO",
    r#"i~"ORCHID" OR sentinel"#,
];

fn query_strategy() -> impl Strategy<Value = (Query, Option<Expr>)> {
    (base_query_strategy(), proptest::option::of(0usize..EXPRS.len())).prop_map(|(q, e)| {
        (q, e.and_then(|i| logpipe_query::parse(EXPRS[i]).unwrap_or_else(|err| panic!("{}: {err}", EXPRS[i])).filter))
    })
}

/// An independent reading of each query-language filter, by brute force.
fn model_expr(e: &Expr, r: &Record) -> bool {
    let tok = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
    let msg = r.message.as_bytes();
    match e {
        Expr::And(v) => v.iter().all(|x| model_expr(x, r)),
        Expr::Or(v) => v.iter().any(|x| model_expr(x, r)),
        Expr::Not(x) => !model_expr(x, r),
        Expr::Word { text, case_insensitive } => {
            let t = text.as_bytes();
            (0..=msg.len().saturating_sub(t.len())).any(|i| {
                let end = i + t.len();
                end <= msg.len()
                    && if *case_insensitive { msg[i..end].eq_ignore_ascii_case(t) } else { &msg[i..end] == t }
                    && (i == 0 || !tok(t[0]) || !tok(msg[i - 1]))
                    && (end == msg.len() || !tok(t[t.len() - 1]) || !tok(msg[end]))
            })
        }
        Expr::Substring { text, case_insensitive: false } => r.message.contains(text.as_str()),
        Expr::Substring { text, case_insensitive: true } => r.message.to_lowercase().contains(&text.to_lowercase()),
        Expr::Regex { pattern, case_insensitive } => {
            regex::RegexBuilder::new(pattern).case_insensitive(*case_insensitive).build().unwrap().is_match(&r.message)
        }
        Expr::App(a) => &r.app == a,
        Expr::Tag(t) => r.tags.contains(t),
        Expr::TagKey(k) => r.tags.iter().any(|t| t == k || t.starts_with(&format!("{k}="))),
        Expr::TagRegex { key, pattern } => {
            let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
            r.tags.iter().any(|t| t.strip_prefix(&format!("{key}=")).is_some_and(|v| re.is_match(v)))
        }
        Expr::Time { from, to } => from.is_none_or(|f| r.ts >= f) && to.is_none_or(|t| r.ts < t),
        Expr::TimeLast(_) => unreachable!("not generated"),
    }
}

fn base_query_strategy() -> impl Strategy<Value = Query> {
    (
        proptest::option::of(0usize..3),
        proptest::option::of(0i64..(3 * 86_400)),
        proptest::option::of(0i64..(2 * 86_400)),
        proptest::collection::vec(0usize..TAGS.len(), 0..2),
        proptest::collection::vec(0usize..TAGS.len(), 0..2),
        proptest::collection::vec(0usize..TAGS.len(), 0..2),
        proptest::option::of(prop_oneof![
            Just("alpha"),
            Just("a b"),
            Just("req-00"),
            Just("-9 r"),
            Just("zz"),
            Just("llo"),
            // letter 4-grams with no whole token; a needle that only occurs across two messages
            Just("user"),
            Just("orchid-sentinel"),
            Just("9alpha")
        ]),
        proptest::option::of(prop_oneof![Just("GAMMA"), Just("HÉLLO"), Just("Alpha beta"), Just("PERUS")]),
        proptest::option::of(prop_oneof![
            Just(r"\d+\.\d+"),
            Just("^x"),
            Just("(?i)gamma$"),
            Just("9alpha"),
            Just(r"beta delta-\d"),
            Just("(?i)USER|zeta"),
            Just("sent(inel|ry)")
        ]),
    )
        .prop_map(|(app, from, span, all, any, none, contains, icontains, regex)| {
            let base = 1_735_689_600_000_000_000i64;
            let from = from.map(|s| base + s * 1_000_000_000);
            Query {
                apps: app.map(|a| vec![AppName::parse(["a", "b", "c"][a]).unwrap()]).unwrap_or_default(),
                from,
                to: span.map(|s| from.unwrap_or(base) + s * 1_000_000_000),
                tags_all: all.iter().map(|&i| TAGS[i].to_string()).collect(),
                tags_any: any.iter().map(|&i| TAGS[i].to_string()).collect(),
                tags_none: none.iter().map(|&i| TAGS[i].to_string()).collect(),
                contains: contains.map(|c| vec![c.to_string()]).unwrap_or_default(),
                icontains: icontains.map(|c| vec![c.to_string()]).unwrap_or_default(),
                regex: regex.map(|c| vec![c.to_string()]).unwrap_or_default(),
                expr: None,
                app_scope: Vec::new(),
            }
        })
}

fn model_matches(q: &Query, r: &Record) -> bool {
    let has = |t: &String| r.tags.contains(t);
    (q.apps.is_empty() || q.apps.contains(&r.app))
        && q.from.is_none_or(|f| r.ts >= f)
        && q.to.is_none_or(|t| r.ts < t)
        && q.tags_all.iter().all(has)
        && (q.tags_any.is_empty() || q.tags_any.iter().any(has))
        && !q.tags_none.iter().any(has)
        && q.contains.iter().all(|c| r.message.contains(c.as_str()))
        && q.icontains.iter().all(|c| r.message.to_lowercase().contains(&c.to_lowercase()))
        && q.regex.iter().all(|x| regex::Regex::new(x).unwrap().is_match(&r.message))
}

fn key(r: &Record) -> (i64, String, String, Vec<String>) {
    (r.ts, r.message.clone(), r.app.to_string(), r.tags.clone())
}

fn check(engine: &Engine, pool: &rayon::ThreadPool, data: &[Record], qe: &(Query, Option<Expr>), stage: &str) {
    let (base, e) = qe;
    let mut expected: Vec<&Record> =
        data.iter().filter(|r| model_matches(base, r) && e.as_ref().is_none_or(|e| model_expr(e, r))).collect();
    let mut q = base.clone();
    if let Some(e) = e {
        q.and_expr(e.clone(), 0).unwrap();
    }
    let q = &q;
    expected.sort_by_key(|r| key(r));
    let run = |req: &Request| pool.install(|| engine.query(q, req)).unwrap();
    assert_eq!(run(&Request::Count), Answer::Count(expected.len() as u64), "{stage}: count of {q:?}");

    let step = 3_600_000_000_000i64;
    let mut hist = std::collections::BTreeMap::new();
    for r in &expected {
        *hist.entry(r.ts - r.ts.rem_euclid(step)).or_insert(0u64) += 1;
    }
    assert_eq!(run(&Request::Histogram { step }), Answer::Histogram(hist.into_iter().collect()), "{stage}: histogram");

    // streams: each distinct (app, tag set), most matches first, ties by app and tags
    let mut streams: std::collections::HashMap<(logpipe_model::AppName, Vec<String>), u64> = Default::default();
    for r in &expected {
        let mut tags = r.tags.clone();
        tags.sort();
        *streams.entry((r.app.clone(), tags)).or_default() += 1;
    }
    let total = streams.len();
    let mut want: Vec<_> = streams.into_iter().map(|((a, t), n)| (a, t, n)).collect();
    want.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    want.truncate(3);
    assert_eq!(run(&Request::Streams { limit: 3 }), Answer::Streams { streams: want, total }, "{stage}: streams");

    // count by: the value of `level=` (or the bare tag `canary`, whose value is empty), None without
    for key in ["level", "canary"] {
        let value = |r: &Record| {
            r.tags.iter().find_map(|t| {
                if t == key {
                    Some(String::new())
                } else {
                    t.strip_prefix(&format!("{key}=")).map(str::to_owned)
                }
            })
        };
        let mut by: std::collections::HashMap<Option<String>, u64> = Default::default();
        // and per value, buckets of a step that splits the data into a few dozen
        let step = 20_000_000_000i64;
        let mut hist_by: std::collections::HashMap<Option<String>, std::collections::BTreeMap<i64, u64>> =
            Default::default();
        for r in &expected {
            *by.entry(value(r)).or_default() += 1;
            *hist_by.entry(value(r)).or_default().entry(r.ts - r.ts.rem_euclid(step)).or_default() += 1;
        }
        let mut want: Vec<(Option<String>, u64)> = by.into_iter().collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total = want.len();
        let series: Vec<logpipe_storage::Series> = want
            .iter()
            .take(2)
            .map(|(v, n)| (v.clone(), *n, hist_by[v].iter().map(|(&b, &c)| (b, c)).collect()))
            .collect();
        let mut other = std::collections::BTreeMap::new();
        for (v, _) in want.iter().skip(2) {
            for (&b, &c) in &hist_by[v] {
                *other.entry(b).or_insert(0u64) += c;
            }
        }
        want.truncate(2);
        let got = run(&Request::CountBy { key: key.into(), limit: 2 });
        assert_eq!(got, Answer::Values { values: want, total }, "{stage}: count by {key}");
        let got = run(&Request::HistogramBy { step, key: key.into(), limit: 2 });
        let other = other.into_iter().collect();
        assert_eq!(got, Answer::Series { series, other, total }, "{stage}: histogram by {key}");
    }

    for order in [Order::Asc, Order::Desc] {
        let want: Vec<(i64, String, String, Vec<String>)> = match order {
            Order::Asc => expected.iter().map(|r| key(r)).collect(),
            Order::Desc => expected.iter().rev().map(|r| key(r)).collect(),
        };
        // page through everything with a small page size: no record skipped or repeated
        let mut got = Vec::new();
        let mut cursor: Option<Cursor> = None;
        for _ in 0..10_000 {
            let Answer::Logs { records, next } = run(&Request::Logs { limit: 7, order, cursor }) else { panic!() };
            got.extend(records.iter().map(key));
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, want, "{stage}: paging {order:?} through {q:?}");
    }
}

fn small_config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.max_segments_per_partition = 2;
    cfg.merge_fan_in = 3;
    // many small blocks, so pruning, early termination and cursors cross block boundaries
    cfg.block.max_rows = 16;
    cfg.maintenance_interval = std::time::Duration::from_secs(3600);
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn engine_matches_model(batches in proptest::collection::vec(proptest::collection::vec(record_strategy(), 1..60), 1..8),
                            queries in proptest::collection::vec(query_strategy(), 6)) {
        let tmp = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let data: Vec<Record> = batches.iter().flatten().cloned().collect();
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        for (i, b) in batches.iter().enumerate() {
            engine.ingest(b.clone()).unwrap();
            if i % 3 == 1 {
                engine.flush().unwrap();
            }
        }
        for q in &queries { check(&engine, &pool, &data, q, "mixed memtable and segments"); }
        engine.flush().unwrap();
        engine.merge_all().unwrap();
        for q in &queries { check(&engine, &pool, &data, q, "after flush and merge"); }
        engine.close().unwrap();
        drop(engine);
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        for q in &queries { check(&engine, &pool, &data, q, "after reopen"); }
    }
}

/// A query with one message filter of `kind` (`contains`, `icontains` or `regex`).
fn message_query(kind: &str, pattern: &str) -> Query {
    let mut q = Query::default();
    match kind {
        "contains" => q.contains.push(pattern.into()),
        "icontains" => q.icontains.push(pattern.into()),
        _ => q.regex.push(pattern.into()),
    }
    q
}

/// An engine holding one record per message (app `a`, timestamps 0, 1, ...), not yet flushed.
fn engine_with_messages(msgs: &[&str]) -> (tempfile::TempDir, rayon::ThreadPool, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let app = AppName::parse("a").unwrap();
    let recs: Vec<Record> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| Record { app: app.clone(), ts: i as i64, message: m.to_string(), tags: vec![] })
        .collect();
    let engine = Engine::open(small_config(tmp.path())).unwrap();
    engine.ingest(recs).unwrap();
    (tmp, pool, engine)
}

/// Message filters run over a whole column of messages laid end to end; a hit that spans two
/// messages must not count, from the memtable or from blocks.
#[test]
fn matches_never_span_two_messages() {
    let (_tmp, pool, engine) =
        engine_with_messages(&["x delta-9", "alpha y", "delta-9alpha z", "orchid-", "sentinel", "superuser"]);
    let cases: &[(&str, &str, u64)] = &[
        ("contains", "9alpha", 1),
        ("regex", "9alpha", 1),
        ("regex", "9al+pha", 1),
        ("contains", "orchid-sentinel", 0),
        ("regex", "(?i)ORCHID-SENT", 0),
        ("icontains", "ORCHID-SENTINEL", 0),
        ("contains", "user", 1),
        ("regex", "y.?delta", 0),
    ];
    for stage in ["memtable", "segments"] {
        for &(kind, pattern, want) in cases {
            let q = message_query(kind, pattern);
            let got = pool.install(|| engine.query(&q, &Request::Count)).unwrap();
            assert_eq!(got, Answer::Count(want), "{stage}: {kind} {pattern:?}");
        }
        engine.flush().unwrap();
    }
}

/// A column is searched a few dozen rows at a time: matches at and across those seams count
/// exactly once, and hits spanning two messages not at all.
#[test]
fn column_scans_are_exact_across_their_seams() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut cfg = small_config(tmp.path());
    cfg.block.max_rows = 8192;
    let engine = Engine::open(cfg).unwrap();
    let app = AppName::parse("a").unwrap();
    let msg = |i: usize| match i {
        _ if i.is_multiple_of(100) || (250..260).contains(&i) || (510..515).contains(&i) => format!("y{i} 9alpha"),
        _ if i.is_multiple_of(2) => "alpha z".to_string(),
        _ => format!("x{i} 9"),
    };
    let recs: Vec<Record> =
        (0..2000).map(|i| Record { app: app.clone(), ts: i as i64, message: msg(i), tags: vec![] }).collect();
    engine.ingest(recs).unwrap();
    engine.flush().unwrap();
    for (kind, pattern) in [("contains", "9alpha"), ("regex", "9al+pha"), ("regex", r"\d\s?9alpha")] {
        // each pattern read as a regex over one message at a time (for "9alpha", the same as contains)
        let re = regex::Regex::new(pattern).unwrap();
        let expect = (0..2000).filter(|&i| re.is_match(&msg(i))).count() as u64;
        let got = pool.install(|| engine.query(&message_query(kind, pattern), &Request::Count)).unwrap();
        assert_eq!(got, Answer::Count(expect), "{kind} {pattern}");
    }
}

/// Words match whole tokens only, from the memtable and from blocks alike.
#[test]
fn words_respect_token_boundaries() {
    let (_tmp, pool, engine) = engine_with_messages(&["superuser", "a user.", "users", "user-42", "re-user", "x_user"]);
    let cases: &[(&str, u64)] =
        &[("user", 4), ("i\"USER\"", 4), ("\"user-42\"", 1), ("\"-user\"", 1), ("er", 0), ("~\"user\"", 6)];
    for stage in ["memtable", "segments"] {
        for &(text, want) in cases {
            let mut q = Query::default();
            q.and_expr(logpipe_query::parse(text).unwrap().filter.unwrap(), 0).unwrap();
            let got = pool.install(|| engine.query(&q, &Request::Count)).unwrap();
            assert_eq!(got, Answer::Count(want), "{stage}: {text}");
        }
        engine.flush().unwrap();
    }
}

#[test]
fn unflushed_records_survive_a_reopen_without_close() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let app = AppName::parse("a").unwrap();
    let recs: Vec<Record> =
        (0..100).map(|i| Record { app: app.clone(), ts: i, message: format!("m{i}"), tags: vec![] }).collect();
    {
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        engine.ingest(recs[..50].to_vec()).unwrap();
        engine.flush().unwrap();
        engine.ingest(recs[50..].to_vec()).unwrap();
        // simulate a crash: no close, so the second batch exists only in the WAL
        std::mem::forget(engine);
    }
    // the lock of the forgotten engine is still held by this process; a real crash frees it
    let lock = tmp.path().join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    let engine = Engine::open(small_config(tmp.path())).unwrap();
    let got = pool.install(|| engine.query(&Query::default(), &Request::Count)).unwrap();
    assert_eq!(got, Answer::Count(100));
}

fn rec(app: &str, ts: i64, msg: &str) -> Record {
    Record { app: AppName::parse(app).unwrap(), ts, message: msg.into(), tags: vec![] }
}

fn count(engine: &Engine, q: &Query) -> u64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    match pool.install(|| engine.query(q, &Request::Count)).unwrap() {
        Answer::Count(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_a_failed_fsync_writes_stop_and_reads_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(small_config(tmp.path())).unwrap();
    engine.ingest(vec![rec("a", 1, "before")]).unwrap();
    engine.poison("fsync of wal failed: EIO (injected)");
    let err = engine.ingest(vec![rec("a", 2, "after")]).unwrap_err();
    assert!(err.to_string().contains("writes are stopped"), "{err}");
    assert!(err.to_string().contains("EIO"), "{err}");
    assert_eq!(count(&engine, &Query::default()), 1);
}

#[test]
fn retention_drops_whole_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let day = 86_400_000_000_000i64;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    {
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        engine
            .ingest(vec![
                rec("a", now - 40 * day, "old"),
                rec("a", now - 1000, "new"),
                rec("b", now - 40 * day, "old b"),
            ])
            .unwrap();
        engine.close().unwrap();
    }
    let mut cfg = small_config(tmp.path());
    cfg.retention = Some(Duration::from_secs(30 * 86_400));
    cfg.retention_per_app.insert(AppName::parse("b").unwrap(), Duration::from_secs(100 * 86_400));
    let engine = Engine::open(cfg).unwrap();
    engine.apply_retention().unwrap();
    assert_eq!(count(&engine, &Query::default()), 2);
    assert_eq!(count(&engine, &Query { apps: vec![AppName::parse("b").unwrap()], ..Default::default() }), 1);
    let a_days = std::fs::read_dir(tmp.path().join("partitions/a")).unwrap().count();
    assert_eq!(a_days, 1, "the old day of app a is deleted from disk");
    let cutoff = engine.retention_cutoff(&AppName::parse("a").unwrap()).unwrap();
    assert!((cutoff - (now - 30 * day)).abs() < 60_000_000_000);

    // a partition with records still in memory waits for their flush (which would otherwise
    // write into the directory being removed), then goes whole
    let b_old = || Query { apps: vec![AppName::parse("b").unwrap()], to: Some(now - 39 * day), ..Default::default() };
    drop(engine);
    let mut cfg = small_config(tmp.path());
    cfg.retention_per_app.insert(AppName::parse("b").unwrap(), Duration::from_secs(10 * 86_400));
    let engine = Engine::open(cfg).unwrap();
    engine.ingest(vec![rec("b", now - 40 * day + 1, "late b")]).unwrap();
    engine.apply_retention().unwrap();
    assert_eq!(count(&engine, &b_old()), 2, "not dropped while a record of it is in memory");
    engine.flush().unwrap();
    engine.apply_retention().unwrap();
    assert_eq!(count(&engine, &b_old()), 0);
    assert!(!tmp.path().join("partitions/b").exists());
}

#[test]
fn a_corrupt_segment_is_set_aside_and_the_rest_served() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        engine.ingest(vec![rec("a", 1, "in a"), rec("b", 1, "in b")]).unwrap();
        engine.close().unwrap();
    }
    let dir = tmp.path().join("partitions/a/1970-01-01");
    let seg = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0xff; // inside the meta section
    std::fs::write(&seg, bytes).unwrap();
    let engine = Engine::open(small_config(tmp.path())).unwrap();
    assert_eq!(count(&engine, &Query::default()), 1);
    assert!(seg.with_extension("seg.corrupt").exists());
    assert_eq!(engine.metrics().corrupt_files.get(), 1);
}

/// A segment of another format version is not damage: the engine refuses to start and moves
/// nothing.
#[test]
fn a_segment_of_another_format_version_is_refused_not_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(small_config(tmp.path())).unwrap();
        engine.ingest(vec![rec("a", 1, "in a")]).unwrap();
        engine.close().unwrap();
    }
    let dir = tmp.path().join("partitions/a/1970-01-01");
    let seg = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    bytes[n - 12..n - 8].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&seg, bytes).unwrap();
    let err = Engine::open(small_config(tmp.path())).err().expect("refused");
    assert!(err.to_string().contains("format version 1"), "{err}");
    assert!(seg.exists(), "the segment stays where it was");
}

#[test]
fn a_second_engine_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = Engine::open(small_config(tmp.path())).unwrap();
    let err = Engine::open(small_config(tmp.path())).err().expect("second open must fail");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn writes_wait_for_flushes_then_give_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config(tmp.path());
    cfg.max_memtable_bytes = 1;
    cfg.memtable_flush_bytes = usize::MAX;
    cfg.memtable_flush_interval = std::time::Duration::from_secs(3600);
    cfg.flush_wait = std::time::Duration::from_millis(200);
    let engine = Engine::open(cfg).unwrap();
    engine.ingest(vec![rec("a", 1, "fits")]).unwrap();
    let t = std::time::Instant::now();
    let err = engine.ingest(vec![rec("a", 2, "waits, then is refused")]).unwrap_err();
    assert!(t.elapsed() >= std::time::Duration::from_millis(200), "refused without waiting");
    assert!(matches!(err, logpipe_storage::IngestError::FlushBehind(_)), "{err}");
    engine.flush().unwrap();
    engine.ingest(vec![rec("a", 3, "room again")]).unwrap();
    assert_eq!(count(&engine, &Query::default()), 2);
}

#[test]
fn settled_partitions_become_one_cold_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config(tmp.path());
    cfg.settle_after = std::time::Duration::ZERO;
    cfg.max_segments_per_partition = 10;
    let engine = Engine::open(cfg).unwrap();
    engine.ingest((0..50).map(|i| rec("a", i, &format!("first {i}"))).collect()).unwrap();
    engine.flush().unwrap();
    engine.ingest((0..50).map(|i| rec("a", i, &format!("second {i}"))).collect()).unwrap();
    engine.flush().unwrap();
    let segs = |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().count();
    let dir = tmp.path().join("partitions/a/1970-01-01");
    assert_eq!(segs(&dir), 2);
    engine.settle_all().unwrap();
    assert_eq!(segs(&dir), 1);
    let path = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let seg = logpipe_storage::segment::Segment::open(&path).unwrap();
    assert_eq!(seg.meta.level, logpipe_storage::DEFAULT_COLD_LEVEL);
    assert_eq!(count(&engine, &Query::default()), 100);
    // settled is final: nothing more to do
    engine.settle_all().unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path(), path);
}
