//! Elasticsearch `_bulk`: the official Python clients (`elasticsearch`, `opensearch-py`, with
//! `helpers.bulk`) send documents; logpipe's native query must return exactly them. Raw
//! requests cover the shapes other shippers send. Needs the clients installed (`.ci/run`).

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::Value;

const TOKEN: &str = "es-shipper-token-000000001";

/// Runs tests/clients/elastic_bulk.py; its one line of JSON.
fn client(base: &str, which: &str, index: &str, count: usize, token: Option<&str>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/elastic_bulk.py");
    let mut cmd = Command::new("python3");
    cmd.args([script, base, which, index, &count.to_string()]);
    if let Some(t) = token {
        cmd.arg(t);
    }
    let out = cmd.output().expect("python3");
    assert!(out.status.success(), "{which}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The records the script sends as `client`, as logpipe's native API returns them.
fn expected(client: &str, index: &str, count: usize) -> Vec<Value> {
    let mut v: Vec<Value> = (0..count)
        .map(|i| {
            let mut tags = vec![
                format!("http.path=/item/{i}"),
                format!("http.status={}", 200 + i % 5),
                format!("level={}", ["INFO", "WARN", "ERROR"][i % 3]),
            ];
            tags.sort();
            serde_json::json!({
                "app": index,
                "message": format!("{client} says hello {i}"),
                "tags": tags,
                "timestamp": format!("2025-03-01T12:00:{:02}.{:06}000Z", i % 60, i),
            })
        })
        .collect();
    v.sort_by_key(|r| r["timestamp"].as_str().unwrap().to_string());
    v
}

#[test]
fn official_clients_bulk_index_exactly_what_they_send() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for (which, index) in [("elasticsearch", "es-web"), ("opensearch", "os-web")] {
        let got = client(&s.base, which, index, 300, None);
        assert_eq!(got["ok"], 300, "{got}");
        assert_eq!(got["errors"], serde_json::json!([]));
        assert_eq!(stored(&s.base, index), expected(which, index, 300), "{which}");
    }
}

#[test]
fn tokens_work_as_api_keys_and_basic_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("logpipe.toml");
    std::fs::write(
        &cfg,
        format!("[[tokens]]\nname = \"es\"\ntoken = \"{TOKEN}\"\nscopes = [\"read\", \"write\"]\napps = [\"es-*\", \"os-*\"]\n"),
    )
    .unwrap();
    let s = Server::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(client(&s.base, "elasticsearch", "es-auth", 50, Some(TOKEN))["ok"], 50);
    assert_eq!(client(&s.base, "opensearch", "os-auth", 50, Some(TOKEN))["ok"], 50);
    assert_eq!(stored_as(&s.base, "es-auth", Some(TOKEN)).len(), 50);
    assert_eq!(stored_as(&s.base, "os-auth", Some(TOKEN)).len(), 50);
    // an index outside the token's apps: the whole request is refused, in Elasticsearch's shape
    let body = b"{\"index\":{\"_index\":\"db\"}}\n{\"message\":\"no\"}\n";
    let (status, err) = post(&s.base, "/_bulk", body, &[("authorization", &format!("Bearer {TOKEN}"))]);
    assert_eq!(status, 403, "{err}");
    let err: Value = serde_json::from_str(&err).unwrap();
    assert_eq!((err["status"].as_u64(), err["error"]["type"].as_str()), (Some(403), Some("forbidden_app")));
    assert_eq!(post(&s.base, "/_bulk", body, &[]).0, 401);
}

#[test]
fn raw_bulk_requests_in_the_shapes_shippers_send() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // the info endpoint and the header official clients check
    let (status, body, _) = get(&s.base, "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"number\""), "{body}");
    assert_eq!(head(&s.base, "/", "x-elastic-product"), (200, Some("Elasticsearch".to_string())));

    // the index in the path, no trailing newline, blank lines, the compatible-with media type
    let body = "{\"create\":{}}\n\n{\"@timestamp\":1740830400000,\"log\":\"from path\",\"k\":{\"a\":[1,2]}}\n\n{\"index\":{\"_index\":\"other\"}}\n{\"_msg\":\"explicit index\"}";
    let (status, resp) = post(
        &s.base,
        "/path-app/_bulk",
        body.as_bytes(),
        &[("content-type", "application/vnd.elasticsearch+x-ndjson; compatible-with=9")],
    );
    assert_eq!(status, 200, "{resp}");
    let resp: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp["errors"], false);
    assert_eq!(resp["items"][0]["create"]["status"], 201);
    assert_eq!(resp["items"][1]["index"]["_index"], "other");
    let rec = &stored(&s.base, "path-app")[0];
    assert_eq!(rec["message"], "from path");
    assert_eq!(rec["timestamp"], "2025-03-01T12:00:00.000000000Z");
    assert_eq!(rec["tags"], serde_json::json!(["k.a=1", "k.a=2"]));
    assert_eq!(count(&s.base, "app=other"), 1);

    // gzip, PUT, and items that fail on their own while the rest are stored
    let body = "{\"index\":{\"_index\":\"mixed\"}}\n{\"message\":\"good\"}\n{\"index\":{\"_index\":\"mixed\"}}\n{\"message\":\"bad\",\"@timestamp\":\"never\"}\n{\"delete\":{\"_index\":\"mixed\",\"_id\":\"1\"}}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let (status, resp) = put(&s.base, "/_bulk", &gz.finish().unwrap(), &[("content-encoding", "gzip")]);
    assert_eq!(status, 200, "{resp}");
    let resp: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp["errors"], true);
    let statuses: Vec<u64> = resp["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_object().unwrap().values().next().unwrap()["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 400]);
    assert_eq!(count(&s.base, "app=mixed"), 1);

    // a malformed action line fails the whole request and stores nothing
    let (status, resp) =
        post(&s.base, "/_bulk", b"{\"index\":{\"_index\":\"x\"}}\n{\"message\":\"m\"}\n{oops\n{}\n", &[]);
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains("line 3"), "{resp}");
    assert_eq!(count(&s.base, "app=x"), 0);
}
