//! Loki push: real clients from PyPI (`python-logging-loki`, `loki-logger-handler`) and npm
//! (`winston-loki` with JSON and with protobuf, `pino-loki`) send lines;
//! logpipe's native query must return exactly them. Raw requests cover protobuf + snappy
//! (with and without `Content-Encoding: snappy`), gzip JSON, the app label setting and errors.
//! Needs the clients installed (`.ci/run`).

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::Value;

fn client(base: &str, which: &str, app: &str, count: usize) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/loki_push.py");
    let out = Command::new("python3").args([script, base, which, app, &count.to_string()]).output().unwrap();
    assert!(out.status.success(), "{which}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ns(r: &Value) -> i64 {
    let t = r["timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_nanos_opt().unwrap()
}

fn tags(r: &Value) -> Vec<&str> {
    r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect()
}

#[test]
fn python_clients_push_exactly_what_they_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);

    // python-logging-loki: one JSON push per line, stamped with the time it is sent
    let sent = client(&s.base, "python-logging-loki", "loki-a", 30);
    let got = stored(&s.base, "loki-a");
    assert_eq!(got.len(), 30);
    let (start, end) = (sent["start"].as_i64().unwrap(), sent["end"].as_i64().unwrap());
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["message"], format!("loki says hello {i}"));
        assert_eq!(tags(r), ["app=loki-a", "env=test", "logger=loki-test", "severity=warning"]);
        // the client's clock, which it reads as a float: allow its rounding
        assert!(ns(r) >= start - 1_000 && ns(r) <= end + 1_000, "record {i} at {} outside [{start}, {end}]", ns(r));
    }

    // loki-logger-handler: gzip JSON with structured metadata, the record's own time
    client(&s.base, "loki-logger-handler", "loki-b", 30);
    let got = stored(&s.base, "loki-b");
    assert_eq!(got.len(), 30);
    for (i, r) in got.iter().enumerate() {
        let line: Value = serde_json::from_str(r["message"].as_str().unwrap()).unwrap();
        assert_eq!(
            (line["message"].as_str(), line["level"].as_str()),
            (Some(&*format!("loki says hello {i}")), Some("WARNING"))
        );
        assert_eq!(tags(r), ["env=test", "service_name=loki-b", "trace=t1"]);
        // what the handler computes: int((base + i / 1000) * 1e9), in floating point
        let want = ((1_740_830_400.0f64 + i as f64 / 1000.0) * 1e9) as i64;
        assert_eq!(ns(r), want, "record {i}");
    }
}

#[test]
fn node_shippers_push_exactly_what_they_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // winston-loki: JSON, and protobuf + snappy; pino-loki: JSON, from a worker thread
    for which in ["winston-json", "winston-proto", "pino"] {
        let app = format!("node-{which}");
        let sent = node("loki_push.mjs", &[&s.base, which, &app, "30"]);
        let (start, end) = (sent["start"].as_i64().unwrap() * 1_000_000, sent["end"].as_i64().unwrap() * 1_000_000);
        let got = stored(&s.base, &app);
        assert_eq!(got.len(), 30, "{which}");
        // lines logged in one millisecond are stored in message order, not in logging order
        let mut seen = Vec::new();
        for r in &got {
            let msg = r["message"].as_str().unwrap();
            let text = if which == "pino" {
                // pino sends its JSON line; the level becomes a label
                let line: Value = serde_json::from_str(msg).unwrap();
                assert_eq!(line["level"].as_i64(), Some(40));
                let t = tags(r);
                assert!(t.contains(&"level=warning") && t.contains(&"env=test"), "{t:?}");
                line["msg"].as_str().unwrap().to_string()
            } else {
                // winston-loki appends the remaining metadata as JSON
                assert_eq!(tags(r), [&*format!("app={app}"), "env=test", "level=warn"], "{which}");
                msg.strip_suffix(r#" {"level":"warn"}"#).unwrap_or_else(|| panic!("{which}: {msg}")).to_string()
            };
            let i: usize = text.strip_prefix("loki says hello ").unwrap().parse().unwrap();
            seen.push(i);
            assert!(ns(r) >= start && ns(r) <= end, "{which} record {i}: {} outside [{start}, {end}]", ns(r));
        }
        seen.sort();
        assert_eq!(seen, (0..30).collect::<Vec<_>>(), "{which}: every line once");
    }
}

/// A snappy-compressed `logproto.PushRequest` with one stream of `lines`, built by hand from
/// the field numbers of push.proto.
fn push_request(labels: &str, lines: &[(i64, &str)]) -> Vec<u8> {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }
    let mut stream = Vec::new();
    field(1, labels.as_bytes(), &mut stream);
    for (ts, line) in lines {
        let mut t = Vec::new();
        varint(8, &mut t); // seconds, varint
        varint((ts / 1_000_000_000) as u64, &mut t);
        varint(16, &mut t); // nanos, varint
        varint((ts % 1_000_000_000) as u64, &mut t);
        let mut entry = Vec::new();
        field(1, &t, &mut entry);
        field(2, line.as_bytes(), &mut entry);
        field(2, &entry, &mut stream);
    }
    let mut req = Vec::new();
    field(1, &stream, &mut req);
    snap::raw::Encoder::new().compress_vec(&req).unwrap()
}

#[test]
fn raw_pushes_protobuf_snappy_gzip_json_and_the_app_label() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--loki-app-label", "team", "--loki-app-label", "job"]);
    let proto = [("content-type", "application/x-protobuf")];
    let body = push_request(
        r#"{job="varlogs", team="Pay", filename="/var/log/x.log"}"#,
        &[(1_740_830_400_000_000_001, "one")],
    );
    assert_eq!(post(&s.base, "/loki/api/v1/push", &body, &proto), (204, String::new()));
    let body = push_request(r#"{job="varlogs"}"#, &[(1_740_830_400_000_000_002, "two")]);
    let with_header = [("content-type", "application/x-protobuf"), ("content-encoding", "snappy")];
    assert_eq!(post(&s.base, "/loki/api/v1/push", &body, &with_header).0, 204);
    let pay = stored(&s.base, "pay");
    assert_eq!(pay.len(), 1);
    assert_eq!((pay[0]["message"].as_str(), ns(&pay[0])), (Some("one"), 1_740_830_400_000_000_001));
    assert_eq!(tags(&pay[0]), ["filename=/var/log/x.log", "job=varlogs", "team=Pay"]);
    assert_eq!(stored(&s.base, "varlogs")[0]["message"], "two", "the next label when the first is absent");

    let json =
        r#"{"streams":[{"stream":{"team":"web"},"values":[["1740830400000000003","three",{"trace_id":"abc"}]]}]}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    let gzip = [("content-type", "application/json"), ("content-encoding", "gzip")];
    assert_eq!(post(&s.base, "/loki/api/v1/push", &gz.finish().unwrap(), &gzip).0, 204);
    assert_eq!(tags(&stored(&s.base, "web")[0]), ["team=web", "trace_id=abc"]);

    // a bad entry fails the push whole
    let bad = r#"{"streams":[{"stream":{"team":"web"},"values":[["1","fine"],["soon","bad"]]}]}"#;
    let (status, err) = post(&s.base, "/loki/api/v1/push", bad.as_bytes(), &[("content-type", "application/json")]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(count(&s.base, "app=web"), 1);
    assert_eq!(post(&s.base, "/loki/api/v1/push", b"not snappy", &proto).0, 400);
}
