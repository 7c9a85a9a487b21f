//! Loki's query API: a real client from npm (`@myunisoft/loki`, a Grafana Loki SDK) pushes and
//! reads back through query_range (streams and matrix), labels, label values and series; raw
//! requests check the response shapes Grafana's Loki data source parses (its health check
//! `vector(1)+vector(1)` included), every LogQL stage and metric function against records
//! whose answer is known, and that a read token sees only its apps.
//! Needs the npm clients installed (`.ci/run`: `npm ci --prefix tests/clients/node`).

mod common;

use common::*;
use serde_json::{json, Value};

fn node_client(base: &str, app: &str) -> Value {
    node("loki_query.mjs", &[base, app])
}

fn loki(base: &str, path: &str) -> Value {
    let (status, body, _) = get(base, path);
    assert_eq!(status, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v
}

fn lines(stream_result: &Value) -> Vec<String> {
    stream_result["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_npm_loki_sdk_pushes_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let got = node_client(&s.base, "shop");

    // {app="shop"} |= "level=error": the ten error lines, in one stream {app, env}
    let streams = got["errors"]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{got}");
    assert_eq!(streams[0]["labels"], json!({"app": "shop", "env": "test"}));
    let values = streams[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 10);
    assert!(values.iter().all(|v| v[1].as_str().unwrap().starts_with("level=error ")));

    // | logfmt | took >= 200ms | line_format "{{.msg}}": requests 20 to 29, their msg only
    let mut slow: Vec<String> = got["slow"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap().to_string()))
        .collect();
    slow.sort();
    assert_eq!(slow, (20..30).map(|i| format!("request {i}")).collect::<Vec<_>>());

    // sum by (level) (count_over_time(... | logfmt [1h])): ten of each level
    let metrics = got["perLevel"]["metrics"].as_array().unwrap();
    let mut per_level: Vec<(String, String)> = metrics
        .iter()
        .map(|m| {
            (
                m["labels"]["level"].as_str().unwrap().to_string(),
                m["values"].as_array().unwrap().last().unwrap()[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    per_level.sort();
    assert_eq!(per_level, [("error".into(), "10".into()), ("info".into(), "10".into()), ("warn".into(), "10".into())]);

    assert_eq!(got["labels"], json!(["app", "env"]));
    assert_eq!(got["levels"], json!(["test"]));
    assert_eq!(got["series"], json!([{"app": "shop", "env": "test"}]));
}

fn db_line(i: i64) -> Value {
    let table = ["users", "orders"][(i % 2) as usize];
    json!({"query": {"table": table, "ms": i * 100}, "ok": i != 3})
}

/// Records with known answers: app `web` (40, tags level and host) and app `db` (10, JSON
/// lines), one a second from `t0`.
fn load(base: &str, t0: i64) {
    let mut lines = Vec::new();
    for i in 0..40i64 {
        let level = ["info", "error"][(i % 4 == 0) as usize];
        lines.push(json!({
            "app": "web",
            "timestamp": t0 + i * 1_000_000_000,
            "message": format!("GET /api/{i} status={} bytes={}", if i % 4 == 0 { 500 } else { 200 }, i),
            "tags": [format!("level={level}"), format!("host=h{}", i % 2), "canary"],
        }));
    }
    for i in 0..10i64 {
        lines.push(json!({
            "app": "db",
            "timestamp": t0 + i * 1_000_000_000,
            "message": db_line(i).to_string(),
            "tags": ["service.name=pg"],
        }));
    }
    assert_eq!(ingest(base, &ndjson(&lines)).0, 200);
}

#[test]
fn grafana_shapes_logql_stages_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let b = &s.base;
    let t0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    load(b, t0);
    let range = format!("start={t0}&end={}", t0 + 3_600_000_000_000);

    // Grafana's health check: one sample of value 2, no labels
    let v = loki(b, &format!("/loki/api/v1/query?query={}", q("vector(1)+vector(1)")));
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!((r.len(), &r[0]["metric"], &r[0]["value"][1]), (1, &json!({}), &json!("2")));
    assert!(r[0]["value"][0].is_number(), "sample time in seconds, a number");
    let v = loki(b, "/loki/api/v1/status/buildinfo");
    assert!(v["version"].as_str().unwrap().starts_with('3'));
    let v =
        loki(b, &format!("/loki/api/v1/format_query?query={}", q(r#"sum by(level)(rate({app="web"}|="GET"[1m]))"#)));
    assert_eq!(v["data"], r#"sum by (level) (rate({app="web"} |= "GET" [1m]))"#);

    // streams: labels are the app and the tags, `service.name` as `service_name`, a bare
    // tag with an empty value; entries as [ns string, line], newest first by default
    let v = loki(b, &format!("/loki/api/v1/query_range?query={}&{range}&limit=3", q(r#"{app="web", level="error"}"#)));
    assert_eq!(v["data"]["resultType"], "streams");
    let result = v["data"]["result"].as_array().unwrap();
    let all: Vec<&Value> = result.iter().flat_map(|s| s["values"].as_array().unwrap()).collect();
    assert_eq!(all.len(), 3, "limit");
    assert!(result.iter().all(|s| s["stream"]["level"] == "error" && s["stream"]["canary"] == ""));
    let mut ts: Vec<i64> = all.iter().map(|v| v[0].as_str().unwrap().parse().unwrap()).collect();
    ts.sort();
    assert_eq!(ts, [t0 + 28_000_000_000, t0 + 32_000_000_000, t0 + 36_000_000_000], "the newest three");
    let v =
        loki(b, &format!("/loki/api/v1/query_range?query={}&{range}&limit=2&direction=forward", q(r#"{app="web"}"#)));
    assert_eq!(lines(&v).len(), 2);
    assert!(lines(&v).iter().all(|l| l.starts_with("GET /api/0 ") || l.starts_with("GET /api/1 ")), "the oldest two");

    // line filters, regex matchers, != and !~
    let count = |query: &str| -> usize {
        let v = loki(b, &format!("/loki/api/v1/query_range?query={}&{range}&limit=1000", q(query)));
        lines(&v).len()
    };
    assert_eq!(count(r#"{app="web"} |= "status=500""#), 10);
    assert_eq!(count(r#"{app="web"} != "status=500" |~ "/api/[0-9] ""#), 7);
    assert_eq!(count(r#"{app=~"w.b|d.", host!="h1"} !~ "bytes=1[0-9]""#), 20 - 5 + 10);
    assert_eq!(count(r#"{service_name="pg"}"#), 10);
    assert_eq!(count(r#"{app="web", nothere=""}"#), 40, "an absent label equals the empty string");
    // | json: nested keys joined with _, numbers compared as numbers; | logfmt the same
    assert_eq!(count(r#"{app="db"} | json | query_table="users" | query_ms >= 400"#), 3);
    assert_eq!(count(r#"{app="db"} | json | ok="false""#), 1);
    assert_eq!(count(r#"{app="web"} | logfmt | status >= 500 or bytes < 2"#), 11);
    let v = loki(
        b,
        &format!(
            "/loki/api/v1/query_range?query={}&{range}&limit=1",
            q(r#"{app="db"} | json | line_format "{{.query_table}} took {{.query_ms}}""#)
        ),
    );
    assert_eq!(lines(&v), ["orders took 900"]);

    // metric queries: a matrix of [seconds, "value"] per series, points only where there is data
    let matrix = |query: &str, step: &str| -> Vec<Value> {
        let v = loki(
            b,
            &format!("/loki/api/v1/query_range?query={}&start={t0}&end={}&step={step}", q(query), t0 + 40_000_000_000),
        );
        assert_eq!(v["data"]["resultType"], "matrix", "{v}");
        v["data"]["result"].as_array().unwrap().clone()
    };
    // windows (t - 10s, t] at t0, t0+10s, ..., t0+40s: 1, 10, 10, 10, 9 records
    let m = matrix(r#"count_over_time({app="web"}[10s])"#, "10s");
    let per_series: Vec<Vec<String>> = m
        .iter()
        .map(|s| s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().to_string()).collect())
        .collect();
    // one series per distinct label set: (level, host) pairs
    assert_eq!(m.len(), 3, "{m:?}");
    let mut total = [0u64; 5];
    for s in &m {
        for p in s["values"].as_array().unwrap() {
            let k = ((p[0].as_f64().unwrap() * 1e9) as i64 - t0) / 10_000_000_000;
            total[k as usize] += p[1].as_str().unwrap().parse::<u64>().unwrap();
        }
    }
    assert_eq!(total, [1, 10, 10, 10, 9], "{per_series:?}");
    let m = matrix(r#"sum(count_over_time({app="web"}[10s]))"#, "10s");
    let got: Vec<&str> = m[0]["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap()).collect();
    assert_eq!((m.len(), &m[0]["metric"], got), (1, &json!({}), vec!["1", "10", "10", "10", "9"]));
    let m = matrix(r#"sum by (level) (rate({app="web"}[20s]))"#, "20s");
    let at = |m: &[Value], level: &str| -> Vec<String> {
        let s = m.iter().find(|s| s["metric"]["level"] == level).unwrap();
        s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().to_string()).collect()
    };
    // (t0-20s, t0]: 1 error; (t0, t0+20s]: 5 errors (4..20 by 4) and 15 info; (t0+20s, t0+40s]: 4 and 15 ... per 20 s
    assert_eq!(at(&m, "error"), ["0.05", "0.25", "0.2"]);
    assert_eq!(at(&m, "info"), ["0.75", "0.75"]);
    let m = matrix(r#"topk(1, sum by (host) (count_over_time({app="web"} |= "status=500" [1m])))"#, "1m");
    assert_eq!((m.len(), &m[0]["metric"]), (1, &json!({"host": "h0"})), "every status=500 line is on h0");

    // instant: a vector at `time`; (t - 1m, t] at t0 + 40s holds every record
    let instant = |query: &str| -> Vec<Value> {
        let v = loki(b, &format!("/loki/api/v1/query?query={}&time={}", q(query), t0 + 40_000_000_000));
        assert_eq!(v["data"]["resultType"], "vector", "{v}");
        v["data"]["result"].as_array().unwrap().clone()
    };
    let v = instant(r#"count_over_time({app="db"}[1m])"#);
    assert_eq!(v[0]["metric"], json!({"app": "db", "service_name": "pg"}));
    assert_eq!(v[0]["value"][1], "10");
    let want: usize = (0..10).map(|i: i64| db_line(i).to_string().len()).sum();
    assert_eq!(instant(r#"sum(bytes_over_time({app="db"}[1m]))"#)[0]["value"][1], json!(want.to_string()));
    assert_eq!(instant(r#"sum(count_over_time({app="web"}[1m])) / 4 > 5"#)[0]["value"][1], "10");
    assert!(instant(r#"sum(count_over_time({app="web"}[1m])) / 4 > 50"#).is_empty(), "a comparison filters");
    let v = instant(r#"bottomk(1, count by (host) (count_over_time({app="web"}[1m])))"#);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["value"][1], "1", "h1 has one stream, h0 two");

    // metadata
    let v = loki(b, &format!("/loki/api/v1/labels?{range}"));
    assert_eq!(v["data"], json!(["app", "canary", "host", "level", "service_name"]));
    let v = loki(b, &format!("/loki/api/v1/label/app/values?{range}"));
    assert_eq!(v["data"], json!(["db", "web"]));
    let v = loki(b, &format!("/loki/api/v1/label/host/values?{range}&query={}", q(r#"{level="error"}"#)));
    assert_eq!(v["data"], json!(["h0"]));
    let v = loki(b, &format!("/loki/api/v1/series?{range}&match[]={}", q(r#"{app="web", level="error"}"#)));
    assert_eq!(v["data"], json!([{"app": "web", "canary": "", "host": "h0", "level": "error"}]));
    let v = loki(b, &format!("/loki/api/v1/index/stats?{range}&query={}", q(r#"{app="web"}"#)));
    assert_eq!((v["streams"].as_u64(), v["entries"].as_u64()), (Some(3), Some(40)));

    // errors: a clear 400 with the position
    let (status, body, _) = get(b, &format!("/loki/api/v1/query_range?query={}", q(r#"{app="web""#)));
    assert_eq!(status, 400);
    assert!(body.contains("column 11"), "{body}");
    let (status, _, _) = get(
        b,
        &format!("/loki/api/v1/query_range?query={}&{range}&step=0.0001", q(r#"count_over_time({app="web"}[1m])"#)),
    );
    assert_eq!(status, 400, "too many points");
    let far = format!("start=-9223372036854775808&end={t0}");
    let (status, _, _) =
        get(b, &format!("/loki/api/v1/query_range?query={}&{far}", q(r#"count_over_time({app="web"}[1m])"#)));
    assert_eq!(status, 400, "a start before 1970");
}

#[test]
fn a_read_token_sees_only_its_apps_through_the_loki_api() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("logpipe.toml");
    std::fs::write(
        &cfg,
        r#"
[[tokens]]
name = "web-team"
token = "web-reader-000000000000001"
scopes = ["read", "write"]
apps = ["web*"]

[[tokens]]
name = "ops"
token = "ops-token-0000000000000001"
scopes = ["read", "write", "admin"]
apps = ["*"]
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let t0: i64 = 1_767_225_600_000_000_000;
    let (status, _) = ingest_as(
        &s.base,
        &ndjson(&[
            json!({"app": "web", "timestamp": t0, "message": "web line", "tags": ["level=info"]}),
            json!({"app": "secret", "timestamp": t0, "message": "secret line", "tags": ["vault=yes"]}),
        ]),
        Some("ops-token-0000000000000001"),
    );
    assert_eq!(status, 200);
    let range = format!("start={t0}&end={}", t0 + 1_000_000_000);
    let as_web = |path: &str| -> Value {
        let (status, body) = get_as(&s.base, path, Some("web-reader-000000000000001"));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let v = as_web(&format!("/loki/api/v1/query_range?query={}&{range}", q(r#"{app=~".+"}"#)));
    assert_eq!(lines(&v), ["web line"]);
    let v =
        as_web(&format!("/loki/api/v1/query?time={}&query={}", t0 + 1, q(r#"sum(count_over_time({app=~".+"}[1m]))"#)));
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    assert_eq!(as_web(&format!("/loki/api/v1/labels?{range}"))["data"], json!(["app", "level"]));
    assert_eq!(as_web(&format!("/loki/api/v1/label/app/values?{range}"))["data"], json!(["web"]));
    let v = as_web(&format!("/loki/api/v1/series?{range}&match[]={}", q(r#"{vault="yes"}"#)));
    assert_eq!(v["data"], json!([]));
    // no token: 401
    assert_eq!(get(&s.base, &format!("/loki/api/v1/labels?{range}")).0, 401);
}
