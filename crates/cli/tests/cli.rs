//! The client commands against a real server: ingest files and stdin, query, inspect.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn logpipe(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ingest_query_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let file = dir.path().join("app.log");
    std::fs::write(&file, "first plain line\n\nsecond plain line with ERROR\n").unwrap();
    let (ok, _, err) =
        logpipe(&["ingest", "--server", &s.base, "--app", "plain", "--tag", "env=test", file.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(err.contains("accepted 2 records"), "{err}");
    let ndjson: String = (0..25)
        .map(|i| format!("{{\"app\":\"json\",\"timestamp\":\"2025-01-01T00:00:{i:02}Z\",\"message\":\"event {i}\",\"tags\":[\"n={i}\"]}}\n"))
        .collect();
    let (ok, _, err) = logpipe(&["ingest", "--server", &s.base, "--batch", "10"], Some(&ndjson));
    assert!(ok, "{err}");
    assert!(err.contains("accepted 25 records"), "{err}");

    let (ok, out, err) = logpipe(&["query", "--server", &s.base, "--app", "plain", "--contains", "ERROR"], None);
    assert!(ok, "{err}");
    assert!(out.trim_end().ends_with("plain [env=test] second plain line with ERROR"), "{out}");
    let (ok, out, _) = logpipe(&["query", "--server", &s.base, "--count", "--app", "json"], None);
    assert!(ok);
    assert_eq!(out.trim(), "25");
    let (ok, out, err) =
        logpipe(&["query", "--server", &s.base, "--app", "json", "--limit", "2", "--order", "asc", "--json"], None);
    assert!(ok);
    assert_eq!(out.lines().count(), 2);
    assert!(out.contains("\"message\":\"event 0\""), "{out}");
    let cursor = err.trim().strip_prefix("more: --cursor ").expect("a full page prints the next cursor");
    let (ok, out, _) = logpipe(
        &["query", "--server", &s.base, "--app", "json", "--limit", "2", "--order", "asc", "--cursor", cursor],
        None,
    );
    assert!(ok);
    assert!(out.contains("event 2") && out.contains("event 3"), "{out}");
    let (ok, out, _) = logpipe(&["query", "--server", &s.base, "--app", "json", "--histogram", "10s"], None);
    assert!(ok);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2025-01-01T00:00:00.000000000Z  10",
            "2025-01-01T00:00:10.000000000Z  10",
            "2025-01-01T00:00:20.000000000Z  5"
        ]
    );
    let (ok, _, err) = logpipe(&["query", "--server", &s.base, "--regex", "("], None);
    assert!(!ok);
    assert!(err.contains("400"), "{err}");
    // the query language as the positional argument, its pipes choosing what is printed
    let (ok, out, err) = logpipe(&["query", "--server", &s.base, "app:json (n=3 OR n=4) | sort asc"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().next().unwrap().ends_with("json [n=3] event 3"), "{out}");
    let (ok, out, _) = logpipe(&["query", "--server", &s.base, "app:plain | count by (env)"], None);
    assert!(ok);
    assert_eq!(out.trim(), "2  \"test\"");
    // histogram by: a line per bucket and value; values past the limit summed as (other)
    let (ok, out, err) = logpipe(
        &["query", "--server", &s.base, "app:json (n=1 OR n=2 OR n=12) | histogram 10s by (n) | limit 2"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2025-01-01T00:00:00.000000000Z  1  \"1\"",
            "2025-01-01T00:00:10.000000000Z  1  \"12\"",
            "2025-01-01T00:00:00.000000000Z  1  (other)"
        ]
    );
    let (ok, out, _) = logpipe(&["query", "--server", &s.base, "n=7 | fields message"], None);
    assert!(ok);
    assert_eq!(out.trim(), r#"{"message":"event 7"}"#);
    let (ok, _, err) = logpipe(&["query", "--server", &s.base, "n=7 | sort up"], None);
    assert!(!ok);
    assert!(err.contains("column 12"), "{err}");

    assert!(s.stop().success());
    let (ok, out, err) = logpipe(&["inspect", "--data-dir", dir.path().join("data").to_str().unwrap(), "--json"], None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.iter().map(|p| p["records"].as_u64().unwrap()).sum::<u64>(), 27);
    assert!(parts.iter().any(|p| p["app"] == "json" && p["day"] == "2025-01-01" && p["records"] == 25));
}

#[test]
fn tail_prints_new_records_until_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["tail", "--server", &s.base, "app:web level=ERROR | limit 2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&s.base, "logpipe_tails") != Some(1) {
        assert!(std::time::Instant::now() < deadline, "the tail never subscribed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lines = [
        r#"{"app":"web","timestamp":"2025-01-01T00:00:01Z","message":"first","tags":["level=ERROR"]}"#,
        r#"{"app":"web","timestamp":"2025-01-01T00:00:02Z","message":"quiet","tags":["level=INFO"]}"#,
        r#"{"app":"db","timestamp":"2025-01-01T00:00:03Z","message":"elsewhere","tags":["level=ERROR"]}"#,
        r#"{"app":"web","timestamp":"2025-01-01T00:00:04Z","message":"second","tags":["level=ERROR"]}"#,
    ];
    assert_eq!(ingest(&s.base, &(lines.join("\n") + "\n")).0, 200);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2025-01-01T00:00:01.000000000Z web [level=ERROR] first\n\
         2025-01-01T00:00:04.000000000Z web [level=ERROR] second\n"
    );
}

#[test]
fn health_succeeds_only_while_the_server_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let base = s.base.clone();
    let (ok, out, err) = logpipe(&["health", "--server", &base], None);
    assert!(ok, "{err}");
    assert!(out.contains("ready"), "{out}");
    s.stop();
    let (ok, _, err) = logpipe(&["health", "--server", &base, "--timeout", "2"], None);
    assert!(!ok, "a stopped server is not healthy");
    assert!(err.contains(&format!("GET {base}/ready")), "{err}");
}
