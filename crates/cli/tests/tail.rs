//! Live tail: `GET /api/v1/tail` streams acknowledged records that match, a slow reader skips
//! (and is told how many) without holding ingest back, and the number of tails is capped.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A server-sent-events reader over one open tail.
struct Tail {
    lines: BufReader<Box<dyn Read + Send + Sync>>,
}

/// What a tail said: a record, or a notice of skipped records.
#[derive(Debug)]
enum Ev {
    Record(Value),
    Skipped { records: u64, unexamined: u64 },
}

impl Tail {
    /// Opens a tail; returns once the server has answered, i.e. once it is subscribed.
    fn open(base: &str, query: &str) -> Tail {
        let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
        let resp = agent.get(&format!("{base}/api/v1/tail?{query}")).call().expect("tail opens");
        assert_eq!(resp.content_type(), "text/event-stream");
        Tail { lines: BufReader::new(resp.into_reader()) }
    }

    /// The next event, or `None` when the server ended the stream.
    fn next(&mut self) -> Option<Ev> {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).expect("read the stream") == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            } else if line.is_empty() && !data.is_empty() {
                let v: Value = serde_json::from_str(&data).unwrap();
                return Some(match event.as_str() {
                    "skipped" => Ev::Skipped {
                        records: v["records"].as_u64().unwrap(),
                        unexamined: v["unexamined"].as_u64().unwrap(),
                    },
                    "" => Ev::Record(v),
                    other => panic!("unexpected event {other:?}"),
                });
            }
            // comments (keep-alives) and blank lines between events are skipped
        }
    }

    fn record(&mut self) -> Value {
        match self.next() {
            Some(Ev::Record(v)) => v,
            other => panic!("expected a record, got {other:?}"),
        }
    }
}

fn rec(app: &str, msg: &str, tags: &[&str]) -> Value {
    json!({"app": app, "message": msg, "tags": tags})
}

#[test]
fn tail_streams_matching_records_in_acknowledgement_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // written before the tail opens: never streamed
    assert_eq!(ingest(&s.base, &ndjson(&[rec("web", "old timeout", &["level=ERROR"])])).0, 200);
    let mut t = Tail::open(&s.base, &format!("q={}", q("app:web level=ERROR timeout")));
    let mut all = Tail::open(&s.base, &format!("q={}", q("timeout | fields app, message | limit 3")));
    for (i, batch) in [
        vec![rec("web", "timeout 1", &["level=ERROR"]), rec("web", "timeout 2", &["level=INFO"])],
        vec![rec("db", "timeout 3", &["level=ERROR"]), rec("web", "no match", &["level=ERROR"])],
        vec![rec("web", "read timeout 4", &["level=ERROR", "canary"])],
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(ingest(&s.base, &ndjson(batch)).0, 200, "batch {i}");
    }
    let got: Vec<String> = (0..2).map(|_| t.record()["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, ["timeout 1", "read timeout 4"]);
    // `| fields` shapes the records and `| limit 3` ends the stream after three
    let shaped: Vec<Value> = (0..3).map(|_| all.record()).collect();
    assert_eq!(
        shaped,
        [
            json!({"app": "web", "message": "timeout 1"}),
            json!({"app": "web", "message": "timeout 2"}),
            json!({"app": "db", "message": "timeout 3"})
        ]
    );
    assert!(all.next().is_none(), "the stream ends after the limit");
    // a record acknowledged later still arrives on the open tail, with the full record shape
    assert_eq!(ingest(&s.base, &ndjson(&[rec("web", "timeout 5", &["level=ERROR"])])).0, 200);
    let r = t.record();
    assert_eq!(r["message"], "timeout 5");
    assert_eq!(r["app"], "web");
    assert_eq!(r["tags"], json!(["level=ERROR"]));
    assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));

    // pipes that do not fit a stream, and bad filters, are refused before it opens
    for bad in ["x | count", "x | histogram 5m", "x | sort asc", "level=(", "/(/"] {
        let (status, body, _) = get(&s.base, &format!("/api/v1/tail?q={}", q(bad)));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    drop(t);
    assert!(s.stop().success(), "stops with a tail open a moment ago");
}

#[test]
fn a_slow_reader_skips_and_is_told_how_many_while_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--tail-buffer-bytes", "262144"]);
    let mut t = Tail::open(&s.base, "app=flood");
    // 20 batches of 1,000 records of 2 KiB: 40 MB, far more than the tail's buffer and the
    // socket buffers between it and this reader, which reads nothing until all are acknowledged
    let filler = "x".repeat(2048);
    let total = 20_000u64;
    for b in 0..20 {
        let batch: Vec<Value> = (0..1000).map(|i| rec("flood", &format!("{} {filler}", b * 1000 + i), &[])).collect();
        let (status, body) = ingest(&s.base, &ndjson(&batch));
        assert_eq!(status, 200, "ingest is never held back by a tail: {body}");
    }
    assert_eq!(ingest(&s.base, &ndjson(&[rec("flood", "the end", &[])])).0, 200);

    let (mut received, mut skipped, mut unexamined, mut notices) = (0u64, 0u64, 0u64, 0);
    let mut last_seen: Option<u64> = None;
    loop {
        match t.next().expect("the stream stays open") {
            Ev::Record(r) => {
                let msg = r["message"].as_str().unwrap();
                if msg == "the end" {
                    break;
                }
                // records come in acknowledgement order, never repeated
                let n: u64 = msg.split(' ').next().unwrap().parse().unwrap();
                assert!(last_seen.is_none_or(|l| n > l), "{n} after {last_seen:?}");
                last_seen = Some(n);
                received += 1;
            }
            Ev::Skipped { records, unexamined: u } => {
                assert!(records + u > 0);
                skipped += records;
                unexamined += u;
                notices += 1;
            }
        }
    }
    eprintln!("received {received} skipped {skipped} unexamined {unexamined} notices {notices}");
    assert!(notices > 0 && received < total, "a reader this slow must skip: got {received} of {total}");
    if unexamined == 0 {
        assert_eq!(received + skipped, total, "every matching record is delivered or counted as skipped");
    } else {
        assert!(received + skipped + unexamined >= total);
    }
    let metrics = get(&s.base, "/metrics").1;
    let line = metrics.lines().find(|l| l.starts_with("logpipe_tail_skipped_records_total ")).unwrap();
    assert_eq!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap(), skipped + unexamined);
    // the store has every record the tail skipped
    assert_eq!(count(&s.base, "app=flood"), total + 1);
}

#[test]
fn tails_past_the_limit_are_refused_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--max-tails", "2"]);
    let a = Tail::open(&s.base, "app=web");
    let _b = Tail::open(&s.base, "app=web");
    let (status, body, retry) = get_header(&s.base, "/api/v1/tail?app=web", "retry-after");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_tails"), "{body}");
    assert!(retry.is_some());
    assert_eq!(get(&s.base, "/metrics").1.lines().find(|l| l.starts_with("logpipe_tails ")), Some("logpipe_tails 2"));
    // the server notices the closed connection and frees its place
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = get_header(&s.base, "/api/v1/tail?app=web&q=%7C+limit+0", "retry-after");
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed tail's place was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
