//! Far more concurrent ingest than the server admits: refusals are 429 with Retry-After,
//! never 5xx, and queries keep being answered from their own pool.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn overload_sheds_with_429_and_queries_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--ingest-workers", "1", "--ingest-queue", "1", "--wal-queue", "1"]);
    let body: String =
        (0..2000).map(|i| format!("{{\"app\":\"load\",\"message\":\"record {i} {}\"}}\n", "y".repeat(200))).collect();
    let body = Arc::new(body);
    let (ok, shed, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut threads = Vec::new();
    for _ in 0..24 {
        let (base, body, ok, shed, other) = (s.base.clone(), body.clone(), ok.clone(), shed.clone(), other.clone());
        threads.push(std::thread::spawn(move || {
            while Instant::now() < deadline {
                let (status, err, retry_after) = ingest_retry_after(&base, &body);
                match status {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => {
                        assert!(err.contains("\"code\""), "{err}");
                        assert_eq!(retry_after.as_deref(), Some("1"), "a 429 must say when to retry");
                        shed.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => {
                        eprintln!("unexpected {status}: {err}");
                        other.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut query_latencies = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let (status, body, _) = get(&s.base, "/api/v1/count?app=load");
        assert_eq!(status, 200, "query refused under ingest overload: {body}");
        query_latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in threads {
        t.join().unwrap();
    }
    let (ok, shed, other) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    eprintln!("ingest: {ok} accepted, {shed} shed with 429, {other} other; {} queries answered", query_latencies.len());
    assert_eq!(other, 0, "only 200 and 429 are acceptable answers");
    assert!(shed > 0, "24 clients against 2 admission places must be shed");
    assert!(ok > 0, "some ingest must still get through");
    assert!(query_latencies.len() >= 10);
    // everything acknowledged is stored, nothing refused is
    assert_eq!(count(&s.base, "app=load"), ok * 2000);
    assert_eq!(get(&s.base, "/ready").0, 200);
}

#[test]
fn one_app_flooding_is_limited_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("limits.toml");
    // a low limit, so that the debt below takes seconds to repay however slow this machine is
    std::fs::write(&cfg, "[app_limits.noisy]\nrecords_per_second = 100\n").unwrap();
    let s = Server::start(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    let batch = |app: &str, n: usize| {
        ndjson(&(0..n).map(|i| serde_json::json!({"app": app, "message": format!("m {i}")})).collect::<Vec<_>>())
    };
    assert_eq!(ingest(&s.base, &batch("noisy", 400)).0, 200, "a second's worth is there, and debt is allowed once");
    let (status, body, retry) = ingest_retry_after(&s.base, &batch("noisy", 10));
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("app_rate_limited") && body.contains("100 records per second"), "{body}");
    assert!(body.contains("noisy"), "{body}");
    let wait: u64 = retry.unwrap().parse().unwrap();
    assert!((2..=3).contains(&wait), "300 records of debt at 100/s: {wait}");
    // the others are not held back, but a batch touching the limited app is refused whole
    assert_eq!(ingest(&s.base, &batch("quiet", 500)).0, 200);
    let mixed = batch("quiet", 10) + &batch("noisy", 1);
    assert_eq!(ingest(&s.base, &mixed).0, 429);
    assert_eq!(count(&s.base, "app=quiet"), 500);
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(ingest(&s.base, &batch("noisy", 10)).0, 200, "after Retry-After");
    assert_eq!(count(&s.base, "app=noisy"), 410);
}

#[test]
fn over_the_memory_limit_ingest_is_refused_and_queries_go_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Server::start(dir.path(), &[]);
        assert_eq!(ingest(&s.base, "{\"app\":\"m\",\"message\":\"before\"}\n").0, 200);
        let rss = metric(&s.base, "logpipe_resident_memory_bytes").unwrap();
        assert!(rss > 1 << 20, "resident memory is sampled: {rss}");
    }
    // a limit below what the process needs at all: every ingest is over it
    let s = Server::start(dir.path(), &["--max-memory-bytes", "1048576"]);
    let (status, err, retry_after) = ingest_retry_after(&s.base, "{\"app\":\"m\",\"message\":\"refused\"}\n");
    assert_eq!(status, 429, "{err}");
    assert!(err.contains("memory_pressure") && err.contains("--max-memory-bytes"), "{err}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(count(&s.base, "app=m"), 1, "queries are answered; nothing refused was stored");
    drop(s);
    // 0 turns the limit off
    let s = Server::start(dir.path(), &["--max-memory-bytes", "0"]);
    assert_eq!(ingest(&s.base, "{\"app\":\"m\",\"message\":\"after\"}\n").0, 200);
    assert_eq!(count(&s.base, "app=m"), 2);
}

#[test]
fn merge_debt_holds_then_refuses_writes_until_merges_catch_up() {
    // every batch is flushed into a segment of its own; merges start above one segment and
    // writes wait once a partition has more than two, for at most 200 ms: the maintenance
    // thread, idle for a second between looks, falls behind at once
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--memtable-flush-bytes",
            "1",
            "--max-segments-per-partition",
            "1",
            "--stall-segments-per-partition",
            "2",
            "--flush-wait",
            "200ms",
        ],
    );
    let (mut acked, mut refused) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = 0u64;
    while Instant::now() < deadline && (refused < 3 || acked.len() < 30) {
        batch += 1;
        let body = format!("{{\"app\":\"debt\",\"tags\":[\"batch={batch}\"],\"message\":\"batch {batch}\"}}\n");
        let (status, err, retry_after) = ingest_retry_after(&s.base, &body);
        match status {
            200 => acked.push(batch),
            503 => {
                assert!(err.contains("\"merges_behind\""), "{err}");
                assert_eq!(retry_after.as_deref(), Some("1"), "a 503 must say when to retry");
                refused += 1;
            }
            _ => panic!("unexpected {status}: {err}"),
        }
    }
    eprintln!("{} batches acknowledged, {refused} refused for merge debt", acked.len());
    assert!(refused >= 3, "merges a second behind the flushes must hold and refuse writes");
    assert!(acked.len() >= 30, "writes must go on once merges catch up");
    // every acknowledged batch is stored once, no refused one is
    let stored: Vec<u64> = stored(&s.base, "debt")
        .iter()
        .map(|r| r["message"].as_str().unwrap().strip_prefix("batch ").unwrap().parse().unwrap())
        .collect();
    let mut sorted = stored.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, acked);
    assert_eq!(get(&s.base, "/ready").0, 200);
}
