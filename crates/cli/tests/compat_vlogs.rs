//! VictoriaLogs JSON lines: `victorialogs-handler` (PyPI) sends records; logpipe's native query
//! must return exactly them. Raw requests cover the field parameters and headers. Needs the
//! handler installed (`.ci/run`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn victorialogs_handler_sends_exactly_what_it_logs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/vlogs_jsonline.py");
    let out = Command::new("python3").args([script, &s.base, "vl-app", "120"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = stored(&s.base, "vl-app");
    assert_eq!(got.len(), 120);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["message"], format!("vlogs says hello {i}"));
        assert_eq!(r["timestamp"], format!("2025-03-01T12:00:00.{i:03}000000Z"));
        let tags: Vec<&str> = r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        for want in ["level=WARNING", "logger=vlogs-test", "stream=vl-app", &format!("order_id={i}")] {
            assert!(tags.contains(&want), "record {i}: {want} not in {tags:?}");
        }
        assert!(!tags.iter().any(|t| t.starts_with("timestamp=") || t.starts_with("message=")), "{tags:?}");
    }
}

#[test]
fn raw_json_lines_with_field_parameters_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let body = "{\"log\":\"from headers\",\"ts\":\"2025-03-01T12:00:00Z\",\"svc\":\"Pay\",\"drop\":1}\n";
    let headers =
        [("vl-msg-field", "log"), ("vl-time-field", "ts"), ("vl-stream-fields", "svc"), ("vl-ignore-fields", "drop")];
    assert_eq!(post(&s.base, "/insert/jsonline", body.as_bytes(), &headers).0, 200);
    let r = &stored(&s.base, "pay")[0];
    assert_eq!(
        (r["message"].as_str(), r["timestamp"].as_str()),
        (Some("from headers"), Some("2025-03-01T12:00:00.000000000Z"))
    );
    assert_eq!(r["tags"], serde_json::json!(["svc=Pay"]));

    let body = "{\"_msg\":\"defaults\",\"_time\":1740830400123,\"k\":{\"n\":[1,2]}}\n\n";
    assert_eq!(post(&s.base, "/insert/jsonline?app=vl&extra_fields=dc%3Deu", body.as_bytes(), &[]).0, 200);
    let r = &stored(&s.base, "vl")[0];
    assert_eq!(
        (r["message"].as_str(), r["timestamp"].as_str()),
        (Some("defaults"), Some("2025-03-01T12:00:00.123000000Z"))
    );
    assert_eq!(r["tags"], serde_json::json!(["dc=eu", "k.n=1", "k.n=2"]));

    let (status, err) =
        post(&s.base, "/insert/jsonline?app=vl", b"{\"_msg\":\"ok\"}\n{\"_msg\":\"bad\",\"_time\":\"soon\"}\n", &[]);
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(count(&s.base, "app=vl"), 1, "all or nothing");
}
