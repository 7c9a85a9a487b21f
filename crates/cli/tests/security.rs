//! Access control and TLS: bearer tokens with scopes and app patterns, the refusal to listen
//! beyond loopback without them, and HTTPS.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const WRITER: &str = "writer-token-000000000001";
const READER: &str = "reader-token-000000000001";
const OPS: &str = "ops-token-00000000000000001";

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("logpipe.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[tokens]]
name = "shipper"
token = "{WRITER}"
scopes = ["write"]
apps = ["web-*"]

[[tokens]]
name = "web-team"
token_env = "LOGPIPE_TEST_READER_TOKEN"
scopes = ["read"]
apps = ["web-*"]

[[tokens]]
name = "ops"
token = "{OPS}"
scopes = ["read", "write", "admin"]
apps = ["*"]
"#
        ),
    )
    .unwrap();
    path
}

/// A server in `dir` with the tokens of [`config`] (the reader's secret from the environment).
fn with_tokens(dir: &std::path::Path) -> Server {
    let cfg = config(dir);
    std::env::set_var("LOGPIPE_TEST_READER_TOKEN", READER);
    Server::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()])
}

fn rec(app: &str, msg: &str) -> Value {
    json!({"app": app, "timestamp": "2025-01-01T00:00:00Z", "message": msg, "tags": ["level=ERROR"]})
}

fn json_as(base: &str, path: &str, token: &str) -> Value {
    let (status, body) = get_as(base, path, Some(token));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn tokens_scope_what_each_caller_may_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tokens(dir.path());
    let base = &s.base;

    // no token, or an unknown one: 401 everywhere but health and readiness
    for path in [
        "/api/v1/logs",
        "/api/v1/count",
        "/api/v1/query?q=x",
        "/api/v1/explain",
        "/api/v1/tail",
        "/metrics",
        "/api/v1/cluster",
    ] {
        for token in [None, Some("not-a-token-at-all-0001"), Some("")] {
            let (status, body) = get_as(base, path, token);
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
            assert!(body.contains("unauthorized"), "{body}");
        }
    }
    assert_eq!(ingest_as(base, &ndjson(&[rec("web-1", "x")]), None).0, 401);
    assert_eq!(get_as(base, "/health", None).0, 200);
    assert_eq!(get_as(base, "/ready", None).0, 200);

    // the shipper writes its apps, whole batches only, and reads nothing
    assert_eq!(ingest_as(base, &ndjson(&[rec("web-1", "web one"), rec("web-2", "web two")]), Some(WRITER)).0, 200);
    let (status, body) = ingest_as(base, &ndjson(&[rec("web-1", "mixed"), rec("db", "mixed")]), Some(WRITER));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("forbidden_app") && body.contains("app \\\"db\\\""), "{body}");
    let (status, body) = get_as(base, "/api/v1/count", Some(WRITER));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no read scope"), "{body}");
    assert_eq!(get_as(base, "/metrics", Some(WRITER)).0, 403);

    // ops writes anything
    assert_eq!(ingest_as(base, &ndjson(&[rec("db", "db secret"), rec("web-3", "web three")]), Some(OPS)).0, 200);
    assert_eq!(json_as(base, "/api/v1/count", OPS)["count"], 4, "the refused batch left nothing");

    // the web team reads web-* only, whatever the query asks, through every endpoint
    let (status, body) = ingest_as(base, &ndjson(&[rec("web-1", "x")]), Some(READER));
    assert_eq!(status, 403, "{body}");
    assert_eq!(json_as(base, "/api/v1/count", READER)["count"], 3);
    assert_eq!(json_as(base, "/api/v1/count?app=db", READER)["count"], 0);
    assert_eq!(json_as(base, &format!("/api/v1/count?q={}", q("secret")), READER)["count"], 0);
    let (status, body) = get_as(base, "/api/v1/logs?limit=10", Some(READER));
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 3);
    assert!(!body.contains("db secret"), "{body}");
    let hist = json_as(base, "/api/v1/histogram?step=1h", READER);
    assert_eq!(hist["buckets"][0]["count"], 3);
    let by = json_as(base, &format!("/api/v1/query?q={}", q("* | count by (level)")), READER);
    assert_eq!(by["values"][0]["count"], 3);
    let by = json_as(base, &format!("/api/v1/query?q={}", q("* | histogram 1h by (level)")), READER);
    assert_eq!(by["series"][0]["count"], 3);
    let ex = json_as(base, &format!("/api/v1/explain?q={}", q("app:db OR secret | count")), READER);
    assert_eq!(ex["result"]["count"], 0);
    assert_eq!(ex["plan"]["app_scope"], json!(["web-*"]));
    assert_eq!(get_as(base, "/metrics", Some(READER)).0, 403);
    assert_eq!(get_as(base, "/api/v1/cluster", Some(READER)).0, 403);
    assert_eq!(get_as(base, "/api/v1/cluster", Some(OPS)).0, 200);
    let (status, metrics) = get_as(base, "/metrics", Some(OPS));
    assert_eq!(status, 200);
    assert!(metrics.contains("logpipe_ingested_records_total"));

    // a tail shows the web team new web-* records only
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
    let resp = agent.get(&format!("{base}/api/v1/tail")).set("authorization", &format!("Bearer {READER}")).call();
    let mut lines = BufReader::new(resp.unwrap().into_reader()).lines();
    assert_eq!(ingest_as(base, &ndjson(&[rec("db", "db later"), rec("web-9", "web later")]), Some(OPS)).0, 200);
    let data = lines.find_map(|l| l.unwrap().strip_prefix("data: ").map(str::to_owned)).unwrap();
    assert!(data.contains("web later"), "{data}");
}

