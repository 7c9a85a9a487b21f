//! Loki push: real clients from PyPI (`python-logging-loki`, `loki-logger-handler`) send lines;
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
