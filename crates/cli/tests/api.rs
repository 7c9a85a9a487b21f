//! The native API end to end against the real binary.

mod common;

use std::io::Write;

use common::*;
use serde_json::json;

const T0: i64 = 1_735_689_600_000_000_000; // 2025-01-01T00:00:00Z

fn sample(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let level = ["INFO", "WARN", "ERROR"][i % 3];
            let app = ["web", "db"][i % 2];
            json!({
                "app": app,
                "timestamp": T0 + (i as i64 / 3) * 1_000_000_000, // groups of three share a timestamp
                "message": format!("request {i} took {}ms from 10.0.{}.{}", i * 7 % 1000, i % 256, i % 100),
                "tags": [format!("level={level}"), format!("host=h{}", i % 5)],
            })
        })
        .collect()
}

#[test]
fn ingest_then_query_every_filter() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let recs = sample(300);
    let (status, body) = ingest(&s.base, &ndjson(&recs));
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!({"accepted": 300}));

    let matches = |f: &dyn Fn(&serde_json::Value) -> bool| recs.iter().filter(|r| f(r)).count() as u64;
    let has = |r: &serde_json::Value, t: &str| r["tags"].as_array().unwrap().iter().any(|x| x == t);
    let msg = |r: &serde_json::Value| r["message"].as_str().unwrap().to_string();
    assert_eq!(count(&s.base, ""), 300);
    assert_eq!(count(&s.base, "app=web"), 150);
    assert_eq!(count(&s.base, "app=web&app=db"), 300);
    assert_eq!(
        count(&s.base, "tag=level%3DERROR&tag=host%3Dh1"),
        matches(&|r| has(r, "level=ERROR") && has(r, "host=h1"))
    );
    assert_eq!(count(&s.base, "any=level%3DERROR&any=level%3DWARN"), 200);
    assert_eq!(count(&s.base, "not=level%3DINFO&app=db"), matches(&|r| !has(r, "level=INFO") && r["app"] == "db"));
    assert_eq!(count(&s.base, "contains=took%207ms"), matches(&|r| msg(r).contains("took 7ms")));
    assert_eq!(count(&s.base, "icontains=REQUEST%2012"), matches(&|r| msg(r).contains("request 12")));
    assert_eq!(count(&s.base, &format!("regex={}", q(r"10\.0\.1\d\."))), matches(&|r| regex_like(&msg(r))));
    let from = "2025-01-01T00:00:10Z";
    let to = "2025-01-01T00:00:20Z";
    assert_eq!(count(&s.base, &format!("from={from}&to={to}")), 30);
    // nanosecond integers work as well as RFC 3339, and any offset
    assert_eq!(count(&s.base, &format!("from={}&to={}", T0 + 10_000_000_000, q("2025-01-01T01:00:20+01:00"))), 30);

    // newest first by default, ties broken by message
    let (status, body, cursor) = get(&s.base, "/api/v1/logs?limit=4");
    assert_eq!(status, 200);
    let got: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0]["timestamp"], "2025-01-01T00:01:39.000000000Z");
    assert!(got[0]["message"].as_str().unwrap() > got[1]["message"].as_str().unwrap());
    assert!(cursor.is_some());
    let (_, body, _) = get(&s.base, "/api/v1/logs?limit=1&order=asc&app=db");
    let first: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        first,
        json!({"app": "db", "timestamp": "2025-01-01T00:00:00.000000000Z",
        "message": "request 1 took 7ms from 10.0.1.1", "tags": ["host=h1", "level=WARN"]})
    );

    // histogram buckets aligned to the epoch, only non-empty ones
    let h = get_json(&s.base, "/api/v1/histogram?step=30s&app=web");
    let buckets = h["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    assert_eq!(buckets[0], json!({"t": "2025-01-01T00:00:00.000000000Z", "count": 45}));
    assert_eq!(buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 150);
}

/// Sends `req` as is and returns what the server answered (it may answer before reading it all).
fn raw_request(base: &str, req: &str) -> String {
    use std::io::Read;
    let mut sock = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let _ = sock.write_all(req.as_bytes());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&out).contains("}}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn regex_like(m: &str) -> bool {
    // 10\.0\.1\d\.
    m.match_indices("10.0.1").any(|(i, _)| {
        let rest = &m.as_bytes()[i + 6..];
        rest.len() >= 2 && rest[0].is_ascii_digit() && rest[1] == b'.'
    })
}

