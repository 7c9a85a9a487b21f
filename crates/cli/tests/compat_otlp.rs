//! OpenTelemetry OTLP/HTTP logs: the Python SDK's protobuf exporter (plain and gzip) and the
//! Node.js SDK's JSON and protobuf exporters send records; logpipe's native query must return exactly them. Raw requests cover OTLP/JSON,
//! partial success and errors. Needs the SDK installed (`.ci/run`).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn client(base: &str, service: &str, count: usize, compression: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/otlp_logs.py");
    let out = Command::new("python3").args([script, base, service, &count.to_string(), compression]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_python_sdk_exports_exactly_what_it_logs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for (service, compression) in [("otel-plain", "none"), ("otel-gzip", "gzip")] {
        assert_eq!(client(&s.base, service, 250, compression)["flushed"], true);
        let got = stored(&s.base, service);
        assert_eq!(got.len(), 250, "{service}");
        let instance =
            got[0]["tags"].as_array().unwrap().iter().find_map(|t| t.as_str()?.strip_prefix("service.instance.id="));
        let instance = instance.expect("the SDK's resource attributes are tags").to_string();
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r["app"], service);
            assert_eq!(r["message"], format!("otel says hello {i}"));
            assert_eq!(r["timestamp"], format!("2025-03-01T12:00:00.{:03}000000Z", i), "record {i}");
            let mut want: Vec<String> = [
                "deployment.environment=test".to_string(),
                "level=WARN".into(),
                format!("order.id={i}"),
                "scope.name=logpipe-test".into(),
                format!("service.instance.id={instance}"),
                format!("service.name={service}"),
                "tags=a".into(),
                "tags=b".into(),
                "telemetry.sdk.language=python".into(),
                "telemetry.sdk.name=opentelemetry".into(),
            ]
            .to_vec();
            let tags: Vec<String> =
                r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
            let version = tags.iter().find(|t| t.starts_with("telemetry.sdk.version=")).expect("sdk version").clone();
            want.push(version);
            want.sort();
            assert_eq!(tags, want, "record {i}");
        }
    }
}

#[test]
fn the_node_sdk_exports_json_and_protobuf_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // @opentelemetry/exporter-logs-otlp-http (OTLP/JSON) and -proto (protobuf)
    for (service, format) in [("node-json", "json"), ("node-proto", "proto")] {
        assert_eq!(node("otlp_logs.mjs", &[&s.base, service, "250", format])["flushed"], true);
        let got = stored(&s.base, service);
        assert_eq!(got.len(), 250, "{service}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r["app"], service);
            assert_eq!(r["message"], format!("otel says hello {i}"));
            assert_eq!(r["timestamp"], format!("2025-03-01T12:00:00.{:03}000000Z", i), "{service} record {i}");
            let want = serde_json::json!([
                "deployment.environment=test",
                "level=WARN",
                format!("order.id={i}"),
                "scope.name=logpipe-test",
                format!("service.name={service}"),
                "tags=a",
                "tags=b",
            ]);
            assert_eq!(r["tags"], want, "{service} record {i}");
        }
    }
}

#[test]
fn otlp_json_partial_success_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--max-message-bytes", "50"]);
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
        "scopeLogs":[{"logRecords":[
          {"timeUnixNano":"1740830400000000000","severityText":"ERROR","body":{"stringValue":"kept"},"traceId":"5b8efff798038103d269b633813fc60c"},
          {"timeUnixNano":"1740830400000000001","body":{"stringValue":"this message is far longer than the fifty bytes allowed here"}}
        ]}]}]}"#;
    let (status, resp) = post(&s.base, "/v1/logs", body.as_bytes(), &[("content-type", "application/json")]);
    assert_eq!(status, 200, "{resp}");
    let resp: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(resp["partialSuccess"]["errorMessage"].as_str().unwrap().contains("over the limit"));
    let got = stored(&s.base, "json-svc");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"], "kept");
    assert_eq!(got[0]["timestamp"], "2025-03-01T12:00:00.000000000Z");
    assert_eq!(
        got[0]["tags"],
        serde_json::json!(["level=ERROR", "service.name=json-svc", "trace_id=5b8efff798038103d269b633813fc60c"])
    );

    // a protobuf body that does not decode: 400, answered as a google.rpc.Status
    let (status, _) = post(&s.base, "/v1/logs", b"\x0a\xff\xff", &[("content-type", "application/x-protobuf")]);
    assert_eq!(status, 400);
    // neither protobuf nor JSON
    let (status, resp) = post(&s.base, "/v1/logs", b"hello", &[("content-type", "text/plain")]);
    assert_eq!(status, 415, "{resp}");
    assert_eq!(count(&s.base, ""), 1, "nothing of the refused requests was stored");
}
