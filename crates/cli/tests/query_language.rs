//! `q=` end to end against the real binary: the language gives the same answers as the filter
//! parameters, pipes shape the answer, and mistakes point at a column.

mod common;

use common::*;
use serde_json::json;

const T0: i64 = 1_735_689_600_000_000_000; // 2025-01-01T00:00:00Z

fn sample(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let level = ["INFO", "WARN", "ERROR"][i % 3];
            let mut tags = vec![format!("level={level}"), format!("host=h{}", i % 5)];
            if i % 10 == 0 {
                tags.push("canary".into());
            }
            let app = ["web", "db"][i % 2];
            let word = ["timeout", "timeouts", "ok"][i % 3];
            json!({
                "app": app,
                "timestamp": T0 + i as i64 * 1_000_000_000,
                "message": format!("request {i} {word} after {}ms", i * 7 % 1000),
                "tags": tags,
            })
        })
        .collect()
}

fn qcount(base: &str, query: &str) -> u64 {
    count(base, &format!("q={}", q(query)))
}

#[test]
fn the_language_answers_like_the_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let recs = sample(300);
    assert_eq!(ingest(&s.base, &ndjson(&recs)).0, 200);
    let n = |f: &dyn Fn(usize) -> bool| (0..300).filter(|&i| f(i)).count() as u64;

    // same plan either way, and the two forms AND together
    assert_eq!(qcount(&s.base, "level=ERROR"), count(&s.base, "tag=level%3DERROR"));
    assert_eq!(qcount(&s.base, "level=ERROR app:web"), n(&|i| i % 3 == 2 && i % 2 == 0));
    assert_eq!(count(&s.base, &format!("app=web&q={}", q("level=ERROR"))), n(&|i| i % 3 == 2 && i % 2 == 0));
    // words are whole tokens; substrings are not
    assert_eq!(qcount(&s.base, "timeout"), n(&|i| i % 3 == 0));
    assert_eq!(qcount(&s.base, r#"~"timeout""#), n(&|i| i % 3 != 2));
    assert_eq!(qcount(&s.base, r#"i"TIMEOUT""#), n(&|i| i % 3 == 0));
    assert_eq!(qcount(&s.base, r#""request 12 ""#), 1);
    // OR, NOT, parentheses, tag keys, tag regexes, bare tags, regexes
    assert_eq!(qcount(&s.base, "timeout OR tag:canary"), n(&|i| i % 3 == 0 || i % 10 == 0));
    assert_eq!(qcount(&s.base, "-timeout app:db"), n(&|i| i % 3 != 0 && i % 2 == 1));
    assert_eq!(qcount(&s.base, "NOT (level=INFO OR level=WARN)"), n(&|i| i % 3 == 2));
    assert_eq!(qcount(&s.base, "level!=INFO"), n(&|i| i % 3 != 0));
    assert_eq!(qcount(&s.base, "host=*"), 300);
    assert_eq!(qcount(&s.base, r#"host=~"h[12]""#), n(&|i| i % 5 == 1 || i % 5 == 2));
    assert_eq!(qcount(&s.base, r"/after \d{3}ms/"), n(&|i| i * 7 % 1000 >= 100));
    assert_eq!(qcount(&s.base, "app:(web OR db) ok"), n(&|i| i % 3 == 2));
    assert_eq!(qcount(&s.base, "_time:[2025-01-01T00:00:10Z, 2025-01-01T00:00:20Z)"), 10);
    assert_eq!(qcount(&s.base, "_time:1h"), 0, "the sample is from 2025");

    // pipes on /api/v1/query choose the answer's shape
    let c = get_json(&s.base, &format!("/api/v1/query?q={}", q("level=ERROR | count")));
    assert_eq!(c, json!({"count": 100}));
    let top = get_json(&s.base, &format!("/api/v1/query?q={}", q("app:web | count by (level) | limit 2")));
    assert_eq!(
        top,
        json!({"by": "level", "distinct": 3, "values": [{"value": "ERROR", "count": 50}, {"value": "INFO", "count": 50}]})
    );
    let h = get_json(&s.base, &format!("/api/v1/query?q={}", q("* | histogram 1m")));
    assert_eq!(h["buckets"].as_array().unwrap().len(), 5);
    let (status, body, _) =
        get(&s.base, &format!("/api/v1/query?q={}", q("tag:canary | sort asc | limit 2 | fields _time, host")));
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        vec![
            json!({"_time": "2025-01-01T00:00:00.000000000Z", "host": "h0"}),
            json!({"_time": "2025-01-01T00:00:10.000000000Z", "host": "h0"})
        ]
    );
    // the histogram endpoint takes its step from the pipe
    let h = get_json(&s.base, &format!("/api/v1/histogram?q={}", q("app:web | histogram 2m")));
    assert_eq!(h["buckets"].as_array().unwrap().len(), 3);
    // empty buckets zero-filled on request, over the whole range asked for
    let path = "/api/v1/histogram?step=1m&from=2024-12-31T23:58:00Z&to=2025-01-01T00:07:00Z&fill=zero";
    let h = get_json(&s.base, path);
    let counts: Vec<u64> = h["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [0, 0, 60, 60, 60, 60, 60, 0, 0]);
    assert_eq!(h["buckets"][0]["t"], "2024-12-31T23:58:00.000000000Z");
    assert_eq!(get(&s.base, "/api/v1/histogram?step=1m&fill=zero").0, 400, "zero-filling needs a range");
}

#[test]
fn mistakes_get_a_400_that_points_at_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let cases: &[(&str, &str, Option<u64>)] = &[
        ("/api/v1/count", "level=ERROR (timeout", Some(21)),
        ("/api/v1/logs", "x | sort sideways", Some(10)),
        ("/api/v1/count", "/unclosed", Some(1)),
        ("/api/v1/count", "timeout OR _time:1h", None),
        ("/api/v1/logs", "x | count", None),
        ("/api/v1/count", "x | limit 5", None),
        ("/api/v1/count", "/(/", None),
    ];
    for &(path, query, column) in cases {
        let (status, body, _) = get(&s.base, &format!("{path}?q={}", q(query)));
        assert_eq!(status, 400, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_query", "{query}: {body}");
        if let Some(col) = column {
            assert!(v["error"]["message"].as_str().unwrap().starts_with("q: column"), "{body}");
            assert_eq!(v["error"]["column"], col, "{query}: {body}");
        }
    }
}

#[test]
fn every_answer_carries_its_cost_and_explain_shows_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(ingest(&s.base, &ndjson(&sample(300))).0, 200);
    // from the memtable first
    let (status, _, cost) = get_header(&s.base, "/api/v1/count?q=timeout", "logpipe-cost");
    assert_eq!(status, 200);
    let cost = cost.expect("a cost header");
    assert!(cost.contains("memtable_records_scanned=300"), "{cost}");
    assert!(cost.contains(" ms="), "{cost}");
    // then from segments: a restart flushes everything
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &[]);

    let e = get_json(&s.base, &format!("/api/v1/explain?app=web&q={}", q("level=ERROR (timeout OR ok) | limit 3")));
    let plan = &e["plan"];
    assert_eq!(plan["apps"], json!(["web"]));
    assert_eq!(plan["tags_all"], json!(["level=ERROR"]));
    assert_eq!(plan["expr"], "timeout OR ok");
    assert_eq!(plan["answer"], json!({"kind": "logs", "limit": 3, "order": "desc", "fields": null}));
    assert_eq!(e["result"], json!({"records": 3}));
    let c = &e["cost"];
    assert_eq!(c["partitions"], 2);
    assert_eq!(c["partitions_pruned"], 1, "db is not looked at: {e}");
    assert!(c["blocks_read"].as_u64().unwrap() >= 1, "{e}");
    assert!(c["bytes_read"].as_u64().unwrap() > 0 && c["bytes_decompressed"].as_u64().unwrap() > 0, "{e}");
    assert!(c["rows_scanned"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(c["memtable_records_scanned"], 0);

    // a word no block holds: every block skipped by its bloom filter, nothing read
    let e = get_json(&s.base, &format!("/api/v1/explain?q={}", q("nosuchword | count")));
    let c = &e["cost"];
    assert_eq!(e["result"], json!({"count": 0}));
    assert!(c["blocks"].as_u64().unwrap() >= 2, "{e}");
    assert_eq!(c["blocks_pruned_bloom"], c["blocks"], "{e}");
    assert_eq!(c["blocks_read"], 0);
    assert_eq!(c["bytes_read"], 0);
    // a time range before every record: skipped by time, from the block metadata alone
    let e = get_json(&s.base, &format!("/api/v1/explain?q={}", q("_time:[*, 2024-01-01T00:00:00Z)")));
    assert_eq!(e["cost"]["partitions_pruned"], 2, "{e}");
}