#[test]
fn cursor_pages_never_skip_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let recs = sample(250);
    assert_eq!(ingest(&s.base, &ndjson(&recs)).0, 200);
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/logs?limit=7&order={order}&tag=host%3Dh2");
            if let Some(c) = &cursor {
                path += &format!("&cursor={}", q(c));
            }
            let (status, body, next) = get(&s.base, &path);
            assert_eq!(status, 200, "{body}");
            seen.extend(
                body.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string()),
            );
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(seen.len(), 50, "{order}");
        assert_eq!(unique.len(), 50, "{order}: a record was repeated");
    }
    let (status, body, _) = get(&s.base, "/api/v1/logs?cursor=garbage");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn compressed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let body = ndjson(&sample(10));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(post(&s.base, "/api/v1/logs", &gz, &[("content-encoding", "gzip")]).0, 200);
    let zst = zstd::encode_all(body.as_bytes(), 3).unwrap();
    assert_eq!(post(&s.base, "/api/v1/logs", &zst, &[("content-encoding", "zstd")]).0, 200);
    assert_eq!(count(&s.base, ""), 20);
    let (status, err) = post(&s.base, "/api/v1/logs", b"not gzip at all", &[("content-encoding", "gzip")]);
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("bad_encoding"), "{err}");
    assert_eq!(post(&s.base, "/api/v1/logs", body.as_bytes(), &[("content-encoding", "br")]).0, 415);
    assert_eq!(count(&s.base, ""), 20);
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--max-body-bytes", "100000"]);
    assert_eq!(ingest(&s.base, "{\"app\":\"HDFS\",\"message\":\"kept\",\"timestamp\":1}\n").0, 200);
    let good = "{\"app\":\"web\",\"message\":\"fine\"}\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{good}{{\"app\":\"web\",\"message\":\"x\""), 400, "line 2"),
        (format!("{good}{{\"app\":\"web\",\"message\":42}}"), 400, "line 2"),
        (format!("{good}{{\"app\":\"web\",\"message\":\"x\",\"tags\":[1]}}"), 400, "line 2"),
        (format!("{good}{{\"app\":\"web\",\"message\":\"x\",\"extra\":1}}"), 400, "unknown field"),
        (format!("{good}{{\"app\":\"../x\",\"message\":\"x\"}}"), 400, "invalid app name"),
        (format!("{good}{{\"app\":\"\",\"message\":\"x\"}}"), 400, "empty"),
        (format!("{good}{{\"app\":\"{}\",\"message\":\"x\"}}", "a".repeat(65)), 400, "longer than 64"),
        (format!("{good}{{\"message\":\"no app\"}}"), 400, "missing app"),
        (
            format!("{good}{{\"app\":\"web\",\"message\":\"x\",\"timestamp\":\"2025-02-30T00:00:00Z\"}}"),
            400,
            "timestamp",
        ),
        (format!("{good}{{\"app\":\"web\",\"message\":\"x\",\"timestamp\":\"yesterday\"}}"), 400, "timestamp"),
        (format!("[{good}, {{\"app\":\"web\"}}]"), 400, "index 1"),
        // nesting a parser would recurse into until the stack overflows (found by fuzzing)
        (format!("{good}{{\"app\":{}{}}}", "[".repeat(40_000), "]".repeat(40_000)), 400, "nested deeper"),
        (format!("[{}{}]", "{\"a\":".repeat(10_000), "}".repeat(10_000)), 400, "nested deeper"),
    ];
    for (body, status, needle) in &cases {
        let (got, err) = ingest(&s.base, body);
        assert_eq!(got, *status, "{err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
    }
    // a declared length over the cap is refused before the body is read
    let raw = raw_request(&s.base, "POST /api/v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: 100001\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("over the limit"), "{raw}");
    // so is a chunked body that grows past it
    let chunk = "x".repeat(60_000);
    let req = format!(
        "POST /api/v1/logs HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    let raw = raw_request(&s.base, &req);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    // a gzip bomb is stopped at the decompressed cap
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 5_000_000]).unwrap();
    let (status, err) = post(&s.base, "/api/v1/logs", &gz.finish().unwrap(), &[("content-encoding", "gzip")]);
    assert_eq!(status, 413, "{err}");
    // bad parameters
    assert_eq!(post(&s.base, "/api/v1/logs?ap=web", good.as_bytes(), &[]).0, 400);
    assert_eq!(post(&s.base, "/api/v1/logs?app=..", good.as_bytes(), &[]).0, 400);
    for path in [
        "/api/v1/logs?colour=red",
        "/api/v1/count?from=soon",
        "/api/v1/logs?limit=x",
        "/api/v1/histogram",
        "/api/v1/histogram?step=0s",
        "/api/v1/count?regex=(",
        "/api/v1/logs?limit=1000000",
        "/api/v1/count?app=A%2FB",
    ] {
        let (status, body, _) = get(&s.base, path);
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert_eq!(get(&s.base, "/no/such/thing").0, 404);
    // nothing of the refused batches was stored; the app name was normalised
    assert_eq!(count(&s.base, ""), 1);
    assert_eq!(count(&s.base, "app=hdfs"), 1);
    assert_eq!(count(&s.base, "app=HDFS"), 1);
    // invalid UTF-8 is replaced, not rejected
    let mut raw = b"{\"app\":\"web\",\"message\":\"bad \xff byte\"}\n".to_vec();
    raw.extend_from_slice(b"{\"app\":\"web\",\"message\":\"ok\"}\n");
    assert_eq!(post(&s.base, "/api/v1/logs", &raw, &[]).0, 200);
    assert_eq!(count(&s.base, &format!("contains={}", q("bad \u{fffd} byte"))), 1);
}

#[test]
fn health_ready_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(get(&s.base, "/health").0, 200);
    assert_eq!(get(&s.base, "/ready").0, 200);
    assert_eq!(ingest(&s.base, &ndjson(&sample(6))).0, 200);
    assert_eq!(get(&s.base, "/api/v1/count?app=web").0, 200);
    assert_eq!(get(&s.base, "/api/v1/logs?colour=red").0, 400);
    let (status, text, _) = get(&s.base, "/metrics");
    assert_eq!(status, 200);
    for needle in [
        "logpipe_ingested_records_total{app=\"web\"} 3",
        "logpipe_ingested_bytes_total{app=\"db\"}",
        "logpipe_rejected_requests_total{endpoint=\"logs\",reason=\"bad_parameter\"} 1",
        "logpipe_ingest_queue_depth",
        "logpipe_pool_admitted{pool=\"query\"}",
        "logpipe_wal_fsync_seconds_count",
        "logpipe_query_seconds_count{endpoint=\"count\"} 1",
        "logpipe_segments",
        "logpipe_disk_bytes",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

#[test]
fn sigterm_flushes_and_exits_zero_then_data_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(ingest(&s.base, &ndjson(&sample(100))).0, 200);
    let status = s.stop();
    assert!(status.success(), "exit status {status:?}");
    // the memtable went into segments: no WAL frame is left to replay
    let seg_files =
        walk(&dir.path().join("partitions")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "seg")).count();
    assert!(seg_files >= 2, "expected segments for both apps, found {seg_files}");
    let s = Server::start(dir.path(), &[]);
    assert_eq!(count(&s.base, ""), 100);
    assert_eq!(count(&s.base, "app=db&contains=request%2099"), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn retention_refuses_old_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--retention", "7d", "--retention-app", "audit=1000d"]);
    let (status, err) =
        ingest(&s.base, "{\"app\":\"web\",\"message\":\"old\",\"timestamp\":\"2020-01-01T00:00:00Z\"}\n");
    assert_eq!(status, 400);
    assert!(err.contains("older than the retention"), "{err}");
    assert_eq!(ingest(&s.base, "{\"app\":\"web\",\"message\":\"new\"}\n").0, 200);
    let recent = logpipe_model::format_time(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
            - 100 * 86_400_000_000_000,
    );
    assert_eq!(
        ingest(&s.base, &format!("{{\"app\":\"audit\",\"message\":\"kept longer\",\"timestamp\":\"{recent}\"}}\n")).0,
        200
    );
    assert_eq!(count(&s.base, ""), 2);
}
