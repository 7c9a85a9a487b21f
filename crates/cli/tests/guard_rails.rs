//! Queries that run too long are stopped: by the server's timeout (504, with the partial cost)
//! and when the client goes away. Both are shown by the server's CPU going quiet.
//!
//! The CPU bounds are far from what a loaded machine could reach by chance: a query still
//! running burns about a core (1 s of CPU a second), a stopped one nothing, and the test
//! calls the server quiet below half a core.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A regex whose automaton does not fit the lazy DFA's cache (a Unicode letter, then 120 of
/// anything, then six digits): the regex engine falls back to its slow path, about 1 MB/s
/// here, so counting 4 MB takes seconds.
const SLOW: &str = r"\pL.{120}\d{6}";

/// A server on `dir` with `flags`, holding the records in segments (where a regex runs over
/// whole message columns, and this one is slow).
fn loaded(dir: &std::path::Path, flags: &[&str]) -> Server {
    let s = Server::start(dir, &[]);
    load(&s.base);
    assert!(s.stop().success());
    Server::start(dir, flags)
}

fn load(base: &str) {
    // 20,000 records of about 190 bytes of words and small numbers: about 4 MB of the text
    // that makes this regex slowest
    const WORDS: &[&str] = &["user", "alice", "logged", "in", "from", "host", "web", "port", "after", "error", "reset"];
    let lines: Vec<serde_json::Value> = (0..20_000u64)
        .map(|i| {
            let words: Vec<String> = (0..30u64)
                .map(|j| {
                    let w = WORDS[((i * 7 + j * 13) % WORDS.len() as u64) as usize];
                    if (i + j) % 3 == 0 {
                        format!("{w}{}", (i * j) % 1000)
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            json!({"app": "slow", "timestamp": 1_735_689_600_000_000_000u64 + i, "message": words.join(" ")})
        })
        .collect();
    assert_eq!(ingest(base, &ndjson(&lines)).0, 200);
}

/// The server's CPU time over `window`, after `settle` for in-flight work to notice.
fn cpu_over(s: &Server, settle: Duration, window: Duration) -> Duration {
    std::thread::sleep(settle);
    let before = s.cpu_time();
    std::thread::sleep(window);
    s.cpu_time() - before
}

#[test]
fn a_query_past_its_timeout_gets_504_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = loaded(dir.path(), &["--query-timeout", "1s"]);
    let path = format!("/api/v1/count?regex={}", q(SLOW));
    let cpu0 = s.cpu_time();
    let t0 = Instant::now();
    let (status, body, _) = get(&s.base, &path);
    let took = t0.elapsed();
    assert_eq!(status, 504, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "query_timeout", "{body}");
    assert!(v["error"]["cost"]["memtable_records_scanned"].as_u64().is_some(), "partial cost: {body}");
    // the whole query takes several seconds of CPU; the answer comes at the timeout, or soon
    // after it on a loaded machine
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let busy = s.cpu_time() - cpu0;
    assert!(busy >= Duration::from_millis(100), "the query should have been working: {busy:?}");
    let after = cpu_over(&s, Duration::from_millis(300), Duration::from_secs(1));
    assert!(after < Duration::from_millis(500), "the query kept running after its 504: {after:?} of CPU in 1 s");
    // the server still answers
    assert_eq!(count(&s.base, "app=slow"), 20_000);
}

#[test]
fn a_client_that_goes_away_stops_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = loaded(dir.path(), &[]);
    let url = format!("{}/api/v1/count?regex={}", s.base, q(SLOW));
    let cpu0 = s.cpu_time();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(700)).build();
    assert!(agent.get(&url).call().is_err(), "the client gives up first");
    drop(agent);
    let busy = s.cpu_time() - cpu0;
    assert!(busy >= Duration::from_millis(100), "the query should have been working: {busy:?}");
    let after = cpu_over(&s, Duration::from_millis(300), Duration::from_secs(1));
    assert!(after < Duration::from_millis(500), "the query kept running without its client: {after:?} of CPU in 1 s");
    assert_eq!(count(&s.base, "app=slow"), 20_000);
}

/// Queries that need more than 1 MiB of results in progress fail with 422; the others answer.
fn check_memory_budget(base: &str, stage: &str) {
    for over in ["* | count by (req) | limit 10", "* | histogram 1s", "* | histogram 1s by (level)", "* | limit 20000"]
    {
        let (status, body, _) = get(base, &format!("/api/v1/query?q={}", q(over)));
        assert_eq!(status, 422, "{stage}: {over}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "query_memory_exceeded", "{body}");
        assert!(v["error"]["message"].as_str().unwrap().contains("1048576 bytes"), "{body}");
    }
    // within the budget: answered, with the most it held in the cost
    let (status, body, cost) =
        get_header(base, &format!("/api/v1/query?q={}", q("* | count by (level)")), "logpipe-cost");
    assert_eq!(status, 200, "{stage}: {body}");
    assert!(body.contains(r#""distinct":3"#), "{body}");
    let peak: u64 = cost.unwrap().split(' ').find_map(|f| f.strip_prefix("peak_memory=")?.parse().ok()).unwrap();
    assert!(peak > 0 && peak < 1 << 20, "{peak}");
    let (status, body, _) = get(base, &format!("/api/v1/query?q={}", q("* | limit 1000")));
    assert_eq!(status, 200, "{stage}: {body}");
    assert_eq!(body.lines().count(), 1000);
    let (status, body, _) = get(base, &format!("/api/v1/query?q={}", q("* | histogram 1h by (level)")));
    assert_eq!(status, 200, "{stage}: {body}");
}

#[test]
fn a_query_over_its_memory_budget_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB: room for a page of 1,000 of these records or a few distinct values, not for
    // 40,000 distinct values, 40,000 one-second buckets or 20,000 records
    let flags = ["--query-memory-bytes", "1048576", "--max-query-limit", "20000"];
    let s = Server::start(dir.path(), &flags);
    let lines: Vec<serde_json::Value> = (0..40_000u64)
        .map(|i| {
            json!({"app": "mem", "timestamp": 1_735_689_600_000_000_000u64 + i * 1_000_000_000,
                   "message": format!("request {i} {}", "x".repeat(100)),
                   "tags": [format!("req={i}"), format!("level={}", ["INFO", "WARN", "ERROR"][(i % 3) as usize])]})
        })
        .collect();
    assert_eq!(ingest(&s.base, &ndjson(&lines)).0, 200);
    check_memory_budget(&s.base, "memtable");
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &flags);
    check_memory_budget(&s.base, "segments");
}