#[test]
fn no_tokens_means_loopback_only_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen") && err.contains("--insecure-no-auth"), "{err}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-auth", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("logpipe listening on http://0.0.0.0:"), "{line}");
    let port = line.trim().rsplit(':').next().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&base, "/health").0 != 200 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();

    // a configuration with a weak token is refused at start-up
    let cfg = dir.path().join("weak.toml");
    std::fs::write(&cfg, "[[tokens]]\nname = \"weak\"\ntoken = \"short\"\nscopes = [\"read\"]\napps = [\"*\"]\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("weak"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shorter than 16"), "{err}");
    assert!(!err.contains("short\""), "the secret is not echoed: {err}");
}

#[test]
fn https_with_a_certificate_and_the_cli_trusting_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let s = Server::spawn(
        &dir.path().join("data"),
        &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()],
    );
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let logpipe = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logpipe"))
            .args(args)
            .args(["--server", &s.base, "--ca-cert", cert_path.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // ready once the WAL is replayed: retry the first ingest until it is
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _, err) = logpipe(&["ingest", "--app", "tls"], "over https\n");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "ingest over https never worked: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out, err) = logpipe(&["query", "app:tls"], "");
    assert!(ok, "{err}");
    assert!(out.trim_end().ends_with("tls [] over https"), "{out}");
    // without trusting the certificate the client refuses the server
    let out = Command::new(env!("CARGO_BIN_EXE_logpipe")).args(["query", "--server", &s.base, "*"]).output().unwrap();
    assert!(!out.status.success());
    // plain HTTP to the TLS port gets no HTTP answer
    let plain = s.base.replace("https://", "http://");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    assert!(matches!(agent.get(&format!("{plain}/health")).call(), Err(ureq::Error::Transport(_))));
}

#[test]
fn the_web_ui_is_served_without_a_token_and_its_api_calls_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tokens(dir.path());
    let base = &s.base;
    // a browser gets the page and its files...
    let (status, body, ctype) = get_accepting(base, "/", "text/html,application/xhtml+xml,*/*;q=0.8");
    assert_eq!(status, 200, "{body}");
    assert!(ctype.unwrap().starts_with("text/html"));
    assert!(body.contains("/ui/app.js"), "{body}");
    for (path, kind) in [("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let (status, body, ctype) = get_accepting(base, path, "*/*");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.unwrap().starts_with(kind), "{path}");
    }
    // ...an Elasticsearch client asking for JSON still needs a token and gets the banner
    let (status, _, _) = get_accepting(base, "/", "application/json");
    assert_eq!(status, 401);
    let (status, body) = get_as(base, "/", Some(OPS));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["tagline"], "You Know, for Search");
    // the data behind the page does not open up
    let (status, _) = get_as(base, "/api/v1/logs", None);
    assert_eq!(status, 401);
    let (status, _, _) = get_accepting(base, "/ui/../api/v1/logs", "*/*");
    assert_ne!(status, 200);
}
